//! The data, the restore's second pass: reads each needed pack once (coalesced ranges),
//! decrypts each stored unit once, and writes each blob to every place it belongs, leaving
//! holes for all-zero blocks (in the files [`super::Sparse`] gives holes); one-shot files are
//! created, written and finished right here.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use anyhow::Result;
use ferry_format::{BlobKind, PackId};

use super::metadata::{finish_open_file, Known};
use super::plan::create_final;
use super::{err, FileTarget, Places, Plan};
use crate::backup::FileError;
use crate::cache::BlobLocation;
use crate::error::bail;
use crate::{Progress, Repository, UnitDecoder};

pub(super) fn write_data(
    repo: &Repository,
    plan: &Plan,
    threads: usize,
    errors: &Mutex<Vec<FileError>>,
    progress: &Progress,
) -> Result<()> {
    // Group the needed blobs by pack.
    let mut packs: BTreeMap<PackId, Vec<(BlobLocation, &Places)>> = BTreeMap::new();
    for (id, places) in &plan.blobs {
        if let Some(loc) = repo.cache().lookup(BlobKind::Data, id)? {
            packs.entry(loc.pack).or_default().push((loc, places));
        }
    }
    type PackWork<'a> = Vec<(PackId, Vec<(BlobLocation, &'a Places)>)>;
    let work: Mutex<PackWork<'_>> = Mutex::new(packs.into_iter().rev().collect());
    let fatal: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                // Each thread reads its packs' ranges into one buffer, reused.
                let mut range_buf = Vec::new();
                loop {
                    let next = work.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
                    let Some((pack, mut blobs)) = next else { break };
                    blobs.sort_by_key(|(l, _)| l.entry.offset);
                    if let Err(e) = restore_pack(repo, plan, &pack, &blobs, &mut range_buf, errors, progress) {
                        let mut f = fatal.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        f.get_or_insert(e);
                        work.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
                    }
                }
            });
        }
    });
    match fatal.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Gaps up to this size between needed blobs are read rather than split into two requests.
const COALESCE_GAP: u64 = 1 << 20;
/// Largest single read from a pack (bounds memory per restore thread).
const MAX_RANGE: u64 = 8 << 20;

fn restore_pack(
    repo: &Repository,
    plan: &Plan,
    pack: &PackId,
    blobs: &[(BlobLocation, &Places)],
    range_buf: &mut Vec<u8>,
    errors: &Mutex<Vec<FileError>>,
    progress: &Progress,
) -> Result<()> {
    let Some((salt, _)) = repo.cache().pack_info(pack)? else { bail!("pack {} is not in the index", pack.short()) };
    let mut decoder = UnitDecoder::new(repo);
    let mut i = 0;
    while i < blobs.len() {
        let start = u64::from(blobs[i].0.entry.offset);
        let mut end = start + u64::from(blobs[i].0.entry.length);
        let mut j = i + 1;
        while j < blobs.len() && u64::from(blobs[j].0.entry.offset) <= end + COALESCE_GAP && end - start < MAX_RANGE {
            end = end.max(u64::from(blobs[j].0.entry.offset) + u64::from(blobs[j].0.entry.length));
            j += 1;
        }
        let range = repo.store().get_range_into(&pack.object_key(), start..end, range_buf).map(|()| &range_buf[..]);
        for (loc, places) in &blobs[i..j] {
            let plain = match &range {
                Ok(bytes) => {
                    let a = (u64::from(loc.entry.offset) - start) as usize;
                    decoder.blob(loc, &salt, &bytes[a..a + loc.entry.length as usize])
                }
                Err(e) => Err(anyhow::anyhow!("read pack {}: {e}", pack.short()).into()),
            };
            match plain {
                Ok(data) => {
                    let zero = all_zero(data);
                    for (fi, off) in *places {
                        let f = &plan.files[*fi];
                        progress.add_done(0, data.len() as u64);
                        if zero && f.holes && !f.one_shot {
                            continue; // leave a hole; the length is set at the end
                        }
                        let r = if f.one_shot {
                            progress.add_done(1, 0);
                            restore_one_shot(f, data).map(|refused| refused.into_iter().for_each(|m| err(errors, &f.path, m)))
                        } else {
                            let direct = f.node.size >= DIRECT_FILE_MIN && plan.direct.load(Ordering::Relaxed);
                            write_chunk(&f.path, data, *off, f.holes, direct.then_some(&plan.direct))
                        };
                        if let Err(e) = r {
                            // A full disk fails every write after it: one clear error, not one
                            // per chunk, and the restore stops.
                            if e.kind() == std::io::ErrorKind::StorageFull || e.kind() == std::io::ErrorKind::QuotaExceeded {
                                bail!(
                                    "writing {}: {e}: free space on the target (or restore to another one) and run the \
                                     restore again; files restored completely are kept",
                                    f.path.display()
                                );
                            }
                            err(errors, &f.path, format!("write failed: {e}"));
                        }
                    }
                }
                Err(e) => {
                    for (fi, _) in *places {
                        let f = &plan.files[*fi];
                        if f.one_shot && f.fresh {
                            // Never created: nothing for the last phase to finish (it would
                            // only add a second error for the same file).
                            f.done.store(true, Ordering::Relaxed);
                        }
                        err(errors, &f.path, format!("{e:#}"));
                    }
                }
            }
        }
        i = j;
    }
    Ok(())
}

