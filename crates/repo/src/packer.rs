//! Packing blobs during a backup: shared pack writers, and the uploader thread that stores
//! finished packs, records them in the local index and writes index files.
//!
//! Crash-safe order: packs are stored; then an index file listing them is stored; then they
//! enter the local index (one durable commit); files cache records are committed only after
//! the index file that covers their chunks (see [`PackSink::checkpoint`]). A kill between
//! these steps leaves at most unlisted packs, which a later prune reclaims.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use crossbeam_channel::{bounded, Receiver, Sender};
use ferry_format::index::{IndexFile, IndexPack};
use ferry_format::pack::{FinishedPack, PackWriter};
use ferry_format::{blob, BlobId, BlobKind, PackId};

use crate::buffers::BufferPool;
use crate::cache::FolderFiles;
use crate::Repository;

/// An index file is written after this many packs (and at every checkpoint). Until then their
/// blobs are deduplicated from memory: 32 packs of 8 MiB are at most about 150,000 IDs of small
/// files, a few MB.
const PACKS_PER_INDEX_FILE: usize = 32;

/// Data blobs smaller than this (small files, mostly) are stored in bundles: compressed
/// together they take a third less space than each alone, and compress half again as fast.
pub(crate) const BUNDLE_MEMBER_MAX: usize = 256 * 1024;
/// A bundle is sealed once its plaintext reaches this size (restoring one small file decodes
/// at most this much more than the file).
const BUNDLE_TARGET: usize = 1024 * 1024;

/// Bundles are compressed at the repository's level for single units (3), not at its bundle
/// level (1), until a backup has bundled this much plaintext. A small backup, as most
/// incrementals are, is then as small as zstd -3 makes it, which is what counts when it crosses a
/// slow link, for milliseconds of CPU; a large one (a first backup), whose speed the CPU sets,
/// spends the extra effort on its first 16 MiB only (docs/format.md "Compression").
const THRIFTY_BUNDLE_BYTES: u64 = 16 << 20;

/// The zstd level of the next bundle, given the plaintext bundled before it in this backup.
fn bundle_level(bundled: u64, unit_level: i32, bundle_level: i32) -> i32 {
    if bundled < THRIFTY_BUNDLE_BYTES {
        bundle_level.max(unit_level.min(ferry_format::config::DEFAULT_LEVEL))
    } else {
        bundle_level
    }
}

/// Small blobs collected for one stored unit.
#[derive(Default)]
struct Bundle {
    plain: Vec<u8>,
    members: Vec<(BlobId, u32)>,
}

impl Bundle {
    /// The bundle, to be sealed, once it reaches its target size (an empty one otherwise).
    fn take_if_full(&mut self) -> Bundle {
        if self.plain.len() >= BUNDLE_TARGET {
            std::mem::take(self)
        } else {
            Bundle::default()
        }
    }
}

/// Each worker keeps a compression output buffer of up to this size: enough for a bundle and for
/// a chunk of up to 2 MiB (most chunks), as a new one costs a page fault for every 4 KiB.
const SCRATCH_KEEP: usize = zstd_bound(2 << 20);

thread_local! {
    /// Each worker's compression output buffer.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The largest compressed size of `n` bytes.
const fn zstd_bound(n: usize) -> usize {
    n + n / 128 + 1024
}

pub(crate) enum Msg {
    Pack(FinishedPack),
    /// Write an index file for everything stored so far, then commit these folders' files cache records.
    Checkpoint(Vec<FolderFiles>),
}

/// Totals of what a backup stored.
#[derive(Debug, Default, Clone)]
pub struct StoredStats {
    pub bytes_added: u64,
}

/// Shared by all backup workers.
pub(crate) struct PackSink<'r> {
    repo: &'r Repository,
    data: Mutex<Option<PackWriter>>,
    tree: Mutex<Option<PackWriter>>,
    inflight: Mutex<HashSet<(BlobKind, BlobId)>>,
    /// Small data blobs waiting to be stored together.
    bundle: Mutex<Bundle>,
    /// One bundle per reader thread, which reads small files straight into it (see
    /// [`PackSink::add_read`]); a mutex each, so that a checkpoint can seal them.
    reader_bundles: Vec<Mutex<Bundle>>,
    /// Plaintext buffers of sealed bundles, reused for the next ones.
    bundle_bufs: BufferPool,
    tx: Mutex<Option<Sender<Msg>>>,
    failed: AtomicBool,
    error: Mutex<Option<anyhow::Error>>,
    bytes_added: AtomicU64,
    /// Plaintext of the bundles sealed so far (for [`bundle_level`]).
    bundled: AtomicU64,
    /// Every pack this sink stored.
    stored: Mutex<Vec<PackId>>,
    level: i32,
    bundle_level: i32,
    pack_size: usize,
}

