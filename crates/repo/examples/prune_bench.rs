//! Prune and check memory benchmark: does their memory stay flat as the repository grows?
//! (issue #2's 80 TB design target; docs/design/prune-at-scale.md, steps 5 and 6.)
//!
//! ```text
//! cargo run -p ferry-repo --release --example prune_bench -- setup DIR [--entries N] [--packs]
//! cargo run -p ferry-repo --release --example prune_bench -- prune DIR
//! cargo run -p ferry-repo --release --example prune_bench -- check DIR
//! ```
//! `setup` makes a repository in `DIR/repo` whose index lists `N` data blobs (default 10
//! million) in packs of 500, and one recovery point whose trees (real tree blobs in real packs)
//! use the blobs of the first half of those packs: a prune finds the other half unused. The
//! data packs themselves are not written (prune classifies from the index and the trees; the
//! sweep finds the unused ones already gone), so the setup is quick and small on disk.
//! `prune` opens it and runs `ferry_repo::prune::run`, printing the report, the time and the
//! peak resident memory (VmHWM). Run the two as separate processes (bench/prune_memory.sh does,
//! under /usr/bin/time -v) so the peak is prune's own.
//!
//! For `check`, run `setup` with `--packs`: it then also writes every data pack as a sparse file
//! of its indexed size (check's structure pass compares sizes and does not read them), so that
//! check finds the repository whole. `check` runs `ferry_repo::check::run` without reading data
//! and fails unless it reports no damage. (Not for `prune`: it would try to read those packs.)

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use ferry_format::index::{IndexFile, IndexPack};
use ferry_format::pack::{PackEntry, PackWriter};
use ferry_format::recovery_point::{RecoveryPoint, Summary};
use ferry_format::tree::{Node, NodeKind, Tree};
use ferry_format::{BlobId, BlobKind, PackId};
use ferry_repo::{InitOptions, Repository};

const PASSPHRASE: &[u8] = b"prune bench passphrase, not secret";
const BLOBS_PER_PACK: u64 = 500;
const PACKS_PER_INDEX_FILE: u64 = 256;
const BLOBS_PER_FILE: u64 = 1000;
const FILES_PER_DIR: u64 = 100;

