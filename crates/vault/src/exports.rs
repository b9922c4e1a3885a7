//! Export jobs: a recovery point that travels from the vault to its machine on disks, the
//! mirror of an import job (issue #18, design in docs/design/export-jobs.md).
//!
//! ```text
//! created → preparing → prepared → shipped → delivered → completed
//! created / preparing / prepared / failed --(owner, contributor, import operator)--> cancelled
//! preparing --(`ferry export run` failed: its error recorded)--> failed --(run again)--> preparing
//! (a killed `ferry export run` leaves the job preparing; run again, it resumes)
//! ```
//!
//! Which objects travel is decided here, without the machine's key: the recovery point's pack
//! list (`packlists/<id>`, written by every backup through a vault for retention) names every
//! pack holding a blob the recovery point uses, trees included. With them go the recovery
//! point, its pack list, every index file (the vault cannot tell which index file describes
//! which pack), the config and the key files. The vault cannot see paths, so an export with
//! `--path`s carries the whole recovery point's packs; the paths narrow the restore.
//!
//! The disk key is made at creation and kept sealed under the vault's escrow key, as an import
//! job's is (`Secrets::seal_disk_key`, under the job's label name `export:NAME`, so an import
//! job's sealed key never opens as an export job's).

use std::sync::Arc;

use ferry_api::{DiskSetReport, ExportJob, JobState, ObjectEntry};
use ferry_format::packlist::PackList;
use ferry_format::RecoveryPointId;
use ferry_store::Store;

use crate::db::Db;
use crate::error::bail;
use crate::imports::Refusal;
use crate::retention::MachineRepo;
use crate::Result;

type Changed = Result<std::result::Result<ExportJob, Refusal>>;

/// The pack keys of the export jobs lately written on this server, by job: the pack list is
/// read once per job, not once per object call. A few jobs at a time are written; the cache is
/// emptied when it holds more.
#[derive(Default)]
pub struct PackCache(std::sync::Mutex<std::collections::HashMap<String, Arc<std::collections::HashSet<String>>>>);

/// Jobs kept in a [`PackCache`].
const CACHED_JOBS: usize = 8;

impl PackCache {
    /// The pack keys export job `job` (recovery point `rp` of `machine`) carries.
    pub(crate) fn packs(
        &self,
        store: Arc<dyn Store>,
        job: &str,
        machine: &str,
        rp: &RecoveryPointId,
    ) -> Result<Arc<std::collections::HashSet<String>>> {
        let lock = || self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(p) = lock().get(job) {
            return Ok(p.clone());
        }
        let list = MachineRepo::new(store, machine).pack_list(rp)?;
        let packs: Arc<std::collections::HashSet<String>> =
            Arc::new(list.map(|l| l.packs.iter().map(ferry_format::PackId::object_key).collect()).unwrap_or_default());
        let mut cache = lock();
        if cache.len() >= CACHED_JOBS {
            cache.clear();
        }
        cache.insert(job.to_string(), packs.clone());
        Ok(packs)
    }
}

/// The full ID of the machine's recovery point `wanted`: an ID, a unique prefix of at least 8
/// hex digits, or `latest` (by its pack list's time).
pub(crate) fn resolve_point(store: Arc<dyn Store>, machine: &str, wanted: &str) -> Result<RecoveryPointId> {
    let repo = MachineRepo::new(store, machine);
    let ids: Vec<RecoveryPointId> = repo.ids("recovery-points/")?.into_iter().map(|(id, _)| id).collect();
    if wanted == "latest" {
        let mut newest: Option<(String, RecoveryPointId)> = None;
        for id in ids {
            let time = repo.pack_list(&id)?.map(|p| p.time).unwrap_or_default();
            if newest.as_ref().is_none_or(|(t, _)| time > *t) {
                newest = Some((time, id));
            }
        }
        return match newest {
            Some((_, id)) => Ok(id),
            None => bail!("the machine has no recovery point: back it up first"),
        };
    }
    if wanted.len() < 8 || !wanted.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("recovery point {wanted:?}: give its ID (at least 8 hex digits, `ferry recovery-points` lists them) or `latest`");
    }
    let found: Vec<_> = ids.into_iter().filter(|id| id.to_hex().starts_with(&wanted.to_ascii_lowercase())).collect();
    match found.as_slice() {
        [id] => Ok(*id),
        [] => bail!("the machine has no recovery point {wanted}: `ferry recovery-points --machine NAME` lists them"),
        _ => bail!("{} recovery points start with {wanted}: give more digits", found.len()),
    }
}