impl<'r> PackSink<'r> {
    /// A sink and the receiving end its uploader reads (see [`PackSink::run_uploader`]).
    /// `readers` is the number of reader slots for [`PackSink::add_read`].
    pub(crate) fn new(repo: &'r Repository, readers: usize) -> (PackSink<'r>, Receiver<Msg>) {
        let (tx, rx) = bounded::<Msg>(0);
        let sink = PackSink {
            repo,
            data: Mutex::new(None),
            tree: Mutex::new(None),
            inflight: Mutex::new(HashSet::new()),
            bundle: Mutex::new(Bundle::default()),
            reader_bundles: (0..readers).map(|_| Mutex::new(Bundle::default())).collect(),
            bundle_bufs: BufferPool::new(2, BUNDLE_TARGET + 2 * BUNDLE_MEMBER_MAX),
            tx: Mutex::new(Some(tx)),
            failed: AtomicBool::new(false),
            error: Mutex::new(None),
            bytes_added: AtomicU64::new(0),
            bundled: AtomicU64::new(0),
            stored: Mutex::new(Vec::new()),
            level: repo.config().compression_level,
            bundle_level: repo.config().bundle_compression_level,
            pack_size: repo.config().pack_size as usize,
        };
        (sink, rx)
    }

    /// The uploader: stores packs in order, writes index files, commits the files cache.
    /// Returns when the sink is closed or aborted.
    pub(crate) fn run_uploader(&self, rx: Receiver<Msg>) {
        let mut pending: Vec<IndexPack> = Vec::new();
        for msg in rx {
            if self.failed.load(Ordering::Relaxed) {
                continue; // drain so senders never block
            }
            let r = match msg {
                Msg::Pack(p) => self.store_pack(p, &mut pending),
                Msg::Checkpoint(folders) => {
                    tracing::debug!("checkpoint: indexing {} pack(s), then the files cache of {} folder(s)", pending.len(), folders.len());
                    self.write_index(&mut pending).and_then(|()| Ok(self.repo.cache().put_folders(&folders)?))
                }
            };
            if let Err(e) = r {
                self.fail(e);
            }
        }
    }

    /// Stops the pipeline after an error: closes the uploader's channel.
    pub(crate) fn abort(&self) {
        self.failed.store(true, Ordering::Relaxed);
        self.tx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    }

