//! `ferry import-job ...`: an import job's life as its owner sees it (list, show, ship, cancel,
//! cleanup), and the pieces the other seeding commands share (which vault client, the staging
//! location's `seed.json`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ferry_api::{ImportJob, Shipment, SiteImportJob};
use ferry_store::VaultClient;
use serde::{Deserialize, Serialize};

use crate::cli::{Global, ImportJobCommand};
use crate::common::{self, text, Registration};
use crate::Outcome;

/// The vault as the seeding commands reach it: with `--token-file`, as that user; otherwise as
/// this registered machine.
pub fn client(g: &Global) -> Result<VaultClient> {
    if g.token_file.is_some() {
        return common::admin_client(g);
    }
    match Registration::load_for(g)? {
        Some(r) => Ok(VaultClient::new(&r.vault, &r.cert_sha256, &r.token)?),
        None => {
            bail!("this machine is not registered with a vault: run `ferry register`, or pass --token-file (and --vault) as a vault user")
        }
    }
}

/// The staging location's record of its import job (`DIR/seed.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedFile {
    pub job: String,
    /// The machine's ID and name, and its vault.
    pub machine: String,
    pub machine_name: String,
    pub vault: String,
    pub created: String,
    /// Set once cleanup verified the ingest receipt against the staging location (so a cleanup
    /// killed while emptying it is finished by a rerun), and once it emptied it.
    #[serde(default)]
    pub receipt_verified: bool,
    #[serde(default)]
    pub cleaned: bool,
}

impl SeedFile {
    pub const NAME: &'static str = "seed.json";

    pub fn load(staging: &Path) -> Result<Option<SeedFile>> {
        common::read_json(
            &staging.join(Self::NAME),
            "it names the staging location's import job: restore it from the job (`ferry import-job show`)",
        )
    }

    pub fn save(&self, staging: &Path) -> Result<()> {
        let path = staging.join(Self::NAME);
        let tmp = staging.join(".seed.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?).with_context(|| format!("write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("write {}", path.display()))
    }
}

/// The prefixes of a repository that a seed carries (not locks, not mark records).
pub const SEED_PREFIXES: [&str; 5] = ["keys/", "data/", "index/", "packlists/", "recovery-points/"];

pub fn run(g: &Global, c: &ImportJobCommand) -> Result<Outcome> {
    let client = client(g)?;
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
    disks_and_outcome(&mut s, j, "disk  ");
    s
}

/// The lines of a job's disks (or devices: `unit`, padded to 6), its seeded recovery point and
/// its errors, for `show` and `device status`.
pub fn disks_and_outcome(s: &mut String, j: &ImportJob, unit: &str) {
    for d in &j.disks {
        s.push_str(&format!("  {unit}{}:   {}, {} objects, {}", d.id, d.state, d.objects, common::size(d.bytes)));
        if d.copied + d.skipped > 0 {
            s.push_str(&format!(", {} copied, {} there already", d.copied, d.skipped));
        }
        s.push('\n');
        for e in &d.errors {
            s.push_str(&format!("      error: {e}\n"));
        }
    }
    if let Some(rp) = &j.recovery_point {
        s.push_str(&format!("  seeded recovery point: {rp}\n"));
    }
    for e in &j.errors {
        s.push_str(&format!("  error: {e}\n"));
    }
}

/// Cleanup: the receipt is fetched and verified (the vault's signature, this machine, and the
/// digest of the staging location's own objects) before anything is removed.
fn cleanup(g: &Global, client: &VaultClient, name: &str, staging: Option<&Path>) -> Result<Outcome> {
    let receipt = client.receipt(name)?;
    let key = client.health()?.receipt_key.context("this vault does not sign ingest receipts (an older version?)")?;
    receipt.verify(&key)?;
    if receipt.job != name {
        bail!("the vault answered with the receipt of import job {}, not {name}", receipt.job);
    }
    if let Some(dir) = staging {
        let seed = SeedFile::load(dir)?.with_context(|| format!("{} is not a staging location (no seed.json)", dir.display()))?;
        if seed.job != name {
            bail!("{} is the staging location of import job {}, not {name}", dir.display(), seed.job);
        }
        if seed.machine != receipt.machine {
            bail!("the receipt is for machine {}, this staging location for {}", receipt.machine, seed.machine);
        }
        if !seed.receipt_verified {
            let digest = staging_digest(dir)?;
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
        emptied = empty_staging(dir)?;
        let mut seed = SeedFile::load(dir)?.context("seed.json vanished")?;
        seed.cleaned = true;
        seed.save(dir)?;
        let seed_cache = common::cache_dir(g).join(format!("seed-{name}"));
        if seed_cache.exists() {
            std::fs::remove_dir_all(&seed_cache).with_context(|| format!("remove the seed cache {}", seed_cache.display()))?;
        }
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

/// Every object a seed carries from `staging`: (key, size), sorted by key.
pub fn staging_objects(store: &dyn ferry_store::Store) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    if let Some(size) = store.head("config")? {
        out.push(("config".to_string(), size));
    }
    for p in SEED_PREFIXES {
        out.extend(store.list(p)?.into_iter().map(|o| (o.key, o.size)));
    }
    out.sort();
    Ok(out)
}

/// The seed manifest digest of what `staging` holds (every object read and hashed).
pub fn staging_digest(staging: &Path) -> Result<String> {
    let store = ferry_store::open(&staging.to_string_lossy())?;
    let mut entries = Vec::new();
    for (key, _) in staging_objects(store.as_ref())? {
        let bytes = store.get(&key)?;
        entries.push((key, *blake3::hash(&bytes).as_bytes()));
    }
    Ok(hex::encode(ferry_api::seed_digest(entries.iter().map(|(k, h)| (k.as_str(), h)))))
}

/// Removes the repository's objects from a staging location (not `seed.json`); returns how many
/// files went.
fn empty_staging(dir: &Path) -> Result<u64> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let entry = entry?;
        let p: PathBuf = entry.path();
        if entry.file_name() == SeedFile::NAME {
            continue;
        }
        if entry.file_type()?.is_dir() {
            n += count_files(&p);
            std::fs::remove_dir_all(&p).with_context(|| format!("remove {}", p.display()))?;
        } else {
            std::fs::remove_file(&p).with_context(|| format!("remove {}", p.display()))?;
            n += 1;
        }
    }
    Ok(n)
}

fn count_files(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| if e.file_type().is_ok_and(|t| t.is_dir()) { count_files(&e.path()) } else { 1 })
        .sum()
}
