//! The command line (see `shared/CLI.md`, the contract users' scripts rely on).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod export;
mod vault;
pub use export::*;
pub use vault::*;

#[derive(Debug, Parser)]
#[command(name = "ferry", version, about = "Ferry: deduplicating, compressing, client-side encrypted backups", max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Repository: a local folder, or file://, az://CONTAINER[/PREFIX], s3://BUCKET[/PREFIX]
    #[arg(long, global = true, env = "FERRY_REPO", value_name = "LOCATION")]
    pub repo: Option<String>,
    /// Read the passphrase from the first line of FILE
    #[arg(long, global = true, env = "FERRY_PASSWORD_FILE", value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Where the agent keeps its registration
    #[arg(long, global = true, env = "FERRY_CONFIG_DIR", value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
    /// Local cache (index and files cache)
    #[arg(long, global = true, env = "FERRY_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Print one JSON document on stdout instead of human output
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output on stderr (repeat for more)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// A running vault, e.g. https://127.0.0.1:8450 (administration, --machine); on a
    /// registered machine, another server of its vault to use instead of the registered one
    #[arg(long, global = true, env = "FERRY_VAULT", value_name = "URL")]
    pub vault: Option<String>,
    /// File holding your vault user token (the owner's is DIR/owner.token on the vault)
    #[arg(long, global = true, env = "FERRY_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The vault's certificate (DIR/vault-cert.pem for a self-signed vault): it is pinned
    #[arg(long, global = true, env = "FERRY_VAULT_CERT", value_name = "FILE")]
    pub vault_cert: Option<PathBuf>,
    /// Limit uploads to the vault to KIBPS KiB/s (0: none) [default: this machine's policy]
    #[arg(long, global = true, env = "FERRY_LIMIT_UPLOAD", value_name = "KIBPS")]
    pub limit_upload: Option<u64>,
    /// Limit downloads from the vault to KIBPS KiB/s (0: none) [default: this machine's policy]
    #[arg(long, global = true, env = "FERRY_LIMIT_DOWNLOAD", value_name = "KIBPS")]
    pub limit_download: Option<u64>,
    /// Another machine of the vault (restore, mount, recovery-points, ls): needs --token-file with
    /// read rights, and that machine's passphrase
    #[arg(long, global = true, value_name = "NAME")]
    pub machine: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a repository at --repo
    #[command(
        after_help = "Examples:\n  ferry init --repo /srv/backups                 # asks for the new passphrase\n  FERRY_PASSWORD_FILE=pw ferry init --repo s3://my-bucket/ferry"
    )]
    Init(InitArgs),
    /// Back up paths into a new recovery point
    #[command(
        after_help = "Examples:\n  ferry backup ~/Documents --repo /srv/backups\n  ferry backup /home /etc --exclude '*.tmp' --tag nightly      # registered machine: to its vault\n  ferry backup /data --offline --staging /mnt/staging --import-job seed-1   # first backup, for disks"
    )]
    Backup(BackupArgs),
    /// List recovery points
    #[command(name = "recovery-points", visible_alias = "snapshots")]
    RecoveryPoints(RecoveryPointsArgs),
    /// List the files of a recovery point
    Ls(LsArgs),
    /// Show what changed between two recovery points
    Diff(DiffArgs),
    /// Restore a recovery point
    #[command(
        after_help = "Examples:\n  ferry restore latest --target /tmp/r\n  ferry restore 3fa2 --target / --include /home/ann/thesis   # one folder, in place\n  ferry restore latest --machine laptop --target /tmp/r --vault https://vault:8450 --token-file my.token\n  ferry restore 3fa2 --from-disk /media/d1 --from-disk /media/d2 --unlock-file web.unlock --target /tmp/r   # no network"
    )]
    Restore(RestoreArgs),
    /// Browse the recovery points as a read-only file system (FUSE) until unmounted
    #[command(
        after_help = "Examples:\n  ferry mount /mnt/ferry                  # Ctrl-C, or `fusermount -u /mnt/ferry`, unmounts\n  cp -a /mnt/ferry/latest/home/ann/thesis /tmp/   # in another shell\n  ferry mount /mnt/ferry --recovery-point latest --cache-size 1GiB\n  ferry mount /mnt/ferry --machine laptop --vault https://vault:8450 --vault-cert vault-cert.pem --token-file my.token"
    )]
    Mount(MountArgs),
    /// Verify the repository (structure; with --read-data every byte)
    #[command(after_help = "Examples:\n  ferry check\n  ferry check --read-data                # every pack read and verified")]
    Check(CheckArgs),
    /// Remove recovery points by policy or by ID (prune reclaims the space)
    #[command(
        after_help = "Examples:\n  ferry forget --keep-daily 7 --keep-weekly 4 --keep-monthly 12\n  ferry forget 3fa2 && ferry prune"
    )]
    Forget(ForgetArgs),
    /// Reclaim the space of data no recovery point uses
    Prune(PruneArgs),
    /// Manage the repository's passphrases
    #[command(subcommand)]
    Key(KeyCommand),
    /// Run a vault, or administer a running one
    #[command(subcommand)]
    Vault(VaultCommand),
    /// Register this machine with a vault and create its repository there
    #[command(after_help = "Examples:\n  ferry register --vault-credentials creds.json --name laptop   # asks for the new passphrase")]
    Register(RegisterArgs),
    /// The agent: runs this machine's policy from its vault
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Offline seeding: write a staging location onto disks to ship to the vault's site
    #[command(
        after_help = "Examples:\n  ferry diskprep --staging /mnt/staging --disk /media/d1 --disk /media/d2\n  ferry diskprep --staging /mnt/staging --disk /media/d1:2TB    # use at most 2 TB of it"
    )]
    Diskprep(DiskprepArgs),
    /// Offline seeding: the vault's import jobs (list, show, ship, cancel, cleanup)
    #[command(name = "import-job", subcommand)]
    ImportJob(ImportJobCommand),
    /// Offline seeding, at the vault's site: import a job's disks into its container and ingest
    #[command(subcommand)]
    Import(ImportCommand),
    /// Estimate the first backup (or with --restore a restore) over the network versus on
    /// shipped disks, and recommend one
    #[command(
        after_help = "Examples:\n  ferry plan --source /srv --uplink 100Mbit\n  ferry plan --restore --size 20TB --uplink 100Mbit    # an export job, or the network?"
    )]
    Plan(PlanArgs),
    /// Seed devices: order, prepare, track, import and erase the vault's devices
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Export jobs: a recovery point that travels to its machine on disks (create, list, show,
    /// ship, unlock, cancel)
    #[command(
        name = "export-job",
        subcommand,
        after_help = "Examples:\n  ferry export-job create restore-web --machine web --recovery-point latest\n  ferry export-job unlock restore-web --out restore-web.unlock"
    )]
    ExportJob(ExportJobCommand),
    /// Export jobs, at the vault's site: write a job's disks
    #[command(subcommand)]
    Export(ExportCommand),
    /// Print a shell's completion script for ferry, e.g. `ferry completions bash >
    /// /etc/bash_completion.d/ferry`
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
    /// Write ferry's manual pages (ferry.1, ferry-backup.1, ...) into a folder, or print
    /// ferry.1
    Man {
        /// The folder to write every page into, e.g. /usr/local/share/man/man1 [default: print ferry.1]
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Order a seed device for a machine (owners, contributors); prints the device job's name
    Order {
        /// The machine the device is for
        #[arg(long, value_name = "M")]
        machine: String,
        /// disk (7.2 TB) or box (80 TB)
        #[arg(long = "type", value_name = "disk|box")]
        device_type: String,
        /// What one device holds instead of its type's capacity, e.g. 2TB
        #[arg(long, value_name = "SIZE")]
        capacity: Option<String>,
        /// Where the import puts the objects [default: the first of the vault's import locations]
        #[arg(long, value_name = "URL")]
        container: Option<String>,
    },
    /// Initialise a device (a mounted disk or folder) for the job and write the unlock
    /// credential, which goes to the machine's owner apart from the device
    Prepare {
        /// The device job, e.g. device-1a2b3c4d
        job: String,
        /// The device: an empty mounted disk or folder (run again with another for a second device)
        #[arg(long, value_name = "PATH")]
        path: PathBuf,
        /// Where to write the unlock credential (a secret: mode 0600)
        #[arg(long, value_name = "FILE")]
        unlock_out: PathBuf,
    },
    /// Show device jobs (or one), or record where a device is (--set)
    Status {
        /// The device job [default: list every device job]
        job: Option<String>,
        /// Record a logistics state: shipped-to-customer, delivered, in-use, returning
        #[arg(long = "set", value_name = "STATE", requires = "job")]
        set: Option<String>,
        /// The carrier taking the devices (with --set shipped-to-customer or returning)
        #[arg(long, value_name = "C", requires = "set")]
        carrier: Option<String>,
        /// The carrier's tracking number
        #[arg(long, value_name = "T", requires = "set")]
        tracking: Option<String>,
    },
    /// At the vault's site: check the devices' seal, copy them into the job's container and
    /// ingest (import operators)
    Import {
        /// The device job whose devices these are
        job: String,
        /// A device of the job; give every device of the set
        #[arg(long = "path", value_name = "PATH", required = true)]
        paths: Vec<PathBuf>,
        /// Where to keep the per-device copy and error logs [default: the current folder]
        #[arg(long, value_name = "DIR")]
        log_dir: Option<PathBuf>,
    },
    /// After ingest: overwrite, verify and remove everything on the devices, recorded in the
    /// vault's audit log
    Erase {
        /// The device job whose devices are erased
        job: String,
        /// A device to erase (repeat for each), once its seed is ingested
        #[arg(long = "path", value_name = "PATH", required = true)]
        paths: Vec<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The data to back up (its size is summed and its compressibility sampled)
    #[arg(long, value_name = "PATH", conflicts_with = "size", required_unless_present_any = ["size", "restore"])]
    pub source: Option<PathBuf>,
    /// The data's size instead of --source (taken as incompressible), e.g. 4TB
    #[arg(long, value_name = "SIZE")]
    pub size: Option<String>,
    /// The uplink to the vault, e.g. 100Mbit or 2MB/s
    #[arg(long, value_name = "RATE")]
    pub uplink: String,
    /// Size of one disk [default: 10TB, the most an import job uses of a disk]
    #[arg(long, value_name = "SIZE")]
    pub disk_size: Option<String>,
    /// Speed of local copies (staging, diskprep, import) instead of measuring it, e.g. 150MB/s
    #[arg(long, value_name = "RATE")]
    pub disk_speed: Option<String>,
    /// Folder to measure the disk speed in (64 MiB written and read back) [default: the temp folder]
    #[arg(long, value_name = "DIR")]
    pub measure_in: Option<PathBuf>,
    /// Days the disks travel (to the vault's site, or back with --restore)
    #[arg(long, value_name = "DAYS", default_value_t = 3.0)]
    pub shipping_days: f64,
    /// Plan a restore of --size (the stored size) instead: the network, or an export job
    /// whose disks travel to the machine
    #[arg(long, conflicts_with = "source")]
    pub restore: bool,
}

#[derive(Debug, Args)]
pub struct DiskprepArgs {
    /// The staging location the offline backup wrote (`ferry backup --offline --staging DIR`)
    #[arg(long, value_name = "DIR")]
    pub staging: PathBuf,
    /// The import job [default: the staging location's job]
    #[arg(long, value_name = "NAME")]
    pub import_job: Option<String>,
    /// A disk: a mounted folder, with an optional cap on what is written there (e.g. 500GiB);
    /// repeat for several, in order
    #[arg(long = "disk", value_name = "PATH[:CAPACITY]", required = true)]
    pub disks: Vec<String>,
    /// Wipe disks that hold other data without asking
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Subcommand)]
pub enum ImportJobCommand {
    /// List import jobs (a machine sees its own)
    List,
    /// Show an import job: state, disks, shipping, deadline
    Show {
        /// The import job
        name: String,
        /// Print the signed ingest receipt instead (after ingest)
        #[arg(long)]
        receipt: bool,
    },
    /// Record the shipping details of the job's disks
    Ship {
        /// The import job whose disks are shipped
        name: String,
        /// The carrier, e.g. DHL
        #[arg(long, value_name = "C")]
        carrier: String,
        /// The carrier's tracking number (unique among the vault's jobs)
        #[arg(long, value_name = "T")]
        tracking: String,
        /// Where the vault sends the disks back after the import [default: none]
        #[arg(long, value_name = "A")]
        return_address: Option<String>,
    },
    /// Cancel an import job (before its disks are imported)
    Cancel {
        /// The import job to cancel
        name: String,
    },
    /// After ingest: remove the container copy (vault side) and empty the staging location
    /// (--staging, this side); refused until the ingest receipt verifies
    Cleanup {
        /// The import job
        name: String,
        /// The staging location to empty after the receipt is verified against it
        #[arg(long, value_name = "DIR")]
        staging: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Check a job's disks, decrypt and verify every object, copy them into the job's storage
    /// container, then have the vault ingest the seed (import operators)
    Run(ImportRunArgs),
}

#[derive(Debug, Args)]
pub struct ImportRunArgs {
    /// The import job whose disks these are
    #[arg(long, value_name = "NAME")]
    pub import_job: String,
    /// A disk of the job (a mounted folder); give every disk of the set
    #[arg(long = "disk", value_name = "PATH", required = true)]
    pub disks: Vec<PathBuf>,
    /// Where to keep the per-disk copy and error logs [default: the current folder]
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Fetch the policy and run its backups at their times, reporting each as a job (a daemon;
    /// see contrib/ferry-agent.service)
    Run(AgentRunArgs),
}

#[derive(Debug, Args)]
pub struct AgentRunArgs {
    /// Run one backup of the policy now and exit
    #[arg(long)]
    pub once: bool,
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// The vault credentials file from `ferry vault credentials`
    #[arg(long, value_name = "FILE")]
    pub vault_credentials: PathBuf,
    /// This machine's name in the vault [default: the host name]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// zstd level for new data (0 = no compression) [default: 3]
    #[arg(long, value_name = "LEVEL", value_parser = clap::value_parser!(i32).range(0..=22))]
    pub compression: Option<i32>,
    /// zstd level for bundles of small files [default: the lower of --compression and 1]
    #[arg(long, value_name = "LEVEL", value_parser = clap::value_parser!(i32).range(0..=22))]
    pub bundle_compression: Option<i32>,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Files and folders to back up
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Leave out files and folders matching GLOB (a name, or a path with '/')
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Read exclude patterns from FILE, one per line
    #[arg(long, value_name = "FILE")]
    pub exclude_file: Vec<PathBuf>,
    /// Do not cross into other file systems
    #[arg(long, short = 'x')]
    pub one_file_system: bool,
    /// Tag the recovery point
    #[arg(long, value_name = "TAG")]
    pub tag: Vec<String>,
    /// Host name to record instead of this machine's
    #[arg(long)]
    pub host: Option<String>,
    /// Seconds between checkpoints (work so far made durable, so an interrupted backup resumes)
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub checkpoint_every: u64,
    /// Offline seeding: write this first backup to --staging instead of the vault, for
    /// `ferry diskprep` to put onto disks; creates the import job --import-job in the vault
    #[arg(long, requires_all = ["staging", "import_job"])]
    pub offline: bool,
    /// The staging location (a local folder; needs the backup's compressed size)
    #[arg(long, value_name = "DIR", requires = "offline")]
    pub staging: Option<PathBuf>,
    /// The import job's name (unique in the vault)
    #[arg(long, value_name = "NAME", requires = "offline")]
    pub import_job: Option<String>,
    /// Which of the vault's import locations its site imports the disks to (the job goes to
    /// LOCATION/NAME) [default: the first]
    #[arg(long, value_name = "URL", requires = "offline")]
    pub container: Option<String>,
    /// Seed device: write this first backup straight onto the vault's device (a mounted disk
    /// or folder prepared by `ferry device prepare`); repeat for a seed spanning devices
    #[arg(long = "device", value_name = "PATH", requires = "unlock_file", conflicts_with = "offline")]
    pub device: Vec<PathBuf>,
    /// The device's unlock credential, from the vault's owner
    #[arg(long, value_name = "FILE", requires = "device")]
    pub unlock_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RecoveryPointsArgs {
    /// Only recovery points with this tag
    #[arg(long)]
    pub tag: Vec<String>,
    /// Only recovery points of this host
    #[arg(long)]
    pub host: Option<String>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Recovery point: ID, unique prefix or `latest`
    pub recovery_point: String,
    /// Only this folder (absolute path as backed up)
    pub path: Option<PathBuf>,
    /// Show size, mode and time
    #[arg(long, short = 'l')]
    pub long: bool,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The older recovery point (ID, unique prefix or latest)
    pub from: String,
    /// The newer recovery point (ID, unique prefix or latest)
    pub to: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OverwriteArg {
    Never,
    IfChanged,
    Always,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Recovery point: ID, unique prefix or `latest`
    pub recovery_point: String,
    /// Folder to restore into (each path is restored under it by its full path)
    #[arg(long, short = 't', value_name = "DIR")]
    pub target: PathBuf,
    /// Restore only paths matching GLOB (a name, or a path with '/'), with everything below them
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// What to do with files that already exist
    #[arg(long, value_enum, default_value = "if-changed")]
    pub overwrite: OverwriteArg,
    /// Which files get holes for their all-zero 4 KiB blocks: always (every file, also zeros the
    /// source had written), never (every byte written, files fully allocated: preallocated
    /// databases, swap files), auto (only files that had holes when backed up)
    #[arg(long, value_enum, default_value = "always")]
    pub sparse: SparseArg,
    #[command(flatten)]
    pub disks: FromDisks,
}

#[derive(Debug, Args)]
pub struct MountArgs {
    /// An empty folder to mount at (it must exist); MOUNTPOINT/recovery-points/<UTC time>_<ID>/
    /// holds each recovery point's paths, MOUNTPOINT/latest links to the newest
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: PathBuf,
    /// Show only this recovery point (ID, unique prefix or `latest`); repeat for more
    /// [default: all of them, and new ones as they are made]
    #[arg(long = "recovery-point", value_name = "RP")]
    pub recovery_point: Vec<String>,
    /// Memory for decoded chunks, shared by all open files, e.g. 256MiB or 2GiB
    #[arg(long, value_name = "SIZE", default_value = "256MiB")]
    pub cache_size: String,
    #[command(flatten)]
    pub disks: FromDisks,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SparseArg {
    Always,
    Never,
    Auto,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Read and verify every byte of every pack
    #[arg(long, conflicts_with = "read_data_subset")]
    pub read_data: bool,
    /// Read and verify a random PERCENT of the packs
    #[arg(long, value_name = "PERCENT")]
    pub read_data_subset: Option<String>,
}

#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// Recovery points to forget (IDs or prefixes), besides any policy
    pub recovery_points: Vec<String>,
    /// Keep the newest N recovery points
    #[arg(long, value_name = "N")]
    pub keep_last: Option<usize>,
    /// Keep the newest recovery point of each of the last N days
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<usize>,
    /// Keep the newest recovery point of each of the last N weeks
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<usize>,
    /// Keep the newest recovery point of each of the last N months
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<usize>,
    /// Keep the newest recovery point of each of the last N years
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<usize>,
    /// Show what would be forgotten, change nothing
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Run prune afterwards
    #[arg(long)]
    pub prune: bool,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Show what would be removed, change nothing
    #[arg(long, short = 'n')]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Add a passphrase (from --new-password-file, FERRY_NEW_PASSWORD, or a prompt)
    Add(NewPassword),
    /// List the key slots
    List,
    /// Remove a key slot (not the one in use)
    Remove {
        /// Key ID or unique prefix
        id: String,
    },
    /// Change the passphrase in use
    Passwd(NewPassword),
}

#[derive(Debug, Args)]
pub struct NewPassword {
    /// Read the new passphrase from the first line of FILE
    #[arg(long, env = "FERRY_NEW_PASSWORD_FILE", value_name = "FILE")]
    pub new_password_file: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every command, argument and option says what it is for in `--help`.
    #[test]
    fn every_argument_is_described() {
        fn visit(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id != "help" && id != "version" && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(format!("{path} {} (the command)", sub.get_name()));
                }
                visit(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        visit(&super::Cli::command(), "ferry", &mut missing);
        assert!(missing.is_empty(), "without a description:\n{}", missing.join("\n"));
    }
}