/// Creates (in a fresh folder) or opens a one-shot file, writes its one chunk and sets its
/// metadata. Whatever happens, the last phase leaves it alone (an error is reported once).
fn restore_one_shot(f: &FileTarget, data: &[u8]) -> std::io::Result<Vec<String>> {
    f.done.store(true, Ordering::Relaxed);
    let (file, known) = if f.fresh {
        create_final(&f.path, &f.node)?
    } else {
        (OpenOptions::new().write(true).custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32).open(&f.path)?, Known::default())
    };
    let end = write_sparse_to(&file, data, 0, f.holes)?;
    // A file just created was empty: its length is where the last write ended.
    finish_open_file(&file, &f.node, Known { len: known.fresh.then_some(end), ..known })
}

/// Sparse-file granularity: aligned blocks of zeros inside a chunk are skipped.
const HOLE_BLOCK: u64 = 4096;

/// Whether `b` holds only zeros (a branch-free OR over the block, which vectorizes, rather
/// than a byte-by-byte search that stops early).
fn all_zero(b: &[u8]) -> bool {
    b.chunks(HOLE_BLOCK as usize).all(|c| c.iter().fold(0u8, |acc, &x| acc | x) == 0)
}

/// Files at least this large have their chunks written with `O_DIRECT` (see [`write_chunk`]).
const DIRECT_FILE_MIN: u64 = 32 << 20;
/// Chunks at least this large are written with `O_DIRECT` (their whole blocks).
const DIRECT_MIN: usize = 64 << 10;

