//! `ferry vault ...`: the vault's own commands (serve, credentials, users, machines, policies,
//! retention), part of the command line of [`super`].

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum VaultCommand {
    /// Serve a vault (HTTPS). With --data alone: SQLite and a local folder store inside DIR, a
    /// self-signed certificate made on first start, an owner token written to DIR/owner.token
    Serve(ServeArgs),
    /// Make a vault credentials file for registering machines (one use, valid 10 days)
    Credentials(CredentialsArgs),
    /// List the machines registered with the vault
    Machines,
    /// List jobs (backups, restores, ...), newest first; --machine NAME for one machine's
    Jobs,
    /// Manage the vault's users
    #[command(subcommand)]
    User(UserCommand),
    /// Manage the machines registered with the vault
    #[command(subcommand)]
    Machine(MachineCommand),
    /// Set or show a machine's policy: what to back up, when, what to keep
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Enforce a machine's retention now (the vault also does so every hour): recovery points
    /// the policy does not keep are soft-deleted, those soft-deleted for 14 days are purged,
    /// and packs no remaining recovery point uses are deleted
    Retention {
        /// The machine's name
        machine_name: String,
    },
    /// List a machine's soft-deleted recovery points (restorable until they expire)
    Deleted {
        /// The machine's name
        machine_name: String,
    },
    /// Put a soft-deleted recovery point back (it is then exempt from retention for 14 days)
    Undelete {
        /// The machine's name
        machine_name: String,
        /// The recovery point's ID, or a unique prefix of it (see `ferry vault deleted`)
        recovery_point: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Set (replace) a machine's policy
    Set(PolicySetArgs),
    /// Show a machine's policy
    Show {
        /// The machine's name
        machine_name: String,
    },
}

#[derive(Debug, Args)]
pub struct PolicySetArgs {
    /// The machine's name
    pub machine_name: String,
    /// An absolute path to back up (repeat)
    #[arg(long = "path", required = true, value_name = "PATH")]
    pub paths: Vec<String>,
    /// Exclude pattern (repeat)
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// A time of day (HH:MM, the machine's local time) to back up at (repeat for several a day)
    #[arg(long = "at", required = true, value_name = "HH:MM")]
    pub times: Vec<String>,
    /// Only on these days (mon,tue,...; default every day)
    #[arg(long, value_delimiter = ',', value_name = "DAYS")]
    pub days: Vec<String>,
    /// Recovery points the vault keeps: the newest of each of the last N days (0: this rule keeps none)
    #[arg(long, default_value_t = 0)]
    pub keep_daily: u32,
    /// Recovery points the vault keeps: the newest of each of the last N weeks (0: this rule keeps none)
    #[arg(long, default_value_t = 0)]
    pub keep_weekly: u32,
    /// Recovery points the vault keeps: the newest of each of the last N months (0: this rule keeps none)
    #[arg(long, default_value_t = 0)]
    pub keep_monthly: u32,
    /// Recovery points the vault keeps: the newest of each of the last N years (0: this rule keeps none)
    #[arg(long, default_value_t = 0)]
    pub keep_yearly: u32,
    /// Transfer limit to and from the vault during work hours, in KiB/s (0 = none)
    #[arg(long, default_value_t = 0, value_name = "KIBPS")]
    pub work_limit: u32,
    /// Transfer limit outside work hours, in KiB/s (0 = none)
    #[arg(long, default_value_t = 0, value_name = "KIBPS")]
    pub other_limit: u32,
    /// Work hours (the machine's local time)
    #[arg(long, default_value = "08:00-18:00", value_name = "HH:MM-HH:MM")]
    pub work_hours: String,
    /// Work days
    #[arg(long, value_delimiter = ',', default_value = "mon,tue,wed,thu,fri", value_name = "DAYS")]
    pub work_days: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user; prints the user's token (shown once)
    Add(UserAddArgs),
    /// List the users: role, and when each token was made, last used, expires or was revoked
    List,
    /// Revoke a user's token: it and the user's dashboard sessions stop working at once (the
    /// user stays listed; remove it and add it again to give it a new token)
    Revoke {
        /// The user's name
        name: String,
    },
    /// Remove a user: its token, password and sessions
    Remove {
        /// The user's name
        name: String,
    },
    /// Clear a user's dashboard lockout (too many failed password logins) and forget its failed
    /// logins (owners)
    Unlock {
        /// The user's name
        name: String,
    },
    /// Set a user's dashboard password (owners for anyone, a user for itself); read from
    /// --password-file FILE, FERRY_VAULT_USER_PASSWORD or the terminal; at least 16 characters
    Password {
        /// The user's name
        name: String,
        /// Read the password from the first line of FILE
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct UserAddArgs {
    /// The new user's name: 1 to 64 letters, digits, '-', '_', '.' or '@'
    pub name: String,
    /// What the user may do (see docs/security.md)
    #[arg(long, value_parser = ["owner", "contributor", "backup-operator", "reader", "import-operator"])]
    pub role: String,
    /// The token stops working after this long, e.g. 8h, 30d, 1y (default: when revoked)
    #[arg(long, value_name = "DURATION")]
    pub expires: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum MachineCommand {
    /// Revoke a machine's token: its requests are refused until it registers again (new
    /// credentials, same name); its repository and recovery points stay
    Revoke {
        /// The machine's name
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The vault's folder (database, store, certificate, owner token)
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Address to listen on
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8450")]
    pub listen: std::net::SocketAddr,
    /// Object store for the machines' repositories [default: DIR/store]
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// Control-plane database: sqlite:PATH, or postgres://USER:PASSWORD@HOST:PORT/DATABASE to
    /// run several servers on one vault (same database, --store and certificate)
    /// [default: SQLite in DIR/vault.db]
    #[arg(long, value_name = "URL", env = "FERRY_VAULT_DATABASE", hide_env_values = true)]
    pub database: Option<String>,
    /// Certificate (PEM) to serve instead of the self-signed one
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM)
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Where import jobs (offline seeding) may put their objects: a folder, az://CONTAINER[/PREFIX]
    /// or s3://BUCKET[/PREFIX]; repeatable. Each job goes to LOCATION/JOBNAME under the first, or
    /// under the one its --container names. Default: the folder DATA/imports. A location that
    /// overlaps the vault's store or holds its data folder is refused
    #[arg(long = "import-container", value_name = "URL")]
    pub import_container: Vec<String>,
    /// The vault site's shipping address for seed disks (diskprep prints it)
    #[arg(long, value_name = "TEXT")]
    pub shipping_address: Option<String>,
    /// Send each new alert (failed or missed backups, import job deadlines, expiring
    /// credentials, storage over --storage-alert) as a JSON POST to this URL
    #[arg(long, value_name = "URL")]
    pub alert_webhook: Option<String>,
    /// Send each new alert by e-mail through this SMTP server: smtp://HOST:PORT (a local relay,
    /// no TLS), smtp://USER:PASSWORD@HOST:587?tls=required (STARTTLS) or
    /// smtps://USER:PASSWORD@HOST:465
    #[arg(long, value_name = "URL", requires = "alert_email")]
    pub smtp: Option<String>,
    /// The alert e-mails' recipient
    #[arg(long, value_name = "ADDRESS", requires = "smtp")]
    pub alert_email: Option<String>,
    /// The alert e-mails' sender [default: ferry-vault@HOSTNAME]
    #[arg(long, value_name = "ADDRESS", requires = "smtp")]
    pub alert_from: Option<String>,
    /// Alert when all machines together store more than this, e.g. 40TB
    #[arg(long, value_name = "SIZE")]
    pub storage_alert: Option<String>,
    /// The vault's secret (disk-key escrow, receipt signing) [default: DIR/vault-secret.key, made
    /// on the first start]. Every server of one vault needs the same: copy the first server's
    #[arg(long, value_name = "FILE", env = "FERRY_VAULT_SECRET_FILE")]
    pub secret_file: Option<PathBuf>,
    /// Open connections the vault keeps in all; more are closed at once
    #[arg(long, value_name = "N", env = "FERRY_VAULT_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// Open connections the vault keeps from one client address (machines behind one NAT
    /// share it); more are closed at once
    #[arg(long, value_name = "N", env = "FERRY_VAULT_MAX_CONNECTIONS_PER_IP", default_value_t = 512)]
    pub max_connections_per_ip: usize,
}

#[derive(Debug, Args)]
pub struct CredentialsArgs {
    /// Where to write the credentials file (it holds a secret: mode 0600)
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}
