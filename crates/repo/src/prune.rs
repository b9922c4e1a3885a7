//! Prune: reclaims the space of data no recovery point uses, in two phases, safely while
//! backups run.
//!
//! **Mark.** Find every blob any recovery point uses (walking all trees). Packs with no used
//! blob become *candidates*; packs that are mostly unused have their used blobs copied into
//! new packs and become candidates too. New index files (of bounded size) listing every kept
//! pack replace the index files read (order: new packs, then the new index files, then deletion of the old
//! index files), so no new backup will deduplicate against a candidate. Packs in the store
//! that no index lists (left by an interrupted backup, or still being written by a running
//! one) become candidates as well. The candidates are recorded in `gc/<id>` with the time.
//!
//! **Sweep.** A record is swept only when no live lock was taken before its mark time plus a
//! margin for clock skew: every backup that might have read the old index has then finished
//! (or died, and its lock went stale). Before deleting, each candidate's header is read: if a
//! recovery point written meanwhile uses one of its blobs, the pack is put back into the index
//! instead. Then the packs are deleted, then the record. With no backup running, one `prune`
//! does both phases.

use std::collections::HashSet;

use anyhow::{Context, Result};
use bytes::Bytes;
use ferry_format::index::{IndexFile, IndexPack};
use ferry_format::pack::{self, PackWriter};
use ferry_format::tree::NodeKind;
use ferry_format::{BlobId, BlobKind, IndexId, PackId, RecoveryPointId};
use serde::{Deserialize, Serialize};

use crate::blobset::BlobSet;
use crate::error::bail;
use crate::lock::live_locks;
use crate::{tree_walk, RepoLock, Repository, UnitDecoder};

/// Locks taken up to this long after a mark still count as "before" it (clock skew).
const SKEW_MARGIN_S: i64 = 10 * 60;
/// Packs with at least this fraction of unused bytes are repacked.
const REPACK_UNUSED_FRACTION: f64 = 0.25;

/// Stored bytes of a pack's blobs that are still used, and of all its blobs (at least 1). A
/// bundle counts in proportion to the plaintext of its used members. The used bytes are 0 only
/// when no blob of the pack is used.
fn used_and_total_bytes(p: &IndexPack, used: &Used) -> Result<(u64, u64)> {
    let (mut used_bytes, mut total) = (0u64, 0u64);
    for unit in p.blobs.chunk_by(|a, b| a.offset == b.offset) {
        let length = u64::from(unit[0].length);
        total += length;
        let mut live = Vec::new();
        for b in unit {
            if used.contains(b.kind, &b.id)? {
                live.push(b);
            }
        }
        if live.is_empty() {
            continue;
        }
        let used_raw: u64 = live.iter().map(|b| u64::from(b.raw_len)).sum();
        let unit_len = u64::from(unit[0].unit_len).max(1);
        // At least 1 byte when anything in the unit is used: a pack counting 0 is deleted.
        used_bytes += (length * used_raw.min(unit_len) / unit_len).max(1);
    }
    Ok((used_bytes, total.max(1)))
}

#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    pub dry_run: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    pub packs_total: u64,
    pub packs_unused: u64,
    pub packs_repacked: u64,
    pub packs_unindexed: u64,
    pub packs_deleted: u64,
    pub packs_deferred: u64,
    pub packs_resurrected: u64,
    pub bytes_deleted: u64,
    pub blobs_used: u64,
    /// Another process (a backup) held a lock: nothing new was marked this time.
    pub mark_deferred: bool,
}

/// A mark: candidate packs and when they were marked.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct GcRecord {
    magic: String,
    version: u32,
    /// Unix seconds.
    marked_at: i64,
    packs: Vec<PackId>,
}

const GC_MAGIC: &str = "ferry-gc";

/// The blobs recovery points use: on disk, so prune's memory does not grow with the repository
/// (docs/design/prune-at-scale.md).
type Used = BlobSet;