/// A deterministic 32-byte ID: splitmix64 of (stream, n), repeated.
fn id_bytes(stream: u64, n: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut x = stream ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for chunk in out.chunks_mut(8) {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out
}

fn blob(n: u64) -> BlobId {
    BlobId::from_bytes(id_bytes(1, n))
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn node(name: String, kind: NodeKind, content: Vec<BlobId>, subtree: Option<BlobId>) -> Node {
    Node {
        name: name.into_bytes(),
        kind,
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime_ns: 0,
        ctime_ns: 0,
        inode: 0,
        device: 0,
        links: 1,
        size: content.len() as u64 * 1024,
        content,
        subtree,
        target: Vec::new(),
        rdev: 0,
        xattrs: Vec::new(),
        sparse: false,
    }
}

fn setup(dir: &Path, entries: u64, with_packs: bool) -> Result<()> {
    let start = Instant::now();
    let store = ferry_store::open(dir.join("repo").to_str().context("path")?)?;
    let opts =
        InitOptions { kdf: ferry_crypto::keyfile::KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 }, ..Default::default() };
    let repo = Repository::init(store, PASSPHRASE, &opts, &dir.join("cache"))?;
    // The data index: `entries` blobs in packs of BLOBS_PER_PACK, 256 packs per index file.
    let packs = entries.div_ceil(BLOBS_PER_PACK);
    let mut file = Vec::new();
    for p in 0..packs {
        let blobs = (p * BLOBS_PER_PACK..((p + 1) * BLOBS_PER_PACK).min(entries))
            .enumerate()
            .map(|(i, n)| PackEntry {
                kind: BlobKind::Data,
                id: blob(n),
                offset: 24 + 1040 * i as u32,
                length: 1040,
                raw_len: 1024,
                compressed: false,
                unit_start: 0,
                unit_len: 1024,
            })
            .collect::<Vec<_>>();
        let size = 24 + 1040 * blobs.len() as u64 + 64;
        let pack = PackId::from_bytes(id_bytes(2, p));
        if with_packs {
            // Straight into the folder (the local store's layout): a sparse file of the size.
            let path = dir.join("repo").join(pack.object_key());
            std::fs::create_dir_all(path.parent().context("pack folder")?)?;
            std::fs::File::create(&path)?.set_len(size)?;
        }
        file.push(IndexPack { id: pack, salt: [0; 16], size, blobs });
        if file.len() as u64 == PACKS_PER_INDEX_FILE || p + 1 == packs {
            let (id, bytes) = IndexFile { packs: std::mem::take(&mut file), supersedes: vec![] }.seal(repo.master());
            repo.store().put_if_absent(&id.object_key(), Bytes::from(bytes))?;
        }
    }
    // The trees: files of BLOBS_PER_FILE blobs of the first half of the packs, FILES_PER_DIR
    // files per folder, the folders in one root; tree blobs stored in real packs.
    let used = packs / 2 * BLOBS_PER_PACK;
    let mut tree_packs = Vec::new();
    let mut writer = PackWriter::new(repo.master());
    let store_tree = |tree: &mut Tree, writer: &mut PackWriter, tree_packs: &mut Vec<IndexPack>| -> Result<BlobId> {
        let bytes = tree.encode();
        let id = repo.blob_id(&bytes);
        let (payload, compressed) = ferry_format::blob::compress(&bytes, 1);
        writer.add(BlobKind::Tree, id, &payload, compressed, bytes.len() as u32);
        if writer.len() >= 16 << 20 {
            let f = std::mem::replace(writer, PackWriter::new(repo.master())).finish();
            repo.store().put_if_absent(&f.id.object_key(), Bytes::from(f.bytes.clone()))?;
            tree_packs.push(IndexPack { id: f.id, salt: f.salt, size: f.bytes.len() as u64, blobs: f.entries });
        }
        Ok(id)
    };
    let mut root = Tree::default();
    let files = used.div_ceil(BLOBS_PER_FILE);
    let mut folder = Tree::default();
    for f in 0..files {
        let content = (f * BLOBS_PER_FILE..((f + 1) * BLOBS_PER_FILE).min(used)).map(blob).collect();
        folder.nodes.push(node(format!("file{f}"), NodeKind::File, content, None));
        if folder.nodes.len() as u64 == FILES_PER_DIR || f + 1 == files {
            let id = store_tree(&mut folder, &mut writer, &mut tree_packs)?;
            root.nodes.push(node(format!("dir{}", root.nodes.len()), NodeKind::Dir, Vec::new(), Some(id)));
            folder = Tree::default();
        }
    }
    let mut top = Tree::default();
    let root_id = store_tree(&mut root, &mut writer, &mut tree_packs)?;
    top.nodes.push(node("bench".into(), NodeKind::Dir, Vec::new(), Some(root_id)));
    let top_id = store_tree(&mut top, &mut writer, &mut tree_packs)?;
    let f = writer.finish();
    repo.store().put_if_absent(&f.id.object_key(), Bytes::from(f.bytes.clone()))?;
    tree_packs.push(IndexPack { id: f.id, salt: f.salt, size: f.bytes.len() as u64, blobs: f.entries });
    let (id, bytes) = IndexFile { packs: tree_packs, supersedes: vec![] }.seal(repo.master());
    repo.store().put_if_absent(&id.object_key(), Bytes::from(bytes))?;
    let rp = RecoveryPoint {
        time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        host: "bench".into(),
        user: "bench".into(),
        paths: vec!["/bench".into()],
        tags: vec![],
        parent: None,
        tree: top_id,
        partial: false,
        summary: Summary::default(),
        ferry_version: env!("CARGO_PKG_VERSION").into(),
    };
    repo.save_recovery_point(&rp)?;
    println!("setup: {entries} data blobs in {packs} packs, {used} used by {files} files; {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

/// Opens the repository (which rebuilds the cache from the index): the repository, when the
/// opening started, how long it took, and the peak memory so far.
fn open_timed(dir: &Path) -> Result<(Repository, Instant, f64, u64)> {
    let store = ferry_store::open(dir.join("repo").to_str().context("path")?)?;
    let start = Instant::now();
    let repo = Repository::open(store, PASSPHRASE, &dir.join("cache"))?;
    Ok((repo, start, start.elapsed().as_secs_f64(), peak_rss_kib()))
}

fn prune(dir: &Path) -> Result<()> {
    let (repo, start, opened, rss_open) = open_timed(dir)?;
    let report = ferry_repo::prune::run(&repo, &ferry_repo::prune::PruneOptions::default())?;
    println!(
        "prune: {} packs, {} unused, {} blobs used; open (index sync) {opened:.1} s, peak RSS after open {rss_open} KiB; prune {:.1} s; peak RSS {} KiB",
        report.packs_total,
        report.packs_unused,
        report.blobs_used,
        start.elapsed().as_secs_f64() - opened,
        peak_rss_kib()
    );
    Ok(())
}

fn check(dir: &Path) -> Result<()> {
    let (repo, start, opened, rss_open) = open_timed(dir)?;
    let report = ferry_repo::check::run(&repo, &ferry_repo::check::CheckOptions::default())?;
    if !report.is_ok() {
        bail!("check found damage (was setup run with --packs?): {:?}", report.damage.first());
    }
    println!(
        "check: {} packs, {} index files, {} trees; open (index sync) {opened:.1} s, peak RSS after open {rss_open} KiB; check {:.1} s; peak RSS {} KiB",
        report.packs,
        report.index_files,
        report.trees,
        start.elapsed().as_secs_f64() - opened,
        peak_rss_kib()
    );
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["setup", dir, rest @ ..] => {
            let with_packs = rest.contains(&"--packs");
            let rest: Vec<&str> = rest.iter().copied().filter(|a| *a != "--packs").collect();
            let entries = match rest.as_slice() {
                [] => 10_000_000,
                ["--entries", n] => n.parse().context("--entries N")?,
                _ => bail!("usage: prune_bench setup DIR [--entries N] [--packs]"),
            };
            setup(&PathBuf::from(dir), entries, with_packs)
        }
        ["prune", dir] => prune(&PathBuf::from(dir)),
        ["check", dir] => check(&PathBuf::from(dir)),
        _ => bail!("usage: prune_bench setup DIR [--entries N] [--packs] | prune DIR | check DIR"),
    }
}
