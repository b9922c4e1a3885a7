//! [`erase_device`]: overwriting every file of a device's job, checking the overwrite took, and
//! removing them.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{read_device_header, shown, walk, Kind, Walked, DEVICE_DIR, HEADER_FILE};
use crate::fsio::{self, TMP_SUFFIX};
use crate::{DiskKey, SeedError};

/// Bytes overwritten (and read back) at a time.
const PIECE: usize = 1 << 20;

/// What [`erase_device`] overwrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erasure {
    /// Files overwritten, read back and removed.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Securely erases device `path` of job `job`: every file under `FERRY-DEVICE` is overwritten
/// in place with a pseudo-random stream (BLAKE3's output under a random key, per file, in
/// 1 MiB pieces), fsynced, dropped from the page cache, read back and compared with the
/// stream, then removed; then the folders are removed and `FERRY-DEVICE` must be gone.
///
/// Refused unless the device's header verifies with `key` (`DeviceKeyInvalid`) and names
/// `job` (`ForeignDevice`); `DeviceHeaderDamaged` for a header that cannot be read (but see
/// below); `NotADevice` for a `FERRY-DEVICE` with files but no header. A file that reads
/// back differently than written is `EraseFailed`: the device did not take the overwrite and
/// must be destroyed physically.
///
/// The header is overwritten and removed last, so an erase that was killed can be run again:
/// - with the header still readable, the rerun verifies it and erases what is left;
/// - with the header overwritten but not removed (nothing else left), the rerun erases it
///   (an unreadable header alone holds nothing of anyone);
/// - with the header removed, what is left are empty folders (or, from a killed
///   `prepare_device`, temporary files): the rerun removes them;
/// - with `FERRY-DEVICE` gone, there is nothing to erase: `Ok(Erasure { files: 0, bytes: 0 })`,
///   and the caller decides whether that is what it expected.
pub fn erase_device(path: &Path, key: &DiskKey, job: &str) -> Result<Erasure, SeedError> {
    let dir = path.join(DEVICE_DIR);
    match std::fs::symlink_metadata(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Erasure::default()),
        Err(e) => return Err(SeedError::io("open", &dir, e)),
        Ok(m) if !m.is_dir() => return Err(SeedError::NotADevice { path: path.to_path_buf() }),
        Ok(_) => {}
    }
    let files = walk(&dir)?;
    match read_device_header(path) {
        Ok(Some(h)) => {
            if !h.verify(key) {
                return Err(SeedError::DeviceKeyInvalid { path: path.to_path_buf(), device: h.device_number, job: h.job });
            }
            if h.job != job {
                return Err(SeedError::ForeignDevice {
                    path: path.to_path_buf(),
                    reason: format!(
                        "belongs to job {} (device {}), not to job {job}: erase it as a device of job {} (`ferry device erase {}`)",
                        h.job, h.device_number, h.job, h.job
                    ),
                    job: h.job,
                    device: h.device_number,
                });
            }
        }
        Ok(None) if files.iter().all(|f| f.kind == Kind::File && !f.rel.contains('/') && f.rel.ends_with(TMP_SUFFIX)) => {}
        Ok(None) => return Err(SeedError::NotADevice { path: path.to_path_buf() }),
        Err(SeedError::DeviceHeaderDamaged { .. }) if files.len() == 1 && files[0].rel == HEADER_FILE => {}
        Err(e) => return Err(e),
    }
    let stream_key: [u8; 32] = ferry_crypto::random_bytes();
    let mut erasure = Erasure::default();
    let (header, others): (Vec<&Walked>, Vec<&Walked>) = files.iter().partition(|f| f.rel == HEADER_FILE);
    // The header MUST be the last file erased: it is what lets a rerun verify the device.
    for f in others.into_iter().chain(header) {
        if f.kind == Kind::File {
            erasure.bytes += overwrite(path, f, &stream_key)?;
            erasure.files += 1;
        }
        std::fs::remove_file(&f.path).map_err(|e| SeedError::io("remove", &f.path, e))?;
    }
    std::fs::remove_dir_all(&dir).map_err(|e| SeedError::io("remove", &dir, e))?;
    fsio::fsync_dir(path)?;
    if std::fs::symlink_metadata(&dir).is_ok() {
        return Err(SeedError::io("erase", &dir, std::io::Error::other("the folder is still there after it was removed")));
    }
    Ok(erasure)
}

/// Overwrites one file with the stream for its name, fsyncs it, and reads it back from the
/// device. Returns its length.
fn overwrite(device: &Path, f: &Walked, stream_key: &[u8; 32]) -> Result<u64, SeedError> {
    let file = OpenOptions::new().read(true).write(true).open(&f.path).map_err(|e| SeedError::io("open", &f.path, e))?;
    let len = file.metadata().map_err(|e| SeedError::io("stat", &f.path, e))?.len();
    let stream = || {
        let mut h = blake3::Hasher::new_keyed(stream_key);
        h.update(f.rel.as_bytes());
        h.finalize_xof()
    };
    let mut want = vec![0u8; PIECE];
    let mut out = stream();
    let mut at = 0u64;
    while at < len {
        let n = (len - at).min(PIECE as u64) as usize;
        out.fill(&mut want[..n]);
        file.write_all_at(&want[..n], at).map_err(|e| SeedError::io("overwrite", &f.path, e))?;
        at += n as u64;
    }
    // The overwrite MUST be on the device before it is read back.
    file.sync_all().map_err(|e| SeedError::io("fsync", &f.path, e))?;
    fsio::drop_cache(&file);
    let mut got = vec![0u8; PIECE];
    let mut back = stream();
    let mut at = 0u64;
    while at < len {
        let n = (len - at).min(PIECE as u64) as usize;
        back.fill(&mut want[..n]);
        file.read_exact_at(&mut got[..n], at).map_err(|e| SeedError::io("read back", &f.path, e))?;
        if got[..n] != want[..n] {
            return Err(SeedError::EraseFailed {
                path: device.to_path_buf(),
                file: shown(&f.rel),
                reason: format!("read back differently than written (from byte {at})"),
            });
        }
        at += n as u64;
    }
    fsio::drop_cache(&file);
    Ok(len)
}
