//! Large files' chunks, written around the page cache (`ferry_store::direct`) by a pool of
//! writer threads while the data pass's threads go on decoding.
//!
//! A buffered write cost the machines we measure 0.3 to 3.3 s of system time per GiB depending
//! on how much the kernel had to reclaim first, a direct one 0.2 s; but a direct write returns
//! only once the device has the data. Done by the thread that decoded the chunk, that thread
//! waited for the device instead of decoding, and at most as many writes as decoding threads
//! (3 on 2 cores) were ever in flight: restoring three large files (`bench/run.sh --sets
//! images`) kept the threads in uninterruptible sleep most of the time, and took as much CPU
//! time as wall time. The device is faster with more writes in flight: 1 GiB in 1 MiB direct
//! writes (`dd oflag=direct`) took 1.40 s from one stream, 0.92 from two, 0.54 from four and
//! 0.77 from eight on the benchmark machine. So a decoding thread writes the partial blocks at
//! a chunk's two ends itself (through the cache: they share a block with the neighbouring
//! chunks), copies its whole blocks into an aligned buffer and hands them to one of
//! [`WRITERS`] writer threads; [`BUFFERS`] buffers bound the memory in flight.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{unbounded, Receiver, Sender};
use ferry_store::direct::{self, AlignedBuf, DirectError};

use super::data::{all_zero, write_sparse_to};

/// Files at least this large have their chunks written with `O_DIRECT`; smaller files keep the
/// cache's write-behind.
pub(super) const DIRECT_FILE_MIN: u64 = 32 << 20;
/// Chunks at least this large are written with `O_DIRECT` (their whole blocks).
const DIRECT_MIN: usize = 64 << 10;
/// Writer threads (see the module's documentation for the measurement).
pub(super) const WRITERS: usize = 4;
/// Aligned buffers, in flight or free: each grows to the largest chunk body it held (chunks are
/// at most 8 MiB, mostly 0.5 to 2 MiB), so this bounds the pool's memory (six of them made the
/// images' restore's peak RSS 112 MB against 79 MB without the pool).
const BUFFERS: usize = WRITERS;

/// Whole blocks of one chunk, for a writer.
pub(super) struct Job<'a> {
    path: &'a Path,
    /// The file offset of the first block (aligned).
    off: u64,
    /// All-zero blocks are left as holes.
    holes: bool,
    buf: AlignedBuf,
}

/// The decoding threads' side: each has a clone; when all are dropped, the writers finish.
#[derive(Clone)]
pub(super) struct Pool<'a> {
    jobs: Sender<Job<'a>>,
    free: Receiver<AlignedBuf>,
    /// Cleared for the rest of the restore when the file system refuses `O_DIRECT`.
    direct: &'a AtomicBool,
}

/// A writer thread's side.
#[derive(Clone)]
pub(super) struct Writer<'a> {
    jobs: Receiver<Job<'a>>,
    free: Sender<AlignedBuf>,
    direct: &'a AtomicBool,
}

pub(super) fn pool(direct: &AtomicBool) -> (Pool<'_>, Writer<'_>) {
    let (jobs_tx, jobs_rx) = unbounded();
    let (free_tx, free_rx) = unbounded();
    for _ in 0..BUFFERS {
        let _ = free_tx.send(AlignedBuf::default());
    }
    (Pool { jobs: jobs_tx, free: free_rx, direct }, Writer { jobs: jobs_rx, free: free_tx, direct })
}

impl<'a> Pool<'a> {
    /// Writes `data`, a chunk of the file at `path` (created by this restore), at `off`: small
    /// chunks, and every chunk once the file system has refused `O_DIRECT`, through the cache
    /// right here; otherwise the partial blocks at its ends here and its whole blocks by a
    /// writer (waiting for a free buffer when all are in flight). With `holes`, all-zero blocks
    /// are skipped (holes stay holes). A writer's error is reported by [`Writer::run`].
    pub(super) fn write_chunk(&self, path: &'a Path, data: &[u8], off: u64, holes: bool) -> std::io::Result<()> {
        let file = OpenOptions::new().write(true).custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32).open(path)?;
        if data.len() < DIRECT_MIN || !self.direct.load(Ordering::Relaxed) {
            return write_sparse_to(&file, data, off, holes).map(drop);
        }
        let align = direct::ALIGN;
        let head = ((align as u64 - off % align as u64) % align as u64) as usize;
        let body_end = head + (data.len() - head) / align * align;
        write_sparse_to(&file, &data[..head], off, holes)?;
        write_sparse_to(&file, &data[body_end..], off + body_end as u64, holes)?;
        let body = &data[head..body_end];
        if body.is_empty() || (holes && all_zero(body)) {
            return Ok(());
        }
        // The writers give every buffer back, so this waits at most for one write.
        let mut buf = self.free.recv().unwrap_or_default();
        buf.fill(body);
        let job = Job { path, off: off + head as u64, holes, buf };
        if let Err(crossbeam_channel::SendError(job)) = self.jobs.send(job) {
            // No writer left (cannot happen while the pool lives): write it here.
            return write_body(job.path, job.buf.bytes(), job.off, job.holes, self.direct);
        }
        Ok(())
    }
}

