//! `ferry device ...` and `ferry backup --device`: seed devices, the Data Box workflow
//! (docs/design/seed-devices.md).
//!
//! At the vault's site: `order` a device job for a machine, `prepare` each device (its header,
//! MAC'ed with the job's device key, binds it to the job and the machine) and hand the unlock
//! credential to the machine's owner apart from the device, track it with `status --set`,
//! `import` it when it is back (seal checked, then the disk import's copy and ingest), `erase`
//! it after the ingest. On the machine: `backup --device PATH --unlock-file FILE` writes the
//! first backup straight onto the device (no staging) and seals it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use ferry_api::{AuditEntry, DeviceErased, DeviceOrderRequest, DeviceStatus, DiskRecord, DiskSetReport, ImportJob, JobState, Unlock};
use ferry_repo::Repository;
use ferry_seed::{CopyPlan, DeviceHeader, DeviceSet, DeviceStore, DiskKey};
use ferry_store::{Store, VaultClient};

use crate::cli::{DeviceCommand, Global};
use crate::common::{self, text, Registration};
use crate::Outcome;

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub fn run(g: &Global, c: &DeviceCommand) -> Result<Outcome> {
    match c {
        DeviceCommand::Order { machine, device_type, capacity, container } => {
            order(g, machine, device_type, capacity.as_deref(), container)
        }
        DeviceCommand::Prepare { job, path, unlock_out } => prepare(g, job, path, unlock_out),
        DeviceCommand::Status { job, set, carrier, tracking } => status(g, job.as_deref(), set.as_deref(), carrier, tracking),
        DeviceCommand::Import { job, paths, log_dir } => import_devices(g, job, paths, log_dir.as_deref()),
        DeviceCommand::Erase { job, paths } => erase(g, job, paths),
    }
}

fn order(g: &Global, machine: &str, device_type: &str, capacity: Option<&str>, container: &Option<String>) -> Result<Outcome> {
    let client = common::admin_client(g).context("ordering a seed device needs a vault user's token (owner or contributor)")?;
    let capacity = match capacity {
        Some(c) => Some(common::parse_size(c).with_context(|| format!("--capacity {c:?}: give a size like 2TB or 500GiB"))?),
        None => None,
    };
    let order = DeviceOrderRequest { machine: machine.into(), device_type: device_type.into(), capacity, container: container.clone() };
    let j = client.order_device(&order)?;
    if g.json {
        common::print_answer(&j)?;
    } else {
        let cap = j.job.device.as_ref().map_or(0, |d| d.capacity);
        eprintln!("ordered a {device_type} device ({}) for machine {machine}; prepare it with `ferry device prepare`", common::size(cap));
        println!("{}", j.device_job);
    }
    Ok(Outcome::Success)
}

/// Writes `bytes` to `path` readable by its owner only, replacing it atomically.
pub(crate) fn write_secret(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let name = path.file_name().with_context(|| format!("{} names no file", path.display()))?.to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    ferry_store::write_private(&tmp, bytes)?;
    std::fs::rename(&tmp, path).with_context(|| format!("write {}", path.display()))
}

