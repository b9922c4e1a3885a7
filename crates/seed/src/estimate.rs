//! Estimates before a seed is written: how much data a source holds, how well it compresses
//! (from a sample read across it), and whether it fits seed devices of a given size. For
//! `ferry plan` (network or disks?) and `ferry backup --device` (refused before anything is
//! written when it cannot fit).

use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Most bytes the compressibility sample reads.
const SAMPLE_BYTES: u64 = 64 << 20;
/// Bytes read from one file for the sample at most.
const SAMPLE_PER_FILE: u64 = 1 << 20;

/// Every regular file under `root` with its size (symlinks are not followed).
fn files(root: &Path, out: &mut Vec<(PathBuf, u64)>) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(root).map_err(|e| io::Error::other(format!("read {}: {e}", root.display())))?;
    if meta.is_file() {
        out.push((root.to_path_buf(), meta.len()));
    } else if meta.is_dir() {
        // An unreadable folder is left out of the estimate, as the backup would report it.
        let Ok(entries) = std::fs::read_dir(root) else {
            return Ok(());
        };
        for e in entries.flatten() {
            files(&e.path(), out)?;
        }
    }
    Ok(())
}

/// Total size of the regular files under `source`.
pub fn total_size(source: &Path) -> io::Result<u64> {
    let mut all = Vec::new();
    files(source, &mut all)?;
    Ok(all.iter().map(|(_, n)| n).sum())
}

/// What [`sample`] found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Bytes in the source's regular files.
    pub total: u64,
    /// Compressed / original size of the sample (1.0 when nothing was read).
    pub ratio: f64,
    /// Bytes the sample read.
    pub read: u64,
}

/// Total size of the source and its compressibility from a sample: up to 64 MiB read from files
/// spread over the source, compressed with zstd at Ferry's default level.
pub fn sample(source: &Path) -> io::Result<Sample> {
    let mut all = Vec::new();
    files(source, &mut all)?;
    let total: u64 = all.iter().map(|(_, n)| n).sum();
    if total == 0 {
        return Ok(Sample { total: 0, ratio: 1.0, read: 0 });
    }
    // Files spread over the whole list (by position), so big and small files both count.
    let want = (SAMPLE_BYTES / SAMPLE_PER_FILE).max(1) as usize;
    let step = all.len().div_ceil(want).max(1);
    let (mut read, mut compressed) = (0u64, 0u64);
    let mut buf = Vec::new();
    for (path, size) in all.iter().step_by(step) {
        if read >= SAMPLE_BYTES {
            break;
        }
        let Ok(mut f) = std::fs::File::open(path) else { continue };
        buf.clear();
        let take = (*size).min(SAMPLE_PER_FILE);
        if Read::by_ref(&mut f).take(take).read_to_end(&mut buf).is_err() || buf.is_empty() {
            continue;
        }
        let z = zstd::bulk::compress(&buf, 3).map_or(buf.len(), |c| c.len()).min(buf.len());
        read += buf.len() as u64;
        compressed += z as u64;
    }
    let ratio = if read == 0 { 1.0 } else { compressed as f64 / read as f64 };
    Ok(Sample { total, ratio, read })
}

/// Whether `sources` fit in `usable` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    Fits,
    /// `total` bytes of files, about `needed` once compressed (with 1 % for the repository's
    /// own structures).
    TooLarge {
        total: u64,
        needed: u64,
    },
}

/// Whether `sources` fit in `usable` bytes. Sources on file systems that hold less than
/// `usable` in all fit without a look (a file system mounted inside a source is not counted:
/// if the devices fill up anyway, the backup stops with an error saying what to do, and
/// resumes); otherwise their files are summed, and only data larger than the devices is
/// sampled for compressibility.
pub fn fit(sources: &[PathBuf], usable: u64) -> io::Result<Fit> {
    let fs_used = |p: &Path| -> Option<u64> {
        let st = rustix::fs::statvfs(p).ok()?;
        Some(st.f_blocks.saturating_sub(st.f_bfree).saturating_mul(st.f_frsize))
    };
    let bound: Option<u64> = sources.iter().map(|p| fs_used(p)).sum();
    if bound.is_some_and(|b| b.saturating_add(b / 100) <= usable) {
        return Ok(Fit::Fits);
    }
    let total: u64 = sources.iter().map(|p| total_size(p)).sum::<io::Result<u64>>()?;
    if total.saturating_add(total / 100) <= usable {
        return Ok(Fit::Fits);
    }
    let mut compressed = 0.0;
    for p in sources {
        let s = sample(p)?;
        compressed += s.total as f64 * s.ratio;
    }
    let needed = (compressed * 1.01) as u64;
    Ok(if needed > usable { Fit::TooLarge { total, needed } } else { Fit::Fits })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_samples_and_fits() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("zeros"), vec![0u8; 100_000]).unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/text"), b"hello").unwrap();
        assert_eq!(total_size(d.path()).unwrap(), 100_005);
        let s = sample(d.path()).unwrap();
        assert_eq!((s.total, s.read), (100_005, 100_005));
        assert!(s.ratio < 0.1, "zeros compress: {s:?}");
        let sources = [d.path().to_path_buf()];
        assert_eq!(fit(&sources, 1 << 40).unwrap(), Fit::Fits);
        assert!(matches!(fit(&sources, 10).unwrap(), Fit::TooLarge { total: 100_005, .. }));
        assert!(total_size(&d.path().join("missing")).unwrap_err().to_string().starts_with("read "));
    }
}
