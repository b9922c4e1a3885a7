//! Import jobs: the vault's record of one offline seed travelling on disks (issue #4, design in
//! docs/design/offline-seeding.md, protocol in docs/protocol.md "Import jobs").
//!
//! A job is created by the machine whose first backup goes to a staging location, gets its disk
//! set from `ferry diskprep`, its shipping details from the owner, and its disks' states from
//! the import operator at the vault's site. The states are those of an Azure import job:
//!
//! ```text
//! created → awaiting-shipment → shipping → received → transferring → completed → ingesting → ingested
//!                                                                  ↘ completed-with-errors / failed
//! created / awaiting-shipment --(no tracking number by the deadline)--> expired
//! any state before transferring --(owner, contributor, the machine)--> cancelled
//! ```
//!
//! Every change is one conditional `UPDATE ... WHERE state IN (...)`, so two servers on one
//! PostgreSQL database (or two requests racing) cannot both move a job: the loser changes no row
//! and is told the job's current state.
//!
//! The disk key is made here, at creation, and kept sealed under the vault's escrow key (a file
//! in the vault's data folder, never in the database): a stolen database alone does not open a
//! shipped disk.

use ferry_api::{DiskRecord, DiskSetReport, ImportJob, JobState};

use crate::Result;

pub(crate) use crate::db::rfc3339;
use crate::db::Db;

/// How long after creation a job may go without a tracking number before it expires (14 days,
/// as for Azure import jobs; `FERRY_VAULT_SHIP_WITHIN_S` overrides it, for tests).
pub fn ship_within_s() -> i64 {
    std::env::var("FERRY_VAULT_SHIP_WITHIN_S").ok().and_then(|v| v.parse().ok()).unwrap_or(14 * 24 * 3600)
}

