//! `ferry import-job ...`: an import job's life as its owner sees it (list, show, ship, cancel,
//! cleanup).

use std::path::Path;

use anyhow::{bail, Context, Result};
use ferry_api::{ImportJob, Shipment, SiteImportJob};
use ferry_seed::SeedFile;
use ferry_store::VaultClient;

use crate::cli::{Global, ImportJobCommand};
use crate::common::{self, text};
use crate::Outcome;

pub fn run(g: &Global, c: &ImportJobCommand) -> Result<Outcome> {
    let client = common::seeding_client(g)?;
    match c {
        ImportJobCommand::List => {
            let jobs = client.import_jobs()?;
            if g.json {
                common::print_answer(&jobs)?;
            } else {
                for j in &jobs {
                    println!("{}", one_line(j));
                }
            }
        }
        ImportJobCommand::Show { name, receipt } => {
            if *receipt {
                common::print_answer(&client.receipt(name)?)?;
            } else {
                let j = client.import_job(name)?;
                if g.json {
                    common::print_answer(&j)?;
                } else {
                    print!("{}", details(&j));
                }
            }
        }
        ImportJobCommand::Ship { name, carrier, tracking, return_address } => {
            let shipment = Shipment { carrier: carrier.clone(), tracking: tracking.clone(), return_address: return_address.clone() };
            let j = client.ship_import_job(name, &shipment)?;
            if g.json {
                common::print_answer(&j)?;
            } else {
                println!("import job {name}: shipping with {carrier}, tracking number {tracking}");
            }
        }
        ImportJobCommand::Cancel { name } => {
            let j = client.cancel_import_job(name)?;
            if g.json {
                common::print_answer(&j)?;
            } else {
                println!("import job {name} cancelled: its disks will not be imported");
            }
        }
        ImportJobCommand::Cleanup { name, staging } => return cleanup(g, &client, name, staging.as_deref()),
    }
    Ok(Outcome::Success)
}

fn one_line(j: &ImportJob) -> String {
    let mut s = format!("{}  {}  {}  machine {}", j.name, j.state.as_str(), j.created, j.machine_name);
    match (&j.tracking, &j.deadline) {
        (Some(t), _) => s.push_str(&format!("  tracking {} ({})", t, text(&j.carrier))),
        (None, Some(d)) => s.push_str(&format!("  ship by {d}")),
        (None, None) => {}
    }
    s
}

fn details(site: &SiteImportJob) -> String {
    let j = &site.job;
    let mut s = format!("import job {}\n  state:      {}\n  machine:    {}\n", j.name, j.state.as_str(), j.machine_name);
    s.push_str(&format!("  created:    {}\n  container:  {}\n", j.created, common::redact(&j.container)));
    if let Some(d) = &j.deadline {
        s.push_str(&format!("  ship by:    {d} (the job expires without a tracking number by then)\n"));
    }
    if let Some(t) = &j.tracking {
        s.push_str(&format!("  shipping:   {} tracking {}\n", text(&j.carrier), t));
    }
    if let Some(a) = &j.return_address {
        s.push_str(&format!("  return to:  {a}\n"));
    }
    if let Some(a) = &site.shipping_address {
        s.push_str(&format!("  ship to:    {a}\n"));
    }
    common::disks_and_outcome(&mut s, j, "disk  ");
    s
}

/// Cleanup: the receipt is fetched and verified (the vault's signature, this machine, and the
/// digest of the staging location's own objects) before anything is removed.
/// `dir` holds nothing (an earlier cleanup emptied it, seed.json included), or is gone.
fn emptied_already(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut entries| entries.next().is_none())
}

fn cleanup(g: &Global, client: &VaultClient, name: &str, staging: Option<&Path>) -> Result<Outcome> {
    let receipt = client.receipt(name)?;
    let key = client.health()?.receipt_key.context("this vault does not sign ingest receipts (an older version?)")?;
    receipt.verify(&key)?;
    if receipt.job != name {
        bail!("the vault answered with the receipt of import job {}, not {name}", receipt.job);
    }
    // A staging location emptied by an earlier cleanup (seed.json is removed last) has nothing
    // left to do.
    let staging = staging.filter(|dir| !emptied_already(dir));
    if let Some(dir) = staging {
        let seed = SeedFile::load(dir)?.with_context(|| format!("{} is not a staging location (no seed.json)", dir.display()))?;
        if seed.job != name {
            bail!("{} is the staging location of import job {}, not {name}", dir.display(), seed.job);
        }
        if seed.machine != receipt.machine {
            bail!("the receipt is for machine {}, this staging location for {}", receipt.machine, seed.machine);
        }
        if !seed.receipt_verified {
            let store = ferry_store::open(&dir.to_string_lossy())?;
            let digest = hex::encode(ferry_seed::staging_digest(store.as_ref())?);
            if digest != receipt.manifest_digest {
                bail!(
                    "the ingest receipt of import job {name} covers other objects than {} holds (digest {} vs {digest}): \
                     nothing removed; compare with `ferry import-job show {name}`",
                    dir.display(),
                    receipt.manifest_digest
                );
            }
            SeedFile { receipt_verified: true, ..seed }.save(dir)?;
        }
    }
    let removed = client.clean_up_import_job(name)?.container_objects_removed;
    let mut emptied = 0u64;
    if let Some(dir) = staging {
        emptied = ferry_seed::empty_staging(dir)?;
        let seed_cache = common::cache_dir(g).join(format!("seed-{name}"));
        if seed_cache.exists() {
            std::fs::remove_dir_all(&seed_cache).with_context(|| format!("remove the seed cache {}", seed_cache.display()))?;
        }
        // Last: the record that lets a cleanup stopped half-way go on.
        let seed = dir.join(SeedFile::NAME);
        std::fs::remove_file(&seed).with_context(|| format!("remove {}", seed.display()))?;
        emptied += 1;
    }
    if g.json {
        common::print_json(
            &serde_json::json!({"job": name, "receipt": receipt, "container_objects_removed": removed, "staging_files_removed": emptied}),
        )?;
    } else {
        println!(
            "import job {name}: receipt verified ({} objects, recovery point {}); {} objects removed from the container{}",
            receipt.objects,
            receipt.recovery_points.join(", "),
            removed,
            if staging.is_some() { format!(", {emptied} files from the staging location") } else { String::new() }
        );
    }
    Ok(Outcome::Success)
}
