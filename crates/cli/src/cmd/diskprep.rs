//! `ferry diskprep`: writes a staging location onto the disks that travel to the vault's site
//! (glue over `ferry_seed::prepare`; the disk format is in docs/format.md "Seed disks").

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ferry_api::{DiskRecord, DiskSetReport, SiteImportJob};
use ferry_seed::{DiskKey, DiskTarget, PrepareOptions, PrepareOutcome, SeedFile, SourceObject};

use crate::cli::{DiskprepArgs, Global};
use crate::common::{self, parse_size};
use crate::Outcome;

/// `PATH[:CAPACITY]`: the part after the last `:` is a capacity when it reads as one.
pub(crate) fn parse_disk(spec: &str) -> Result<DiskTarget> {
    if let Some((path, cap)) = spec.rsplit_once(':') {
        if let Some(c) = parse_size(cap) {
            if c == 0 {
                bail!("disk {spec}: a capacity of 0 holds nothing");
            }
            return Ok(DiskTarget { path: PathBuf::from(path), capacity: Some(c) });
        }
    }
    Ok(DiskTarget { path: PathBuf::from(spec), capacity: None })
}

/// Whether to wipe a disk that holds other data: `--yes`, or the answer on a terminal.
pub(crate) fn confirm_wipe(yes: bool) -> impl FnMut(&Path, &str) -> bool {
    move |disk: &Path, why: &str| -> bool {
        if yes {
            return true;
        }
        match ask(&format!("disk {}: {why}. Wipe it? [y/N] ", disk.display())) {
            Some(answer) => matches!(answer.as_str(), "y" | "Y" | "yes"),
            None => false,
        }
    }
}

/// A progress bar of bytes written, on a terminal (and without --json).
pub(crate) fn byte_bar(g: &Global, total: u64) -> Option<indicatif::ProgressBar> {
    (!g.json && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bytes}/{total_bytes} {wide_bar} {bytes_per_sec} ETA {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    })
}

fn ask(question: &str) -> Option<String> {
    if !std::io::stdin().is_terminal() {
        return None;
    }
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).ok()?;
    Some(line.trim().to_string())
}

