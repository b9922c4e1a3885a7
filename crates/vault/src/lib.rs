//! The Ferry vault: keeps the repositories of many machines in one object store and serves them
//! over HTTPS (protocol: docs/protocol.md; design: docs/design/vault.md).
//!
//! The vault never holds a passphrase. Each machine's repository is an ordinary Ferry repository
//! under `machines/<id>/` of the vault's store; the agent reaches it through
//! `ferry_store::VaultStore`. What the vault can check without a key, it checks before storing:
//! packs, index files and recovery points must hash to their names.

#![forbid(unsafe_code)]

pub mod alerts;
mod api;
pub(crate) mod containers;
mod dashboard;
pub mod db;
pub(crate) mod devices;
pub mod error;
pub(crate) mod exports;
pub(crate) mod imports;
pub(crate) mod ingest;
pub(crate) mod metrics;
pub(crate) mod private;
pub(crate) mod retention;
pub(crate) mod samples;
pub(crate) mod secrets;
pub(crate) mod tls;
pub(crate) mod verify;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use ferry_store::Store;

pub use api::Limits;
pub use db::{Db, Principal};
pub use error::{Error, Result};
// Named by the public `Db` methods whose modules are crate-internal.
pub use imports::Refusal;
pub use samples::Sample;

/// The protocol version this vault speaks (the `/v1/` of every path).
pub const PROTOCOL_VERSION: u32 = 1;

/// What a user may do (see docs/protocol.md for the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Owner,
    Contributor,
    BackupOperator,
    Reader,
    ImportOperator,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "owner" => Role::Owner,
            "contributor" => Role::Contributor,
            "backup-operator" => Role::BackupOperator,
            "reader" => Role::Reader,
            "import-operator" => Role::ImportOperator,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Contributor => "contributor",
            Role::BackupOperator => "backup-operator",
            Role::Reader => "reader",
            Role::ImportOperator => "import-operator",
        }
    }
}

/// How `ferry vault serve` was asked to run.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub data: PathBuf,
    pub listen: SocketAddr,
    /// Object store location; `None` = the folder `DATA/store`.
    pub store: Option<String>,
    /// Certificate and key (PEM); `None` = a self-signed one in `DATA`, made on first start.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The control plane: `sqlite:PATH` or `postgres://USER:PASSWORD@HOST:PORT/DATABASE`;
    /// `None` = SQLite in `DATA/vault.db`. Several servers may share one PostgreSQL database
    /// (and then the same store and certificate): see docs/design/vault.md.
    pub database: Option<String>,
    /// The locations import jobs may put their objects in, each job in `LOCATION/JOB` (the first
    /// is the default); empty = the folder `DATA/imports`. See [`containers`].
    pub import_containers: Vec<String>,
    /// The vault's secret (escrow and receipt keys); `None` = `DATA/vault-secret.key`, made on
    /// the first start. Every server of one vault uses the same (see [`secrets`]).
    pub secret_file: Option<PathBuf>,
    /// The vault site's address, to which disks are shipped (printed by diskprep).
    pub shipping_address: Option<String>,
    /// Where alerts are sent, and the storage threshold.
    pub alerts: alerts::Sinks,
    /// Time limits, connection caps and request body limits.
    pub limits: Limits,
}

/// What [`serve`] tells its caller once it listens.
#[derive(Debug)]
pub struct Ready<'a> {
    /// The address actually bound.
    pub addr: SocketAddr,
    /// SHA-256 of the certificate served (hex).
    pub fingerprint: &'a str,
    /// The owner token's file, when this start created the owner (the first start of the
    /// first server on a database); `None` when the owner existed already.
    pub new_owner: Option<&'a Path>,
    /// The database, for the log: `SQLite PATH` or `PostgreSQL USER@HOST:PORT/DB` (never the
    /// password).
    pub database: &'a str,
    /// The import locations (credentials in a query string not shown), the default first.
    pub import_containers: Vec<&'a str>,
    /// Files and folders whose permissions were loosened and are now owner-only (one line each).
    pub repaired: &'a [String],
}

/// Files the vault keeps in its data folder.
pub const CERT_FILE: &str = "vault-cert.pem";
pub const KEY_FILE: &str = "vault-key.pem";
pub const OWNER_TOKEN_FILE: &str = "owner.token";
pub const DB_FILE: &str = "vault.db";

