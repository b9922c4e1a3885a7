//! A backup for a vault names, in its pack list, exactly the packs its recovery point uses: the
//! list built along the backup matches a walk of the recovery point's trees, for a first
//! backup, an incremental one (unchanged files, a changed one, a new one) and one after a
//! deletion.

mod common;

use ferry_format::packlist::PackList;
use ferry_repo::backup::{self, BackupOptions};
use ferry_repo::{Progress, Repository};

#[test]
fn the_pack_list_names_exactly_the_packs_of_the_recovery_point() {
    let dir = tempfile::tempdir().unwrap();
    // Small packs: several of each kind.
    let opts = ferry_repo::InitOptions { pack_size: Some(256 << 10), ..Default::default() };
    let repo = common::scratch_repo(dir.path(), b"pack list test passphrase", opts);
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
    let mut seed = 1u64;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    };
    for i in 0..20 {
        std::fs::write(src.join(format!("small{i}.txt")), format!("small file {i}\n").repeat(50)).unwrap();
        std::fs::write(src.join("sub").join(format!("mid{i}.bin")), noise(40 << 10)).unwrap();
    }
    std::fs::write(src.join("sub/deeper/big.bin"), noise(3 << 20)).unwrap();

    let check = |repo: &Repository| {
        let mut o = BackupOptions::new(vec![src.clone()]);
        o.pack_list = true;
        let out = backup::run(repo, &o, &Progress::default()).unwrap();
        let id = out.recovery_point;
        let bytes = repo.store().get(&PackList::object_key(&id)).unwrap();
        let list = PackList::decode(&bytes, &id).unwrap();
        let (_, rp) = repo.resolve(&id.to_hex()).unwrap();
        let mut walked = repo.packs_of_tree(&rp.tree).unwrap();
        walked.sort();
        assert_eq!(list.packs, walked, "pack list vs a walk of the trees");
        assert_eq!(list.time, rp.time);
        list.packs.len()
    };
    assert!(check(&repo) > 3);
    std::fs::write(src.join("sub/mid3.bin"), noise(40 << 10)).unwrap();
    std::fs::write(src.join("new.bin"), noise(300 << 10)).unwrap();
    check(&repo);
    std::fs::remove_file(src.join("sub/deeper/big.bin")).unwrap();
    check(&repo);
}
