//! Import jobs' rows: the `import_jobs` table (joined with `device_jobs`, so a device job reads
//! as the import job it is), its reads with expiry applied, and the one guarded UPDATE every
//! change of state goes through (crate::imports has the rules of which change is allowed).

use anyhow::Context;
use sqlx::Row;

use super::{rfc3339, Db};
use crate::error::VaultError;
use crate::Result;
use ferry_api::{DeviceOrder, ImportJob, JobState};

use crate::imports::{ship_within_s, Refusal};

const COLUMNS: &str = "j.name, j.machine, m.name, j.container, j.state, j.created, j.deadline, j.carrier, j.tracking, \
                       j.return_address, j.set_id, j.manifest_digest, j.disks, j.recovery_point, j.errors, j.updated, \
                       d.device_type, d.capacity, d.unlock_expires";
const FROM: &str = "import_jobs j JOIN machines m ON m.id = j.machine LEFT JOIN device_jobs d ON d.name = j.name";

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

/// A job row to insert: an import job (state `created`) or a device job (state `ordered`).
pub(super) struct NewJob<'a> {
    pub name: &'a str,
    pub machine: &'a str,
    pub container: &'a str,
    pub state: JobState,
    pub deadline: i64,
    pub sealed_key: &'a str,
    pub now: i64,
}

impl NewJob<'_> {
    /// Inserts the row, with no disks and no errors, unless the name is taken; whether it was.
    pub(super) async fn insert<'c>(&self, conn: impl sqlx::Executor<'c, Database = sqlx::Any>) -> Result<bool> {
        let sql = format!(
            "INSERT INTO import_jobs (name, machine, container, state, created, deadline, disk_key, disks, errors, updated) \
             VALUES ($1, $2, $3, '{}', $4, $5, $6, '[]', '[]', $7) ON CONFLICT (name) DO NOTHING",
            self.state.as_str()
        );
        let inserted = sqlx::query(&sql)
            .bind(self.name)
            .bind(self.machine)
            .bind(self.container)
            .bind(self.now)
            .bind(self.deadline)
            .bind(self.sealed_key)
            .bind(self.now)
            .execute(conn)
            .await?;
        Ok(inserted.rows_affected() == 1)
    }
}

/// `$first, $first+1, ...`: placeholders for one state each.
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
        let new = NewJob { name, machine, container, state: JobState::Created, deadline: now + ship_within_s(), sealed_key, now };
        let inserted = new.insert(&self.pool).await?;
        let job = self.import_job(name).await?.ok_or_else(|| VaultError::Vanished { what: "import job", name: name.into() })?;
        if inserted || (job.machine == machine && job.container == container && job.state == JobState::Created) {
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
        self.expire_import_jobs(chrono::Utc::now().timestamp()).await?;
        let changed = self.guarded_update("import_jobs", name, from, to, set).await?;
        let Some(job) = self.import_job(name).await? else {
            return Ok(Err(Refusal::NoSuchJob(name.into())));
        };
        if changed {
            Ok(Ok(job))
        } else {
            Ok(Err(Refusal::WrongState { name: name.into(), state: job.state.as_str(), why: why(job.state) }))
        }
    }

    /// The one guarded UPDATE every change of a job's state goes through, import and export
    /// jobs alike: moves row `name` of `table` from one of `from` to `to`, setting the given text
    /// columns too; whether it moved (it did not: no such row, or another state).
    pub(crate) async fn guarded_update(
        &self,
        table: &'static str,
        name: &str,
        from: &[JobState],
        to: JobState,
        set: &[(&str, Option<&str>)],
    ) -> Result<bool> {
        let now = chrono::Utc::now().timestamp();
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
            "UPDATE {table} SET state = $1, updated = $2{assignments} WHERE name = $3 AND state IN ({})",
            in_list(from, 4 + values.len())
        );
        let mut q = sqlx::query(&sql).bind(to.as_str()).bind(now).bind(name);
        for v in values {
            q = q.bind(v);
        }
        for s in from {
            q = q.bind(s.as_str());
        }
        Ok(q.execute(&self.pool).await?.rows_affected() == 1)
    }

    /// The job other than `name` that has tracking number `tracking`, if any.
    pub(crate) async fn tracking_holder(&self, tracking: &str, name: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT name FROM import_jobs WHERE tracking = $1 AND name <> $2")
            .bind(tracking)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get(0)))
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