fn prepare(g: &Global, job: &str, path: &Path, unlock_out: &Path) -> Result<Outcome> {
    let client = common::admin_client(g).context("preparing a seed device needs a vault user's token")?;
    if !path.is_dir() {
        bail!("device {}: not a folder; mount the device and give its mount point", path.display());
    }
    // A device prepared already for this job keeps its number: only the credential is new.
    let unlock = match ferry_seed::read_device_header(path)? {
        Some(h) if h.job == job => {
            let u = client.device_unlock(job)?;
            eprintln!("device {} is device {} of job {job} already; a new unlock credential was issued", path.display(), h.device_number);
            u
        }
        Some(h) => bail!(
            "device {} is device {} of device job {}: erase it first (`ferry device erase {} --path {}`) after that job is done",
            path.display(),
            h.device_number,
            h.job,
            h.job,
            path.display()
        ),
        None => {
            let mut entries = std::fs::read_dir(path).with_context(|| format!("read {}", path.display()))?;
            // A freshly made file system's lost+found may stay.
            if entries.any(|e| e.map_or(true, |e| e.file_name() != "lost+found")) {
                bail!("device {} is not empty: a device is prepared empty (nothing on it is kept)", path.display());
            }
            let p = client.prepare_device(job)?;
            let key = DiskKey::from_hex(&p.device_key).context("the vault sent a malformed device key")?;
            let mut set_id = [0u8; 16];
            hex::decode_to_slice(&p.set_id, &mut set_id).context("the vault sent a malformed set ID")?;
            let number = p.device_number;
            let header = DeviceHeader::new(
                &key,
                job,
                &p.job.machine,
                &p.job.machine_name,
                set_id,
                number,
                &p.device_type,
                p.capacity,
                &now_rfc3339(),
            );
            ferry_seed::prepare_device(path, &header)?;
            eprintln!(
                "device {} prepared as device {number} of job {job} for machine {} ({} {})",
                path.display(),
                p.job.machine_name,
                p.device_type,
                common::size(header.capacity)
            );
            p.unlock
        }
    };
    // Its fields in name order, as the file has always had them.
    write_secret(unlock_out, &serde_json::to_vec_pretty(&serde_json::to_value(&unlock)?)?)?;
    if g.json {
        common::print_json(&serde_json::json!({"device_job": job, "unlock_file": unlock_out, "unlock_expires": unlock.expires}))?;
    } else {
        eprintln!(
            "unlock credential written to {} (valid until {}): give it to the machine's owner apart from the device",
            unlock_out.display(),
            unlock.expires
        );
    }
    Ok(Outcome::Success)
}

fn status(g: &Global, job: Option<&str>, set: Option<&str>, carrier: &Option<String>, tracking: &Option<String>) -> Result<Outcome> {
    let client = common::seeding_client(g)?;
    match (job, set) {
        (Some(job), Some(state)) => {
            let state = JobState::parse(state)
                .with_context(|| format!("--set {state:?}: a device is recorded shipped-to-customer, delivered, in-use or returning"))?;
            let j = client.set_device_status(job, &DeviceStatus { state, carrier: carrier.clone(), tracking: tracking.clone() })?;
            show(g, &j, &[])
        }
        (Some(job), None) => {
            let j = client.device_job(job)?;
            if g.json {
                common::print_answer(&j)
            } else {
                show(g, &j.job, &j.audit)
            }
        }
        (None, _) => {
            let list = client.device_jobs()?;
            if g.json {
                common::print_answer(&list)?;
            } else {
                for j in &list {
                    println!("{}", one_line(j));
                }
            }
            Ok(())
        }
    }?;
    Ok(Outcome::Success)
}

/// One device job, as JSON or for a human.
fn show(g: &Global, j: &ImportJob, audit: &[AuditEntry]) -> Result<()> {
    if g.json {
        common::print_answer(j)
    } else {
        print!("{}", details(j, audit));
        Ok(())
    }
}

/// The order's type and capacity, `-` and 0 B for a job that has none.
fn order_of(j: &ImportJob) -> (&str, u64) {
    j.device.as_ref().map_or(("-", 0), |d| (d.device_type.as_str(), d.capacity))
}

fn one_line(j: &ImportJob) -> String {
    let (device_type, capacity) = order_of(j);
    let mut s = format!(
        "{}  {}  {} {}  machine {}  {} device(s)",
        j.name,
        j.state.as_str(),
        device_type,
        common::size(capacity),
        j.machine_name,
        j.disks.len()
    );
    if let Some(t) = &j.tracking {
        s.push_str(&format!("  tracking {t} ({})", text(&j.carrier)));
    }
    s
}