/// Shared by every request.
pub(crate) struct State {
    pub db: Db,
    pub store: Arc<dyn Store>,
    /// Machines whose retention runs now on this server (one run per machine at a time).
    pub retaining: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Escrow and receipt keys (`DATA/vault-secret.key`).
    pub secrets: secrets::Secrets,
    pub import_containers: containers::ImportLocations,
    pub shipping_address: Option<String>,
    /// Import jobs being ingested on this server.
    pub ingesting: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The packs of export jobs being written (api::exports), so the object calls of a
    /// terabyte export do not read its pack list once per call.
    pub export_packs: exports::PackCache,
    /// Where alerts go, and the storage threshold.
    pub alerts: alerts::Sinks,
    pub limits: Limits,
}

impl State {
    /// Enforces `machine`'s policy now, recorded as a `retention` job (and a `gc` job when
    /// garbage was collected). `Ok(None)` when a run for the machine is already going on here.
    pub(crate) async fn enforce_retention(self: &Arc<Self>, machine: &str) -> Result<Option<retention::Report>> {
        struct Running<'a>(&'a State, String);
        impl Drop for Running<'_> {
            fn drop(&mut self) {
                self.0.retaining.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&self.1);
            }
        }
        if !self.retaining.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(machine.to_string()) {
            return Ok(None);
        }
        let _running = Running(self, machine.to_string());
        let keep = self.db.policy(machine).await?.map(|p| p.keep).unwrap_or_default();
        let now = chrono::Utc::now().timestamp();
        let job = self.db.create_job(machine, "retention", now).await?;
        let repo = retention::MachineRepo::new(self.store.clone(), machine);
        let timing = retention::Timing::from_env();
        let outcome = tokio::task::spawn_blocking(move || repo.enforce(&keep, timing, now)).await.context("retention task")?;
        let end = chrono::Utc::now().timestamp();
        let update = |state: &str, bytes: u64, files: u64, errors: Vec<String>| ferry_api::JobUpdate {
            state: state.into(),
            bytes,
            files,
            errors,
            total_bytes: None,
            recovery_point: None,
            tags: vec![],
        };
        match outcome {
            Ok(r) => {
                let notes = r.gc_skipped.iter().map(|why| format!("garbage collection skipped: {why}")).collect();
                let removed = (r.soft_deleted.len() + r.purged.len()) as u64;
                self.db.update_job(job, machine, &update("completed", 0, removed, notes), end).await?;
                if r.gc_skipped.is_none() {
                    let gc = self.db.create_job(machine, "gc", now).await?;
                    self.db.update_job(gc, machine, &update("completed", r.bytes_deleted, r.packs_deleted, vec![]), end).await?;
                }
                Ok(Some(r))
            }
            Err(e) => {
                self.db.update_job(job, machine, &update("failed", 0, 0, vec![format!("{e:#}")]), end).await?;
                Err(anyhow::Error::from(e).context(format!("retention of machine {machine}")).into())
            }
        }
    }
}

/// How often the vault enforces every machine's retention (`FERRY_VAULT_RETENTION_EVERY_S`).
fn retention_every() -> std::time::Duration {
    std::time::Duration::from_secs(std::env::var("FERRY_VAULT_RETENTION_EVERY_S").ok().and_then(|v| v.parse().ok()).unwrap_or(3600))
}

