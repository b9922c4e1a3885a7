//! `ferry import run`: at the vault's site, an import operator's copy of a job's disks into its
//! storage container, then the vault's ingest (docs/design/offline-seeding.md, steps 4 and 5).
//!
//! Nothing is copied unless the disks are exactly the job's set (`ferry_seed::DiskSet::open`
//! names a missing, duplicated or foreign disk) and their manifest is the one diskprep
//! recorded. Every object is decrypted and hashed before it is written; an object already in
//! the container with the right hash is skipped, so a killed import is simply run again. Each
//! disk gets a copy log and an error log in `--log-dir`.

use anyhow::{bail, Context, Result};
use ferry_api::JobState;
use ferry_seed::{CopyPlan, DiskKey, DiskSet};

use crate::cli::{Global, ImportRunArgs};
use crate::common;
use crate::Outcome;

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
            ferry_seed::report_set_error(&client, name, &job, &e);
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
    let plan = CopyPlan::of_disks(name, manifest);
    let by_key: std::collections::HashMap<&str, &ferry_seed::ManifestEntry> =
        manifest.entries.iter().map(|e| (e.key.as_str(), e)).collect();
    common::copy_and_ingest(g, &client, &job, plan, a.log_dir.as_deref(), &mut |item, buf| match by_key.get(item.key.as_str()) {
        Some(e) => set.read_object(e, buf).map_err(|e| e.to_string()),
        None => Err(format!("object {} is not in the manifest", item.key)),
    })
}