fn details(j: &ImportJob, audit: &[AuditEntry]) -> String {
    let (device_type, capacity) = order_of(j);
    let mut s = format!("device job {}\n  state:      {}\n  machine:    {}\n", j.name, j.state.as_str(), j.machine_name);
    s.push_str(&format!("  device:     {device_type} of {}\n  ordered:    {}\n", common::size(capacity), j.created));
    if let Some(e) = j.device.as_ref().and_then(|d| d.unlock_expires.as_deref()) {
        s.push_str(&format!("  unlock valid until: {e}\n"));
    }
    if let Some(t) = &j.tracking {
        s.push_str(&format!("  shipping:   {} tracking {t}\n", text(&j.carrier)));
    }
    common::disks_and_outcome(&mut s, j, "device");
    if !audit.is_empty() {
        s.push_str("  audit log:\n");
    }
    for a in audit {
        s.push_str(&format!("    {}  {}  {}{}\n", a.time, a.actor, a.action.replace('-', " "), readable(&a.detail)));
    }
    s
}

/// An audit line's details (a JSON object) as words: `: device 2, files 3, verified yes`.
fn readable(detail: &str) -> String {
    let Ok(fields) = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(detail) else {
        return format!(": {detail}");
    };
    let words: Vec<String> = fields
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(t) => t.clone(),
                serde_json::Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
                serde_json::Value::Array(items) => format!("{} entries", items.len()),
                serde_json::Value::Number(n) if k.contains("bytes") || k == "capacity" => {
                    n.as_u64().map_or_else(|| n.to_string(), common::size)
                }
                other => other.to_string(),
            };
            format!("{} {v}", k.replace('_', " "))
        })
        .collect();
    if words.is_empty() {
        String::new()
    } else {
        format!(": {}", words.join(", "))
    }
}

/// A backup being written onto seed devices: sealed when it completes.
pub struct DeviceBackup {
    store: Arc<DeviceStore>,
    client: VaultClient,
    job: String,
    set_id: String,
}

/// Checks the unlock credential and the devices, that the data fits, marks the job in use and
/// opens the repository on the devices (the config and keys are read from the vault). `None`:
/// the devices were sealed by a backup that ended before the vault recorded the seal; it is
/// recorded now, and there is nothing to back up onto them.
pub fn open_for_backup(
    g: &Global,
    sources: &[PathBuf],
    devices: &[PathBuf],
    unlock_file: &Path,
) -> Result<Option<(Repository, DeviceBackup)>> {
    if g.repo.as_deref().is_some_and(|r| !r.is_empty()) {
        bail!("--device backs up a machine registered with a vault: leave out --repo");
    }
    let reg = Registration::load_for(g)?
        .context("a seed device is written by a machine registered with its vault: run `ferry register` first")?;
    let client = VaultClient::new(&reg.vault, &reg.cert_sha256, &reg.token)?;
    let unlock: Unlock = common::read_json(unlock_file, "ask the vault's owner for the device's unlock credential again")?
        .with_context(|| format!("no unlock credential at {}", unlock_file.display()))?;
    let vault_key = client.health()?.receipt_key;
    unlock
        .verify(&vault_key.context("this vault does not sign unlock credentials (an older version?)")?)
        .with_context(|| format!("unlock credential {}", unlock_file.display()))?;
    if unlock.machine != reg.machine {
        bail!(
            "the unlock credential {} is for machine {}, not this machine ({}): its device is bound to that machine",
            unlock_file.display(),
            unlock.machine_name,
            reg.name
        );
    }
    if unlock.expires_unix() <= chrono::Utc::now().timestamp() {
        bail!(
            "the unlock credential {} of device job {} expired at {}: ask the vault's owner for a new one",
            unlock_file.display(),
            unlock.job,
            unlock.expires
        );
    }
    let key = DiskKey::from_hex(&unlock.device_key).context("the unlock credential's device key")?;
    let vault_repo = reg.store()?;
    let store = match DeviceStore::open(devices, &key, &unlock.job, &reg.machine, vault_repo) {
        Ok(s) => Arc::new(s),
        Err(e @ ferry_seed::SeedError::AlreadySealed { .. }) => return record_earlier_seal(g, &client, &unlock, devices, &key, e),
        Err(e) => return Err(e.into()),
    };
    let (used, usable) = store.space();
    check_fits(sources, usable, &unlock.job)?;
    client.device_in_use(&unlock.job).with_context(|| {
        format!("device job {}: the vault does not let this machine write its device (is the credential expired?)", unlock.job)
    })?;
    // On stderr, with --json too (stdout holds the JSON).
    // The capacity ordered is what the devices are; less room on the file systems they are
    // mounted on is said apart.
    let ordered = store.ordered();
    let room = if ordered > 0 && usable < ordered {
        format!("; the file systems under them have room for {} only", common::size(usable))
    } else {
        String::new()
    };
    eprintln!(
        "backing up onto {} device(s) of job {}: {} ordered, {} used{room}",
        devices.len(),
        unlock.job,
        common::size(if ordered > 0 { ordered } else { usable }),
        common::size(used),
    );
    let pw = common::passphrase(g, "repository passphrase: ")?;
    let repo = Repository::open(store.clone() as Arc<dyn Store>, &pw, &common::cache_dir(g).join(format!("seed-{}", unlock.job)))?;
    let backup = DeviceBackup { store, client, job: unlock.job.clone(), set_id: unlock.set_id.clone() };
    Ok(Some((repo, backup)))
}

