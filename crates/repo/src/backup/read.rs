//! The readers: open each file handed to them, read it and cut it into chunks. Small files go
//! straight into the reader's bundle and are stored right there; larger ones go to the hashers
//! chunk by chunk.

use std::fs::File;
use std::io::Read;
use std::sync::atomic::Ordering;

use crossbeam_channel::{bounded, Receiver, Sender};
use rustix::fs::{Mode, OFlags};

use super::hash::store_chunk;
use super::{fsmeta, ChunkJob, ChunkRef, FileJob, FileReply, ReadFile, Shared};
use crate::packer::BUNDLE_MEMBER_MAX;

/// Spare chunk buffers kept (each up to POOLED_CHUNK). Three of them saved most of the page
/// faults; six saved a few more but raised a kernel-tree backup's peak memory by 10 MB.
pub(super) const SPARE_CHUNKS: usize = 3;
/// Chunk buffers are allocated this large (a chunk is 512 KiB to 8 MiB, mostly under 2 MiB) and
/// only buffers up to this size are reused: a buffer that held one rare 8 MiB chunk does not pin
/// its pages.
pub(super) const POOLED_CHUNK: usize = 2 << 20;

/// Reader number `slot`: reads, chunks and (small files) stores the files it is handed.
pub(super) fn reader(sh: &Shared<'_>, slot: usize, jobs: Receiver<FileJob>, chunks: Sender<ChunkJob>) {
    // The chunker's read buffer, kept from one file to the next.
    let mut read_buf = Vec::new();
    for job in jobs {
        if sh.sink.has_failed() {
            let _ = job.reply.send(Err("backup aborted".into()));
            continue;
        }
        let r = read_file(sh, slot, &job, &chunks, &mut read_buf);
        let _ = job.reply.send(r);
    }
}

fn read_file(sh: &Shared<'_>, slot: usize, job: &FileJob, chunks: &Sender<ChunkJob>, read_buf: &mut Vec<u8>) -> FileReply {
    let mut f = open_listed(job).map_err(|e| match e {
        rustix::io::Errno::LOOP => "cannot open: it was replaced by a symbolic link since it was listed".to_string(),
        e => format!("cannot open: {}", std::io::Error::from(e)),
    })?;
    let xattrs = fsmeta::fd_xattrs(&f);
    let sparse = job.check_holes && fsmeta::has_hole(&f, job.size);
    let mut out = Vec::new();
    let mut total = 0u64;
    let min = u64::from(sh.repo.chunker().params().min_size);
    let count = |n: usize| {
        sh.counters.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
        sh.progress.add_done(0, n as u64);
    };
    if job.size > 0 && job.size < BUNDLE_MEMBER_MAX as u64 {
        // A small file is read straight into this reader's bundle, hashed and stored right
        // here: no buffer of its own, no copy, no hand-off to a hasher.
        match sh.sink.add_read(slot, |buf| read_into(&f, job.size as usize, buf)) {
            Ok(Ok(Some((id, len)))) => {
                total = len as u64;
                count(len);
                out.push(ChunkRef::Done(id));
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => return Err(format!("read failed: {e}")),
            Err(e) => {
                let msg = format!("{e:#}");
                sh.sink.fail(e);
                return Err(msg);
            }
        }
    } else if job.size < min {
        // Small file: one read, one chunk (the chunker would not cut below its minimum),
        // stored right here: no hand-off to a hasher for the common case of small files.
        let data = read_small(&mut f, job.size as usize).map_err(|e| format!("read failed: {e}"))?;
        if !data.is_empty() {
            total = data.len() as u64;
            count(data.len());
            out.push(ChunkRef::Done(store_chunk(sh, &data)?));
        }
    } else {
        // Chunk buffers come from the pool and go back to it once stored; only buffers of up to
        // POOLED_CHUNK are kept, so the in-flight limit (counted in chunk bytes) still bounds
        // memory. (Recycling every buffer let each keep the pages of the largest chunk it ever
        // held: kernel-tree backup peak 108 MB instead of 94.)
        let mut chunker = sh.repo.chunker().chunks_in(f, std::mem::take(read_buf));
        loop {
            let mut data = sh.chunk_bufs.take();
            if data.capacity() == 0 {
                data.reserve_exact(POOLED_CHUNK);
            }
            match chunker.next_into(&mut data) {
                Ok(true) => {}
                Ok(false) => {
                    sh.chunk_bufs.give(data);
                    break;
                }
                Err(e) => return Err(format!("read failed: {e}")),
            }
            total += data.len() as u64;
            count(data.len());
            let (tx, rx) = bounded(1);
            sh.in_flight.acquire(data.len());
            let len = data.len();
            if chunks.send(ChunkJob { data, reply: tx }).is_err() {
                sh.in_flight.release(len);
                return Err("backup aborted".to_string());
            }
            out.push(ChunkRef::Pending(rx));
        }
        *read_buf = chunker.into_buffer();
    }
    Ok(ReadFile { chunks: out, read: total, xattrs, sparse })
}

/// Opens a listed regular file for reading, relative to its folder when that is open. Symbolic
/// links are not followed: a file replaced by one since it was listed is not read through it.
fn open_listed(job: &FileJob) -> rustix::io::Result<File> {
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    let fd = match &job.at {
        Some((dir, name)) => rustix::fs::openat(&**dir, name.as_os_str(), flags, Mode::empty())?,
        None => rustix::fs::open(&job.path, flags, Mode::empty())?,
    };
    Ok(File::from(fd))
}

/// Appends the `size` bytes a file had when it was listed (fewer if it shrank) to `buf`: read
/// straight into its spare capacity, with no zero-filling first and, for a file read in one
/// go, one system call.
fn read_into(f: &File, size: usize, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let start = buf.len();
    buf.reserve(size);
    while buf.len() - start < size {
        match rustix::io::read(f, rustix::buffer::spare_capacity(buf)) {
            Ok(0) => break,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // A file that grew since it was listed is recorded as it was listed.
    buf.truncate(start + size);
    Ok(())
}

/// Reads the `size` bytes a small file had when it was listed (fewer if it shrank) into a
/// buffer of its own (see [`read_into`]).
fn read_small(f: &mut File, size: usize) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    if size == 0 {
        // Empty by its metadata, but pseudo-files (procfs, sysfs) report 0 and have content
        // (or fail to read): read to the end.
        f.read_to_end(&mut data)?;
    } else {
        read_into(f, size, &mut data)?;
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::os::fd::OwnedFd;
    use std::path::PathBuf;
    use std::sync::Arc;

    use super::*;

    fn job(path: PathBuf, at: Option<(Arc<OwnedFd>, OsString)>) -> FileJob {
        FileJob { path, at, size: 0, check_holes: false, reply: bounded(1).0 }
    }

    #[test]
    fn listed_files_open_relative_to_their_folder_and_never_through_a_symlink() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("real"), b"contents").unwrap();
        std::os::unix::fs::symlink(d.path().join("real"), d.path().join("link")).unwrap();
        let dir = Arc::new(rustix::fs::open(d.path(), OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).unwrap());

        let mut f = open_listed(&job(d.path().join("real"), Some((dir.clone(), "real".into())))).unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, "contents");
        assert!(open_listed(&job(d.path().join("real"), None)).is_ok());

        // Listed as a regular file, replaced by a symbolic link before it is read.
        assert_eq!(open_listed(&job(d.path().join("link"), Some((dir, "link".into())))).unwrap_err(), rustix::io::Errno::LOOP);
        assert_eq!(open_listed(&job(d.path().join("link"), None)).unwrap_err(), rustix::io::Errno::LOOP);
    }
}