impl Writer<'_> {
    /// Writes the jobs handed over until every [`Pool`] is dropped; `report` gets each failed
    /// write's file and error.
    pub(super) fn run(self, report: impl Fn(&Path, std::io::Error)) {
        for job in &self.jobs {
            if let Err(e) = write_body(job.path, job.buf.bytes(), job.off, job.holes, self.direct) {
                report(job.path, e);
            }
            let _ = self.free.send(job.buf);
        }
    }
}

/// Writes whole blocks `body` (at an aligned address) at `off` with `O_DIRECT`: the runs of
/// blocks that are not all zeros, or with `holes` false every block. Through the cache when the
/// file system refuses `O_DIRECT` (and `direct` is cleared for the rest of the restore).
fn write_body(path: &Path, body: &[u8], off: u64, holes: bool, direct: &AtomicBool) -> std::io::Result<()> {
    let buffered = |from: usize| {
        direct.store(false, Ordering::Relaxed);
        let file = OpenOptions::new().write(true).custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32).open(path)?;
        write_sparse_to(&file, &body[from..], off + from as u64, holes).map(drop)
    };
    let d = match direct::open(OpenOptions::new().write(true), path) {
        Ok(d) => d,
        Err(DirectError::Unsupported) => return buffered(0),
        Err(DirectError::Failed(e)) => return Err(e),
    };
    let align = direct::ALIGN;
    let mut run: Option<usize> = None;
    let mut pos = 0;
    while pos <= body.len() {
        let zero = pos == body.len() || (holes && all_zero(&body[pos..pos + align]));
        match (zero, run) {
            (false, None) => run = Some(pos),
            (true, Some(s)) => {
                match direct::write_blocks_at(&d, &body[s..pos], off + s as u64) {
                    Ok(()) => {}
                    Err(DirectError::Unsupported) => return buffered(s),
                    Err(DirectError::Failed(e)) => return Err(e),
                }
                run = None;
            }
            _ => {}
        }
        pos += align;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// Chunks of one file written out of order, at unaligned boundaries, with zero runs: the
    /// file reads back exactly, and whole zero blocks stay holes (or, without holes, the file
    /// is fully allocated), with and without direct writes (tmpfs may refuse them; then the
    /// buffered path does it all).
    #[test]
    fn chunks_written_directly_and_buffered_make_the_file() {
        let mut dirs = vec![tempfile::tempdir().unwrap()];
        if Path::new("/dev/shm").is_dir() {
            dirs.push(tempfile::tempdir_in("/dev/shm").unwrap());
        }
        for dir in &dirs {
            let mut data: Vec<u8> = (0..(5u32 << 20) + 12345).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
            // A zero run of 1 MiB at an unaligned offset, and one at the very end.
            data[(1 << 20) + 777..(2 << 20) + 777].fill(0);
            let n = data.len();
            data[n - 70_000..].fill(0);
            let cuts = [0, 1000, 70_000, (1 << 20) + 3, (3 << 20) + 4096, (4 << 20) + 1, n];
            for holes in [true, false] {
                let path = dir.path().join(format!("f-{holes}"));
                std::fs::File::create(&path).unwrap();
                let direct = AtomicBool::new(true);
                let (pool, writer) = pool(&direct);
                std::thread::scope(|s| {
                    for _ in 0..2 {
                        let w = writer.clone();
                        s.spawn(move || w.run(|p, e| panic!("{}: {e}", p.display())));
                    }
                    drop(writer);
                    // Last chunk first, as packs come in any order.
                    for w in cuts.windows(2).rev() {
                        pool.write_chunk(&path, &data[w[0]..w[1]], w[0] as u64, holes).unwrap();
                    }
                    drop(pool);
                });
                std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(n as u64).unwrap();
                assert_eq!(std::fs::read(&path).unwrap(), data, "{}", dir.path().display());
                let supported = direct::open(OpenOptions::new().write(true), &path).is_ok();
                assert_eq!(direct.load(Ordering::Relaxed), supported, "the direct path was taken where the file system has it");
                let allocated = std::fs::metadata(&path).unwrap().blocks() * 512;
                if holes {
                    assert!(allocated < n as u64 - (1 << 20), "zero blocks stay holes: {allocated} bytes allocated of {n}");
                } else {
                    assert!(allocated >= n as u64, "every block written: {allocated} bytes allocated of {n}");
                }
            }
        }
    }
}
