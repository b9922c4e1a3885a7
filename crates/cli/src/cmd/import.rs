//! `ferry import run`: at the vault's site, an import operator's copy of a job's disks into its
//! storage container, then the vault's ingest (docs/design/offline-seeding.md, steps 4 and 5).
//!
//! Nothing is copied unless the disks are exactly the job's set (`ferry_seed::DiskSet::open`
//! names a missing, duplicated or foreign disk) and their manifest is the one diskprep
//! recorded. Every object is decrypted and hashed before it is written; an object already in
//! the container with the right hash is skipped, so a killed import is simply run again. Each
//! disk gets a copy log and an error log in `--log-dir`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ferry_api::{
    DiskRecord, ImportJob, JobState, ReceivedDisks, SeedManifest, SeedObject, SiteImportJob, TransferReport, SEED_MANIFEST_KEY,
};
use ferry_seed::{DiskKey, DiskSet, SeedError};
use ferry_store::VaultClient;

use crate::cli::{Global, ImportRunArgs};
use crate::common;
use crate::Outcome;

/// The per-disk state a set error gives the disk it names.
fn disk_state(e: &SeedError) -> Option<&'static str> {
    match e {
        SeedError::KeyInvalid { .. } | SeedError::DeviceKeyInvalid { .. } => Some("key-invalid"),
        SeedError::ManifestError { .. } | SeedError::NotSealed { .. } => Some("manifest-error"),
        SeedError::Corrupted { .. } | SeedError::Tampered { .. } => Some("corrupted"),
        _ => None,
    }
}

struct Logs {
    copy: std::fs::File,
    errors: std::fs::File,
    error_path: PathBuf,
}

