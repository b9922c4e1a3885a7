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

use anyhow::{Context, Result};
use ferry_api::{DeviceOrder, DiskRecord, DiskSetReport, ImportJob, JobState};
use sqlx::Row;

use crate::db::Db;

/// How long after creation a job may go without a tracking number before it expires (14 days,
/// as for Azure import jobs; `FERRY_VAULT_SHIP_WITHIN_S` overrides it, for tests).
pub fn ship_within_s() -> i64 {
    std::env::var("FERRY_VAULT_SHIP_WITHIN_S").ok().and_then(|v| v.parse().ok()).unwrap_or(14 * 24 * 3600)
}

const COLUMNS: &str = "j.name, j.machine, m.name, j.container, j.state, j.created, j.deadline, j.carrier, j.tracking, \
                       j.return_address, j.set_id, j.manifest_digest, j.disks, j.recovery_point, j.errors, j.updated, \
                       d.device_type, d.capacity, d.unlock_expires";
const FROM: &str = "import_jobs j JOIN machines m ON m.id = j.machine LEFT JOIN device_jobs d ON d.name = j.name";

pub(crate) fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn job_of(r: &sqlx::any::AnyRow) -> Result<ImportJob> {
    let state: String = r.get(4);
    let tracking: Option<String> = r.get(8);
    let disks: String = r.get(12);
    let errors: String = r.get(14);
    let device_type: Option<String> = r.get(16);
    let device = device_type.map(|device_type| {
        let expires: i64 = r.get(18);
        DeviceOrder { device_type, capacity: r.get::<i64, _>(17).max(0) as u64, unlock_expires: (expires > 0).then(|| rfc3339(expires)) }
    });
    Ok(ImportJob {
        name: r.get(0),
        machine: r.get(1),
        machine_name: r.get(2),
        container: r.get(3),
        state: JobState::parse(&state).with_context(|| format!("unknown import job state {state:?} in the database"))?,
        created: rfc3339(r.get(5)),
        deadline: (tracking.is_none() && device.is_none()).then(|| rfc3339(r.get(6))),
        carrier: r.get(7),
        tracking,
        return_address: r.get(9),
        set_id: r.get(10),
        manifest_digest: r.get(11),
        disks: serde_json::from_str(&disks).context("the import job's disks in the database")?,
        recovery_point: r.get(13),
        errors: serde_json::from_str(&errors).unwrap_or_default(),
        updated: rfc3339(r.get(15)),
        kind: if device.is_some() { "device" } else { "disks" }.into(),
        device,
    })
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
}

pub(crate) fn in_list(states: &[JobState], first: usize) -> String {
    (0..states.len()).map(|i| format!("${}", first + i)).collect::<Vec<_>>().join(", ")
}

impl Db {
    /// Marks expired every job still without a tracking number past its deadline.
    pub async fn expire_import_jobs(&self, now: i64) -> Result<u64> {
        let sql = format!(
            "UPDATE import_jobs SET state = 'expired', updated = $1 WHERE tracking IS NULL AND deadline < $2 AND state IN ({})",
            in_list(&JobState::EXPIRING, 3)
        );
        let mut q = sqlx::query(&sql).bind(now).bind(now);
        for s in JobState::EXPIRING {
            q = q.bind(s.as_str());
        }
        Ok(q.execute(&self.pool).await?.rows_affected())
    }