/// Why a change of a job was refused (a message for the caller, naming the job).
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("no import job {0:?} (see `ferry import-job list`)")]
    NoSuchJob(String),
    #[error("import job {name:?} exists already (machine {machine}, state {state}): choose another name")]
    NameTaken { name: String, machine: String, state: &'static str },
    #[error("import job {name:?} is {state}: {why}")]
    WrongState { name: String, state: &'static str, why: String },
    #[error("tracking number {tracking:?} is already used by import job {other:?}: check the number")]
    TrackingTaken { tracking: String, other: String },
    // Export jobs (crate::exports) share the rules and their refusals.
    #[error("no export job {0:?} (see `ferry export-job list`)")]
    NoSuchExportJob(String),
    #[error("export job {name:?} exists already (machine {machine}, state {state}): choose another name")]
    ExportNameTaken { name: String, machine: String, state: &'static str },
    #[error("export job {name:?} is {state}: {why}")]
    ExportWrongState { name: String, state: &'static str, why: String },
}

impl Db {
    /// Records what diskprep wrote; a complete set moves the job to awaiting-shipment.
    pub async fn set_import_disks(&self, name: &str, set: &DiskSetReport) -> Result<std::result::Result<ImportJob, Refusal>> {
        let disks = serde_json::to_string(&set.disks)?;
        let to = if set.complete { JobState::AwaitingShipment } else { JobState::Created };
        let from: &[JobState] = if set.complete { &JobState::EXPIRING } else { &[JobState::Created] };
        // A set, once recorded, is the job's: diskprep of another set for the same job is refused.
        if let Some(job) = self.import_job(name).await? {
            if job.set_id.as_deref().is_some_and(|s| s != set.set_id) && job.state != JobState::Created {
                return Ok(Err(Refusal::WrongState {
                    name: name.into(),
                    state: job.state.as_str(),
                    why: format!("its disks are set {}, not {}", job.set_id.unwrap_or_default(), set.set_id),
                }));
            }
        }
        self.transition(
            name,
            from,
            to,
            &[("set_id", Some(&set.set_id)), ("manifest_digest", set.manifest_digest.as_deref()), ("disks", Some(&disks))],
            |s| match s {
                JobState::Expired => "it was not shipped in time; its disks will not be processed: create a new import job".into(),
                _ => "its disks were prepared already".into(),
            },
        )
        .await
    }

    /// Records the shipping details: the job is then `shipping` and no longer expires.
    pub async fn ship_import_job(
        &self,
        name: &str,
        carrier: &str,
        tracking: &str,
        return_address: Option<&str>,
    ) -> Result<std::result::Result<ImportJob, Refusal>> {
        if let Some(other) = self.tracking_holder(tracking, name).await? {
            return Ok(Err(Refusal::TrackingTaken { tracking: tracking.into(), other }));
        }
        let r = self
            .transition(
                name,
                &[JobState::AwaitingShipment, JobState::Shipping],
                JobState::Shipping,
                &[("carrier", Some(carrier)), ("tracking", Some(tracking)), ("return_address", return_address)],
                |s| match s {
                    JobState::Created => "its disks are not prepared yet: run `ferry diskprep` first".into(),
                    JobState::Expired => {
                        "it was not shipped within the deadline; its disks will not be processed: create a new import job".into()
                    }
                    _ => "shipping details can no longer change".into(),
                },
            )
            .await;
        match r {
            // Two jobs racing for one number: the unique index refuses the second.
            Err(e) if e.to_string().contains("UNIQUE") || e.to_string().to_lowercase().contains("unique") => {
                Ok(Err(Refusal::TrackingTaken { tracking: tracking.into(), other: "another job".into() }))
            }
            r => r,
        }
    }

    pub async fn cancel_import_job(&self, name: &str) -> Result<std::result::Result<ImportJob, Refusal>> {
        self.transition(name, &JobState::CANCELLABLE, JobState::Cancelled, &[], |_| "its disks are being or have been imported".into())
            .await
    }

    /// The import operator has the disks: `received`, with each disk's state.
    pub async fn receive_import_job(&self, name: &str, disks: &[DiskRecord]) -> Result<std::result::Result<ImportJob, Refusal>> {
        let disks = serde_json::to_string(disks)?;
        self.transition(
            name,
            &[
                JobState::Shipping,
                JobState::Received,
                JobState::Transferring,
                JobState::CompletedWithErrors,
                JobState::Failed,
                JobState::InUse,
                JobState::Returning,
            ],
            JobState::Received,
            &[("disks", Some(&disks))],
            |s| match s {
                JobState::Expired => "it was not shipped in time; its disks must not be processed: return them".into(),
                JobState::Cancelled => "it was cancelled; its disks must not be processed: return them".into(),
                JobState::Created | JobState::AwaitingShipment => {
                    "it has no shipping details: the owner runs `ferry import-job ship` first".into()
                }
                JobState::Ordered | JobState::Prepared | JobState::ShippedToCustomer | JobState::Delivered => {
                    "its device holds no sealed backup yet: the machine writes it first (`ferry backup --device`)".into()
                }
                _ => "its disks were imported already".into(),
            },
        )
        .await
    }

    /// Progress or end of the copy: `state` one of transferring, completed,
    /// completed-with-errors, failed.
    pub async fn update_import_transfer(
        &self,
        name: &str,
        state: JobState,
        disks: &[DiskRecord],
        errors: &[String],
    ) -> Result<std::result::Result<ImportJob, Refusal>> {
        let (disks, errors) = (serde_json::to_string(disks)?, serde_json::to_string(errors)?);
        self.transition(
            name,
            &[JobState::Received, JobState::Transferring, JobState::Failed, JobState::CompletedWithErrors],
            state,
            &[("disks", Some(&disks)), ("errors", Some(&errors))],
            |_| "it is not being imported".into(),
        )
        .await
    }

    /// Claims the job for ingest (completed → ingesting), or records its end.
    pub async fn set_import_ingest(
        &self,
        name: &str,
        from: &[JobState],
        to: JobState,
        recovery_point: Option<&str>,
        receipt: Option<&str>,
        errors: &[String],
    ) -> Result<std::result::Result<ImportJob, Refusal>> {
        let errors = serde_json::to_string(errors)?;
        self.transition(name, from, to, &[("recovery_point", recovery_point), ("receipt", receipt), ("errors", Some(&errors))], |s| match s
        {
            JobState::Ingested => "its seed was ingested already; a seed is ingested only once".into(),
            JobState::Ingesting => "its seed is being ingested now".into(),
            _ => "its import has not completed".into(),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(id: &str, complete: bool) -> DiskSetReport {
        let disks = vec![DiskRecord { id: 1, state: "prepared".into(), bytes: 10, objects: 2, copied: 0, skipped: 0, errors: vec![] }];
        DiskSetReport { set_id: id.into(), manifest_digest: complete.then(|| "d".repeat(64)), disks, complete }
    }

    #[test]
    fn a_job_moves_through_its_states_and_refuses_what_does_not_fit() {
        crate::db::testing::on_sqlite(|db, tag| async move { states(&db, &tag).await });
    }

    /// The same on PostgreSQL, with names unique to this run in the shared database.
    #[test]
    fn a_job_moves_through_its_states_on_postgres() {
        crate::db::testing::on_postgres(|db, tag| async move { states(&db, &tag).await });
    }

    async fn states(db: &Db, tag: &str) {
        let n = |s: &str| format!("{s}{tag}");
        let (j1, j2, j3, t1) = (n("j1"), n("j2"), n("j3"), n("T1"));
        let secret = db.add_registration(i64::MAX).await.unwrap();
        let (m, _) = db.register(&secret, &n("m1"), 0).await.unwrap().unwrap();
        let now = chrono::Utc::now().timestamp();
        let j = db.create_import_job(&j1, &m, "/c/j1", "sealed", now).await.unwrap().unwrap();
        assert_eq!((j.state, j.machine_name), (JobState::Created, n("m1")));
        // A re-run of the offline backup finds its job; another container does not.
        assert!(db.create_import_job(&j1, &m, "/c/j1", "sealed2", now).await.unwrap().is_ok());
        assert!(matches!(db.create_import_job(&j1, &m, "/c/other", "s", now).await.unwrap(), Err(Refusal::NameTaken { .. })));
        // Not shippable before its disks are prepared.
        let e = db.ship_import_job(&j1, "DHL", &t1, None).await.unwrap().unwrap_err().to_string();
        assert!(e.contains("diskprep"), "{e}");
        db.set_import_disks(&j1, &set(&"a".repeat(32), false)).await.unwrap().unwrap();
        let j = db.set_import_disks(&j1, &set(&"a".repeat(32), true)).await.unwrap().unwrap();
        assert_eq!(j.state, JobState::AwaitingShipment);
        let j = db.ship_import_job(&j1, "DHL", &t1, Some("home")).await.unwrap().unwrap();
        assert_eq!((j.state, j.tracking.as_deref(), j.deadline.as_deref()), (JobState::Shipping, Some(t1.as_str()), None));
        // A tracking number belongs to one job.
        db.create_import_job(&j2, &m, "/c/j2", "s", now).await.unwrap().unwrap();
        db.set_import_disks(&j2, &set(&"b".repeat(32), true)).await.unwrap().unwrap();
        let e = db.ship_import_job(&j2, "UPS", &t1, None).await.unwrap().unwrap_err().to_string();
        assert!(e.contains(&j1) && e.contains(&t1), "{e}");
        // Received, transferred, claimed for ingest once.
        let disks = set("", true).disks;
        db.receive_import_job(&j1, &disks).await.unwrap().unwrap();
        db.update_import_transfer(&j1, JobState::Completed, &disks, &[]).await.unwrap().unwrap();
        assert!(db.cancel_import_job(&j1).await.unwrap().is_err(), "too late to cancel");
        db.set_import_ingest(&j1, &[JobState::Completed], JobState::Ingesting, None, None, &[]).await.unwrap().unwrap();
        db.set_import_ingest(&j1, &[JobState::Ingesting], JobState::Ingested, Some("rp"), Some("{}"), &[]).await.unwrap().unwrap();
        let e = db.set_import_ingest(&j1, &[JobState::Completed], JobState::Ingesting, None, None, &[]).await.unwrap().unwrap_err();
        assert!(e.to_string().contains("only once"), "{e}");
        assert_eq!(db.import_receipt(&j1).await.unwrap().as_deref(), Some("{}"));
        // A job without a tracking number expires at its deadline, and then ships no more.
        db.create_import_job(&j3, &m, "/c/j3", "s", now - ship_within_s() - 10).await.unwrap().unwrap();
        assert_eq!(db.import_job(&j3).await.unwrap().unwrap().state, JobState::Expired);
        let e = db.ship_import_job(&j3, "DHL", &n("T3"), None).await.unwrap().unwrap_err().to_string();
        assert!(e.contains("expired"), "{e}");
        assert!(matches!(db.cancel_import_job(&n("nope")).await.unwrap(), Err(Refusal::NoSuchJob(_))));
        assert_eq!(db.import_jobs(Some(&m)).await.unwrap().len(), 3);
    }
}
