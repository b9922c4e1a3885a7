mod agent;
mod backup;
mod check;
mod device;
mod diskprep;
mod export;
mod export_job;
mod forget;
mod import;
mod import_job;
mod init;
mod key;
mod ls;
mod manual;
mod mount;
mod plan;
mod points;
mod restore;
mod staging;
mod vault;

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::Outcome;

pub fn run(cli: &Cli) -> Result<Outcome> {
    let g = &cli.global;
    match &cli.command {
        Command::Init(a) => init::run(g, a),
        Command::Backup(a) => backup::run(g, a),
        Command::RecoveryPoints(a) => points::list(g, a),
        Command::Ls(a) => ls::ls(g, a),
        Command::Diff(a) => ls::diff(g, a),
        Command::Restore(a) => restore::run(g, a),
        Command::Mount(a) => mount::run(g, a),
        Command::Check(a) => check::run(g, a),
        Command::Forget(a) => forget::forget(g, a),
        Command::Prune(a) => forget::prune(g, a),
        Command::Key(k) => key::run(g, k),
        Command::Vault(v) => vault::run(g, v),
        Command::Register(a) => vault::register(g, a),
        Command::Agent(crate::cli::AgentCommand::Run(a)) => agent::run(g, a),
        Command::ImportJob(c) => import_job::run(g, c),
        Command::Diskprep(a) => diskprep::run(g, a),
        Command::Import(crate::cli::ImportCommand::Run(a)) => import::run(g, a),
        Command::Plan(a) => plan::run(g, a),
        Command::Device(c) => device::run(g, c),
        Command::ExportJob(c) => export_job::run(g, c),
        Command::Export(crate::cli::ExportCommand::Run(a)) => export::run(g, a),
        Command::Completions { shell } => Ok(manual::completions(*shell)),
        Command::Man { out } => manual::man(out.as_deref()),
    }
}
