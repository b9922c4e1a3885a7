//! `ferry import run`: at the vault's site, an import operator's copy of a job's disks into its
//! storage container, then the vault's ingest (docs/design/offline-seeding.md, steps 4 and 5).
//!
//! Nothing is copied unless the disks are exactly the job's set (`ferry_seed::DiskSet::open`
//! names a missing, duplicated or foreign disk) and their manifest is the one diskprep
//! recorded. Every object is decrypted and hashed before it is written; an object already in
//! the container with the right hash is skipped, so a killed import is simply run again. Each
//! disk gets a copy log and an error log in `--log-dir`.

use anyhow::{Context, Result};
use ferry_seed::{CopyPlan, DiskKey, DiskSet};

use crate::cli::{Global, ImportRunArgs};
use crate::common;
use crate::Outcome;

pub fn run(g: &Global, a: &ImportRunArgs) -> Result<Outcome> {
    let client = common::seeding_client(g)?;
    let name = &a.import_job;
    let job = client.import_job(name)?.job;
    ferry_seed::check_not_ingested(&job, "disk")?;
    let key = DiskKey::from_hex(&client.disk_key(name)?).context("the vault sent a malformed disk key")?;
    let set = match DiskSet::open(&a.disks, name, &key) {
        Ok(s) => s,
        Err(e) => {
            ferry_seed::report_set_error(&client, name, &job, &e);
            return Err(anyhow::Error::new(e).context(format!("import job {name}: the disks were not imported; nothing was copied")));
        }
    };
    let manifest = set.manifest();
    let plan = CopyPlan::of_disks(name, manifest);
    plan.check_against(&job)?;
    let by_key: std::collections::HashMap<&str, &ferry_seed::ManifestEntry> =
        manifest.entries.iter().map(|e| (e.key.as_str(), e)).collect();
    common::copy_and_ingest(g, &client, &job, plan, a.log_dir.as_deref(), &mut |item, buf| match by_key.get(item.key.as_str()) {
        Some(e) => set.read_object(e, buf).map_err(|e| e.to_string()),
        None => Err(format!("object {} is not in the manifest", item.key)),
    })
}
