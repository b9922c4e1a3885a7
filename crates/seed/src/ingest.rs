//! The vault site's copy and ingest of a checked seed, the same for disks and devices
//! (docs/design/offline-seeding.md, steps 4 and 5): the units are recorded received, every
//! object not in the job's container already is read (verified by the caller's reader) and
//! put there, each unit gets a copy log and an error log, the seed manifest is written and the
//! vault ingests it. What a failed set check found is recorded on the job
//! ([`report_set_error`]). Nothing here prints: the caller is told what happened through
//! [`IngestEvent`]s and says it in its own words.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferry_api::{
    DiskRecord, ImportJob, JobState, ReceivedDisks, SeedManifest, SeedObject, SiteImportJob, TransferReport, SEED_MANIFEST_KEY,
};
use ferry_store::{StoreError, VaultClient};

use crate::{Manifest, Seal, SeedError};

/// Why a copy and ingest stopped. The messages are the ones `ferry import run` and `ferry
/// device import` show.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("open the container {}", redact_location(.container))]
    OpenContainer { container: String, source: StoreError },
    /// A log folder or file could not be made (`what`: "create the log folder ...", "open ...").
    #[error("{what}")]
    Log { what: String, source: std::io::Error },
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(
        "import job {name}: completed with errors: damaged objects were not copied, and the seed is not ingested; \
         the {unit}s' error logs in {} name them",
        .log_dir.display()
    )]
    CompletedWithErrors { name: String, unit: &'static str, log_dir: PathBuf },
    #[error("import job {name}: ingest did not finish (state {state}): {errors}")]
    NotIngested { name: String, state: &'static str, errors: String },
    /// The job's seed is in the vault already ([`check_not_ingested`]).
    #[error("{} {name} was {} already (state {state}): {}", job_word(.unit), imported_word(.unit), once(.unit))]
    Ingested { name: String, unit: &'static str, state: &'static str },
    /// An earlier run copied everything and handed the seed to the vault, then was stopped: the
    /// ingest goes on in the vault without it ([`check_not_ingested`]).
    #[error(
        "{} {name} is being ingested by the vault already (an earlier `{}` finished copying); nothing is left to copy: \
         wait until `{} {name}` says ingested",
        job_word(.unit), import_command(.unit), status_command(.unit)
    )]
    BeingIngested { name: String, unit: &'static str },
    /// The units are another set than the one the job recorded ([`CopyPlan::check_against`]).
    #[error(
        "{} {name}: these {unit}s are set {found}, but {} recorded set {} for the job: were they prepared again?",
        job_word(.unit), recorder(.unit), .recorded.as_deref().unwrap_or("(none)")
    )]
    OtherSet { name: String, unit: &'static str, found: String, recorded: Option<String> },
    /// The set's manifest (or seal) is not the one recorded ([`CopyPlan::check_against`]).
    #[error(
        "{} {name}: the {unit}s' {} (digest {digest}) is not the one {} recorded ({}): the {unit}s were altered{}; nothing was copied",
        job_word(.unit), manifest_word(.unit), recorder(.unit), .recorded.as_deref().unwrap_or("none"),
        if *.unit == "device" { ", or were never sealed by the machine" } else { "" }
    )]
    Altered { name: String, unit: &'static str, digest: String, recorded: Option<String> },
}

// The words the checks' messages use for a job of disks (an import job) or of seed devices.
fn job_word(unit: &str) -> &'static str {
    if unit == "device" {
        "device job"
    } else {
        "import job"
    }
}

fn imported_word(unit: &str) -> &'static str {
    if unit == "device" {
        "imported and ingested"
    } else {
        "ingested"
    }
}

fn once(unit: &str) -> &'static str {
    if unit == "device" {
        "a device is imported only once; erase it (`ferry device erase`)"
    } else {
        "a seed is ingested only once"
    }
}

fn import_command(unit: &str) -> &'static str {
    if unit == "device" {
        "ferry device import"
    } else {
        "ferry import run"
    }
}

fn status_command(unit: &str) -> &'static str {
    if unit == "device" {
        "ferry device status"
    } else {
        "ferry import-job show"
    }
}

fn recorder(unit: &str) -> &'static str {
    if unit == "device" {
        "the machine"
    } else {
        "diskprep"
    }
}

fn manifest_word(unit: &str) -> &'static str {
    if unit == "device" {
        "seal"
    } else {
        "manifest"
    }
}

/// Refuses, before anything is read off the units, to import a job (of `unit`s: `disk` or
/// `device`) whose seed the vault has ingested already or is ingesting now.
pub fn check_not_ingested(job: &ImportJob, unit: &'static str) -> Result<(), IngestError> {
    match job.state {
        JobState::Ingested | JobState::Erased => Err(IngestError::Ingested { name: job.name.clone(), unit, state: job.state.as_str() }),
        JobState::Ingesting => Err(IngestError::BeingIngested { name: job.name.clone(), unit }),
        _ => Ok(()),
    }
}

