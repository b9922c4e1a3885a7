//! Reading a file's content at any offset, without reading the rest of it.
//!
//! A file is its list of chunks ([`Node::content`]). Where each chunk starts in the file comes
//! from the index (each blob's plaintext length), summed once per open file, when it is first
//! read ([`OpenFile`]); a read then finds its chunks by binary search and fetches only their
//! units, each with one ranged read of its pack, through the shared [`UnitCache`]. A file read
//! sequentially has its next chunk fetched ahead by a background thread, so the next read finds
//! it decoded.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crossbeam_channel::{Receiver, Sender};
use ferry_format::tree::Node;
use ferry_format::{BlobId, BlobKind, PackId};
use ferry_repo::cache::BlobLocation;
use ferry_repo::Repository;

use crate::units::{Unit, UnitCache, UnitKey};

/// Why a read failed: the message names the object (pack or blob) at fault; the file system
/// adds the file's path.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ReadError {
    pub message: String,
    /// The pack object the failure is in, when it is known.
    pub object: Option<String>,
}

impl ReadError {
    fn in_pack(pack: &PackId, e: &ferry_repo::Error) -> Self {
        ReadError { message: format!("{e:#}"), object: Some(pack.object_key()) }
    }

    fn other(message: String) -> Self {
        ReadError { message, object: None }
    }
}

/// Chunks fetched ahead wait in this queue; when it is full, nothing more is fetched ahead.
const PREFETCH_QUEUE: usize = 16;
/// Threads that fetch ahead.
const PREFETCH_THREADS: usize = 2;

/// Reads file content: the repository, the unit cache and the fetch-ahead threads.
#[derive(Debug)]
pub struct Reader {
    repo: Arc<Repository>,
    units: Arc<UnitCache<ReadError>>,
    ahead: Sender<BlobLocation>,
}

/// One open file's state: its node (shared with the inode table), where each chunk ends (built
/// at its first read) and where its last read ended (to notice a sequential reader).
#[derive(Debug)]
pub struct OpenFile {
    node: Arc<Node>,
    ends: OnceLock<Result<Vec<u64>, ReadError>>,
    last_end: AtomicU64,
}

impl OpenFile {
    pub fn new(node: Arc<Node>) -> Self {
        OpenFile { node, ends: OnceLock::new(), last_end: AtomicU64::new(u64::MAX) }
    }
}

impl Reader {
    /// A reader whose cache keeps at most `cache_bytes` of decoded units.
    pub fn new(repo: Arc<Repository>, cache_bytes: usize) -> Self {
        let units = Arc::new(UnitCache::new(cache_bytes));
        let (ahead, queue) = crossbeam_channel::bounded(PREFETCH_QUEUE);
        for i in 0..PREFETCH_THREADS {
            let (repo, units, queue): (_, _, Receiver<BlobLocation>) = (repo.clone(), units.clone(), queue.clone());
            let spawned = std::thread::Builder::new().name(format!("ferry-ahead-{i}")).spawn(move || {
                for loc in queue {
                    // A failure here is reported when the reader gets there.
                    let _ = units.get_or_load((loc.pack, loc.entry.offset), || load_unit(&repo, &loc));
                }
            });
            if let Err(e) = spawned {
                tracing::warn!("no thread to fetch ahead: {e}");
            }
        }
        Reader { repo, units, ahead }
    }

    /// Reads up to `size` bytes at `offset` (fewer at the end of the file).
    pub fn read(&self, file: &OpenFile, offset: u64, size: u32) -> Result<Vec<u8>, ReadError> {
        let len = file.node.size;
        if offset >= len || size == 0 {
            return Ok(Vec::new());
        }
        let want = (len - offset).min(u64::from(size)) as usize;
        let ends = file.ends.get_or_init(|| self.chunk_ends(&file.node)).as_ref().map_err(Clone::clone)?;
        let sequential = file.last_end.swap(offset + want as u64, Ordering::Relaxed) == offset;
        let mut out = Vec::with_capacity(want);
        let mut i = ends.partition_point(|&end| end <= offset);
        while out.len() < want && i < ends.len() {
            let start = if i == 0 { 0 } else { ends[i - 1] };
            let (key, unit, range) = self.blob(&file.node.content[i])?;
            let blob = &unit.plain[range];
            let from = (offset + out.len() as u64 - start) as usize;
            let rest = blob.get(from..).unwrap_or_default();
            let take = (want - out.len()).min(rest.len());
            if take == 0 {
                break; // a chunk shorter than the index said: end the read here
            }
            out.extend_from_slice(&rest[..take]);
            if unit.deliver(take) {
                self.units.remove(&key, &unit);
            }
            i += 1;
        }
        if sequential {
            if let Some(next) = file.node.content.get(i) {
                self.fetch_ahead(next);
            }
        }
        Ok(out)
    }

    /// The end offset of each chunk of `node`: the running sum of their lengths in the index.
    fn chunk_ends(&self, node: &Node) -> Result<Vec<u64>, ReadError> {
        if node.content.len() == 1 {
            return Ok(vec![node.size]);
        }
        let mut ends = Vec::with_capacity(node.content.len());
        let mut at = 0u64;
        for id in &node.content {
            at += u64::from(self.locate(id)?.entry.raw_len);
            ends.push(at);
        }
        Ok(ends)
    }

    fn locate(&self, id: &BlobId) -> Result<BlobLocation, ReadError> {
        match self.repo.cache().lookup(BlobKind::Data, id) {
            Ok(Some(loc)) => Ok(loc),
            Ok(None) => Err(ReadError::other(format!("chunk {} is not in the repository's index (run `ferry check`)", id.short()))),
            Err(e) => Err(ReadError::other(format!("look up chunk {}: {e:#}", id.short()))),
        }
    }

    /// The unit holding blob `id` (its key and itself) and where the blob is in it, checked
    /// against its ID.
    fn blob(&self, id: &BlobId) -> Result<(UnitKey, Arc<Unit>, Range<usize>), ReadError> {
        let loc = self.locate(id)?;
        let key = (loc.pack, loc.entry.offset);
        let unit = self.units.get_or_load(key, || load_unit(&self.repo, &loc))?;
        let start = loc.entry.unit_start;
        if !unit.is_checked(start) {
            self.repo.unit_member(&loc, &unit.plain).map_err(|e| ReadError::in_pack(&loc.pack, &e))?;
            unit.mark_checked(start);
        }
        let from = start as usize;
        Ok((key, unit, from..from + loc.entry.raw_len as usize))
    }

    /// Queues blob `id`'s unit to be fetched ahead, unless it is cached or the queue is full.
    fn fetch_ahead(&self, id: &BlobId) {
        if let Ok(loc) = self.locate(id) {
            if !self.units.contains(&(loc.pack, loc.entry.offset)) {
                let _ = self.ahead.try_send(loc);
            }
        }
    }
}

fn load_unit(repo: &Repository, loc: &BlobLocation) -> Result<Unit, ReadError> {
    repo.read_unit(loc).map(Unit::new).map_err(|e| ReadError::in_pack(&loc.pack, &e))
}
