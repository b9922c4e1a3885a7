//! Index memory benchmark: does the local cache's on-disk index keep memory flat as the
//! repository grows? It fills a [`LocalCache`] with synthetic blobs (default 10 million) the way
//! a backup does, printing entries, time, insert rate, resident memory (VmRSS), peak resident
//! memory (VmHWM) and the database's size at checkpoints, then measures random lookups of
//! present and absent blob IDs.
//!
//! ```text
//! cargo run -p ferry-repo --release --example index_bench -- [--entries N] [--dir DIR]
//!     [--page-cache BYTES] [--lookups N] [--blobs-per-pack N] [--packs-per-commit N]
//!     [--packs-per-txn N] [--compact]
//! ```
//! Each pack is one non-durable `add_packs` transaction (`--packs-per-txn`, default 1); every
//! `--packs-per-commit` packs (default 256, one index file's worth) a durable commit follows,
//! as in a backup. `--packs-per-txn 256 --packs-per-commit <more than all packs>` instead
//! mimics rebuilding the cache from index files (`Repository::sync_index`: one non-durable
//! `add_index_file` per index file, one `persist` at the end). `--compact`
//! finally compacts the database with redb directly (`LocalCache` has no such call) to show how
//! much of the file is live data.
//! `bench/index_memory.sh` runs it under `/usr/bin/time -v` and keeps the output.
//!
//! Blob IDs come from a deterministic generator (splitmix64), so the lookup phase can regenerate
//! any inserted ID from its number without holding the IDs in memory: the benchmark itself keeps
//! O(1) state, and what RSS shows is the cache's.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use ferry_format::index::IndexPack;
use ferry_format::pack::PackEntry;
use ferry_format::{BlobId, BlobKind, IndexId, PackId};
use ferry_repo::cache::LocalCache;

/// The page cache `Repository` gives its cache (`CACHE_PAGE_BYTES` in repository.rs).
const DEFAULT_PAGE_CACHE: usize = 16 * 1024 * 1024;
/// Packs per index file, as the packer writes them (`PACKS_PER_INDEX_FILE` in packer.rs): after
/// each index file the packer makes the cache durable (`mark_index_file(.., true)`).
const PACKS_PER_INDEX_FILE: u64 = 256;
/// ID streams: inserted blobs, absent blobs, pack IDs, index file IDs.
const STREAM_PRESENT: u64 = 0x5eed_0001_0000_0000;
const STREAM_ABSENT: u64 = 0x5eed_0002_0000_0000;
const STREAM_PACK: u64 = 0x5eed_0003_0000_0000;
const STREAM_INDEX: u64 = 0x5eed_0004_0000_0000;
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

struct Args {
    entries: u64,
    dir: Option<PathBuf>,
    page_cache: usize,
    lookups: u64,
    blobs_per_pack: u64,
    packs_per_commit: u64,
    packs_per_txn: u64,
    compact: bool,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        entries: 10_000_000,
        dir: None,
        page_cache: DEFAULT_PAGE_CACHE,
        lookups: 1_000_000,
        blobs_per_pack: 500,
        packs_per_commit: PACKS_PER_INDEX_FILE,
        packs_per_txn: 1,
        compact: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--entries" => a.entries = value()?.parse().context("parse --entries")?,
            "--dir" => a.dir = Some(value()?.into()),
            "--page-cache" => a.page_cache = value()?.parse().context("parse --page-cache")?,
            "--lookups" => a.lookups = value()?.parse().context("parse --lookups")?,
            "--blobs-per-pack" => a.blobs_per_pack = value()?.parse().context("parse --blobs-per-pack")?,
            "--packs-per-commit" => a.packs_per_commit = value()?.parse().context("parse --packs-per-commit")?,
            "--packs-per-txn" => a.packs_per_txn = value()?.parse().context("parse --packs-per-txn")?,
            "--compact" => a.compact = true,
            "-h" | "--help" => {
                println!(
                    "index_bench [--entries N] [--dir DIR] [--page-cache BYTES] [--lookups N] [--blobs-per-pack N] \
                     [--packs-per-commit N] [--packs-per-txn N] [--compact]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    if a.entries == 0 || a.blobs_per_pack == 0 || a.packs_per_commit == 0 || a.packs_per_txn == 0 {
        bail!("--entries, --blobs-per-pack, --packs-per-commit and --packs-per-txn must be positive");
    }
    Ok(a)
}

/// splitmix64's output function: a bijection that scrambles consecutive states well.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The `i`-th 32-byte ID of a stream: four splitmix64 outputs.
fn id_bytes(stream: u64, i: u64) -> [u8; 32] {
    let mut b = [0u8; 32];
    for k in 0..4u64 {
        let word = mix(stream.wrapping_add(i.wrapping_mul(4).wrapping_add(k + 1).wrapping_mul(GOLDEN)));
        b[k as usize * 8..k as usize * 8 + 8].copy_from_slice(&word.to_le_bytes());
    }
    b
}

/// The kind of blob `i`: one in 64 is a tree, as in a tree of small files.
fn kind_of(i: u64) -> BlobKind {
    if i & 63 == 0 {
        BlobKind::Tree
    } else {
        BlobKind::Data
    }
}

/// A fast generator for lookup positions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }

    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

/// VmRSS and VmHWM of this process, in KiB.
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets VmHWM to the current RSS (Linux: write "5" to clear_refs); false where unsupported.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Bytes the file occupies on disk (it can be sparse).
fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map_or(0, |m| m.blocks() * 512)
}

