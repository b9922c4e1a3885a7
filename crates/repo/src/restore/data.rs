//! The data, the restore's second pass: reads each needed pack once (coalesced ranges),
//! decrypts each stored unit once, and writes each blob to every place it belongs, leaving
//! holes for all-zero blocks (in the files [`super::Sparse`] gives holes); one-shot files are
//! created, written and finished right here.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use anyhow::Result;
use ferry_format::{BlobKind, PackId};

use super::direct::{self, DIRECT_FILE_MIN, WRITERS};
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
    // The first error that stops the restore is kept, and no pack is started after it.
    let stop = |e: anyhow::Error| {
        fatal.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_or_insert(e);
        work.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    };
    // Writer threads for the whole blocks of large files (`direct.rs`), when there are any.
    let (pool, writer) = direct::pool(&plan.direct);
    let large = plan.files.iter().any(|f| f.node.size >= DIRECT_FILE_MIN);
    std::thread::scope(|s| {
        if large {
            for _ in 0..WRITERS {
                let (w, stop) = (writer.clone(), &stop);
                s.spawn(move || {
                    w.run(|path, e| match full_disk(path, &e) {
                        Some(fatal) => stop(fatal),
                        None => err(errors, path, format!("write failed: {e}")),
                    });
                });
            }
        }
        drop(writer);
        for _ in 0..threads {
            let (pool, work, stop) = (large.then(|| pool.clone()), &work, &stop);
            s.spawn(move || {
                // Each thread reads its packs' ranges into one buffer, reused.
                let mut range_buf = Vec::new();
                loop {
                    let next = work.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
                    let Some((pack, mut blobs)) = next else { break };
                    blobs.sort_by_key(|(l, _)| l.entry.offset);
                    if let Err(e) = restore_pack(repo, plan, pool.as_ref(), &pack, &blobs, &mut range_buf, errors, progress) {
                        stop(e);
                    }
                }
            });
        }
        // The writers finish once every decoding thread has dropped its pool.
        drop(pool);
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

#[allow(clippy::too_many_arguments)]
fn restore_pack<'a>(
    repo: &Repository,
    plan: &'a Plan,
    pool: Option<&direct::Pool<'a>>,
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
                        let r = match pool.filter(|_| f.node.size >= DIRECT_FILE_MIN) {
                            _ if f.one_shot => {
                                restore_one_shot(f, data).map(|refused| refused.into_iter().for_each(|m| err(errors, &f.path, m)))
                            }
                            Some(pool) => pool.write_chunk(&f.path, data, *off, f.holes),
                            None => OpenOptions::new()
                                .write(true)
                                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                                .open(&f.path)
                                .and_then(|file| write_sparse_to(&file, data, *off, f.holes).map(drop)),
                        };
                        if let Err(e) = r {
                            if let Some(fatal) = full_disk(&f.path, &e) {
                                return Err(fatal);
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

/// A full disk fails every write after it: one clear error, not one per chunk, and the restore
/// stops. The error that says so, when `e` is that.
fn full_disk(path: &Path, e: &std::io::Error) -> Option<anyhow::Error> {
    let full = e.kind() == std::io::ErrorKind::StorageFull || e.kind() == std::io::ErrorKind::QuotaExceeded;
    full.then(|| {
        anyhow::anyhow!(
            "writing {}: {e}: free space on the target (or restore to another one) and run the restore again; files restored \
             completely are kept",
            path.display()
        )
    })
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
pub(super) fn all_zero(b: &[u8]) -> bool {
    b.chunks(HOLE_BLOCK as usize).all(|c| c.iter().fold(0u8, |acc, &x| acc | x) == 0)
}

/// Writes `data` at `off`; with `holes`, skips aligned all-zero blocks so they stay holes (the
/// file was created empty, so skipped ranges read as zeros). Returns where the last write
/// ended (`off` if nothing was written).
pub(super) fn write_sparse_to(file: &fs::File, data: &[u8], off: u64, holes: bool) -> std::io::Result<u64> {
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