/// Every object the export of recovery point `rp` of `machine` carries, with its size (keys
/// relative to the machine's repository), sorted by key.
pub(crate) fn export_objects(store: Arc<dyn Store>, machine: &str, rp: &RecoveryPointId) -> Result<Vec<ObjectEntry>> {
    let repo = MachineRepo::new(store, machine);
    let Some(list) = repo.pack_list(rp)? else {
        bail!(
            "recovery point {} has no pack list (it was not made through the vault, or its pack list is damaged): \
             the vault cannot tell which packs it needs without the machine's key; restore it over the network",
            rp.short()
        );
    };
    let wanted: std::collections::HashSet<String> = list.packs.iter().map(ferry_format::PackId::object_key).collect();
    let mut out = Vec::new();
    for (key, size, _) in repo.list("data/")? {
        if wanted.contains(&key) {
            out.push(ObjectEntry { key, size, modified: None });
        }
    }
    if out.len() != wanted.len() {
        bail!(
            "{} of the {} packs recovery point {} needs are missing from the vault's store: run `ferry vault scrub` and report it",
            wanted.len() - out.len(),
            wanted.len(),
            rp.short()
        );
    }
    for prefix in ["index/", "keys/", "config"] {
        out.extend(repo.list(prefix)?.into_iter().map(|(key, size, _)| ObjectEntry { key, size, modified: None }));
    }
    for key in [rp.object_key(), PackList::object_key(rp)] {
        match repo.list(&key)?.into_iter().find(|(k, _, _)| *k == key) {
            Some((key, size, _)) => out.push(ObjectEntry { key, size, modified: None }),
            None => bail!("{key} is not in the vault's store (the recovery point was deleted?)"),
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out.dedup_by(|a, b| a.key == b.key);
    Ok(out)
}

impl Db {
    /// `ferry export run` starts (or resumes) writing the disks.
    pub(crate) async fn start_export(&self, name: &str) -> Changed {
        let from = [JobState::Created, JobState::Preparing, JobState::Failed];
        self.export_transition(name, &from, JobState::Preparing, &[("errors", Some("[]"))], |s| match s {
            JobState::Prepared => "its disks are written already: ship them (`ferry export-job ship`)".into(),
            JobState::Cancelled => "it was cancelled: create a new export job".into(),
            _ => "its disks left the vault's site".into(),
        })
        .await
    }

    /// Records the disks written; a complete set moves the job to prepared.
    pub(crate) async fn set_export_disks(&self, name: &str, set: &DiskSetReport) -> Changed {
        let disks = serde_json::to_string(&set.disks)?;
        let to = if set.complete { JobState::Prepared } else { JobState::Preparing };
        let cols = [("set_id", Some(set.set_id.as_str())), ("manifest_digest", set.manifest_digest.as_deref()), ("disks", Some(&*disks))];
        self.export_transition(name, &[JobState::Preparing], to, &cols, |_| "it is not being prepared: run `ferry export run` again".into())
            .await
    }

    /// Records why writing the disks stopped; a rerun resumes (failed → preparing).
    pub(crate) async fn fail_export(&self, name: &str, error: &str) -> Changed {
        let errors = serde_json::to_string(&[error])?;
        self.export_transition(name, &[JobState::Preparing], JobState::Failed, &[("errors", Some(&errors))], |_| {
            "it is not being prepared".into()
        })
        .await
    }

    pub(crate) async fn ship_export(&self, name: &str, carrier: &str, tracking: &str) -> Changed {
        self.export_transition(
            name,
            &[JobState::Prepared, JobState::Shipped],
            JobState::Shipped,
            &[("carrier", Some(carrier)), ("tracking", Some(tracking))],
            |s| match s {
                JobState::Created | JobState::Preparing | JobState::Failed => {
                    "its disks are not written yet: run `ferry export run` at the vault's site first".into()
                }
                _ => "shipping details can no longer change".into(),
            },
        )
        .await
    }

    /// The machine's owner asked for the disk-unlock file of a shipped job: the disks arrived.
    pub(crate) async fn deliver_export(&self, name: &str) -> Changed {
        self.export_transition(name, &[JobState::Shipped], JobState::Delivered, &[], |_| "it is not shipped".into()).await
    }

    pub(crate) async fn cancel_export(&self, name: &str) -> Changed {
        self.export_transition(name, &JobState::EXPORT_CANCELLABLE, JobState::Cancelled, &[], |_| {
            "its disks left the vault's site already".into()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::export_jobs::NewExport;
    use ferry_api::DiskRecord;

    #[test]
    fn an_export_job_moves_through_its_states() {
        crate::db::testing::on_sqlite(|db, tag| async move { states(&db, &tag).await });
    }

    #[test]
    fn an_export_job_moves_through_its_states_on_postgres() {
        crate::db::testing::on_postgres(|db, tag| async move { states(&db, &tag).await });
    }

    async fn states(db: &Db, tag: &str) {
        let n = |s: &str| format!("{s}{tag}");
        let secret = db.add_registration(i64::MAX).await.unwrap();
        let (m, _) = db.register(&secret, &n("m1"), 0).await.unwrap().unwrap();
        let paths = vec!["/srv".to_string()];
        let new = NewExport {
            name: &n("e1"),
            machine: &m,
            recovery_point: "ab",
            paths: &paths,
            return_address: None,
            deadline: 0,
            sealed_key: "k",
        };
        let j = db.create_export_job(&new).await.unwrap().unwrap();
        assert_eq!((j.state, j.paths.clone()), (JobState::Created, paths.clone()));
        assert!(matches!(db.create_export_job(&new).await.unwrap(), Err(Refusal::ExportNameTaken { .. })));
        let e = db.ship_export(&n("e1"), "DHL", &n("T")).await.unwrap().unwrap_err().to_string();
        assert!(e.contains("export run"), "{e}");
        db.start_export(&n("e1")).await.unwrap().unwrap();
        let j = db.fail_export(&n("e1"), "disk 2: full").await.unwrap().unwrap();
        assert_eq!((j.state, j.errors.clone()), (JobState::Failed, vec!["disk 2: full".to_string()]));
        let j = db.start_export(&n("e1")).await.unwrap().unwrap();
        assert_eq!((j.state, j.errors.len()), (JobState::Preparing, 0), "a rerun clears the error");
        let disk = DiskRecord { id: 1, state: "prepared".into(), bytes: 1, objects: 1, copied: 0, skipped: 0, errors: vec![] };
        let set = DiskSetReport { set_id: "a".repeat(32), manifest_digest: Some("d".repeat(64)), disks: vec![disk], complete: true };
        assert_eq!(db.set_export_disks(&n("e1"), &set).await.unwrap().unwrap().state, JobState::Prepared);
        let j = db.ship_export(&n("e1"), "DHL", &n("T")).await.unwrap().unwrap();
        assert_eq!((j.state, j.deadline), (JobState::Shipped, None));
        assert!(db.cancel_export(&n("e1")).await.unwrap().is_err(), "too late to cancel");
        assert_eq!(db.deliver_export(&n("e1")).await.unwrap().unwrap().state, JobState::Delivered);
        assert!(matches!(db.cancel_export(&n("nope")).await.unwrap(), Err(Refusal::NoSuchExportJob(_))));
    }
}
