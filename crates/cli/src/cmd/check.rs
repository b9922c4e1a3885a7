use anyhow::{bail, Result};
use ferry_repo::check::{self, CheckOptions};

use crate::cli::{CheckArgs, Global};
use crate::common;
use crate::Outcome;

pub fn run(g: &Global, a: &CheckArgs) -> Result<Outcome> {
    let percent = match (&a.read_data_subset, a.read_data) {
        (_, true) => 100.0,
        (Some(s), _) => {
            let v: f64 =
                s.trim_end_matches('%').parse().map_err(|_| anyhow::anyhow!("--read-data-subset takes a percentage like 10 or 2.5%"))?;
            if !(0.0..=100.0).contains(&v) {
                bail!("--read-data-subset must be between 0 and 100");
            }
            v
        }
        _ => 0.0,
    };
    let repo = common::open(g)?;
    let r = check::run(&repo, &CheckOptions { read_data_percent: percent })?;
    if g.json {
        common::print_json(&r)?;
    } else {
        eprintln!(
            "checked {} index file(s), {} pack(s) ({} read fully), {} recovery point(s), {} tree(s)",
            r.index_files, r.packs, r.packs_read, r.recovery_points, r.trees
        );
        if r.unindexed_packs > 0 {
            // Advice that fits the repository: in a vault, its garbage collection removes them.
            let remedy = if common::in_vault(g) {
                "the vault's retention runs remove them (hourly, or `ferry vault retention NAME`)"
            } else {
                "`ferry prune` removes them"
            };
            eprintln!("note: {} pack(s) are in no index (left by an interrupted backup); {remedy}", r.unindexed_packs);
        }
        for d in &r.damage {
            println!("damaged: {}: {}", d.object, d.problem);
            for f in &d.affected {
                println!("  affects {f}");
            }
        }
        if r.is_ok() {
            eprintln!("no errors found");
        } else {
            eprintln!("{} damaged object(s): files not listed above can still be restored", r.damage.len());
        }
    }
    Ok(if r.is_ok() { Outcome::Success } else { Outcome::Failed })
}
