//! The hashers: each chunk's ID, then the pack sink (dedup, compress, seal, pack), with the
//! bytes in flight between readers and hashers bounded.

use std::sync::{Condvar, Mutex};

use crossbeam_channel::Receiver;
use ferry_format::{BlobId, BlobKind};

use super::{ChunkJob, Shared};

pub(super) fn store_chunk(sh: &Shared<'_>, data: &[u8]) -> Result<BlobId, String> {
    let id = sh.repo.blob_id(data);
    match sh.sink.add(BlobKind::Data, id, data) {
        Ok(_) => Ok(id),
        Err(e) => {
            let msg = format!("{e:#}");
            sh.sink.fail(e);
            Err(msg)
        }
    }
}

pub(super) fn hasher(sh: &Shared<'_>, jobs: Receiver<ChunkJob>) {
    for job in jobs {
        let r = if sh.sink.has_failed() { Err("backup aborted".into()) } else { store_chunk(sh, &job.data) };
        sh.in_flight.release(job.data.len());
        sh.chunk_bufs.give(job.data);
        let _ = job.reply.send(r);
    }
}

/// Bytes of chunks handed from readers to hashers and not yet stored. Counting chunks is not
/// enough: a few 8 MiB chunks of one large file would make the peak memory of a backup depend
/// on which files two readers happen to meet at once.
pub(super) struct InFlight {
    bytes: Mutex<usize>,
    freed: Condvar,
    limit: usize,
}

impl InFlight {
    pub(super) fn new(limit: usize) -> Self {
        InFlight { bytes: Mutex::new(0), freed: Condvar::new(), limit }
    }

    /// Waits until `n` more bytes fit (a chunk larger than the limit waits for an empty pipeline).
    pub(super) fn acquire(&self, n: usize) {
        let mut b = self.bytes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while *b > 0 && *b + n > self.limit {
            b = self.freed.wait(b).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *b += n;
    }

    pub(super) fn release(&self, n: usize) {
        let mut b = self.bytes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *b = b.saturating_sub(n);
        self.freed.notify_all();
    }
}