impl Logs {
    fn open(dir: &Path, job: &str, unit: &str, n: u32) -> Result<Logs> {
        std::fs::create_dir_all(dir).with_context(|| format!("create the log folder {}", dir.display()))?;
        let file = |kind: &str| -> Result<(std::fs::File, PathBuf)> {
            let p = dir.join(format!("{job}-{unit}{n}-{kind}.log"));
            let f = std::fs::OpenOptions::new().create(true).append(true).open(&p).with_context(|| format!("open {}", p.display()))?;
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

pub fn run(g: &Global, a: &ImportRunArgs) -> Result<Outcome> {
    let client = common::seeding_client(g)?;
    let name = &a.import_job;
    let job = client.import_job(name)?.job;
    if job.state == JobState::Ingested {
        bail!("import job {name} was ingested already; a seed is ingested only once");
    }
    if job.state == JobState::Ingesting {
        // An earlier run copied every disk and handed the seed to the vault, then was stopped:
        // the ingest goes on in the vault without it.
        bail!("import job {name} is being ingested by the vault already (an earlier `ferry import run` finished copying); nothing is left to copy: wait until `ferry import-job show {name}` says ingested");
    }
    let key = DiskKey::from_hex(&client.disk_key(name)?).context("the vault sent a malformed disk key")?;
    let set = match DiskSet::open(&a.disks, name, &key) {
        Ok(s) => s,
        Err(e) => {
            report_set_error(&client, name, &job, &e);
            return Err(anyhow::Error::new(e).context(format!("import job {name}: the disks were not imported; nothing was copied")));
        }
    };
    let manifest = set.manifest();
    if job.set_id.as_deref() != Some(hex::encode(manifest.set_id).as_str()) {
        bail!(
            "import job {name}: these disks are set {}, but diskprep recorded set {} for the job: were they prepared again?",
            hex::encode(manifest.set_id),
            job.set_id.as_deref().unwrap_or("(none)")
        );
    }
    let digest = hex::encode(manifest.digest());
    if job.manifest_digest.as_deref() != Some(digest.as_str()) {
        bail!("import job {name}: the disks' manifest is not the one diskprep recorded (digest {digest}): the disks were altered; nothing was copied");
    }
    let items = manifest.entries.iter().map(|e| SeedItem { key: e.key.clone(), size: e.size, hash: e.hash, unit: e.disk }).collect();
    let plan = CopyPlan { name, unit: "disk", count: manifest.disk_count, items, set_id: hex::encode(manifest.set_id), digest };
    let by_key: std::collections::HashMap<&str, &ferry_seed::ManifestEntry> =
        manifest.entries.iter().map(|e| (e.key.as_str(), e)).collect();
    copy_and_ingest(g, &client, &job, plan, a.log_dir.as_deref(), &mut |item, buf| match by_key.get(item.key.as_str()) {
        Some(e) => set.read_object(e, buf).map_err(|e| e.to_string()),
        None => Err(format!("object {} is not in the manifest", item.key)),
    })
}

/// Records on the job what a failed set check found: the named disk's (or device's) problem,
/// or which never arrived. Best effort: the error itself is what the operator sees.
pub fn report_set_error(client: &VaultClient, name: &str, job: &ImportJob, e: &SeedError) {
    let mut disks = job.disks.clone();
    let changed = match (e, disk_state(e), e.disk()) {
        (SeedError::MissingDisks { numbers, .. }, _, _) => {
            for d in disks.iter_mut() {
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
/// set's ID and manifest digest (both hex, already checked against the job).
pub struct CopyPlan<'a> {
    pub name: &'a str,
    pub unit: &'static str,
    pub count: u32,
    pub items: Vec<SeedItem>,
    pub set_id: String,
    pub digest: String,
}

/// The import after the set's checks, the same for disks and devices: records the units
/// received, copies every object not in the container already (read through `read`, which
/// verifies it), logs per unit, writes the seed manifest, has the vault ingest and waits.
pub fn copy_and_ingest(
    g: &Global,
    client: &VaultClient,
    job: &ImportJob,
    plan: CopyPlan<'_>,
    log_dir: Option<&Path>,
    read: &mut ReadObject<'_>,
) -> Result<Outcome> {
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
    let container = ferry_store::open(&job.container).with_context(|| format!("open the container {}", common::redact(&job.container)))?;
    let log_dir = log_dir.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let mut failed = false;
    if !copied_already {
        let transfer = |disks: &[DiskRecord], state: JobState, errors: Vec<String>| {
            client.report_transfer(name, &TransferReport { state, disks: disks.to_vec(), errors })
        };
        let mut buf = Vec::new();
        for d in disks.iter_mut() {
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
                        continue;
                    }
                }
                match read(e, &mut buf) {
                    Ok(()) => {
                        container.put(&e.key, bytes::Bytes::copy_from_slice(&buf))?;
                        d.copied += 1;
                        Logs::line(&mut logs.copy, &format!("{} copied ({} bytes)", e.key, e.size));
                    }
                    Err(err) => {
                        failed = true;
                        d.errors.push(err.clone());
                        Logs::line(&mut logs.errors, &err);
                        eprintln!("error: {err}");
                    }
                }
            }
            d.state = if d.errors.is_empty() { "completed".into() } else { "corrupted".into() };
            if !d.errors.is_empty() {
                eprintln!("{unit} {n}: {} objects could not be imported; see {}", d.errors.len(), logs.error_path.display());
            }
            transfer(&disks, JobState::Transferring, vec![])?;
        }
        if failed {
            let errors = vec![format!("objects could not be read from the {unit}s; see each {unit}'s error log")];
            transfer(&disks, JobState::CompletedWithErrors, errors)?;
            bail!(
                "import job {name}: completed with errors: damaged objects were not copied, and the seed is not ingested; \
                 the {unit}s' error logs in {} name them",
                log_dir.display()
            );
        }
        let objects = plan.items.iter().map(|e| SeedObject { key: e.key.clone(), size: e.size, hash: hex::encode(e.hash) }).collect();
        let seed = SeedManifest { job: name.to_string(), set_id: plan.set_id.clone(), digest: plan.digest.clone(), objects };
        container.put(SEED_MANIFEST_KEY, serde_json::to_vec(&seed)?.into())?;
        transfer(&disks, JobState::Completed, vec![])?;
        let copied: u64 = disks.iter().map(|d| d.copied).sum();
        let skipped: u64 = disks.iter().map(|d| d.skipped).sum();
        eprintln!(
            "import job {name}: {copied} objects copied, {skipped} there already, in {:.1}s; ingesting",
            started.elapsed().as_secs_f64()
        );
    }
    let j = ingest(client, name)?;
    if g.json {
        common::print_answer(&j)?;
    } else {
        println!("import job {name}: ingested; recovery point {}", common::text(&j.job.recovery_point));
    }
    Ok(Outcome::Success)
}

/// Starts the vault's ingest and waits for its end.
fn ingest(client: &VaultClient, name: &str) -> Result<SiteImportJob> {
    client.start_ingest(name)?;
    let every = Duration::from_millis(200);
    loop {
        let j = client.import_job(name)?;
        match j.job.state {
            JobState::Ingested => return Ok(j),
            JobState::Ingesting => std::thread::sleep(every),
            other => bail!("import job {name}: ingest did not finish (state {}): {}", other.as_str(), j.job.errors.join("; ")),
        }
    }
}
