//! The few file-system operations seed disks need, each crash-safe where it must be.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;

use crate::SeedError;

/// The folder of a disk that holds everything of the seed.
pub(crate) const SEED_DIR: &str = "FERRY-SEED";
pub(crate) const LABEL_FILE: &str = "label.json";
pub(crate) const MANIFEST_FILE: &str = "manifest.bin";
pub(crate) const JOURNAL_FILE: &str = "journal.bin";
pub(crate) const OBJECTS_DIR: &str = "objects";
/// Suffix of files being written; a crash leaves them behind and the next run deletes them.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// Writes `name` in `dir` atomically: a temporary file, fsynced, renamed over `name`, then the
/// folder fsynced. A crash leaves the old file or the new one, never a mix.
pub(crate) fn atomic_write(dir: &Path, name: &str, data: &[u8]) -> Result<(), SeedError> {
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let dest = dir.join(name);
    let mut f = File::create(&tmp).map_err(|e| SeedError::io("create", &tmp, e))?;
    f.write_all(data).map_err(|e| SeedError::io("write", &tmp, e))?;
    // The data MUST be durable before the rename makes it visible under its name.
    f.sync_all().map_err(|e| SeedError::io("fsync", &tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, &dest).map_err(|e| SeedError::io("rename", &tmp, e))?;
    fsync_dir(dir)
}

/// Makes a folder's entries (creations, renames, deletions) durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), SeedError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| SeedError::io("fsync folder", dir, e))
}

/// Creates `dir` if it is missing, making its creation durable.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), SeedError> {
    match std::fs::create_dir(dir) {
        Ok(()) => {
            if let Some(parent) = dir.parent() {
                fsync_dir(parent)?;
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(SeedError::io("create folder", dir, e)),
    }
}

/// The whole file, if it is at most `max` bytes (checked before allocating). `Ok(None)` if the
/// file does not exist.
pub(crate) fn read_limited(path: &Path, max: u64) -> Result<Option<Vec<u8>>, ReadLimitedError> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ReadLimitedError::Io(e)),
    };
    let len = f.metadata().map_err(ReadLimitedError::Io)?.len();
    if len > max {
        return Err(ReadLimitedError::TooLarge(len));
    }
    let mut buf = Vec::with_capacity(len as usize);
    // `take` also guards against a file that grows while it is read.
    (&mut f).take(max + 1).read_to_end(&mut buf).map_err(ReadLimitedError::Io)?;
    if buf.len() as u64 > max {
        return Err(ReadLimitedError::TooLarge(buf.len() as u64));
    }
    Ok(Some(buf))
}

#[derive(Debug)]
pub(crate) enum ReadLimitedError {
    Io(std::io::Error),
    TooLarge(u64),
}

impl std::fmt::Display for ReadLimitedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadLimitedError::Io(e) => write!(f, "{e}"),
            ReadLimitedError::TooLarge(n) => write!(f, "implausibly large ({n} bytes)"),
        }
    }
}

/// Asks the kernel to drop a (clean, fsynced) file's pages from the page cache, so that reading
/// it back reads the disk, not memory. Advice only: failures are ignored.
pub(crate) fn drop_cache(f: &File) {
    let _ = rustix::fs::fadvise(f, 0, None, rustix::fs::Advice::DontNeed);
}

/// Opens a file for appending without truncating it.
pub(crate) fn open_rw(path: &Path) -> Result<File, SeedError> {
    OpenOptions::new().read(true).write(true).open(path).map_err(|e| SeedError::io("open", path, e))
}

/// Is the folder empty, ignoring the `lost+found` folder of a freshly made ext file system and
/// a `FERRY-SEED` folder with nothing but temporary files in it (a crash before the first
/// label was in place)?
pub(crate) fn is_empty_disk(dir: &Path) -> Result<bool, SeedError> {
    let entries = std::fs::read_dir(dir).map_err(|e| SeedError::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| SeedError::io("list", dir, e))?;
        let name = entry.file_name();
        if name == "lost+found" || (name == SEED_DIR && only_tmp_files(&entry.path())?) {
            continue;
        }
        return Ok(false);
    }
    Ok(true)
}

fn only_tmp_files(dir: &Path) -> Result<bool, SeedError> {
    if !dir.is_dir() {
        return Ok(false);
    }
    let entries = std::fs::read_dir(dir).map_err(|e| SeedError::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| SeedError::io("list", dir, e))?;
        let is_file = entry.file_type().map_err(|e| SeedError::io("stat", &entry.path(), e))?.is_file();
        if !is_file || !entry.file_name().to_string_lossy().ends_with(TMP_SUFFIX) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Removes everything inside `dir` but `lost+found`, keeping `dir` itself (a mount point).
pub(crate) fn wipe(dir: &Path) -> Result<(), SeedError> {
    let entries = std::fs::read_dir(dir).map_err(|e| SeedError::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| SeedError::io("list", dir, e))?;
        if entry.file_name() == "lost+found" {
            continue;
        }
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| SeedError::io("stat", &path, e))?;
        let removed = if kind.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        removed.map_err(|e| SeedError::io("wipe", &path, e))?;
    }
    fsync_dir(dir)
}