/// Adds the blobs of `points` to `used` (and flushes it); `seen_trees` holds the trees walked
/// already, which are not walked again.
fn used_blobs(repo: &Repository, points: &[RecoveryPointId], used: &mut Used, seen_trees: &mut HashSet<BlobId>) -> Result<()> {
    for id in points {
        let bytes = match repo.store().get(&id.object_key()) {
            // Soft-deleted by a vault: still restorable, so its data stays.
            Err(e) if e.is_not_found() => repo.store().get(&format!("{SOFT_DELETED}{}", id.object_key())),
            r => r,
        }
        .with_context(|| format!("read recovery point {}", id.short()))?;
        let rp = ferry_format::recovery_point::RecoveryPoint::open(repo.master(), id, &bytes)
            .with_context(|| format!("recovery point {} is damaged: prune stops rather than risk deleting its data", id.short()))?;
        if !seen_trees.insert(rp.tree) {
            continue;
        }
        used.insert(BlobKind::Tree, &rp.tree)?;
        tree_walk::walk(repo, &rp.tree, &mut |_, n| {
            for c in &n.content {
                used.insert(BlobKind::Data, c)?;
            }
            if n.kind == NodeKind::Dir {
                if let Some(s) = n.subtree {
                    used.insert(BlobKind::Tree, &s)?;
                    return Ok(seen_trees.insert(s));
                }
            }
            Ok(false)
        })
        .with_context(|| format!("read the trees of recovery point {} (prune stops rather than risk deleting data)", id.short()))?;
    }
    Ok(used.flush()?)
}

/// Where a vault keeps soft-deleted recovery points (`deleted/recovery-points/<id>`) until they
/// expire.
pub const SOFT_DELETED: &str = "deleted/";