/// Sealed devices given to a backup: refused if the vault has their seal (ship them back);
/// if it has none (the sealing backup was killed before it said so), the seal is checked whole
/// and recorded now.
fn record_earlier_seal(
    g: &Global,
    client: &VaultClient,
    unlock: &Unlock,
    devices: &[PathBuf],
    key: &DiskKey,
    sealed: ferry_seed::SeedError,
) -> Result<Option<(Repository, DeviceBackup)>> {
    let job = client.device_job(&unlock.job)?.job;
    if job.manifest_digest.is_some() || job.state != JobState::InUse {
        return Err(sealed.into());
    }
    let set = DeviceSet::open(devices, &unlock.job, key)
        .with_context(|| format!("device job {}: the devices are sealed, but not whole", unlock.job))?;
    report_seal(g, client, &unlock.job, &unlock.set_id, set.seal())?;
    if !g.json {
        eprintln!("device job {}: the devices were sealed by an earlier backup; the vault has recorded it now", unlock.job);
    }
    Ok(None)
}

/// Refuses, before anything is written, data that would not fit in `usable` bytes
/// ([`ferry_seed::fit`]).
fn check_fits(sources: &[PathBuf], usable: u64, job: &str) -> Result<()> {
    if let ferry_seed::Fit::TooLarge { total, needed } = ferry_seed::fit(sources, usable)? {
        let share = usable as f64 / needed as f64 * 100.0;
        bail!(
            "the data to back up is {} ({} compressed, estimated from a sample), but the device(s) of job {job} hold {}: \
             about {share:.0} % of it would fit. Back up less (--exclude), prepare a second device of the job \
             (`ferry device prepare {job} --path ...` at the vault's site) and pass both with --device, or seed the rest \
             with the disk workflow (`ferry backup --offline`)",
            common::size(total),
            common::size(needed),
            common::size(usable),
        );
    }
    Ok(())
}

impl DeviceBackup {
    /// Deletes the locks on the devices that no live process holds (backups killed earlier).
    pub fn remove_stale_locks(&self, repo: &Repository) -> Result<()> {
        let live: std::collections::HashSet<String> = ferry_repo::live_locks(repo)?.into_iter().map(|(k, _)| k).collect();
        for o in self.store.list("locks/")? {
            if !live.contains(&o.key) {
                self.store.delete(&o.key)?;
            }
        }
        Ok(())
    }

    /// Seals the devices (the repository is closed: no lock left) and reports the seal's
    /// digest to the vault, which checks the import against it.
    pub fn seal(self, g: &Global) -> Result<()> {
        let seal = self.store.seal(&now_rfc3339())?;
        report_seal(g, &self.client, &self.job, &self.set_id, &seal)
    }
}

