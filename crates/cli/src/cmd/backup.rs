use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use ferry_repo::backup::{self, BackupOptions};
use ferry_repo::Progress;

use crate::cli::{BackupArgs, Global};
use crate::common;
use crate::Outcome;

pub fn run(g: &Global, a: &BackupArgs) -> Result<Outcome> {
    let mut device = None;
    let repo = match (&a.staging, &a.import_job, &a.unlock_file) {
        (Some(staging), Some(job), _) if a.offline => super::staging::open(g, staging, job, a.container.as_deref())?,
        (_, _, Some(unlock)) if !a.device.is_empty() => {
            let Some((repo, d)) = super::device::open_for_backup(g, &a.paths, &a.device, unlock)? else {
                return Ok(Outcome::Success);
            };
            device = Some(d);
            repo
        }
        _ => common::open(g)?,
    };
    let mut opts = BackupOptions::new(a.paths.clone());
    opts.excludes = a.exclude.clone();
    for f in &a.exclude_file {
        let text = std::fs::read_to_string(f).with_context(|| format!("read exclude file {}", f.display()))?;
        opts.excludes.extend(text.lines().map(str::to_string));
    }
    opts.one_file_system = a.one_file_system;
    opts.tags = a.tag.clone();
    opts.host = a.host.clone();
    opts.checkpoint_every = Duration::from_secs(a.checkpoint_every.max(1));
    // Through a vault (no --repo): the vault enforces retention from the pack lists.
    opts.pack_list = g.repo.as_deref().is_none_or(str::is_empty);
    let progress = Arc::new(Progress::default());
    opts.scan = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let display = common::ProgressDisplay::start(progress.clone(), "backup");
    let kind = match (a.offline, device.is_some()) {
        (true, _) => "offline-backup",
        (_, true) => "device-backup",
        _ => "backup",
    };
    let mut job = common::Job::start(g, kind);
    // Only an online backup sends anything to the vault.
    let _pacing = (kind == "backup").then(|| crate::pacing::Pacing::for_command(g, g.limit_upload, "backup"));
    // What crosses the network to the vault (none for --repo, offline and device backups).
    let via_vault = kind == "backup" && common::in_vault(g);
    let sent_before = ferry_store::bytes_sent();
    let out = backup::run(&repo, &opts, &progress);
    drop(display);
    if let (Some(d), Ok(_)) = (&device, &out) {
        // Locks of earlier runs killed on this device are stale: they must not stop the seal.
        d.remove_stale_locks(&repo)?;
    }
    drop(repo);
    let out = common::fail_job_on_error(&mut job, out)?;
    if let Some(d) = device {
        // Sealed only when the recovery point is written: a failed backup is resumed by running
        // it again onto the same devices.
        let sealed = d.seal(g);
        common::fail_job_on_error(&mut job, sealed)?;
    }
    if let Some(j) = job {
        let state = if out.is_partial() { "completed-with-errors" } else { "completed" };
        let errors = out.errors.iter().map(|e| format!("{}: {}", e.path, e.error)).collect();
        let files = out.summary.files_new + out.summary.files_changed + out.summary.files_unchanged;
        let end = common::BackupEnd {
            bytes_added: out.summary.bytes_added,
            files,
            total_bytes: out.summary.total_bytes,
            recovery_point: &out.recovery_point.to_hex(),
            tags: &a.tag,
        };
        j.finish_backup(state, errors, end);
    }
    for e in &out.errors {
        eprintln!("warning: {}: {}", e.path, e.error);
    }
    let s = &out.summary;
    let sent = via_vault.then(|| ferry_store::bytes_sent() - sent_before);
    if g.json {
        common::print_json(&serde_json::json!({
            "recovery_point": out.recovery_point.to_hex(),
            "files_new": s.files_new,
            "files_changed": s.files_changed,
            "files_unchanged": s.files_unchanged,
            "dirs": s.dirs,
            "bytes_read": s.bytes_read,
            "bytes_added": s.bytes_added,
            "total_bytes": s.total_bytes,
            "duration_s": s.duration_s,
            "bytes_sent": sent,
            "partial": out.is_partial(),
            "errors": out.errors,
        }))?;
    } else {
        eprintln!(
            "files: {} new, {} changed, {} unchanged; {} folders; read {}, added {} to the repository in {}",
            s.files_new,
            s.files_changed,
            s.files_unchanged,
            s.dirs,
            common::size(s.bytes_read),
            common::size(s.bytes_added),
            common::seconds(s.duration_s)
        );
        if let Some(n) = sent {
            eprintln!("sent {} to the vault", common::size(n));
        }
        if out.is_partial() {
            eprintln!("partial recovery point: {} file(s) could not be backed up (listed above)", out.errors.len());
        }
        println!("{}", out.recovery_point.to_hex());
    }
    Ok(if out.is_partial() { Outcome::Partial } else { Outcome::Success })
}