/// Every recovery point, the soft-deleted ones included.
fn list_points(repo: &Repository) -> Result<Vec<RecoveryPointId>> {
    let mut out = Vec::new();
    for prefix in ["recovery-points/".to_string(), format!("{SOFT_DELETED}recovery-points/")] {
        out.extend(repo.store().list(&prefix)?.iter().filter_map(|o| RecoveryPointId::from_hex(o.key.trim_start_matches(prefix.as_str()))));
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Runs prune (mark, then sweep of every record that is safe to sweep).
pub fn run(repo: &Repository, opts: &PruneOptions) -> crate::Result<PruneReport> {
    // A vault keeps packs by the pack lists of recovery points: repacking would move blobs into
    // packs no pack list names, which the vault would then delete.
    if !repo.store().list("packlists/").context("list pack lists")?.is_empty() {
        bail!(
            "this repository's retention is enforced by its vault (its recovery points have pack lists): \
             prune would move data out of the packs the vault keeps for them. Use `ferry vault retention MACHINE`"
        );
    }
    let lock = RepoLock::acquire(repo, false, "prune")?;
    let others: Vec<_> = live_locks(repo)?.into_iter().filter(|(k, _)| k != lock.key()).collect();
    if others.iter().any(|(_, l)| l.purpose == "prune") {
        bail!("another prune is running on this repository; try again when it has finished");
    }
    repo.sync_index()?;
    let mut report = PruneReport::default();
    if !others.is_empty() {
        // A running backup may already have indexed packs (at a checkpoint) that its
        // recovery point, not yet written, will use: marking now would drop them from the
        // index. Only sweep what earlier marks made safe; mark again when nothing runs.
        report.mark_deferred = true;
        let mut points_seen: HashSet<RecoveryPointId> = list_points(repo)?.into_iter().collect();
        let (mut used, mut seen_trees) = (Used::new_in(repo.cache_dir())?, HashSet::new());
        used_blobs(repo, &points_seen.iter().copied().collect::<Vec<_>>(), &mut used, &mut seen_trees)?;
        if !opts.dry_run {
            sweep(repo, &lock, &mut points_seen, &mut used, &mut seen_trees, &mut report)?;
        }
        lock.release();
        return Ok(report);
    }

    // ---- mark
    let index_ids = repo.list_index_files()?;
    let mut points_seen: HashSet<RecoveryPointId> = list_points(repo)?.into_iter().collect();
    let mut used = Used::new_in(repo.cache_dir())?;
    let mut seen_trees = HashSet::new();
    used_blobs(repo, &points_seen.iter().copied().collect::<Vec<_>>(), &mut used, &mut seen_trees)?;
    report.blobs_used = used.len()?;

    // Pass 1 over the index, one file at a time: classify every pack. Only the unused and the
    // repacked ones are remembered (and every pack's ID).
    let mut candidates: Vec<PackId> = Vec::new();
    let mut repack: Vec<IndexPack> = Vec::new();
    // Blobs of kept packs (on disk too), then those copied by the repack (few, in memory): a blob
    // stored twice is kept once.
    let mut placed = BlobSet::new_in(repo.cache_dir())?;
    let mut repacked: HashSet<(BlobKind, BlobId)> = HashSet::new();
    let mut indexed: HashSet<PackId> = HashSet::new();
    for_each_indexed_pack(repo, &index_ids, |p| {
        report.packs_total += 1;
        indexed.insert(p.id);
        match classify(&p, &used)? {
            Class::Unused => {
                report.packs_unused += 1;
                candidates.push(p.id);
            }
            Class::Repack => {
                report.packs_repacked += 1;
                repack.push(p);
            }
            Class::Keep => {
                for b in &p.blobs {
                    placed.insert(b.kind, &b.id)?;
                }
            }
        }
        Ok(())
    })?;
    placed.flush()?;
    repo.for_each_stored_pack(|id, _| {
        if !indexed.contains(&id) {
            report.packs_unindexed += 1;
            candidates.push(id);
        }
        Ok(())
    })?;
    drop(indexed);
    if opts.dry_run {
        return Ok(report);
    }
    let changed = !candidates.is_empty() || !repack.is_empty();
    let mut keep: Vec<IndexPack> = Vec::new();
    if changed {
        // Repack: copy used blobs of mostly-unused packs into new packs (stored before the index names them).
        for p in &repack {
            let bytes = repo.read_pack(&p.id)?;
            pack::verify_id(&p.id, &bytes).with_context(|| format!("pack {} is damaged; run `ferry check --read-data`", p.id.short()))?;
            let mut w: Option<PackWriter> = None;
            let mut decoder = UnitDecoder::new(repo);
            // Unit by unit (a bundle's entries share one offset): the used blobs of each unit
            // are stored together again, as a bundle when there are several.
            for unit in p.blobs.chunk_by(|a, b| a.offset == b.offset) {
                let mut members = Vec::new();
                let mut plain = Vec::new();
                for b in unit {
                    if !used.contains(b.kind, &b.id)? || placed.contains(b.kind, &b.id)? || !repacked.insert((b.kind, b.id)) {
                        continue;
                    }
                    let loc = crate::cache::BlobLocation::of(p.id, b);
                    let stored = bytes.get(b.offset as usize..(b.offset + b.length) as usize).context("blob outside its pack")?;
                    plain.extend_from_slice(decoder.blob(&loc, &p.salt, stored)?);
                    members.push((b.id, b.raw_len));
                }
                let Some(kind) = unit.first().map(|b| b.kind).filter(|_| !members.is_empty()) else { continue };
                let level = if members.len() > 1 { repo.config().bundle_compression_level } else { repo.config().compression_level };
                let (payload, c) = ferry_format::blob::compress(&plain, level);
                let writer = w.get_or_insert_with(|| PackWriter::new(repo.master()));
                writer.add_bundle(kind, &members, &payload, c);
                if writer.len() >= repo.config().pack_size as usize {
                    keep.push(store_pack(repo, w.take().expect("open"))?);
                }
            }
            if let Some(writer) = w {
                keep.push(store_pack(repo, writer)?);
            }
            candidates.push(p.id);
        }
        // Pass 2: the kept packs again (the same immutable index files, the same decisions),
        // straight into new index files of bounded size, then the repacked ones.
        let mut out = IndexWriter::new(repo, BLOBS_PER_INDEX_FILE);
        for_each_indexed_pack(repo, &index_ids, |p| match classify(&p, &used)? {
            Class::Keep => out.add(p),
            Class::Unused | Class::Repack => Ok(()),
        })?;
        for p in keep {
            out.add(p)?;
        }
        out.finish(&index_ids)?;
        // MUST come after the new index files are stored.
        for id in &index_ids {
            repo.store().delete(&id.object_key()).with_context(|| format!("delete superseded index file {}", id.short()))?;
        }
        repo.sync_index()?;
        // MUST come after the old index files are gone: the mark time orders it after them.
        let rec = GcRecord { magic: GC_MAGIC.into(), version: 1, marked_at: chrono::Utc::now().timestamp(), packs: candidates };
        let body = serde_json::to_vec(&rec)?;
        let key = format!("gc/{}", hex::encode(ferry_crypto::content_hash(&body)));
        repo.store().put_if_absent(&key, Bytes::from(body)).context("store the mark record")?;
    }

    // ---- sweep
    sweep(repo, &lock, &mut points_seen, &mut used, &mut seen_trees, &mut report)?;
    lock.release();
    Ok(report)
}

/// Blob entries per index file prune writes (about 6 MiB sealed): the index it keeps goes out
/// in files of bounded size, never as one file of the whole repository.
const BLOBS_PER_INDEX_FILE: usize = 100_000;

/// What prune does with an indexed pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Keep,
    Repack,
    Unused,
}

fn classify(p: &IndexPack, used: &Used) -> Result<Class> {
    let (used_bytes, total) = used_and_total_bytes(p, used)?;
    Ok(if used_bytes == 0 {
        Class::Unused
    } else if (total - used_bytes) as f64 / total as f64 >= REPACK_UNUSED_FRACTION {
        Class::Repack
    } else {
        Class::Keep
    })
}

/// Calls `f` with every pack the index files `ids` list, reading one file at a time; a pack
/// listed twice (after an interrupted prune) once; packs a vault deleted not at all.
fn for_each_indexed_pack(repo: &Repository, ids: &[IndexId], mut f: impl FnMut(IndexPack) -> Result<()>) -> Result<()> {
    let mut seen: HashSet<PackId> = HashSet::new();
    for id in ids {
        for p in repo.read_index_file(id)?.packs {
            if seen.insert(p.id) && !repo.is_pack_deleted(&p.id)? {
                f(p)?;
            }
        }
    }
    Ok(())
}

/// Writes the index prune keeps as files of at most about `per_file` blob entries; the last one
/// names the index files they replace (informational: readers take the union of all index
/// files, so a crash before the old ones are deleted only lists packs twice). At least one file
/// is written, so the replaced files are always named.
struct IndexWriter<'r> {
    repo: &'r Repository,
    per_file: usize,
    packs: Vec<IndexPack>,
    blobs: usize,
}

