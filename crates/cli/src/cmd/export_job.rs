//! `ferry export-job ...`: an export job's life as the vault's users see it (create, list,
//! show, ship, unlock, cancel); the disks are written by `ferry export run` (cmd/export.rs).

use std::path::Path;

use anyhow::{Context, Result};
use ferry_api::{ExportJob, NewExportJob, Shipment};

use crate::cli::{ExportJobCommand, Global};
use crate::common::{self, text};
use crate::Outcome;

pub fn run(g: &Global, c: &ExportJobCommand) -> Result<Outcome> {
    let client = common::seeding_client(g)?;
    let j = match c {
        ExportJobCommand::Create { name, machine, recovery_point, paths, return_address } => {
            let new = NewExportJob {
                name: name.clone(),
                machine: machine.clone(),
                recovery_point: recovery_point.clone(),
                paths: paths.clone(),
                return_address: return_address.clone(),
            };
            let j = client.create_export_job(&new)?;
            if !g.json {
                println!("export job {name} created: recovery point {} of machine {}", j.recovery_point, j.machine_name);
                println!(
                    "at the vault's site, write its disks: ferry export run --export-job {name} --disk PATH[:CAPACITY]... (by {})",
                    j.deadline.as_deref().unwrap_or("the deadline")
                );
            }
            j
        }
        ExportJobCommand::List => {
            let jobs = client.export_jobs()?;
            if g.json {
                common::print_answer(&jobs)?;
            } else {
                for j in &jobs {
                    println!("{}", one_line(j));
                }
            }
            return Ok(Outcome::Success);
        }
        ExportJobCommand::Show { name } => {
            let j = client.export_job(name)?;
            if !g.json {
                print!("{}", details(&j));
            }
            j
        }
        ExportJobCommand::Ship { name, carrier, tracking } => {
            let shipment = Shipment { carrier: carrier.clone(), tracking: tracking.clone(), return_address: None };
            let j = client.ship_export_job(name, &shipment)?;
            if !g.json {
                println!("export job {name}: shipped with {carrier}, tracking number {tracking}");
                println!("the machine's owner gets the disk-unlock file with: ferry export-job unlock {name} --out FILE");
            }
            j
        }
        ExportJobCommand::Unlock { name, out } => return unlock(g, &client, name, out),
        ExportJobCommand::Cancel { name } => {
            let j = client.cancel_export_job(name)?;
            if !g.json {
                println!("export job {name} cancelled: its disks must not be shipped; wipe them");
            }
            j
        }
    };
    if g.json {
        common::print_answer(&j)?;
    }
    Ok(Outcome::Success)
}

fn unlock(g: &Global, client: &ferry_store::VaultClient, name: &str, out: &Path) -> Result<Outcome> {
    let u = client.export_unlock(name)?;
    crate::cmd::device::write_secret(out, &serde_json::to_vec_pretty(&u).context("encode the disk-unlock file")?)?;
    if g.json {
        common::print_json(&serde_json::json!({"export_job": name, "unlock_file": out, "recovery_point": u.recovery_point}))?;
    } else {
        println!("disk-unlock file of export job {name} written to {} (a secret: keep it apart from the disks)", out.display());
        println!(
            "restore with no network: ferry restore {} --from-disk DISK1 --from-disk DISK2 ... --unlock-file {} --target DIR",
            &u.recovery_point[..u.recovery_point.len().min(8)],
            out.display()
        );
    }
    Ok(Outcome::Success)
}

fn one_line(j: &ExportJob) -> String {
    let mut s = format!("{}  {}  {}  machine {}  recovery point {}", j.name, j.state.as_str(), j.created, j.machine_name, short(j));
    match (&j.tracking, &j.deadline) {
        (Some(t), _) => s.push_str(&format!("  tracking {} ({})", t, text(&j.carrier))),
        (None, Some(d)) => s.push_str(&format!("  ship by {d}")),
        (None, None) => {}
    }
    s
}

fn short(j: &ExportJob) -> &str {
    &j.recovery_point[..j.recovery_point.len().min(8)]
}

fn details(j: &ExportJob) -> String {
    let mut s = format!("export job {}\n  state:      {}\n  machine:    {}\n", j.name, j.state.as_str(), j.machine_name);
    s.push_str(&format!("  recovery point: {}\n  created:    {}\n", j.recovery_point, j.created));
    if !j.paths.is_empty() {
        s.push_str(&format!("  paths:      {} (the disks carry the whole recovery point)\n", j.paths.join(", ")));
    }
    if let Some(d) = &j.deadline {
        s.push_str(&format!("  ship by:    {d}\n"));
    }
    if let Some(t) = &j.tracking {
        s.push_str(&format!("  shipping:   {} tracking {}\n", text(&j.carrier), t));
    }
    if let Some(a) = &j.return_address {
        s.push_str(&format!("  ship to:    {a}\n"));
    }
    for d in &j.disks {
        s.push_str(&format!("  disk {}:     {}, {} objects, {}\n", d.id, d.state, d.objects, common::size(d.bytes)));
    }
    for e in &j.errors {
        s.push_str(&format!("  error: {e}\n"));
    }
    s
}
