//! `ferry plan`: should the first backup go over the network or on disks?
//!
//! The estimate, written out so users can check it:
//! - compressed size = source size × the compressibility of a sample (up to 64 MiB read from
//!   files spread over the source, compressed with zstd at Ferry's default level); with `--size`
//!   and no source the data is taken as incompressible;
//! - network: compressed size / uplink;
//! - disks: the backup to the staging location, diskprep (write and read back), shipping,
//!   the import (read the disks, write the container) and the ingest, each at the disk speed
//!   measured here (`--disk-speed` overrides it), plus the shipping days;
//! - disks needed: compressed size / usable disk size, rounded up (at most 10 per import job).
//!
//! Deduplication is not estimated (it only makes both ways faster).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::diskprep::parse_size;
use crate::cli::{Global, PlanArgs};
use crate::common;
use crate::Outcome;

/// Most bytes the compressibility sample reads.
const SAMPLE_BYTES: u64 = 64 << 20;
/// Bytes read from one file for the sample at most.
const SAMPLE_PER_FILE: u64 = 1 << 20;

/// `100Mbit`, `20Mbps`, `1Gbit/s` (bits) or `2MB/s`, `500KiB/s` (bytes): bytes per second.
pub fn parse_rate(s: &str) -> Option<f64> {
    let t = s.trim().trim_end_matches("/s").trim_end_matches("ps");
    let lower = t.to_ascii_lowercase();
    // Bits: `...bit`, or a lower-case `b` (`20Mb`, `20Mbps`); anything else is bytes.
    let num = match lower.strip_suffix("bit") {
        Some(n) => n,
        None if t.ends_with('b') => &lower[..lower.len() - 1],
        None => return parse_size(t).map(|b| b as f64),
    };
    let split = num.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(num.len());
    let (n, unit) = num.split_at(split);
    let mult = match unit.trim() {
        "" => 1.0,
        "k" => 1e3,
        "m" => 1e6,
        "g" => 1e9,
        _ => return None,
    };
    let n: f64 = n.parse().ok()?;
    (n.is_finite() && n > 0.0).then_some(n * mult / 8.0)
}

/// Every regular file under `root` with its size (symlinks are not followed).
fn files(root: &Path, out: &mut Vec<(PathBuf, u64)>) -> Result<()> {
    let meta = std::fs::symlink_metadata(root).with_context(|| format!("read {}", root.display()))?;
    if meta.is_file() {
        out.push((root.to_path_buf(), meta.len()));
    } else if meta.is_dir() {
        let entries = match std::fs::read_dir(root) {
            Ok(e) => e,
            // An unreadable folder is left out of the estimate, as the backup would report it.
            Err(_) => return Ok(()),
        };
        for e in entries.flatten() {
            files(&e.path(), out)?;
        }
    }
    Ok(())
}

/// Total size of the regular files under `source`.
pub fn total_size(source: &Path) -> Result<u64> {
    let mut all = Vec::new();
    files(source, &mut all)?;
    Ok(all.iter().map(|(_, n)| n).sum())
}

/// Total size of the source and its compressibility (compressed / original) from a sample.
pub fn sample(source: &Path) -> Result<(u64, f64, u64)> {
    let mut all = Vec::new();
    files(source, &mut all)?;
    let total: u64 = all.iter().map(|(_, n)| n).sum();
    if total == 0 {
        return Ok((0, 1.0, 0));
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
        let z = zstd::bulk::compress(&buf, 3).map(|c| c.len()).unwrap_or(buf.len()).min(buf.len());
        read += buf.len() as u64;
        compressed += z as u64;
    }
    let ratio = if read == 0 { 1.0 } else { compressed as f64 / read as f64 };
    Ok((total, ratio, read))
}

/// Writes and reads back 64 MiB in `dir` (fsynced, dropped from the page cache): bytes/s.
fn measure_disk(dir: &Path) -> Result<f64> {
    let path = dir.join(format!(".ferry-plan-{}", std::process::id()));
    let chunk: Vec<u8> = (0..(4u32 << 20)).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let started = Instant::now();
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&path)?;
        for _ in 0..16 {
            f.write_all(&chunk)?;
        }
        f.sync_all()?;
        let _ = rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed);
        drop(f);
        let mut back = Vec::with_capacity(64 << 20);
        std::fs::File::open(&path)?.read_to_end(&mut back)?;
        Ok(())
    })();
    let _ = std::fs::remove_file(&path);
    result.with_context(|| format!("measure the disk speed in {}", dir.display()))?;
    // Written once and read once.
    Ok(2.0 * (64u64 << 20) as f64 / started.elapsed().as_secs_f64().max(1e-6))
}

