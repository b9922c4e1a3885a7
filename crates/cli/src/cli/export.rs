//! `ferry export-job ...`, `ferry export run` and the `--from-disk` options of `restore` and
//! `mount`: a recovery point travelling to its machine on disks (docs/design/export-jobs.md),
//! part of the command line of [`super`].

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum ExportJobCommand {
    /// Create an export job: a recovery point of a machine, written onto disks at the vault's
    /// site and shipped to the machine (owners, contributors, import operators)
    Create {
        /// The export job's name
        name: String,
        /// The machine whose recovery point travels
        #[arg(long, value_name = "M")]
        machine: String,
        /// The recovery point: ID, unique prefix (8 hex digits or more) or `latest`
        #[arg(long, value_name = "RP")]
        recovery_point: String,
        /// A path to restore from the disks (repeat for several) [default: all]; the disks
        /// carry the whole recovery point (the vault cannot see paths)
        #[arg(long = "path", value_name = "P")]
        paths: Vec<String>,
        /// Where the disks go
        #[arg(long, value_name = "A")]
        return_address: Option<String>,
    },
    /// List export jobs (a machine sees its own)
    List,
    /// Show an export job: state, recovery point, disks, shipping, deadline
    Show {
        /// The export job
        name: String,
    },
    /// Record the shipping details of the job's disks
    Ship {
        /// The export job whose disks are shipped
        name: String,
        /// The carrier, e.g. DHL
        #[arg(long, value_name = "C")]
        carrier: String,
        /// The carrier's tracking number
        #[arg(long, value_name = "T")]
        tracking: String,
    },
    /// Write the job's disk-unlock file (the disk key: a secret), for those who may restore the
    /// machine; asked for once the disks travel, it records them delivered
    Unlock {
        /// The export job
        name: String,
        /// The file to write (mode 0600)
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Cancel an export job (before its disks are shipped)
    Cancel {
        /// The export job to cancel
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// At the vault's site: write an export job's recovery point onto disks (resumable: run it
    /// again with the same disks)
    #[command(
        after_help = "Examples:\n  ferry export run --export-job restore-web --disk /media/d1 --disk /media/d2\n  ferry export run --export-job restore-web --disk /media/d1:2TB    # use at most 2 TB of it"
    )]
    Run(ExportRunArgs),
}

#[derive(Debug, Args)]
pub struct ExportRunArgs {
    /// The export job
    #[arg(long, value_name = "NAME")]
    pub export_job: String,
    /// A disk: a mounted folder, with an optional cap on what is written there (e.g. 500GiB);
    /// repeat for several (at most 10), in order
    #[arg(long = "disk", value_name = "PATH[:CAPACITY]", required = true)]
    pub disks: Vec<String>,
    /// Wipe disks that hold other data without asking
    #[arg(long)]
    pub yes: bool,
}

/// `--from-disk`: read the repository from an export job's disks, with no network.
#[derive(Debug, Args, Default)]
pub struct FromDisks {
    /// A disk of an export job (repeat for every disk of the set): restore with no network
    #[arg(long = "from-disk", value_name = "PATH", requires = "unlock_file")]
    pub from_disk: Vec<PathBuf>,
    /// The export job's disk-unlock file (`ferry export-job unlock NAME --out FILE`)
    #[arg(long, value_name = "FILE", requires = "from_disk")]
    pub unlock_file: Option<PathBuf>,
}
