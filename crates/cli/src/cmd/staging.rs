//! `ferry backup --offline`: the staging location of an offline seed.
//!
//! The staging location is an ordinary repository in a local folder holding a copy of the
//! machine's vault repository's `config` and key files, so every object the backup writes there
//! is byte for byte what the vault would have received online (docs/design/offline-seeding.md).
//! The backup uses a cache of its own (`CACHE/seed-JOB`): the machine's normal cache must not
//! learn of packs the vault does not have yet, or an online backup before ingest would
//! deduplicate against them.

use std::path::Path;

use anyhow::{bail, Context, Result};
use ferry_api::NewImportJob;
use ferry_repo::Repository;
use ferry_seed::SeedFile;

use crate::cli::Global;
use crate::common::{self, Registration};

/// Creates (or finds again) the import job, prepares `staging` and opens it as the repository.
pub fn open(g: &Global, staging: &Path, job: &str, container: Option<&str>) -> Result<Repository> {
    if g.repo.as_deref().is_some_and(|r| !r.is_empty()) {
        bail!("--offline backs up a machine registered with a vault: leave out --repo");
    }
    let reg =
        Registration::load_for(g)?.context("offline seeding needs this machine registered with its vault: run `ferry register` first")?;
    let client = ferry_store::VaultClient::new(&reg.vault, &reg.cert_sha256, &reg.token)?;
    std::fs::create_dir_all(staging).with_context(|| format!("create the staging location {}", staging.display()))?;
    match SeedFile::load(staging)? {
        Some(s) if s.job != job => {
            bail!("{} is the staging location of import job {}: use another folder for import job {job}", staging.display(), s.job)
        }
        Some(s) if s.cleaned => bail!("import job {job} was ingested and cleaned up: its staging location is not used again"),
        Some(_) => {}
        None => {
            if std::fs::read_dir(staging)?.next().is_some() {
                bail!("the staging location {} is not empty: give an empty folder (or the one of this import job)", staging.display());
            }
        }
    }
    let new = NewImportJob { name: job.to_string(), container: container.map(str::to_string), machine: None };
    let created = client.create_import_job(&new).with_context(|| format!("create import job {job} in the vault"))?;
    let vault_repo = reg.store()?;
    let local =
        ferry_store::open(&staging.to_string_lossy()).with_context(|| format!("open the staging location {}", staging.display()))?;
    // The machine's repository config and key files, unchanged (they are small).
    let config = vault_repo.get("config").context("read the machine's repository config from the vault")?;
    match local.head("config")? {
        Some(_) if local.get("config")? != config => {
            bail!("the staging location {} holds another repository than this machine's", staging.display())
        }
        Some(_) => {}
        None => {
            for k in vault_repo.list("keys/")? {
                local.put_if_absent(&k.key, vault_repo.get(&k.key)?)?;
            }
            local.put_if_absent("config", config)?;
        }
    }
    if SeedFile::load(staging)?.is_none() {
        SeedFile {
            job: job.to_string(),
            machine: reg.machine.clone(),
            machine_name: reg.name.clone(),
            vault: reg.vault.clone(),
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            receipt_verified: false,
            cleaned: false,
        }
        .save(staging)?;
    }
    if !g.json {
        eprintln!(
            "offline backup to {} for import job {job} (ship its disks by {})",
            staging.display(),
            created.job.deadline.as_deref().unwrap_or("the deadline")
        );
    }
    let pw = common::passphrase(g, "repository passphrase: ")?;
    Ok(Repository::open(local, &pw, &common::cache_dir(g).join(format!("seed-{job}")))?)
}