impl<'r> IndexWriter<'r> {
    fn new(repo: &'r Repository, per_file: usize) -> Self {
        IndexWriter { repo, per_file, packs: Vec::new(), blobs: 0 }
    }

    fn add(&mut self, p: IndexPack) -> Result<()> {
        self.blobs += p.blobs.len();
        self.packs.push(p);
        if self.blobs >= self.per_file {
            self.store(Vec::new())?;
        }
        Ok(())
    }

    fn store(&mut self, supersedes: Vec<IndexId>) -> Result<()> {
        let packs = std::mem::take(&mut self.packs);
        self.blobs = 0;
        let (id, bytes) = IndexFile { packs, supersedes }.seal(self.repo.master());
        self.repo.store().put_if_absent(&id.object_key(), Bytes::from(bytes)).context("store a new index file")?;
        Ok(())
    }

    fn finish(mut self, replaced: &[IndexId]) -> Result<()> {
        self.store(replaced.to_vec())
    }
}

fn store_pack(repo: &Repository, w: PackWriter) -> Result<IndexPack> {
    let f = w.finish();
    let size = f.bytes.len() as u64;
    repo.store().put_if_absent(&f.id.object_key(), Bytes::from(f.bytes)).with_context(|| format!("store pack {}", f.id.short()))?;
    Ok(IndexPack { id: f.id, salt: f.salt, size, blobs: f.entries })
}

fn sweep(
    repo: &Repository,
    lock: &RepoLock,
    points_seen: &mut HashSet<RecoveryPointId>,
    used: &mut Used,
    seen_trees: &mut HashSet<BlobId>,
    report: &mut PruneReport,
) -> Result<()> {
    let records = repo.store().list("gc/")?;
    if records.is_empty() {
        return Ok(());
    }
    let locks = live_locks(repo)?;
    let oldest_other = locks
        .iter()
        .filter(|(k, _)| k != lock.key())
        .filter_map(|(_, l)| chrono::DateTime::parse_from_rfc3339(&l.started).ok().map(|t| t.timestamp()))
        .min();
    // Recovery points written since the mark: their blobs count as used.
    let new_points: Vec<RecoveryPointId> = list_points(repo)?.into_iter().filter(|p| !points_seen.contains(p)).collect();
    used_blobs(repo, &new_points, used, seen_trees)?;
    points_seen.extend(new_points);
    for o in records {
        let rec: GcRecord = match repo.store().get(&o.key).map(|b| serde_json::from_slice::<GcRecord>(&b)) {
            Ok(Ok(r)) if r.magic == GC_MAGIC => r,
            _ => {
                tracing::warn!("ignoring unreadable mark record {}", o.key);
                continue;
            }
        };
        if oldest_other.is_some_and(|t| t <= rec.marked_at + SKEW_MARGIN_S) {
            report.packs_deferred += rec.packs.len() as u64;
            continue;
        }
        let mut resurrect: Vec<IndexPack> = Vec::new();
        for p in &rec.packs {
            if repo.cache().pack_info(p)?.is_some() {
                continue; // back in the index already (a resurrection or a re-upload)
            }
            match read_header(repo, p)? {
                None => continue, // already gone
                Some(ip) => {
                    let mut needed = false;
                    for b in &ip.blobs {
                        if used.contains(b.kind, &b.id)? && !repo.cache().contains(b.kind, &b.id)? {
                            needed = true;
                            break;
                        }
                    }
                    if needed {
                        resurrect.push(ip);
                    } else {
                        repo.store().delete(&p.object_key()).with_context(|| format!("delete pack {}", p.short()))?;
                        report.packs_deleted += 1;
                        report.bytes_deleted += ip.size;
                    }
                }
            }
        }
        if !resurrect.is_empty() {
            report.packs_resurrected += resurrect.len() as u64;
            let (id, bytes) = IndexFile { packs: resurrect, supersedes: vec![] }.seal(repo.master());
            repo.store().put_if_absent(&id.object_key(), Bytes::from(bytes))?;
            let _: IndexId = id;
            repo.sync_index()?;
        }
        // MUST come after the packs are deleted or resurrected.
        repo.store().delete(&o.key)?;
    }
    Ok(())
}

