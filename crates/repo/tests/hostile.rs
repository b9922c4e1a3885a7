//! A repository written by an attacker (who has the key, e.g. a compromised machine sharing it)
//! must not make restore write outside its target.

mod common;

use std::path::Path;

use bytes::Bytes;
use ferry_format::index::{IndexFile, IndexPack};
use ferry_format::pack::PackWriter;
use ferry_format::recovery_point::{RecoveryPoint, Summary};
use ferry_format::tree::{Node, NodeKind, Tree};
use ferry_format::{blob, BlobId, BlobKind};
use ferry_repo::restore::{self, Overwrite, RestoreOptions};
use ferry_repo::{Progress, Repository};

fn node(name: &[u8], kind: NodeKind) -> Node {
    Node {
        name: name.to_vec(),
        kind,
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime_ns: 0,
        ctime_ns: 0,
        inode: 1,
        device: 1,
        links: 1,
        size: 0,
        content: vec![],
        subtree: None,
        target: vec![],
        rdev: 0,
        xattrs: vec![],
        sparse: false,
    }
}

/// Writes raw trees (not validated) and a recovery point naming the last one as root.
fn commit(repo: &Repository, blobs: Vec<(BlobKind, Vec<u8>)>, root: BlobId) -> RecoveryPoint {
    let mut w = PackWriter::new(repo.master());
    for (kind, plain) in &blobs {
        let id = repo.blob_id(plain);
        let (p, c) = blob::compress(plain, 3);
        w.add(*kind, id, &p, c, plain.len() as u32);
    }
    let f = w.finish();
    let size = f.bytes.len() as u64;
    repo.store().put(&f.id.object_key(), Bytes::from(f.bytes)).unwrap();
    let (iid, ib) =
        IndexFile { packs: vec![IndexPack { id: f.id, salt: f.salt, size, blobs: f.entries }], supersedes: vec![] }.seal(repo.master());
    repo.store().put(&iid.object_key(), Bytes::from(ib)).unwrap();
    repo.sync_index().unwrap();
    let rp = RecoveryPoint {
        time: "2026-11-22T00:00:00Z".into(),
        host: "evil".into(),
        user: "evil".into(),
        paths: vec!["/x".into()],
        tags: vec![],
        parent: None,
        tree: root,
        partial: false,
        summary: Summary::default(),
        ferry_version: "0".into(),
    };
    repo.save_recovery_point(&rp).unwrap();
    rp
}

fn setup() -> (tempfile::TempDir, Repository) {
    let dir = tempfile::tempdir().unwrap();
    let repo = common::scratch_repo(dir.path(), b"hostile test passphrase", Default::default());
    (dir, repo)
}

fn restore_to(repo: &Repository, rp: &RecoveryPoint, target: &Path) -> ferry_repo::Result<restore::RestoreOutcome> {
    let opts = RestoreOptions {
        target: target.to_path_buf(),
        includes: vec![],
        overwrite: Overwrite::Always,
        sparse: Default::default(),
        threads: 2,
    };
    restore::run(repo, rp, &opts, &Progress::default())
}

#[test]
fn dot_dot_names_are_refused() {
    for bad in [&b".."[..], b"a/../../etc", b"/etc", b"."] {
        let (dir, repo) = setup();
        let data = b"owned".to_vec();
        let mut file = node(bad, NodeKind::File);
        file.content = vec![repo.blob_id(&data)];
        file.size = data.len() as u64;
        let tree = Tree { nodes: vec![file] }.encode();
        let root = repo.blob_id(&tree);
        let rp = commit(&repo, vec![(BlobKind::Data, data), (BlobKind::Tree, tree)], root);
        let target = dir.path().join("target/inner");
        let err = restore_to(&repo, &rp, &target).unwrap_err();
        assert!(format!("{err:#}").contains("unsafe entry name"), "{err:#}");
        assert!(!dir.path().join("target/owned").exists());
        assert!(!dir.path().join("etc").exists());
    }
}

#[test]
fn a_symlink_and_folder_of_the_same_name_never_lead_outside() {
    let (dir, repo) = setup();
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let data = b"must stay inside".to_vec();
    let mut file = node(b"f", NodeKind::File);
    file.content = vec![repo.blob_id(&data)];
    file.size = data.len() as u64;
    file.mode = 0o644;
    let inner = Tree { nodes: vec![file] }.encode();
    let mut link = node(b"x", NodeKind::Symlink);
    link.target = outside.as_os_str().as_encoded_bytes().to_vec();
    let mut folder = node(b"x", NodeKind::Dir);
    folder.subtree = Some(repo.blob_id(&inner));
    // Encode by hand so the order (symlink first) is kept.
    let mut root_tree = Tree { nodes: vec![link, folder] };
    let root_bytes = root_tree.encode();
    let root = repo.blob_id(&root_bytes);
    let rp = commit(&repo, vec![(BlobKind::Data, data), (BlobKind::Tree, inner), (BlobKind::Tree, root_bytes)], root);
    let target = dir.path().join("target");
    let _ = restore_to(&repo, &rp, &target);
    assert!(!outside.join("f").exists(), "restore wrote through a symlink to {}", outside.display());
}