/// What the copy tells its caller as it goes.
#[derive(Debug)]
pub enum IngestEvent<'a> {
    /// One object could not be read off its unit (the reader's message).
    ObjectFailed { error: &'a str },
    /// One object of `bytes` is in the container (copied, or there already): for progress.
    ObjectDone { bytes: u64 },
    /// Unit `number` is done, and `errors` of its objects could not be imported (see `log`).
    UnitFailed { unit: &'static str, number: u32, errors: usize, log: &'a Path },
    /// Every object is in the container; the ingest starts.
    Copied { copied: u64, skipped: u64, seconds: f64 },
}

/// Strips anything that looks like a credential from a location before it is shown.
pub fn redact_location(loc: &str) -> String {
    match loc.split_once('?') {
        Some((a, _)) => format!("{a}?…"),
        None => loc.to_string(),
    }
}

/// The per-disk state a set error gives the disk it names.
fn disk_state(e: &SeedError) -> Option<&'static str> {
    match e {
        SeedError::KeyInvalid { .. } | SeedError::DeviceKeyInvalid { .. } => Some("key-invalid"),
        SeedError::ManifestError { .. } | SeedError::NotSealed { .. } => Some("manifest-error"),
        SeedError::Corrupted { .. } | SeedError::Tampered { .. } => Some("corrupted"),
        _ => None,
    }
}

/// Records on the job what a failed set check found: the named disk's (or device's) problem,
/// or which never arrived. Best effort: the error itself is what the operator sees.
pub fn report_set_error(client: &VaultClient, name: &str, job: &ImportJob, e: &SeedError) {
    let mut disks = job.disks.clone();
    let changed = match (e, disk_state(e), e.disk()) {
        (SeedError::MissingDisks { numbers, .. }, _, _) => {
            for d in &mut disks {
                d.state = if numbers.contains(&d.id) { "never-received" } else { "received" }.into();
            }
            true
        }
        (_, Some(st), Some(n)) => {
            for d in disks.iter_mut().filter(|d| d.id == n) {
                d.state = st.into();
                d.errors = vec![e.to_string()];
            }
            true
        }
        _ => false,
    };
    if changed && !disks.is_empty() {
        let _ = client.receive_disks(name, &ReceivedDisks { disks });
    }
}

/// Reads one object of a seed into the buffer, verified; the error names it.
pub type ReadObject<'a> = dyn FnMut(&SeedItem, &mut Vec<u8>) -> Result<(), String> + 'a;

/// One object of a seed, on disk or device number `unit`.
pub struct SeedItem {
    pub key: String,
    pub size: u64,
    pub hash: [u8; 32],
    pub unit: u32,
}

/// What an import copies: the seed's objects on `count` disks or devices (`unit`), with the
/// set's ID and manifest digest (both hex; [`CopyPlan::check_against`] compares them with
/// what the job recorded).
pub struct CopyPlan<'a> {
    pub name: &'a str,
    pub unit: &'static str,
    pub count: u32,
    pub items: Vec<SeedItem>,
    pub set_id: String,
    pub digest: String,
}

impl<'a> CopyPlan<'a> {
    /// A disk set's objects, by its manifest.
    pub fn of_disks(name: &'a str, manifest: &Manifest) -> CopyPlan<'a> {
        let items = manifest.entries.iter().map(|e| SeedItem { key: e.key.clone(), size: e.size, hash: e.hash, unit: e.disk }).collect();
        let (set_id, digest) = (hex::encode(manifest.set_id), hex::encode(manifest.digest()));
        CopyPlan { name, unit: "disk", count: manifest.disk_count, items, set_id, digest }
    }

    /// A device set's objects, by its seal.
    pub fn of_devices(name: &'a str, seal: &Seal) -> CopyPlan<'a> {
        let items = seal.entries.iter().map(|e| SeedItem { key: e.key.clone(), size: e.size, hash: e.hash, unit: e.device }).collect();
        let (set_id, digest) = (hex::encode(seal.set_id), hex::encode(seal.digest()));
        CopyPlan { name, unit: "device", count: seal.device_count, items, set_id, digest }
    }

    /// Refuses a set that is not the one the job recorded (diskprep's, or the machine's seal):
    /// another set, or the same set altered. Nothing has been copied then.
    pub fn check_against(&self, job: &ImportJob) -> Result<(), IngestError> {
        let (name, unit) = (self.name.to_string(), self.unit);
        if job.set_id.as_deref() != Some(self.set_id.as_str()) {
            return Err(IngestError::OtherSet { name, unit, found: self.set_id.clone(), recorded: job.set_id.clone() });
        }
        if job.manifest_digest.as_deref() != Some(self.digest.as_str()) {
            return Err(IngestError::Altered { name, unit, digest: self.digest.clone(), recorded: job.manifest_digest.clone() });
        }
        Ok(())
    }
}

/// One unit's copy log and error log in the log folder.
struct Logs {
    copy: std::fs::File,
    errors: std::fs::File,
    error_path: PathBuf,
}

impl Logs {
    fn open(dir: &Path, job: &str, unit: &str, n: u32) -> Result<Logs, IngestError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| IngestError::Log { what: format!("create the log folder {}", dir.display()), source })?;
        let file = |kind: &str| -> Result<(std::fs::File, PathBuf), IngestError> {
            let p = dir.join(format!("{job}-{unit}{n}-{kind}.log"));
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .map_err(|source| IngestError::Log { what: format!("open {}", p.display()), source })?;
            Ok((f, p))
        };
        let (copy, _) = file("copy")?;
        let (errors, error_path) = file("error")?;
        Ok(Logs { copy, errors, error_path })
    }

