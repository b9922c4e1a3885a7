//! Export jobs' rows: the `export_jobs` table (migration 5) and its reads; every change of
//! state goes through the import jobs' guarded UPDATE (`Db::guarded_update`), and
//! crate::exports has the rules of which change is allowed.

use anyhow::Context;
use sqlx::Row;

use super::{rfc3339, Db};
use crate::imports::Refusal;
use crate::Result;
use ferry_api::{ExportJob, JobState};

const COLUMNS: &str = "j.name, j.machine, m.name, j.recovery_point, j.paths, j.state, j.created, j.deadline, j.carrier, \
                       j.tracking, j.return_address, j.set_id, j.manifest_digest, j.disks, j.errors, j.updated";
const FROM: &str = "export_jobs j JOIN machines m ON m.id = j.machine";

fn job_of(r: &sqlx::any::AnyRow) -> Result<ExportJob> {
    let state: String = r.get(5);
    let tracking: Option<String> = r.get(9);
    let (paths, disks, errors): (String, String, String) = (r.get(4), r.get(13), r.get(14));
    Ok(ExportJob {
        name: r.get(0),
        machine: r.get(1),
        machine_name: r.get(2),
        recovery_point: r.get(3),
        paths: serde_json::from_str(&paths).context("the export job's paths in the database")?,
        state: JobState::parse(&state).with_context(|| format!("unknown export job state {state:?} in the database"))?,
        created: rfc3339(r.get(6)),
        deadline: tracking.is_none().then(|| rfc3339(r.get(7))),
        carrier: r.get(8),
        tracking,
        return_address: r.get(10),
        set_id: r.get(11),
        manifest_digest: r.get(12),
        disks: serde_json::from_str(&disks).context("the export job's disks in the database")?,
        errors: serde_json::from_str(&errors).unwrap_or_default(),
        updated: rfc3339(r.get(15)),
    })
}

/// An export job row to insert (state `created`).
pub(crate) struct NewExport<'a> {
    pub name: &'a str,
    pub machine: &'a str,
    pub recovery_point: &'a str,
    pub paths: &'a [String],
    pub return_address: Option<&'a str>,
    pub deadline: i64,
    pub sealed_key: &'a str,
}

impl Db {
    /// Creates an export job, unless the name is taken.
    pub(crate) async fn create_export_job(&self, new: &NewExport<'_>) -> Result<std::result::Result<ExportJob, Refusal>> {
        let now = chrono::Utc::now().timestamp();
        let inserted = sqlx::query(
            "INSERT INTO export_jobs (name, machine, recovery_point, paths, state, created, deadline, return_address, disk_key, \
             disks, errors, updated) VALUES ($1, $2, $3, $4, 'created', $5, $6, $7, $8, '[]', '[]', $9) ON CONFLICT (name) DO NOTHING",
        )
        .bind(new.name)
        .bind(new.machine)
        .bind(new.recovery_point)
        .bind(serde_json::to_string(new.paths)?)
        .bind(now)
        .bind(new.deadline)
        .bind(new.return_address)
        .bind(new.sealed_key)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1;
        let job = self.export_job(new.name).await?.ok_or_else(|| Refusal::NoSuchExportJob(new.name.into()));
        match job {
            Ok(j) if inserted => Ok(Ok(j)),
            Ok(j) => Ok(Err(Refusal::ExportNameTaken { name: j.name, machine: j.machine_name, state: j.state.as_str() })),
            Err(r) => Ok(Err(r)),
        }
    }

    pub async fn export_job(&self, name: &str) -> Result<Option<ExportJob>> {
        let sql = format!("SELECT {COLUMNS} FROM {FROM} WHERE j.name = $1");
        sqlx::query(&sql).bind(name).fetch_optional(&self.pool).await?.as_ref().map(job_of).transpose()
    }

    /// Every export job, newest first.
    pub async fn export_jobs(&self) -> Result<Vec<ExportJob>> {
        let sql = format!("SELECT {COLUMNS} FROM {FROM} ORDER BY j.created DESC, j.name");
        sqlx::query(&sql).fetch_all(&self.pool).await?.iter().map(job_of).collect()
    }

    /// The job's sealed disk key.
    pub(crate) async fn export_job_key(&self, name: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT disk_key FROM export_jobs WHERE name = $1").bind(name).fetch_optional(&self.pool).await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Moves export job `name` from one of `from` to `to` (see `Db::transition` of import jobs).
    pub(crate) async fn export_transition(
        &self,
        name: &str,
        from: &[JobState],
        to: JobState,
        set: &[(&str, Option<&str>)],
        why: impl FnOnce(JobState) -> String,
    ) -> Result<std::result::Result<ExportJob, Refusal>> {
        let changed = self.guarded_update("export_jobs", name, from, to, set).await?;
        let Some(job) = self.export_job(name).await? else {
            return Ok(Err(Refusal::NoSuchExportJob(name.into())));
        };
        if changed {
            Ok(Ok(job))
        } else {
            Ok(Err(Refusal::ExportWrongState { name: name.into(), state: job.state.as_str(), why: why(job.state) }))
        }
    }
}
