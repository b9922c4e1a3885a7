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
//! With `--restore`, the same model for a restore of `--size` stored bytes (already
//! compressed): the network is size / link; an export job is `ferry export run` at the vault's
//! site (read from the store, write the disks and read them back), shipping, and the restore
//! from the disks (read them, write the files), each at the disk speed.
//!
//! Deduplication is not estimated (it only makes both ways faster).

use std::io::{Read, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::cli::{Global, PlanArgs};
use crate::common::{self, parse_size};
use crate::Outcome;

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
        (_, Some(s)) if a.restore => (parse_size(s).with_context(|| format!("--size {s:?}: expected e.g. 20TB or 500GiB"))?, 1.0, 0),
        (Some(src), _) => {
            let s = ferry_seed::sample(src)?;
            (s.total, s.ratio, s.read)
        }
        (None, Some(s)) => (parse_size(s).with_context(|| format!("--size {s:?}: expected e.g. 4TB or 500GiB"))?, 1.0, 0),
        (None, None) if a.restore => bail!("give --size SIZE: the stored size of what to restore (`ferry vault machines` shows it)"),
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
    let local_passes = if a.restore {
        // Export run: store read, disk write + read back; restore: disk read, file write.
        1.0 + 2.0 + 2.0
    } else {
        // Staging backup, diskprep write + read back, import read + container write, ingest.
        1.0 + 2.0 + 2.0 + 1.0
    };
    let (what, job) = if a.restore { ("to restore:   ", "export job") } else { ("to send:      ", "import job") };
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
            "restore": a.restore,
        }))?;
        return Ok(Outcome::Success);
    }
    if a.restore {
        println!("stored:       {}", common::size(size));
    } else {
        println!(
            "source:       {}{}",
            common::size(size),
            if sampled > 0 {
                format!(", {:.0} % after compression (sample of {})", ratio * 100.0, common::size(sampled))
            } else {
                " (taken as incompressible)".into()
            }
        );
    }
    println!("{what}{}", common::size(compressed as u64));
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
            "note:         more than one {job} takes it (at most {} disks and {} per job)",
            ferry_seed::MAX_DISKS,
            common::size(ferry_seed::MAX_SEED_BYTES)
        );
    }
    println!(
        "recommended:  {}",
        match (use_disks, a.restore) {
            (true, false) => "disks (ferry backup --offline, then ferry diskprep)",
            (false, false) => "the network (ferry backup)",
            (true, true) => "an export job (ferry export-job create, ferry export run at the vault's site, then ferry restore --from-disk)",
            (false, true) => "the network (ferry restore)",
        }
    );
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
