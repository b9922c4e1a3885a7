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
use ferry_seed::{DiskKey, DiskSet, SeedError};
use ferry_store::VaultClient;
use ferry_vault::imports::DiskRecord;
use ferry_vault::ingest::{SeedManifest, SeedObject, SEED_MANIFEST_KEY};

use super::import_job;
use crate::cli::{Global, ImportRunArgs};
use crate::common;
use crate::Outcome;

/// The per-disk state a set error gives the disk it names.
fn disk_state(e: &SeedError) -> Option<&'static str> {
    match e {
        SeedError::KeyInvalid { .. } => Some("key-invalid"),
        SeedError::ManifestError { .. } => Some("manifest-error"),
        SeedError::Corrupted { .. } => Some("corrupted"),
        _ => None,
    }
}

struct Logs {
    copy: std::fs::File,
    errors: std::fs::File,
    error_path: PathBuf,
}

impl Logs {
    fn open(dir: &Path, job: &str, disk: u32) -> Result<Logs> {
        std::fs::create_dir_all(dir).with_context(|| format!("create the log folder {}", dir.display()))?;
        let file = |kind: &str| -> Result<(std::fs::File, PathBuf)> {
            let p = dir.join(format!("{job}-disk{disk}-{kind}.log"));
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
    let client = import_job::client(g)?;
    let name = &a.import_job;
    let job = client.get_json(&format!("/v1/import-jobs/{name}"))?;
    let state = job["state"].as_str().unwrap_or_default().to_string();
    if state == "ingested" {
        bail!("import job {name} was ingested already; a seed is ingested only once");
    }
    let key = client.get_json(&format!("/v1/import-jobs/{name}/disk-key"))?;
    let key = DiskKey::from_hex(key["disk_key"].as_str().unwrap_or_default()).context("the vault sent a malformed disk key")?;
    let set = match DiskSet::open(&a.disks, name, &key) {
        Ok(s) => s,
        Err(e) => {
            // The disks' states say what was found: the named disk's problem, or which disks
            // never arrived. Best effort: the error below is what matters.
            let mut disks: Vec<DiskRecord> = serde_json::from_value(job["disks"].clone()).unwrap_or_default();
            let changed = match (&e, disk_state(&e), e.disk()) {
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
                let _ = client.post_json(&format!("/v1/import-jobs/{name}/receive"), &serde_json::json!({"disks": disks}));
            }
            return Err(anyhow::Error::new(e).context(format!("import job {name}: the disks were not imported; nothing was copied")));
        }
    };
    let manifest = set.manifest();
    if job["set_id"].as_str() != Some(hex::encode(manifest.set_id).as_str()) {
        bail!(
            "import job {name}: these disks are set {}, but diskprep recorded set {} for the job: were they prepared again?",
            hex::encode(manifest.set_id),
            job["set_id"].as_str().unwrap_or("(none)")
        );
    }
    let digest = hex::encode(manifest.digest());
    if job["manifest_digest"].as_str() != Some(digest.as_str()) {
        bail!("import job {name}: the disks' manifest is not the one diskprep recorded (digest {digest}): the disks were altered; nothing was copied");
    }
    let mut disks: Vec<DiskRecord> = (1..=manifest.disk_count)
        .map(|n| {
            let on = manifest.entries.iter().filter(|e| e.disk == n);
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
    if !matches!(state.as_str(), "completed" | "ingesting") {
        client.post_json(&format!("/v1/import-jobs/{name}/receive"), &serde_json::json!({"disks": disks}))?;
    }
    let container_url = job["container"].as_str().context("the import job has no container")?.to_string();
    let container = ferry_store::open(&container_url).with_context(|| format!("open the container {}", common::redact(&container_url)))?;
    let log_dir = a.log_dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let mut failed = false;
    if !matches!(state.as_str(), "completed" | "ingesting") {
        let transfer = |disks: &[DiskRecord], st: &str, errors: Vec<String>| {
            client
                .post_json(&format!("/v1/import-jobs/{name}/transfer"), &serde_json::json!({"state": st, "disks": disks, "errors": errors}))
        };
        let mut buf = Vec::new();
        for d in disks.iter_mut() {
            d.state = "transferring".into();
        }
        transfer(&disks, "transferring", vec![])?;
        let started = Instant::now();
        for n in 1..=manifest.disk_count {
            let mut logs = Logs::open(&log_dir, name, n)?;
            let d = &mut disks[n as usize - 1];
            for e in manifest.entries.iter().filter(|e| e.disk == n) {
                if let Some(size) = container.head(&e.key)? {
                    if size == e.size && *blake3::hash(&container.get(&e.key)?).as_bytes() == e.hash {
                        d.skipped += 1;
                        Logs::line(&mut logs.copy, &format!("{} present already ({} bytes, hash verified)", e.key, e.size));
                        continue;
                    }
                }
                match set.read_object(e, &mut buf) {
                    Ok(()) => {
                        container.put(&e.key, bytes::Bytes::copy_from_slice(&buf))?;
                        d.copied += 1;
                        Logs::line(&mut logs.copy, &format!("{} copied ({} bytes)", e.key, e.size));
                    }
                    Err(err) => {
                        failed = true;
                        d.errors.push(err.to_string());
                        Logs::line(&mut logs.errors, &err.to_string());
                        eprintln!("error: {err}");
                    }
                }
            }
            d.state = if d.errors.is_empty() { "completed".into() } else { "corrupted".into() };
            if !d.errors.is_empty() {
                eprintln!("disk {n}: {} objects could not be imported; see {}", d.errors.len(), logs.error_path.display());
            }
            transfer(&disks, "transferring", vec![])?;
        }
        if failed {
            let errors = vec!["objects could not be read from the disks; see each disk's error log".to_string()];
            transfer(&disks, "completed-with-errors", errors)?;
            bail!(
                "import job {name}: completed with errors: damaged objects were not copied, and the seed is not ingested; \
                 the disks' error logs in {} name them",
                log_dir.display()
            );
        }
        let objects = manifest.entries.iter().map(|e| SeedObject { key: e.key.clone(), size: e.size, hash: hex::encode(e.hash) }).collect();
        let seed = SeedManifest { job: name.clone(), set_id: hex::encode(manifest.set_id), digest: digest.clone(), objects };
        container.put(SEED_MANIFEST_KEY, serde_json::to_vec(&seed)?.into())?;
        transfer(&disks, "completed", vec![])?;
        let copied: u64 = disks.iter().map(|d| d.copied).sum();
        let skipped: u64 = disks.iter().map(|d| d.skipped).sum();
        eprintln!(
            "import job {name}: {copied} objects copied, {skipped} there already, in {:.1}s; ingesting",
            started.elapsed().as_secs_f64()
        );
    }
    let j = ingest(&client, name)?;
    if g.json {
        common::print_json(&j)?;
    } else {
        println!("import job {name}: ingested; recovery point {}", j["recovery_point"].as_str().unwrap_or("-"));
    }
    Ok(Outcome::Success)
}

/// Starts the vault's ingest and waits for its end.
fn ingest(client: &VaultClient, name: &str) -> Result<serde_json::Value> {
    client.post_json(&format!("/v1/import-jobs/{name}/ingest"), &serde_json::json!({}))?;
    let every = Duration::from_millis(200);
    loop {
        let j = client.get_json(&format!("/v1/import-jobs/{name}"))?;
        match j["state"].as_str() {
            Some("ingested") => return Ok(j),
            Some("ingesting") => std::thread::sleep(every),
            other => {
                let why: Vec<&str> = j["errors"].as_array().into_iter().flatten().filter_map(|e| e.as_str()).collect();
                bail!("import job {name}: ingest did not finish (state {}): {}", other.unwrap_or("?"), why.join("; "));
            }
        }
    }
}