/// Sets the vault up in `opts.data` (database, store, certificate, owner token: each made if
/// missing) and serves until the process ends. `on_ready` is called once it listens.
///
/// Several servers may serve one vault side by side: the same PostgreSQL database, the same
/// object store and the same certificate. The first of them to start on an empty database makes
/// the owner and writes `owner.token` into its own data folder; the others find the owner and
/// write no token. Repository writers are coordinated by the locks in the store, as with one
/// server.
pub async fn serve(opts: ServeOptions, on_ready: impl FnOnce(Ready<'_>)) -> error::Result<()> {
    let store_location = match &opts.store {
        Some(s) => s.clone(),
        None => opts.data.join("store").to_string_lossy().into_owned(),
    };
    // Before the first file is made: the data folder and all the vault writes are its own.
    let repaired = private::secure(&opts.data, &store_location).context("make the vault's files private")?;
    let import_containers = containers::ImportLocations::new(&opts.import_containers, &opts.data, &store_location)?;
    let db = match &opts.database {
        Some(location) => Db::open(location).await?,
        None => Db::open_file(&opts.data.join(DB_FILE)).await?,
    };
    let store = tokio::task::spawn_blocking(move || ferry_store::open(&store_location)).await?.context("open the vault's object store")?;
    let (cert_path, key_path) = if let Some((c, k)) = &opts.tls {
        (c.clone(), k.clone())
    } else {
        let (c, k) = (opts.data.join(CERT_FILE), opts.data.join(KEY_FILE));
        if !c.exists() || !k.exists() {
            let mut names = vec!["localhost".to_string(), opts.listen.ip().to_string()];
            if let Ok(h) = std::env::var("HOSTNAME") {
                names.push(h);
            }
            names.dedup();
            tls::make_self_signed(&c, &k, names)?;
        }
        (c, k)
    };
    let fingerprint = ferry_store::cert_file_fingerprint(&cert_path)?;
    let secret_file = opts.secret_file.clone().unwrap_or_else(|| opts.data.join(secrets::SECRET_FILE));
    let secrets = secrets::Secrets::for_vault(&secret_file, &db).await?;
    let mut new_owner = None;
    if let Some(token) = db.create_owner_if_none().await? {
        let path = opts.data.join(OWNER_TOKEN_FILE);
        ferry_store::write_private(&path, format!("{token}\n").as_bytes())?;
        new_owner = Some(path);
    }
    let config = tls::server_config(&cert_path, &key_path)?;
    let listener = tokio::net::TcpListener::bind(opts.listen).await.with_context(|| format!("listen on {}", opts.listen))?;
    let addr = listener.local_addr()?;
    on_ready(Ready {
        addr,
        fingerprint: &fingerprint,
        new_owner: new_owner.as_deref(),
        database: db.describe(),
        import_containers: import_containers.all().iter().map(|l| containers::shown(l)).collect(),
        repaired: &repaired,
    });
    let state = Arc::new(State {
        db,
        store,
        retaining: Default::default(),
        secrets,
        import_containers,
        shipping_address: opts.shipping_address.clone(),
        ingesting: Default::default(),
        export_packs: Default::default(),
        alerts: opts.alerts.clone(),
        limits: opts.limits.clone(),
    });
    // Retention of every machine with a policy, on a timer.
    let retainer = state.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(retention_every()).await;
            let machines = match retainer.db.machines().await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!("retention: list machines: {e:#}");
                    continue;
                }
            };
            for (id, name, _) in machines {
                if let Err(e) = retainer.enforce_retention(&id).await {
                    tracing::warn!("retention of {name}: {e:#}");
                }
            }
        }
    });
    // What each machine stores and protects, for the dashboard and /metrics.
    let sampler = state.clone();
    tokio::spawn(async move {
        loop {
            if let Err(e) = samples::sample_all(&sampler.db, &sampler.store, false).await {
                tracing::warn!("sampling storage sizes: {e:#}");
            }
            tokio::time::sleep(std::time::Duration::from_secs(samples::sample_every_s().clamp(1, 60) as u64)).await;
        }
    });
    // Alerts, each sent once, when the vault has somewhere to send them.
    if state.alerts.any() {
        let sender = state.clone();
        let vault = opts.listen.to_string();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(alerts::alert_every_s())).await;
                if let Err(e) = alerts::send_new(&sender.db, &sender.alerts, &vault).await {
                    tracing::warn!("sending alerts: {e:#}");
                }
            }
        });
    }
    // Jobs whose agent went silent are marked failed even when nobody lists them.
    let reaper = state.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            let now = chrono::Utc::now().timestamp();
            if let Err(e) = reaper.db.reap_jobs(now, api::job_timeout_s()).await {
                tracing::warn!("marking stale jobs failed: {e:#}");
            }
            if let Err(e) = reaper.db.expire_import_jobs(now).await {
                tracing::warn!("expiring import jobs: {e:#}");
            }
        }
    });
    Ok(api::run(listener, config, state).await?)
}
