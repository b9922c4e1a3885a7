//! `ferry export run`: at the vault's site, writes an export job's recovery point onto disks in
//! the seed disks' format (glue over `ferry_seed::prepare`, as `ferry diskprep` is; design in
//! docs/design/export-jobs.md). The objects come from the vault's export-job calls, which serve
//! only the objects the job carries; nothing here needs the machine's passphrase.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use ferry_api::{export_label_job, ExportFailure, ExportJob};
use ferry_seed::{DiskKey, DiskTarget, PrepareOptions, PrepareOutcome, SourceObject, MAX_DISKS};
use ferry_store::VaultClient;

use super::diskprep::{byte_bar, confirm_wipe, parse_disk, set_report};
use crate::cli::{ExportRunArgs, Global};
use crate::common;
use crate::Outcome;

pub fn run(g: &Global, a: &ExportRunArgs) -> Result<Outcome> {
    let name = &a.export_job;
    let disks = a.disks.iter().map(|d| parse_disk(d)).collect::<Result<Vec<_>>>()?;
    if disks.len() > MAX_DISKS as usize {
        bail!("{} disks given: an export job has at most {MAX_DISKS} disks; use larger disks", disks.len());
    }
    let client = common::seeding_client(g)?;
    let job = client.start_export(name)?;
    let written = write(g, a, &client, &job, disks);
    if let Err(e) = &written {
        // Recorded on the job (the dashboard shows it); a rerun resumes. Best effort: the
        // error itself is what this command reports.
        let _ = client.fail_export(name, &ExportFailure { error: format!("{e:#}") });
    }
    written
}

/// Writes the disks of `job`, which is being prepared, and records them on it.
fn write(g: &Global, a: &ExportRunArgs, client: &VaultClient, job: &ExportJob, disks: Vec<DiskTarget>) -> Result<Outcome> {
    let name = &a.export_job;
    let key = DiskKey::from_hex(&client.export_disk_key(name)?).context("the vault sent a malformed disk key")?;
    let source = ferry_store::open_export(client.clone(), name)?;
    let objects: Vec<SourceObject> =
        source.list("")?.into_iter().map(|o| SourceObject { phase: ferry_api::commit_phase(&o.key), key: o.key, size: o.size }).collect();
    let total: u64 = objects.iter().map(|o| o.size).sum();
    eprintln!(
        "export job {name}: recovery point {} of machine {}: {} objects, {} to write",
        &job.recovery_point[..8.min(job.recovery_point.len())],
        job.machine_name,
        objects.len(),
        common::size(total)
    );
    let mut confirm = confirm_wipe(a.yes);
    let bar = byte_bar(g, total);
    let mut progress = |done: u64, _total: u64| {
        if let Some(b) = &bar {
            b.set_position(done);
        }
    };
    let label = export_label_job(name);
    let opts = PrepareOptions { job: label.clone(), key: &key, disks, confirm_wipe: &mut confirm, progress: &mut progress };
    let outcome = ferry_seed::prepare(source.as_ref(), &objects, opts);
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let summary = match outcome? {
        PrepareOutcome::Complete(summary) => summary,
        PrepareOutcome::NeedMoreDisks { objects: left, bytes, summary } => {
            client.record_export_disks(name, &set_report(&summary, None))?;
            bail!(
                "export job {name}: the disks are full, {} in {left} objects still to write: run `ferry export run` again with the \
                 same disks and another --disk (what is on the disks is kept)",
                common::size(bytes)
            );
        }
    };
    // The manifest as the disks hold it, read back through the reader the restore uses.
    let paths: Vec<PathBuf> = summary.disks.iter().map(|d| d.path.clone()).collect();
    let set = ferry_seed::DiskSet::open(&paths, &label, &key)?;
    let digest = hex::encode(set.manifest().digest());
    let j = client.record_export_disks(name, &set_report(&summary, Some(&digest)))?;
    if g.json {
        common::print_json(&serde_json::json!({
            "export_job": name,
            "set_id": hex::encode(summary.set_id),
            "disks": summary.disks.iter().map(|d| serde_json::json!({"id": d.number, "path": d.path, "objects": d.objects, "bytes": d.bytes})).collect::<Vec<_>>(),
            "state": j.state,
        }))?;
    } else {
        println!("export job {name}: {} disks written and verified", summary.disks.len());
        for d in &summary.disks {
            let n = summary.disks.len();
            println!("  disk {} of {n}: {} ({} objects, {})", d.number, d.path.display(), d.objects, common::size(d.bytes));
        }
        match &j.return_address {
            Some(addr) => println!("ship the disks to: {addr}"),
            None => println!("ship the disks to the machine's owner"),
        }
        println!("then record the shipment: ferry export-job ship {name} --carrier CARRIER --tracking NUMBER");
    }
    Ok(Outcome::Success)
}