    /// Creates a job for `machine`, with the sealed disk key. A job of the same name, machine
    /// and container still in state `created` is returned as it is (a re-run of a killed
    /// offline backup); any other existing name is refused.
    pub async fn create_import_job(
        &self,
        name: &str,
        machine: &str,
        container: &str,
        sealed_key: &str,
        now: i64,
    ) -> Result<std::result::Result<ImportJob, Refusal>> {
        self.expire_import_jobs(now).await?;
        let inserted = sqlx::query(
            "INSERT INTO import_jobs (name, machine, container, state, created, deadline, disk_key, disks, errors, updated) \
             VALUES ($1, $2, $3, 'created', $4, $5, $6, '[]', '[]', $7) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(machine)
        .bind(container)
        .bind(now)
        .bind(now + ship_within_s())
        .bind(sealed_key)
        .bind(now)
        .execute(&self.pool)
        .await?;
        let job = self.import_job(name).await?.with_context(|| format!("import job {name} vanished"))?;
        if inserted.rows_affected() == 1 || (job.machine == machine && job.container == container && job.state == JobState::Created) {
            return Ok(Ok(job));
        }
        Ok(Err(Refusal::NameTaken { name: name.into(), machine: job.machine_name, state: job.state.as_str() }))
    }

    /// One job, with expiry applied.
    pub async fn import_job(&self, name: &str) -> Result<Option<ImportJob>> {
        self.expire_import_jobs(chrono::Utc::now().timestamp()).await?;
        let sql = format!("SELECT {COLUMNS} FROM {FROM} WHERE j.name = $1");
        sqlx::query(&sql).bind(name).fetch_optional(&self.pool).await?.as_ref().map(job_of).transpose()
    }

    /// Every job (of one machine, by ID, if given), newest first.
    pub async fn import_jobs(&self, machine: Option<&str>) -> Result<Vec<ImportJob>> {
        self.expire_import_jobs(chrono::Utc::now().timestamp()).await?;
        let base = format!("SELECT {COLUMNS} FROM {FROM}");
        let rows = match machine {
            Some(m) => {
                sqlx::query(&format!("{base} WHERE j.machine = $1 ORDER BY j.created DESC, j.name")).bind(m).fetch_all(&self.pool).await?
            }
            None => sqlx::query(&format!("{base} ORDER BY j.created DESC, j.name")).fetch_all(&self.pool).await?,
        };
        rows.iter().map(job_of).collect()
    }

    /// The job's sealed disk key.
    pub async fn import_job_key(&self, name: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT disk_key FROM import_jobs WHERE name = $1").bind(name).fetch_optional(&self.pool).await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Moves job `name` from one of `from` to `to`, setting the given text columns too. On a
    /// refusal, says what state the job is in and `why` it cannot move from there.
    pub(crate) async fn transition(
        &self,
        name: &str,
        from: &[JobState],
        to: JobState,
        set: &[(&str, Option<&str>)],
        why: impl FnOnce(JobState) -> String,
    ) -> Result<std::result::Result<ImportJob, Refusal>> {
        let now = chrono::Utc::now().timestamp();
        self.expire_import_jobs(now).await?;
        // NULL is written into the statement, not bound: PostgreSQL cannot type a NULL parameter.
        let mut assignments = String::new();
        let mut values = Vec::new();
        for (col, v) in set {
            match v {
                Some(v) => {
                    values.push(v.to_string());
                    assignments.push_str(&format!(", {col} = ${}", 3 + values.len()));
                }
                None => assignments.push_str(&format!(", {col} = NULL")),
            }
        }
        let sql = format!(
            "UPDATE import_jobs SET state = $1, updated = $2{assignments} WHERE name = $3 AND state IN ({})",
            in_list(from, 4 + values.len())
        );
        let mut q = sqlx::query(&sql).bind(to.as_str()).bind(now).bind(name);
        for v in values {
            q = q.bind(v);
        }
        for s in from {
            q = q.bind(s.as_str());
        }
        let changed = q.execute(&self.pool).await?.rows_affected() == 1;
        let job = match self.import_job(name).await? {
            Some(j) => j,
            None => return Ok(Err(Refusal::NoSuchJob(name.into()))),
        };
        if changed {
            Ok(Ok(job))
        } else {
            Ok(Err(Refusal::WrongState { name: name.into(), state: job.state.as_str(), why: why(job.state) }))
        }
    }

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
        let taken = sqlx::query("SELECT name FROM import_jobs WHERE tracking = $1 AND name <> $2")
            .bind(tracking)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        if let Some(r) = taken {
            return Ok(Err(Refusal::TrackingTaken { tracking: tracking.into(), other: r.get(0) }));
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

    /// The signed ingest receipt, once ingested.
    pub async fn import_receipt(&self, name: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT receipt FROM import_jobs WHERE name = $1").bind(name).fetch_optional(&self.pool).await?;
        Ok(row.and_then(|r| r.get(0)))
    }

    /// Marks the job's container copy removed (cleanup).
    pub async fn set_import_cleaned(&self, name: &str) -> Result<()> {
        let now = chrono::Utc::now().timestamp();
        sqlx::query("UPDATE import_jobs SET cleaned = 1, updated = $1 WHERE name = $2").bind(now).bind(name).execute(&self.pool).await?;
        Ok(())
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