/// One pack of `n` synthetic blobs, the first being blob number `first`.
fn make_pack(pack_no: u64, first: u64, n: u64) -> IndexPack {
    let mut offset = 24u32;
    let blobs = (first..first + n)
        .map(|i| {
            let length = 2048 + (mix(i) % 30_000) as u32;
            let e = PackEntry {
                kind: kind_of(i),
                id: BlobId::from_bytes(id_bytes(STREAM_PRESENT, i)),
                offset,
                length,
                raw_len: length + 100,
                compressed: i % 3 != 0,
                unit_start: 0,
                unit_len: length + 100,
            };
            offset = offset.saturating_add(length);
            e
        })
        .collect();
    let salt: [u8; 16] = id_bytes(STREAM_PACK ^ 1, pack_no)[..16].try_into().expect("16 bytes");
    IndexPack { id: PackId::from_bytes(id_bytes(STREAM_PACK, pack_no)), salt, size: u64::from(offset) + 4096, blobs }
}

fn print_header() {
    println!(
        "{:>12} {:>10} {:>12} {:>12} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "entries", "elapsed_s", "avg_ins/s", "interval/s", "rss_MiB", "peak_MiB", "file_MiB", "disk_MiB", "B/entry"
    );
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let temp;
    let dir = if let Some(d) = &args.dir {
        d.clone()
    } else {
        temp = tempfile::tempdir().context("create temporary folder")?;
        temp.path().to_path_buf()
    };
    let path = dir.join("index.redb");
    if path.exists() {
        bail!("{} exists: remove it first (the benchmark starts from an empty cache)", path.display());
    }
    let (rss0, _) = rss_kib();
    let cache = LocalCache::open(&path, args.page_cache)?;
    println!(
        "index_bench: {} entries, {} blobs per pack, {} packs per transaction, durable commit every {} packs, page cache {} MiB, database {}",
        args.entries,
        args.blobs_per_pack,
        args.packs_per_txn,
        args.packs_per_commit,
        args.page_cache / (1024 * 1024),
        path.display()
    );
    println!("rss before opening the cache: {:.1} MiB", mib(rss0));
    print_header();

    let mut checkpoints: Vec<u64> = [1u64, 2, 5, 10, 20, 50, 100].iter().map(|m| m * 1_000_000).filter(|&c| c < args.entries).collect();
    checkpoints.push(args.entries);
    let mut next_cp = 0;

    let start = Instant::now();
    let (mut last_t, mut last_n) = (0.0f64, 0u64);
    let (mut inserted, mut pack_no, mut index_no) = (0u64, 0u64, 0u64);
    let (mut batch, mut txns) = (Vec::new(), 0u64);
    while inserted < args.entries {
        // Never cross a checkpoint inside a pack, so the rows show round numbers.
        let n = args.blobs_per_pack.min(checkpoints[next_cp] - inserted);
        batch.push(make_pack(pack_no, inserted, n));
        inserted += n;
        pack_no += 1;
        if batch.len() as u64 == args.packs_per_txn || inserted == checkpoints[next_cp] {
            cache.add_packs(&batch, None, false)?;
            batch.clear();
            txns += 1;
        }
        if pack_no % args.packs_per_commit == 0 {
            cache.mark_index_file(&IndexId::from_bytes(id_bytes(STREAM_INDEX, index_no)), true)?;
            index_no += 1;
        }
        if inserted == checkpoints[next_cp] {
            if inserted == args.entries {
                cache.persist()?;
            }
            let t = start.elapsed().as_secs_f64();
            let (rss, hwm) = rss_kib();
            let size = file_size(&path);
            println!(
                "{:>12} {:>10.1} {:>12.0} {:>12.0} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
                inserted,
                t,
                inserted as f64 / t,
                (inserted - last_n) as f64 / (t - last_t),
                mib(rss),
                mib(hwm),
                size as f64 / (1024.0 * 1024.0),
                allocated(&path) as f64 / (1024.0 * 1024.0),
                size as f64 / inserted as f64
            );
            (last_t, last_n) = (t, inserted);
            next_cp += 1;
        }
    }
    let count = cache.blob_count()?;
    if count != args.entries {
        bail!("the cache holds {count} blobs, expected {}", args.entries);
    }
    println!("inserted {} blobs in {} packs, {} transactions, {} durable commits", inserted, pack_no, txns, index_no + 1);

    let (_, insert_peak) = rss_kib();
    let reset = reset_peak();
    lookups(&cache, &args, true)?;
    lookups(&cache, &args, false)?;
    let (rss, hwm) = rss_kib();
    println!(
        "after lookups: rss {:.1} MiB, peak {} {:.1} MiB; peak while inserting {:.1} MiB",
        mib(rss),
        if reset { "during lookups" } else { "overall" },
        mib(hwm),
        mib(insert_peak)
    );
    drop(cache);
    report_file("database file", &path, args.entries);
    if args.compact {
        let start = Instant::now();
        let mut db = redb::Database::builder().set_cache_size(args.page_cache).create(&path).context("reopen the database")?;
        db.compact().context("compact the database")?;
        drop(db);
        let (_, hwm) = rss_kib();
        println!("compacted in {:.1} s (peak rss now {:.1} MiB)", start.elapsed().as_secs_f64(), mib(hwm));
        report_file("compacted file", &path, args.entries);
    }
    Ok(())
}