/// Reads a pack's header with range reads. `None` if the pack no longer exists.
fn read_header(repo: &Repository, id: &PackId) -> Result<Option<IndexPack>> {
    let key = id.object_key();
    let Some(size) = repo.store().head(&key)? else {
        return Ok(None);
    };
    let t = pack::TRAILER_LEN as u64;
    if size < (pack::PREAMBLE_LEN as u64) + t {
        bail!("pack {} is too short to be a pack", id.short());
    }
    let pre = repo.store().get_range(&key, 0..pack::PREAMBLE_LEN as u64)?;
    let salt = pack::parse_preamble(&pre)?;
    let trailer = repo.store().get_range(&key, size - t..size)?;
    let hlen = u64::from(pack::parse_trailer(&trailer, size)?);
    let sealed = repo.store().get_range(&key, size - t - hlen..size - t)?;
    let blobs = pack::open_header(repo.master(), &salt, &sealed, size)?;
    Ok(Some(IndexPack { id: *id, salt, size, blobs }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_format::pack::PackEntry;

    #[test]
    fn the_kept_index_goes_out_in_bounded_files_the_last_naming_the_replaced_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = ferry_store::open(dir.path().join("repo").to_str().unwrap()).unwrap();
        let opts = crate::InitOptions {
            kdf: ferry_crypto::keyfile::KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 },
            ..Default::default()
        };
        let repo = Repository::init(store, b"prune test passphrase", &opts, &dir.path().join("cache")).unwrap();
        let pack = |n: u8, blobs: u8| IndexPack {
            id: PackId::from_bytes([n; 32]),
            salt: [n; 16],
            size: 1000,
            blobs: (0..blobs)
                .map(|b| PackEntry {
                    kind: BlobKind::Data,
                    id: BlobId::from_bytes([n.wrapping_mul(16).wrapping_add(b); 32]),
                    offset: 24 + 40 * u32::from(b),
                    length: 40,
                    raw_len: 10,
                    compressed: false,
                    unit_start: 0,
                    unit_len: 10,
                })
                .collect(),
        };
        let keep: Vec<IndexPack> = (1..=7).map(|n| pack(n, 2)).collect();
        let replaced = vec![IndexId::from_bytes([0xaa; 32])];
        let mut out = IndexWriter::new(&repo, 5);
        for p in keep.clone() {
            out.add(p).unwrap();
        }
        out.finish(&replaced).unwrap();
        let files: Vec<IndexFile> = repo.list_index_files().unwrap().iter().map(|id| repo.read_index_file(id).unwrap()).collect();
        assert_eq!(files.len(), 3, "6 + 6 + 2 entries, the last file naming the replaced ones");
        assert!(files.iter().all(|f| f.packs.iter().map(|p| p.blobs.len()).sum::<usize>() <= 6));
        assert_eq!(files.iter().filter(|f| f.supersedes == replaced).count(), 1);
        let mut listed: Vec<PackId> = files.iter().flat_map(|f| f.packs.iter().map(|p| p.id)).collect();
        listed.sort();
        assert_eq!(listed, keep.iter().map(|p| p.id).collect::<Vec<_>>());
        // Nothing kept: one empty file still names what it replaces.
        let dir2 = tempfile::tempdir().unwrap();
        let store = ferry_store::open(dir2.path().join("repo").to_str().unwrap()).unwrap();
        let repo = Repository::init(store, b"prune test passphrase", &opts, &dir2.path().join("cache")).unwrap();
        IndexWriter::new(&repo, 5).finish(&replaced).unwrap();
        let files = repo.list_index_files().unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(repo.read_index_file(&files[0]).unwrap().supersedes, replaced);
    }
}