/// Tells the vault a device set's seal: its digest (the import is checked against it) and each
/// device's size.
fn report_seal(g: &Global, client: &VaultClient, job: &str, set_id: &str, seal: &ferry_seed::Seal) -> Result<()> {
    let digest = hex::encode(seal.digest());
    let disks = (1..=seal.device_count)
        .map(|n| {
            let on = seal.entries.iter().filter(|e| e.device == n);
            let bytes = on.clone().map(|e| e.size).sum();
            DiskRecord { id: n, state: "sealed".into(), bytes, objects: on.count() as u64, copied: 0, skipped: 0, errors: vec![] }
        })
        .collect();
    let set = DiskSetReport { set_id: set_id.to_string(), manifest_digest: Some(digest), disks, complete: true };
    client.device_sealed(job, &set).with_context(|| {
        format!("device job {job}: the devices are sealed, but the vault did not record it; run the backup again to record it")
    })?;
    if !g.json {
        eprintln!(
            "device job {job}: {} device(s) sealed ({} objects): send them back to the vault's site",
            seal.device_count,
            seal.entries.len()
        );
    }
    Ok(())
}

fn import_devices(g: &Global, job: &str, paths: &[PathBuf], log_dir: Option<&Path>) -> Result<Outcome> {
    let client = common::seeding_client(g)?;
    let j = client.device_job(job)?.job;
    ferry_seed::check_not_ingested(&j, "device")?;
    let key = DiskKey::from_hex(&client.device_key(job)?).context("the vault sent a malformed device key")?;
    let set = match DeviceSet::open(paths, job, &key) {
        Ok(s) => s,
        Err(e) => {
            ferry_seed::report_set_error(&client, job, &j, &e);
            return Err(anyhow::Error::new(e).context(format!("device job {job}: the devices were not imported; nothing was copied")));
        }
    };
    let seal = set.seal();
    let plan = CopyPlan::of_devices(job, seal);
    plan.check_against(&j)?;
    let entries: std::collections::HashMap<&str, &ferry_seed::SealEntry> = seal.entries.iter().map(|e| (e.key.as_str(), e)).collect();
    common::copy_and_ingest(g, &client, &j, plan, log_dir, &mut |item, buf| match entries.get(item.key.as_str()) {
        Some(e) => set.read_object(e, buf).map_err(|e| e.to_string()),
        None => Err(format!("object {} is not in the seal", item.key)),
    })
}

fn erase(g: &Global, job: &str, paths: &[PathBuf]) -> Result<Outcome> {
    let client = common::seeding_client(g)?;
    let state = client.device_job(job)?.job.state;
    if !matches!(state, JobState::Ingested | JobState::Erased | JobState::Cancelled) {
        let state = state.as_str();
        bail!(
            "device job {job} is {state}: a device is erased only after its seed is ingested (or the job was cancelled); \
             erasing now would lose the only copy of the machine's first backup"
        );
    }
    let key = DiskKey::from_hex(&client.device_key(job)?).context("the vault sent a malformed device key")?;
    let mut done = Vec::new();
    for path in paths {
        let header = ferry_seed::read_device_header(path)?.with_context(|| {
            format!(
                "{} holds no Ferry seed device: erased already? `ferry device status {job}` shows which devices are recorded erased",
                path.display()
            )
        })?;
        let erased = ferry_seed::erase_device(path, &key, job)?;
        let r = client.device_erased(job, &DeviceErased { device: header.device_number, files: erased.files, bytes: erased.bytes });
        r.with_context(|| format!("device {} was erased, but the vault did not record it: run the erase again", path.display()))?;
        if !g.json {
            eprintln!(
                "device {} (device {} of job {job}): {} files, {} overwritten, verified and removed",
                path.display(),
                header.device_number,
                erased.files,
                common::size(erased.bytes)
            );
        }
        done.push(serde_json::json!({"path": path, "device": header.device_number, "files": erased.files, "bytes": erased.bytes}));
    }
    if g.json {
        common::print_json(&serde_json::json!({"device_job": job, "erased": done}))?;
    }
    Ok(Outcome::Success)
}
