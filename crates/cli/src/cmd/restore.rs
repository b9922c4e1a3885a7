use std::sync::Arc;

use anyhow::Result;
use ferry_repo::restore::{self, Overwrite, RestoreOptions, Sparse};
use ferry_repo::Progress;

use crate::cli::{Global, OverwriteArg, RestoreArgs, SparseArg};
use crate::common;
use crate::Outcome;

pub fn run(g: &Global, a: &RestoreArgs) -> Result<Outcome> {
    let offline = !a.disks.from_disk.is_empty();
    let repo = crate::from_disk::open(g, &a.disks, None)?;
    let (id, rp) = match repo.resolve(&a.recovery_point) {
        // The disks carry one recovery point: say which.
        Err(ferry_repo::Error::NoRecoveryPoint(_)) if offline => {
            let carried = repo.resolve("latest").map(|(id, _)| id.to_hex()).unwrap_or_default();
            anyhow::bail!("the export disks do not carry recovery point {}: they carry {carried} (give it, or `latest`)", a.recovery_point)
        }
        r => r?,
    };
    let opts = RestoreOptions {
        target: a.target.clone(),
        includes: a.include.clone(),
        overwrite: match a.overwrite {
            OverwriteArg::Never => Overwrite::Never,
            OverwriteArg::IfChanged => Overwrite::IfChanged,
            OverwriteArg::Always => Overwrite::Always,
        },
        sparse: match a.sparse {
            SparseArg::Always => Sparse::Always,
            SparseArg::Never => Sparse::Never,
            SparseArg::Auto => Sparse::Auto,
        },
        threads: std::thread::available_parallelism().map_or(2, std::num::NonZero::get).max(2) + 1,
    };
    let progress = Arc::new(Progress::default());
    let display = common::ProgressDisplay::start(progress.clone(), "restore");
    // From export disks nothing reaches the network: no job, no policy.
    let mut job = if offline { None } else { common::Job::start(g, "restore") };
    let _pacing = (!offline).then(|| crate::pacing::Pacing::for_command(g, g.limit_download, "restore"));
    let out = restore::run(&repo, &rp, &opts, &progress);
    drop(display);
    let out = common::fail_job_on_error(&mut job, out)?;
    if let Some(j) = job {
        let state = if out.errors.is_empty() { "completed" } else { "completed-with-errors" };
        let errors = out.errors.iter().map(|e| format!("{}: {}", e.path, e.error)).collect();
        j.finish(state, out.bytes, out.files, errors);
    }
    for e in &out.errors {
        eprintln!("error: {}: {}", e.path, e.error);
    }
    if g.json {
        common::print_json(&serde_json::json!({"recovery_point": id.to_hex(), "result": out}))?;
    } else {
        eprintln!(
            "restored {} file(s), {} folder(s), {} hard link(s), {} to {}; {} already up to date; {} error(s)",
            out.files,
            out.dirs,
            out.links,
            common::size(out.bytes),
            a.target.display(),
            out.skipped,
            out.errors.len()
        );
    }
    Ok(if out.errors.is_empty() { Outcome::Success } else { Outcome::Partial })
}