    fn line(f: &mut std::fs::File, text: &str) {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        // A log line that cannot be written must not stop the import.
        let _ = writeln!(f, "{now} {text}");
    }
}

/// The import after the set's checks, the same for disks and devices: records the units
/// received, copies every object not in the container already (read through `read`, which
/// verifies it), logs per unit (in `log_dir`, else the current folder), writes the seed
/// manifest, has the vault ingest and waits for it. A job copied already (an earlier run was
/// stopped during the ingest) is only ingested.
pub fn copy_and_ingest(
    client: &VaultClient,
    job: &ImportJob,
    plan: CopyPlan<'_>,
    log_dir: Option<&Path>,
    read: &mut ReadObject<'_>,
    on: &mut dyn FnMut(IngestEvent<'_>),
) -> Result<SiteImportJob, IngestError> {
    let (name, unit) = (plan.name, plan.unit);
    let copied_already = matches!(job.state, JobState::Completed | JobState::Ingesting);
    let mut disks: Vec<DiskRecord> = (1..=plan.count)
        .map(|n| {
            let on = plan.items.iter().filter(|e| e.unit == n);
            DiskRecord {
                id: n,
                state: "received".into(),
                bytes: on.clone().map(|e| e.size).sum(),
                objects: on.count() as u64,
                copied: 0,
                skipped: 0,
                errors: vec![],
            }
        })
        .collect();
    if !copied_already {
        client.receive_disks(name, &ReceivedDisks { disks: disks.clone() })?;
    }
    let container =
        ferry_store::open(&job.container).map_err(|source| IngestError::OpenContainer { container: job.container.clone(), source })?;
    let log_dir = log_dir.map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let mut failed = false;
    if !copied_already {
        let transfer = |disks: &[DiskRecord], state: JobState, errors: Vec<String>| {
            client.report_transfer(name, &TransferReport { state, disks: disks.to_vec(), errors })
        };
        let mut buf = Vec::new();
        for d in &mut disks {
            d.state = "transferring".into();
        }
        transfer(&disks, JobState::Transferring, vec![])?;
        let started = Instant::now();
        for n in 1..=plan.count {
            let mut logs = Logs::open(&log_dir, name, unit, n)?;
            let d = &mut disks[n as usize - 1];
            for e in plan.items.iter().filter(|e| e.unit == n) {
                if let Some(size) = container.head(&e.key)? {
                    if size == e.size && *blake3::hash(&container.get(&e.key)?).as_bytes() == e.hash {
                        d.skipped += 1;
                        Logs::line(&mut logs.copy, &format!("{} present already ({} bytes, hash verified)", e.key, e.size));
                        on(IngestEvent::ObjectDone { bytes: e.size });
                        continue;
                    }
                }
                match read(e, &mut buf) {
                    Ok(()) => {
                        container.put(&e.key, bytes::Bytes::copy_from_slice(&buf))?;
                        d.copied += 1;
                        Logs::line(&mut logs.copy, &format!("{} copied ({} bytes)", e.key, e.size));
                        on(IngestEvent::ObjectDone { bytes: e.size });
                    }
                    Err(err) => {
                        failed = true;
                        d.errors.push(err.clone());
                        Logs::line(&mut logs.errors, &err);
                        on(IngestEvent::ObjectFailed { error: &err });
                    }
                }
            }
            d.state = if d.errors.is_empty() { "completed".into() } else { "corrupted".into() };
            if !d.errors.is_empty() {
                on(IngestEvent::UnitFailed { unit, number: n, errors: d.errors.len(), log: &logs.error_path });
            }
            transfer(&disks, JobState::Transferring, vec![])?;
        }
        if failed {
            let errors = vec![format!("objects could not be read from the {unit}s; see each {unit}'s error log")];
            transfer(&disks, JobState::CompletedWithErrors, errors)?;
            return Err(IngestError::CompletedWithErrors { name: name.to_string(), unit, log_dir });
        }
        let objects = plan.items.iter().map(|e| SeedObject { key: e.key.clone(), size: e.size, hash: hex::encode(e.hash) }).collect();
        let seed = SeedManifest { job: name.to_string(), set_id: plan.set_id.clone(), digest: plan.digest.clone(), objects };
        container.put(SEED_MANIFEST_KEY, serde_json::to_vec(&seed)?.into())?;
        transfer(&disks, JobState::Completed, vec![])?;
        let copied: u64 = disks.iter().map(|d| d.copied).sum();
        let skipped: u64 = disks.iter().map(|d| d.skipped).sum();
        on(IngestEvent::Copied { copied, skipped, seconds: started.elapsed().as_secs_f64() });
    }
    ingest(client, name)
}

/// Starts the vault's ingest and waits for its end.
fn ingest(client: &VaultClient, name: &str) -> Result<SiteImportJob, IngestError> {
    client.start_ingest(name)?;
    let every = Duration::from_millis(200);
    loop {
        let j = client.import_job(name)?;
        match j.job.state {
            JobState::Ingested => return Ok(j),
            JobState::Ingesting => std::thread::sleep(every),
            other => {
                return Err(IngestError::NotIngested { name: name.to_string(), state: other.as_str(), errors: j.job.errors.join("; ") })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(state: JobState, set_id: Option<&str>, digest: Option<&str>) -> ImportJob {
        ImportJob {
            name: "j1".into(),
            machine: "m".into(),
            machine_name: "web".into(),
            container: "/c".into(),
            state,
            created: "2026-11-30T00:00:00Z".into(),
            deadline: None,
            carrier: None,
            tracking: None,
            return_address: None,
            set_id: set_id.map(str::to_string),
            manifest_digest: digest.map(str::to_string),
            disks: vec![],
            recovery_point: None,
            errors: vec![],
            updated: "2026-11-30T00:00:01Z".into(),
            kind: "disks".into(),
            device: None,
        }
    }

    #[test]
    fn a_seed_in_the_vault_already_is_not_copied_again() {
        assert!(check_not_ingested(&job(JobState::Received, None, None), "disk").is_ok());
        assert!(check_not_ingested(&job(JobState::Completed, None, None), "disk").is_ok(), "copied: only the ingest is left");

        let e = check_not_ingested(&job(JobState::Ingesting, None, None), "disk").unwrap_err();
        assert!(matches!(e, IngestError::BeingIngested { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "import job j1 is being ingested by the vault already (an earlier `ferry import run` finished copying); \
             nothing is left to copy: wait until `ferry import-job show j1` says ingested"
        );
        let e = check_not_ingested(&job(JobState::Ingesting, None, None), "device").unwrap_err();
        assert!(e.to_string().contains("`ferry device import`") && e.to_string().contains("`ferry device status j1`"), "{e}");

        let e = check_not_ingested(&job(JobState::Ingested, None, None), "disk").unwrap_err();
        assert_eq!(e.to_string(), "import job j1 was ingested already (state ingested): a seed is ingested only once");
        let e = check_not_ingested(&job(JobState::Erased, None, None), "device").unwrap_err();
        assert_eq!(
            e.to_string(),
            "device job j1 was imported and ingested already (state erased): a device is imported only once; erase it (`ferry device erase`)"
        );
    }

    #[test]
    fn only_the_recorded_set_unaltered_is_copied() {
        let plan = CopyPlan { name: "j1", unit: "disk", count: 1, items: vec![], set_id: "aa".into(), digest: "dd".into() };
        assert!(plan.check_against(&job(JobState::Received, Some("aa"), Some("dd"))).is_ok());

        let e = plan.check_against(&job(JobState::Received, Some("bb"), Some("dd"))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "import job j1: these disks are set aa, but diskprep recorded set bb for the job: were they prepared again?"
        );
        let e = plan.check_against(&job(JobState::Received, Some("aa"), Some("ee"))).unwrap_err();
        assert!(matches!(e, IngestError::Altered { .. }) && e.to_string().contains("the disks were altered; nothing was copied"), "{e}");

        let devices = CopyPlan { unit: "device", ..plan };
        let e = devices.check_against(&job(JobState::Received, Some("aa"), None)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "device job j1: the devices' seal (digest dd) is not the one the machine recorded (none): \
             the devices were altered, or were never sealed by the machine; nothing was copied"
        );
    }
}