    pub(crate) fn fail(&self, e: anyhow::Error) {
        self.failed.store(true, Ordering::Relaxed);
        let mut slot = self.error.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(e);
        }
    }

    pub(crate) fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// The first error any stage hit.
    pub(crate) fn take_error(&self) -> Option<anyhow::Error> {
        self.error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }

    fn store_pack(&self, p: FinishedPack, pending: &mut Vec<IndexPack>) -> Result<()> {
        let size = p.bytes.len() as u64;
        let key = p.id.object_key();
        let t = std::time::Instant::now();
        self.repo.store().put_if_absent(&key, Bytes::from(p.bytes)).with_context(|| format!("store pack {}", p.id.short()))?;
        tracing::debug!("stored pack {} ({size} bytes) in {:?}", p.id.short(), t.elapsed());
        self.bytes_added.fetch_add(size, Ordering::Relaxed);
        self.stored.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(p.id);
        // Its blobs stay in `inflight` (deduplicated in memory) until an index file lists the pack.
        pending.push(IndexPack { id: p.id, salt: p.salt, size, blobs: p.entries });
        if pending.len() >= PACKS_PER_INDEX_FILE {
            self.write_index(pending)?;
        }
        Ok(())
    }

    /// Writes an index file for the stored packs, then records them in the local index with one
    /// durable commit. The local index MUST only ever hold packs that some index file in the
    /// repository lists: a backup deduplicates against it, and prune deletes unlisted packs.
    fn write_index(&self, pending: &mut Vec<IndexPack>) -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let file = IndexFile { packs: std::mem::take(pending), supersedes: Vec::new() };
        let (id, bytes) = file.seal(self.repo.master());
        let n = bytes.len() as u64;
        self.repo.store().put_if_absent(&id.object_key(), Bytes::from(bytes)).context("store index file")?;
        self.repo.cache().add_packs(&file.packs, Some(&id), true)?;
        {
            let mut inflight = self.inflight.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for b in file.packs.iter().flat_map(|p| &p.blobs) {
                inflight.remove(&(b.kind, b.id));
            }
        }
        self.bytes_added.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    fn send(&self, m: Msg) -> Result<()> {
        let tx = self.tx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        tx.ok_or_else(|| anyhow!("the uploader has already finished"))?.send(m).map_err(|_| anyhow!("the uploader stopped"))
    }

    /// Whether a blob is new: neither in the repository's index nor stored (or being stored)
    /// by this backup. A new blob is counted as being stored from here on.
    fn claim(&self, kind: BlobKind, id: BlobId) -> Result<bool> {
        if self.repo.cache().contains(kind, &id)? {
            return Ok(false);
        }
        Ok(self.inflight.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert((kind, id)))
    }

    /// Stores a blob unless the repository (or this backup) already has it. Returns whether
    /// it was new.
    pub(crate) fn add(&self, kind: BlobKind, id: BlobId, plain: &[u8]) -> Result<bool> {
        if !self.claim(kind, id)? {
            return Ok(false);
        }
        if kind == BlobKind::Data && !plain.is_empty() && plain.len() < BUNDLE_MEMBER_MAX {
            let full = {
                let mut b = self.bundle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                self.open_bundle(&mut b);
                b.plain.extend_from_slice(plain);
                b.members.push((id, plain.len() as u32));
                b.take_if_full()
            };
            self.seal_bundle(full)?;
            return Ok(true);
        }
        self.compress_and_put(kind, &[(id, plain.len() as u32)], plain, self.level)?;
        Ok(true)
    }

    /// Stores a small data blob that `read` appends to reader `slot`'s bundle (at most
    /// `BUNDLE_MEMBER_MAX - 1` bytes): a small file is read straight into the bundle, with no
    /// buffer of its own and no copy. Returns the blob's ID and length, `None` if `read` added
    /// nothing; a read error is returned as it is (inner) and leaves the bundle as it was.
    pub(crate) fn add_read(
        &self,
        slot: usize,
        read: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>,
    ) -> Result<std::io::Result<Option<(BlobId, usize)>>> {
        let mut b = self.reader_bundles[slot].lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.open_bundle(&mut b);
        let start = b.plain.len();
        if let Err(e) = read(&mut b.plain) {
            b.plain.truncate(start);
            return Ok(Err(e));
        }
        let len = b.plain.len() - start;
        if len >= BUNDLE_MEMBER_MAX {
            b.plain.truncate(start);
            return Ok(Err(std::io::Error::other(format!("read {len} bytes, more than a bundle member may have"))));
        }
        if len == 0 {
            return Ok(Ok(None));
        }
        let id = self.repo.blob_id(&b.plain[start..]);
        match self.claim(BlobKind::Data, id) {
            Ok(true) => b.members.push((id, len as u32)),
            // Known already (or failed): the bytes just read are not kept.
            other => {
                b.plain.truncate(start);
                other?;
                return Ok(Ok(Some((id, len))));
            }
        }
        let full = b.take_if_full();
        drop(b);
        self.seal_bundle(full)?;
        Ok(Ok(Some((id, len))))
    }

    /// Gives an empty bundle its buffer, sized for the largest bundle up front: no doubling and
    /// copying as it fills.
    fn open_bundle(&self, b: &mut Bundle) {
        if b.plain.capacity() == 0 {
            b.plain = self.bundle_bufs.take();
            b.plain.reserve(BUNDLE_TARGET + BUNDLE_MEMBER_MAX);
        }
    }

    /// Compresses a unit's plaintext into this thread's scratch buffer (reused, as allocating
    /// a megabyte or more for each unit costs page faults) and adds the unit.
    fn compress_and_put(&self, kind: BlobKind, members: &[(BlobId, u32)], plain: &[u8], level: i32) -> Result<()> {
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            if scratch.capacity() == 0 {
                // Room for most units (bundles, chunks of up to 2 MiB) from the start.
                scratch.reserve_exact(SCRATCH_KEEP);
            }
            let r = if blob::compress_into(plain, level, &mut scratch) {
                self.put_unit(kind, members, &scratch, true)
            } else {
                self.put_unit(kind, members, plain, false)
            };
            // A large chunk leaves a large buffer: keep no more than most units need.
            if scratch.capacity() > SCRATCH_KEEP {
                scratch.clear();
                scratch.shrink_to(SCRATCH_KEEP);
            }
            r
        })
    }

    /// Compresses a bundle (outside any lock, so workers compress in parallel) and adds it.
    fn seal_bundle(&self, b: Bundle) -> Result<()> {
        if b.members.is_empty() {
            return Ok(());
        }
        let bundled = self.bundled.fetch_add(b.plain.len() as u64, Ordering::Relaxed);
        let level = bundle_level(bundled, self.level, self.bundle_level);
        let r = self.compress_and_put(BlobKind::Data, &b.members, &b.plain, level);
        self.bundle_bufs.give(b.plain);
        r
    }

    /// Appends one stored unit to the open pack of its kind, and sends the pack to the uploader
    /// when it is full.
    fn put_unit(&self, kind: BlobKind, members: &[(BlobId, u32)], payload: &[u8], compressed: bool) -> Result<()> {
        let slot = match kind {
            BlobKind::Data => &self.data,
            BlobKind::Tree => &self.tree,
        };
        let full = {
            let mut w = slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let writer = w.get_or_insert_with(|| {
                // Data packs reserve their target size plus one maximal blob up front, so the
                // buffer never doubles; tree packs are small and grow as needed. (Reusing the
                // buffer of the pack last stored saved 60,000 page faults in a kernel-tree backup
                // but kept a spare 9 MiB: peak memory went over 100 MB.)
                let cap = if kind == BlobKind::Data { self.pack_size + (1 << 20) } else { 0 };
                PackWriter::with_capacity(self.repo.master(), cap)
            });
            writer.add_bundle(kind, members, payload, compressed);
            if writer.len() >= self.pack_size {
                w.take()
            } else {
                None
            }
        };
        if let Some(writer) = full {
            self.send(Msg::Pack(writer.finish()))?;
        }
        Ok(())
    }

    /// Seals the open bundles, finishes the open packs and sends them to the uploader.
    fn flush(&self) -> Result<()> {
        for slot in std::iter::once(&self.bundle).chain(&self.reader_bundles) {
            let open = std::mem::take(&mut *slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
            self.seal_bundle(open)?;
        }
        for slot in [&self.data, &self.tree] {
            let w = slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
            if let Some(w) = w.filter(|w| !w.is_empty()) {
                self.send(Msg::Pack(w.finish()))?;
            }
        }
        Ok(())
    }

    /// Flushes, writes an index file, then commits `files` to the files cache. Everything added
    /// before this call is durable in the repository once the uploader handles it.
    pub(crate) fn checkpoint(&self, folders: Vec<FolderFiles>) -> Result<()> {
        self.flush()?;
        self.send(Msg::Checkpoint(folders))
    }

    /// Final checkpoint, then closes the uploader's channel. The caller joins the uploader thread.
    pub(crate) fn close(&self, folders: Vec<FolderFiles>) -> Result<()> {
        self.checkpoint(folders)?;
        self.bundle_bufs.clear();
        self.tx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        Ok(())
    }

    /// The packs this sink stored (so far).
    pub(crate) fn stored_packs(&self) -> Vec<PackId> {
        self.stored.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub(crate) fn stats(&self) -> StoredStats {
        StoredStats { bytes_added: self.bytes_added.load(Ordering::Relaxed) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_bundles_its_first_16_mib_at_the_unit_level_and_the_rest_at_the_bundle_level() {
        assert_eq!(bundle_level(0, 3, 1), 3);
        assert_eq!(bundle_level(THRIFTY_BUNDLE_BYTES - 1, 3, 1), 3);
        assert_eq!(bundle_level(THRIFTY_BUNDLE_BYTES, 3, 1), 1);
        // Compression off stays off; a slow unit level is not used for bundles at all.
        assert_eq!(bundle_level(0, 0, 0), 0);
        assert_eq!(bundle_level(0, 19, 1), 3);
        assert_eq!(bundle_level(0, 1, 1), 1);
    }
}
