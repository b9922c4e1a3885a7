//! The read path without FUSE: a read of a few KiB deep in a large file fetches only the
//! chunk holding it (ranged reads of its pack, counted by a store wrapper), never the file.

use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use ferry_mount::{OpenFile, Reader};
use ferry_repo::backup::{self, BackupOptions};
use ferry_repo::{InitOptions, Progress, Repository};
use ferry_store::{ObjectInfo, Store};

/// A store that counts what is read from packs (`data/`): whole objects and ranges.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn Store>,
    whole: AtomicU64,
    ranges: AtomicU64,
    bytes: AtomicU64,
}

impl Counting {
    fn reset(&self) {
        for c in [&self.whole, &self.ranges, &self.bytes] {
            c.store(0, Ordering::Relaxed);
        }
    }

    fn count(&self, key: &str, n: u64, whole: bool) {
        if key.starts_with("data/") {
            (if whole { &self.whole } else { &self.ranges }).fetch_add(1, Ordering::Relaxed);
            self.bytes.fetch_add(n, Ordering::Relaxed);
        }
    }
}

impl Store for Counting {
    fn put(&self, key: &str, data: Bytes) -> ferry_store::Result<()> {
        self.inner.put(key, data)
    }
    fn put_if_absent(&self, key: &str, data: Bytes) -> ferry_store::Result<bool> {
        self.inner.put_if_absent(key, data)
    }
    fn get(&self, key: &str) -> ferry_store::Result<Bytes> {
        let b = self.inner.get(key)?;
        self.count(key, b.len() as u64, true);
        Ok(b)
    }
    fn get_range(&self, key: &str, range: Range<u64>) -> ferry_store::Result<Bytes> {
        let b = self.inner.get_range(key, range)?;
        self.count(key, b.len() as u64, false);
        Ok(b)
    }
    fn get_range_into(&self, key: &str, range: Range<u64>, buf: &mut Vec<u8>) -> ferry_store::Result<()> {
        self.inner.get_range_into(key, range, buf)?;
        self.count(key, buf.len() as u64, false);
        Ok(())
    }
    fn head(&self, key: &str) -> ferry_store::Result<Option<u64>> {
        self.inner.head(key)
    }
    fn list(&self, prefix: &str) -> ferry_store::Result<Vec<ObjectInfo>> {
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> ferry_store::Result<()> {
        self.inner.delete(key)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

fn pseudo_random(len: usize, seed: u8) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new().update(&[seed]).finalize_xof().fill(&mut out);
    out
}

/// A repository on a counting store holding one backup of `src`; the node of `src/name`.
fn backed_up(dir: &Path, name: &str) -> (Arc<Repository>, Arc<Counting>, ferry_format::tree::Node) {
    let counting = Arc::new(Counting {
        inner: ferry_store::open(dir.join("repo").to_str().unwrap()).unwrap(),
        whole: AtomicU64::new(0),
        ranges: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
    });
    let opts =
        InitOptions { kdf: ferry_crypto::keyfile::KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 }, ..Default::default() };
    let repo = Repository::init(counting.clone(), b"mount read test passphrase", &opts, &dir.join("cache")).unwrap();
    let src = dir.join("src");
    backup::run(&repo, &BackupOptions::new(vec![src.clone()]), &Progress::default()).unwrap();
    let (_, rp) = repo.resolve("latest").unwrap();
    let (_, node) = ferry_repo::tree_walk::find(&repo, &rp.tree, &src.join(name)).unwrap().expect("the file is in the recovery point");
    (Arc::new(repo), counting, node)
}

#[test]
fn a_read_deep_in_a_large_file_fetches_only_its_chunk() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    // 48 MiB: pseudo-random, then 8 MiB of zeros (a hole), then pseudo-random again.
    let mut content = pseudo_random(48 << 20, 1);
    content[20 << 20..28 << 20].fill(0);
    std::fs::write(dir.path().join("src/large"), &content).unwrap();
    let (repo, counting, node) = backed_up(dir.path(), "large");
    assert!(node.content.len() > 10, "many chunks: {}", node.content.len());

    let reader = Reader::new(repo, 256 << 20);
    let file = OpenFile::new(Arc::new(node));
    counting.reset();
    let at = (40 << 20) + 12_345;
    let got = reader.read(&file, at as u64, 4096).unwrap();
    assert_eq!(got, &content[at..at + 4096]);
    let (whole, ranges, bytes) =
        (counting.whole.load(Ordering::Relaxed), counting.ranges.load(Ordering::Relaxed), counting.bytes.load(Ordering::Relaxed));
    assert_eq!(whole, 0, "no pack read whole");
    assert!(ranges <= 2, "one ranged read per chunk the read covers: {ranges}");
    assert!(bytes <= 2 * (8 << 20) && bytes < (content.len() / 4) as u64, "{bytes} bytes read for 4 KiB of a 48 MiB file");

    // Again: from the cache, nothing fetched.
    counting.reset();
    assert_eq!(reader.read(&file, at as u64 + 4096, 4096).unwrap(), &content[at + 4096..at + 8192]);
    assert_eq!(counting.bytes.load(Ordering::Relaxed), 0, "the chunk came from the cache");

    // The hole reads as zeros; a read across the end stops at the end.
    let hole = reader.read(&file, 24 << 20, 65536).unwrap();
    assert!(hole.len() == 65536 && hole.iter().all(|&b| b == 0));
    let tail = reader.read(&file, (content.len() - 100) as u64, 4096).unwrap();
    assert_eq!(tail, &content[content.len() - 100..]);
    assert!(reader.read(&file, content.len() as u64, 4096).unwrap().is_empty());
}

#[test]
fn small_files_of_a_bundle_cost_one_read_of_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    for i in 0..20u8 {
        std::fs::write(dir.path().join(format!("src/small{i:02}")), pseudo_random(3000, i)).unwrap();
    }
    let (repo, counting, _) = backed_up(dir.path(), "small00");
    let (_, rp) = repo.resolve("latest").unwrap();
    let reader = Reader::new(repo.clone(), 256 << 20);
    let nodes: Vec<_> = (0..20u8)
        .map(|i| ferry_repo::tree_walk::find(&repo, &rp.tree, &dir.path().join(format!("src/small{i:02}"))).unwrap().unwrap().1)
        .collect();
    counting.reset();
    for (i, node) in (0..20u8).zip(nodes) {
        let got = reader.read(&OpenFile::new(Arc::new(node)), 0, 1 << 20).unwrap();
        assert_eq!(got, pseudo_random(3000, i));
    }
    // The backup's two readers each fill a bundle of their own: the twenty files are in one or two.
    let ranges = counting.ranges.load(Ordering::Relaxed);
    assert!((1..=2).contains(&ranges), "each bundle holding the twenty was read and decoded once: {ranges} reads");
}