/// Writes one chunk of a file of several chunks at `off`. With `direct` (large files): its whole
/// 4 KiB blocks directly, not through the page cache (`ferry_store::direct`: on the machines
/// measured a buffered write cost 0.3 to 3.3 s of system time per GiB, depending on how much the
/// kernel had to reclaim first, a direct one 0.2 s; restored data is not read back soon), and
/// the partial blocks at its two ends through the cache, since they share a block with the
/// neighbouring chunks. A direct write returns only once the device has the data, so files
/// below [`DIRECT_FILE_MIN`] keep the cache's write-behind. With `holes`, zero blocks are
/// skipped either way (holes stay holes). `direct` is cleared for the rest of the restore when
/// the file system refuses `O_DIRECT`.
fn write_chunk(path: &Path, data: &[u8], off: u64, holes: bool, direct: Option<&AtomicBool>) -> std::io::Result<()> {
    let file = OpenOptions::new().write(true).custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32).open(path)?;
    let align = ferry_store::direct::ALIGN;
    let write_sparse = |data: &[u8], off: u64| write_sparse_to(&file, data, off, holes).map(|_| ());
    let Some(direct) = direct.filter(|d| data.len() >= DIRECT_MIN && d.load(Ordering::Relaxed)) else {
        return write_sparse(data, off);
    };
    let head = ((align as u64 - off % align as u64) % align as u64) as usize;
    let body_end = head + (data.len() - head) / align * align;
    let d = match ferry_store::direct::open(OpenOptions::new().write(true), path) {
        Ok(d) => d,
        Err(ferry_store::direct::DirectError::Unsupported) => {
            direct.store(false, Ordering::Relaxed);
            return write_sparse(data, off);
        }
        Err(ferry_store::direct::DirectError::Failed(e)) => return Err(e),
    };
    write_sparse(&data[..head], off)?;
    // Runs of non-zero blocks of the aligned body, each written in one go.
    let body = &data[head..body_end];
    let mut run: Option<usize> = None;
    let mut pos = 0;
    while pos <= body.len() {
        let zero = pos == body.len() || (holes && all_zero(&body[pos..pos + align]));
        match (zero, run) {
            (false, None) => run = Some(pos),
            (true, Some(s)) => {
                if let Err(e) = ferry_store::direct::write_blocks_at(&d, &body[s..pos], off + (head + s) as u64) {
                    match e {
                        ferry_store::direct::DirectError::Unsupported => {
                            direct.store(false, Ordering::Relaxed);
                            write_sparse(&body[s..], off + (head + s) as u64)?;
                            return write_sparse(&data[body_end..], off + body_end as u64);
                        }
                        ferry_store::direct::DirectError::Failed(e) => return Err(e),
                    }
                }
                run = None;
            }
            _ => {}
        }
        pos += align;
    }
    write_sparse(&data[body_end..], off + body_end as u64)
}

/// Writes `data` at `off`; with `holes`, skips aligned all-zero blocks so they stay holes (the
/// file was created empty, so skipped ranges read as zeros). Returns where the last write
/// ended (`off` if nothing was written).
fn write_sparse_to(file: &fs::File, data: &[u8], off: u64, holes: bool) -> std::io::Result<u64> {
    if !holes {
        file.write_all_at(data, off)?;
        return Ok(off + data.len() as u64);
    }
    let mut written_end = off;
    let mut pos = 0usize;
    let mut run_start: Option<usize> = None;
    while pos < data.len() {
        // Block boundaries are aligned to the file offset, as the file system's are.
        let block_end = (((off + pos as u64) / HOLE_BLOCK + 1) * HOLE_BLOCK - off) as usize;
        let end = block_end.min(data.len());
        let zero = all_zero(&data[pos..end]);
        match (zero, run_start) {
            (false, None) => run_start = Some(pos),
            (true, Some(s)) => {
                file.write_all_at(&data[s..pos], off + s as u64)?;
                written_end = off + pos as u64;
                run_start = None;
            }
            _ => {}
        }
        pos = end;
    }
    if let Some(s) = run_start {
        file.write_all_at(&data[s..], off + s as u64)?;
        written_end = off + data.len() as u64;
    }
    Ok(written_end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// Chunks of one file written out of order, at unaligned boundaries, with zero runs: the
    /// file reads back exactly, and whole zero blocks stay holes, with and without direct
    /// writes (tmpfs may refuse them; then the buffered path does it all).
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
            let path = dir.path().join("f");
            std::fs::File::create(&path).unwrap();
            let direct = AtomicBool::new(true);
            // Last chunk first, as packs come in any order.
            for w in cuts.windows(2).rev() {
                write_chunk(&path, &data[w[0]..w[1]], w[0] as u64, true, Some(&direct)).unwrap();
            }
            std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(n as u64).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), data, "{}", dir.path().display());
            let supported = ferry_store::direct::open(OpenOptions::new().write(true), &path).is_ok();
            assert_eq!(direct.load(Ordering::Relaxed), supported, "the direct path was taken where the file system has it");
            let allocated = std::fs::metadata(&path).unwrap().blocks() * 512;
            assert!(allocated < n as u64 - (1 << 20), "zero blocks stay holes: {allocated} bytes allocated of {n}");
        }
    }
}