pub fn run(g: &Global, a: &DiskprepArgs) -> Result<Outcome> {
    let seed = SeedFile::load(&a.staging)?.with_context(|| {
        format!("{} is not a staging location (no seed.json): run `ferry backup --offline --staging` first", a.staging.display())
    })?;
    let job = match &a.import_job {
        Some(j) if *j != seed.job => bail!("{} is the staging location of import job {}, not {j}", a.staging.display(), seed.job),
        _ => seed.job.clone(),
    };
    if seed.cleaned {
        bail!("import job {job} was ingested and cleaned up: nothing to prepare");
    }
    let client = common::seeding_client(g)?;
    let key = DiskKey::from_hex(&client.disk_key(&job)?).context("the vault sent a malformed disk key")?;
    let staging = ferry_store::open(&a.staging.to_string_lossy())?;
    let objects: Vec<SourceObject> = ferry_seed::staging_objects(staging.as_ref())?
        .into_iter()
        .map(|(key, size)| SourceObject { phase: ferry_api::commit_phase(&key), key, size })
        .collect();
    if !objects.iter().any(|o| o.key.starts_with("recovery-points/")) {
        bail!(
            "{} holds no recovery point yet: let `ferry backup --offline` finish (run it again to resume) before diskprep",
            a.staging.display()
        );
    }
    let mut disks = a.disks.iter().map(|d| parse_disk(d)).collect::<Result<Vec<_>>>()?;
    let total: u64 = objects.iter().map(|o| o.size).sum();
    eprintln!("import job {job}: {} objects, {} to write", objects.len(), common::size(total));
    let mut confirm = confirm_wipe(a.yes);
    let bar = byte_bar(g, total);
    let summary = loop {
        let mut progress = |done: u64, _total: u64| {
            if let Some(b) = &bar {
                b.set_position(done);
            }
        };
        let opts =
            PrepareOptions { job: job.clone(), key: &key, disks: disks.clone(), confirm_wipe: &mut confirm, progress: &mut progress };
        match ferry_seed::prepare(staging.as_ref(), &objects, opts)? {
            PrepareOutcome::Complete(summary) => break summary,
            PrepareOutcome::NeedMoreDisks { objects: left, bytes, summary } => {
                record(&client, &job, &summary, None)?;
                let more = ask(&format!(
                    "the disks are full: {} in {left} objects still to write. Path of another disk (empty to stop): ",
                    common::size(bytes)
                ));
                if let Some(p) = more.filter(|p| !p.is_empty()) {
                    disks.push(parse_disk(&p)?);
                } else {
                    if let Some(b) = &bar {
                        b.abandon();
                    }
                    bail!(
                        "import job {job}: {} in {left} objects still to write: run diskprep again with the same disks and another --disk \
                         (what is on the disks is kept)",
                        common::size(bytes)
                    );
                }
            }
        }
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    // The manifest as the disks hold it: its digest is what the import and the receipt check.
    let paths: Vec<PathBuf> = summary.disks.iter().map(|d| d.path.clone()).collect();
    let set = ferry_seed::DiskSet::open(&paths, &job, &key)?;
    let digest = hex::encode(set.manifest().digest());
    let j = record(&client, &job, &summary, Some(&digest))?;
    if g.json {
        common::print_json(&serde_json::json!({
            "import_job": job,
            "set_id": hex::encode(summary.set_id),
            "disks": summary.disks.iter().map(|d| serde_json::json!({"id": d.number, "path": d.path, "objects": d.objects, "bytes": d.bytes})).collect::<Vec<_>>(),
            "state": j.job.state,
            "shipping_address": j.shipping_address,
        }))?;
    } else {
        println!("import job {job}: {} disks prepared and verified", summary.disks.len());
        for d in &summary.disks {
            println!(
                "  disk {} of {}: {} ({} objects, {})",
                d.number,
                summary.disks.len(),
                d.path.display(),
                d.objects,
                common::size(d.bytes)
            );
        }
        match &j.shipping_address {
            Some(addr) => println!("ship the disks to: {addr}"),
            None => println!("ship the disks to the vault's site (the vault has no shipping address set: ask its operator)"),
        }
        println!(
            "then record the shipment: ferry import-job ship {job} --carrier CARRIER --tracking NUMBER (by {})",
            j.job.deadline.as_deref().unwrap_or("the deadline")
        );
    }
    Ok(Outcome::Success)
}

/// Tells the vault what the disks hold; a digest marks the set complete.
fn record(client: &ferry_store::VaultClient, job: &str, s: &ferry_seed::SetSummary, digest: Option<&str>) -> Result<SiteImportJob> {
    Ok(client.record_disks(job, &set_report(s, digest))?)
}

/// What the vault is told of a disk set prepared so far (import and export jobs alike); a
/// manifest digest marks it complete.
pub(crate) fn set_report(s: &ferry_seed::SetSummary, digest: Option<&str>) -> DiskSetReport {
    let disks = s
        .disks
        .iter()
        .map(|d| DiskRecord {
            id: d.number,
            state: "prepared".into(),
            bytes: d.bytes,
            objects: d.objects,
            copied: 0,
            skipped: 0,
            errors: vec![],
        })
        .collect();
    DiskSetReport { set_id: hex::encode(s.set_id), manifest_digest: digest.map(str::to_string), disks, complete: digest.is_some() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disks() {
        let d = parse_disk("/mnt/d1:20MiB").unwrap();
        assert_eq!((d.path, d.capacity), (PathBuf::from("/mnt/d1"), Some(20 << 20)));
        let d = parse_disk("/mnt/odd:name").unwrap();
        assert_eq!((d.path, d.capacity), (PathBuf::from("/mnt/odd:name"), None));
        assert!(parse_disk("/mnt/d1:0").is_err());
    }
}