fn report_file(what: &str, path: &Path, entries: u64) {
    let (size, disk) = (file_size(path), allocated(path));
    println!(
        "{what}: {size} bytes ({:.1} bytes per entry), {disk} bytes on disk ({:.1} bytes per entry)",
        size as f64 / entries as f64,
        disk as f64 / entries as f64
    );
}

/// Looks up `args.lookups` random IDs that are present (or absent) and prints the rate.
fn lookups(cache: &LocalCache, args: &Args, present: bool) -> Result<()> {
    let mut rng = Rng(if present { 0x10 } else { 0x20 });
    let start = Instant::now();
    let mut found = 0u64;
    for _ in 0..args.lookups {
        let (kind, id) = if present {
            let i = rng.below(args.entries);
            (kind_of(i), BlobId::from_bytes(id_bytes(STREAM_PRESENT, i)))
        } else {
            let i = rng.next();
            (kind_of(i), BlobId::from_bytes(id_bytes(STREAM_ABSENT, i)))
        };
        if cache.lookup(kind, &id)?.is_some() {
            found += 1;
        }
    }
    let t = start.elapsed().as_secs_f64();
    let expected = if present { args.lookups } else { 0 };
    let (rss, hwm) = rss_kib();
    println!(
        "{} lookups of {} IDs: {:.2} s, {:.0} lookups/s, {} found; rss {:.1} MiB, peak {:.1} MiB",
        args.lookups,
        if present { "present" } else { "absent" },
        t,
        args.lookups as f64 / t,
        found,
        mib(rss),
        mib(hwm)
    );
    if found != expected {
        bail!("{found} of {} {} lookups found a blob, expected {expected}", args.lookups, if present { "present" } else { "absent" });
    }
    Ok(())
}
