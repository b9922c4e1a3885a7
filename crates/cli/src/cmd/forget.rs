use anyhow::Result;
use ferry_repo::forget::{self, Policy};
use ferry_repo::prune::{self, PruneOptions};

use crate::cli::{ForgetArgs, Global, PruneArgs};
use crate::common;
use crate::Outcome;

pub fn forget(g: &Global, a: &ForgetArgs) -> Result<Outcome> {
    let repo = common::open(g)?;
    let policy = Policy { last: a.keep_last, daily: a.keep_daily, weekly: a.keep_weekly, monthly: a.keep_monthly, yearly: a.keep_yearly };
    let mut remove = Vec::new();
    for spec in &a.recovery_points {
        remove.push(repo.resolve(spec)?.0);
    }
    let mut decisions = Vec::new();
    if !policy.is_empty() {
        decisions = forget::apply(&policy, &repo.recovery_points()?);
        remove.extend(decisions.iter().filter(|d| !d.keep).map(|d| d.id));
    } else if remove.is_empty() {
        anyhow::bail!("nothing to forget: give recovery point IDs or a --keep-* policy");
    }
    remove.sort();
    remove.dedup();
    if !a.dry_run {
        forget::delete(&repo, &remove)?;
    }
    if g.json {
        common::print_json(&serde_json::json!({
            "removed": remove.iter().map(ferry_format::RecoveryPointId::to_hex).collect::<Vec<_>>(),
            "decisions": decisions,
            "dry_run": a.dry_run,
        }))?;
    } else {
        for d in decisions.iter().filter(|d| d.keep) {
            println!("keep   {} {} ({})", d.id.short(), d.time, d.reasons.join(", "));
        }
        for id in &remove {
            println!("{} {}", if a.dry_run { "would remove" } else { "remove" }, id.short());
        }
        eprintln!(
            "{} recovery point(s) {}",
            remove.len(),
            if a.dry_run { "would be forgotten" } else { "forgotten; run `ferry prune` to reclaim space" }
        );
    }
    if a.prune && !a.dry_run {
        let r = prune::run(&repo, &PruneOptions::default())?;
        eprintln!("prune: deleted {} pack(s), {}", r.packs_deleted, common::size(r.bytes_deleted));
    }
    Ok(Outcome::Success)
}

pub fn prune(g: &Global, a: &PruneArgs) -> Result<Outcome> {
    let repo = common::open(g)?;
    let r = prune::run(&repo, &PruneOptions { dry_run: a.dry_run })?;
    if g.json {
        common::print_json(&r)?;
    } else {
        eprintln!(
            "{} pack(s): {} unused, {} repacked, {} not indexed; deleted {} ({}); {} deferred while backups run; {} put back",
            r.packs_total,
            r.packs_unused,
            r.packs_repacked,
            r.packs_unindexed,
            r.packs_deleted,
            common::size(r.bytes_deleted),
            r.packs_deferred,
            r.packs_resurrected
        );
        if r.mark_deferred {
            eprintln!("a backup is running: unused data will be marked by the next prune after it finishes");
        }
    }
    Ok(Outcome::Success)
}