fn duration(secs: f64) -> String {
    let s = secs.max(0.0);
    if s < 3600.0 {
        format!("{:.0} minutes", (s / 60.0).ceil())
    } else if s < 3.0 * 86400.0 {
        format!("{:.1} hours", s / 3600.0)
    } else {
        format!("{:.1} days", s / 86400.0)
    }
}

pub fn run(g: &Global, a: &PlanArgs) -> Result<Outcome> {
    let uplink = parse_rate(&a.uplink).with_context(|| format!("--uplink {:?}: expected e.g. 100Mbit, 20Mbps or 2MB/s", a.uplink))?;
    let (size, ratio, sampled) = match (&a.source, &a.size) {
        (Some(src), _) => sample(src)?,
        (None, Some(s)) => (parse_size(s).with_context(|| format!("--size {s:?}: expected e.g. 4TB or 500GiB"))?, 1.0, 0),
        (None, None) => bail!("give --source PATH (measured) or --size SIZE"),
    };
    let disk_size = match &a.disk_size {
        Some(s) => parse_size(s).with_context(|| format!("--disk-size {s:?}: expected e.g. 8TB"))?,
        None => ferry_seed::MAX_DISK_BYTES,
    };
    if disk_size == 0 {
        bail!("--disk-size must be above 0");
    }
    let disk_speed = match &a.disk_speed {
        Some(r) => parse_rate(r).with_context(|| format!("--disk-speed {r:?}: expected e.g. 150MB/s"))?,
        None => measure_disk(&a.measure_in.clone().unwrap_or_else(std::env::temp_dir))?,
    };
    let compressed = (size as f64 * ratio).ceil();
    let network_s = compressed / uplink;
    let shipping_s = a.shipping_days * 86400.0;
    // Staging backup, diskprep write + read back, import read + container write, ingest.
    let local_passes = 1.0 + 2.0 + 2.0 + 1.0;
    let disks_s = local_passes * compressed / disk_speed + shipping_s;
    let disks = (compressed / (disk_size.min(ferry_seed::MAX_DISK_BYTES) as f64 * 0.99)).ceil().max(1.0) as u64;
    let over_limit = disks > u64::from(ferry_seed::MAX_DISKS) || compressed > ferry_seed::MAX_SEED_BYTES as f64;
    let use_disks = disks_s < network_s;
    if g.json {
        common::print_json(&serde_json::json!({
            "source_bytes": size,
            "compressibility": ratio,
            "sampled_bytes": sampled,
            "compressed_bytes": compressed as u64,
            "uplink_bytes_per_s": uplink,
            "disk_bytes_per_s": disk_speed,
            "network_s": network_s,
            "disks_s": disks_s,
            "disks": disks,
            "over_limits": over_limit,
            "recommendation": if use_disks { "disks" } else { "network" },
        }))?;
        return Ok(Outcome::Success);
    }
    println!(
        "source:       {}{}",
        common::size(size),
        if sampled > 0 {
            format!(", {:.0} % after compression (sample of {})", ratio * 100.0, common::size(sampled))
        } else {
            " (taken as incompressible)".into()
        }
    );
    println!("to send:      {}", common::size(compressed as u64));
    println!("network:      {} at {}/s", duration(network_s), common::size(uplink as u64));
    println!(
        "disks:        {} ({} disk(s) of {}; local copies at {}/s, {} days shipping)",
        duration(disks_s),
        disks,
        common::size(disk_size),
        common::size(disk_speed as u64),
        a.shipping_days
    );
    if over_limit {
        println!(
            "note:         more than one import job takes it (at most {} disks and {} per job)",
            ferry_seed::MAX_DISKS,
            common::size(ferry_seed::MAX_SEED_BYTES)
        );
    }
    if use_disks {
        println!("recommended:  disks (ferry backup --offline, then ferry diskprep)");
    } else {
        println!("recommended:  the network (ferry backup)");
    }
    Ok(Outcome::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("100Mbit"), Some(12_500_000.0));
        assert_eq!(parse_rate("100Mbps"), Some(12_500_000.0));
        assert_eq!(parse_rate("1Gbit/s"), Some(125_000_000.0));
        assert_eq!(parse_rate("20Mb"), Some(2_500_000.0));
        assert_eq!(parse_rate("2MB/s"), Some(2_000_000.0));
        assert_eq!(parse_rate("500KiB/s"), Some(512_000.0));
        assert_eq!(parse_rate("fast"), None);
    }
}
