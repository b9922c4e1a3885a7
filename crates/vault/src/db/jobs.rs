//! Jobs: what agents report of their backups, restores and other work (progress by heartbeat,
//! the end with totals and recovery point), the reaping of silent ones, and the reads the API,
//! the alerts, the dashboard, the samples and `/metrics` make of them.

use ferry_api::JobUpdate;
use sqlx::Row;

use super::{rfc3339, Db};
use crate::Result;

impl Db {
    /// Opens a running job for `machine`; returns its ID.
    pub async fn create_job(&self, machine: &str, kind: &str, now: i64) -> Result<i64> {
        let row = sqlx::query("INSERT INTO jobs (machine, kind, state, start, heartbeat) VALUES ($1, $2, 'running', $3, $4) RETURNING id")
            .bind(machine)
            .bind(kind)
            .bind(rfc3339(now))
            .bind(now)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.get(0))
    }

    /// Records a running job's progress, or its end (`state` other than running). Only the
    /// machine's own, still running jobs change; false if there is none such.
    pub async fn update_job(&self, id: i64, machine: &str, u: &JobUpdate, now: i64) -> Result<bool> {
        // The end time is set when the job ends; a heartbeat leaves it as it is. Two statements
        // rather than COALESCE($N, "end") with a NULL parameter.
        let sql = if u.state == "running" {
            "UPDATE jobs SET state = $1, bytes = $2, files = $3, errors = $4, heartbeat = $5 \
             WHERE id = $6 AND machine = $7 AND state = 'running'"
        } else {
            "UPDATE jobs SET state = $1, bytes = $2, files = $3, errors = $4, heartbeat = $5, \"end\" = $8 \
             WHERE id = $6 AND machine = $7 AND state = 'running'"
        };
        let mut q = sqlx::query(sql)
            .bind(&u.state)
            .bind(u.bytes as i64)
            .bind(u.files as i64)
            .bind(serde_json::to_string(&u.errors)?)
            .bind(now)
            .bind(id)
            .bind(machine);
        if u.state != "running" {
            q = q.bind(rfc3339(now));
        }
        let r = q.execute(&self.pool).await?;
        let updated = r.rows_affected() == 1;
        if let (true, Some(total)) = (updated && u.state != "running", u.total_bytes) {
            let rp = u.recovery_point.as_deref().filter(|r| r.len() == 64 && r.bytes().all(|b| b.is_ascii_hexdigit()));
            let tags: Vec<&String> = u.tags.iter().filter(|t| t.len() <= 200).take(100).collect();
            sqlx::query(
                "INSERT INTO job_totals (job, total_bytes, recovery_point, tags) VALUES ($1, $2, $3, $4) ON CONFLICT (job) DO NOTHING",
            )
            .bind(id)
            .bind(total as i64)
            .bind(rp.unwrap_or_default())
            .bind(serde_json::to_string(&tags)?)
            .execute(&self.pool)
            .await?;
        }
        Ok(updated)
    }

    /// Marks failed every running job whose agent has not reported for `timeout_s`.
    pub async fn reap_jobs(&self, now: i64, timeout_s: i64) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE jobs SET state = 'failed', \"end\" = $1, errors = '[\"the agent stopped reporting\"]' \
             WHERE state = 'running' AND heartbeat < $2",
        )
        .bind(rfc3339(now))
        .bind(now - timeout_s)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    /// Jobs, newest first; of one machine (by ID) if given.
    pub async fn jobs(&self, machine: Option<&str>) -> Result<Vec<ferry_api::JobView>> {
        const COLUMNS: &str = "SELECT j.id, m.name, j.kind, j.state, j.start, j.\"end\", j.bytes, j.files, j.errors \
                               FROM jobs j JOIN machines m ON m.id = j.machine";
        let rows = match machine {
            Some(m) => {
                sqlx::query(&format!("{COLUMNS} WHERE j.machine = $1 ORDER BY j.id DESC LIMIT 1000")).bind(m).fetch_all(&self.pool).await?
            }
            None => sqlx::query(&format!("{COLUMNS} ORDER BY j.id DESC LIMIT 1000")).fetch_all(&self.pool).await?,
        };
        Ok(rows
            .into_iter()
            .map(|r| {
                let errors: String = r.get(8);
                ferry_api::JobView {
                    id: r.get(0),
                    machine: r.get(1),
                    kind: r.get(2),
                    state: r.get(3),
                    start: r.get(4),
                    end: r.get(5),
                    bytes: r.get(6),
                    files: r.get(7),
                    errors: serde_json::from_str(&errors).unwrap_or_default(),
                }
            })
            .collect())
    }

    /// The protected size of each machine: the size its last successful backup reported.
    pub async fn protected_bytes(&self) -> Result<std::collections::HashMap<String, u64>> {
        let rows = sqlx::query(
            "SELECT j.machine, t.total_bytes FROM jobs j JOIN job_totals t ON t.job = j.id \
             WHERE j.state <> 'failed' ORDER BY j.id",
        )
        .fetch_all(&self.pool)
        .await?;
        // Later jobs overwrite earlier ones: the last one counts.
        Ok(rows.into_iter().map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1).max(0) as u64)).collect())
    }

    /// How many jobs there are of each kind and state.
    pub(crate) async fn job_counts(&self) -> Result<Vec<(String, String, u64)>> {
        let rows = sqlx::query("SELECT kind, state, COUNT(*) FROM jobs GROUP BY kind, state").fetch_all(&self.pool).await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get::<i64, _>(2).max(0) as u64)).collect())
    }

    /// Finished jobs by kind: (kind, their durations' sum in seconds, how many, their errors).
    /// Aggregated by the database (a vault keeps every job): a finished job's last heartbeat
    /// is its end.
    pub(crate) async fn finished_jobs(&self) -> Result<Vec<(String, i64, i64, i64)>> {
        let finished = match self.backend() {
            super::Backend::Sqlite => {
                "SELECT kind, CAST(SUM(MAX(heartbeat - CAST(strftime('%s', start) AS INTEGER), 0)) AS BIGINT), COUNT(*), \
                 CAST(SUM(json_array_length(errors)) AS BIGINT) FROM jobs WHERE \"end\" IS NOT NULL GROUP BY kind"
            }
            super::Backend::Postgres => {
                "SELECT kind, CAST(SUM(GREATEST(heartbeat - CAST(EXTRACT(EPOCH FROM CAST(start AS timestamptz)) AS BIGINT), 0)) AS BIGINT), \
                 COUNT(*), CAST(SUM(json_array_length(CAST(errors AS json))) AS BIGINT) FROM jobs WHERE \"end\" IS NOT NULL GROUP BY kind"
            }
        };
        let rows = sqlx::query(finished).fetch_all(&self.pool).await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get::<Option<i64>, _>(1).unwrap_or(0), r.get::<i64, _>(2), r.get::<Option<i64>, _>(3).unwrap_or(0)))
            .collect())
    }

    /// Each machine's (by name) end of its last job of one of `kinds` that did not fail.
    pub(crate) async fn last_backups(&self, kinds: &[&str]) -> Result<Vec<(String, i64)>> {
        let kinds = kinds.iter().map(|k| format!("'{k}'")).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "SELECT m.name, MAX(j.heartbeat) FROM jobs j JOIN machines m ON m.id = j.machine \
             WHERE j.kind IN ({kinds}) AND j.state <> 'failed' AND j.\"end\" IS NOT NULL GROUP BY m.name"
        );
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}

/// A job with what its end reported.
pub(crate) struct JobInfo {
    pub id: i64,
    pub kind: String,
    pub state: String,
    pub end: Option<String>,
    pub start: String,
    pub files: i64,
    pub errors: Vec<String>,
    pub total_bytes: Option<i64>,
    pub recovery_point: Option<String>,
    pub tags: Vec<String>,
}

/// Which jobs [`jobs_of`] reads.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Jobs {
    All,
    /// Those whose end reported a recovery point.
    WithRecoveryPoint,
    /// Failed ones and those that reported errors.
    WithErrors,
}

/// The newest `limit` jobs (of one machine, by ID; `which` of them), newest first, with their
/// machine's ID.
pub(crate) async fn jobs_of(db: &Db, machine: Option<&str>, which: Jobs, limit: i64) -> Result<Vec<(String, JobInfo)>> {
    let base = "SELECT j.machine, j.kind, j.state, j.start, j.\"end\", j.files, j.errors, t.total_bytes, t.recovery_point, j.id, t.tags \
                FROM jobs j LEFT JOIN job_totals t ON t.job = j.id";
    let filter = match which {
        Jobs::All => "",
        Jobs::WithRecoveryPoint => " AND t.recovery_point <> ''",
        Jobs::WithErrors => " AND (j.state = 'failed' OR j.errors <> '[]')",
    };
    let rows = match machine {
        Some(m) => {
            sqlx::query(&format!("{base} WHERE j.machine = $1{filter} ORDER BY j.id DESC LIMIT $2"))
                .bind(m)
                .bind(limit)
                .fetch_all(&db.pool)
                .await?
        }
        None => sqlx::query(&format!("{base} WHERE 1 = 1{filter} ORDER BY j.id DESC LIMIT $1")).bind(limit).fetch_all(&db.pool).await?,
    };
    Ok(rows
        .iter()
        .map(|r| {
            let errors: String = r.get(6);
            (
                r.get::<String, _>(0),
                JobInfo {
                    kind: r.get(1),
                    state: r.get(2),
                    start: r.get(3),
                    end: r.get(4),
                    files: r.get(5),
                    errors: serde_json::from_str(&errors).unwrap_or_default(),
                    total_bytes: r.get(7),
                    recovery_point: r.get(8),
                    id: r.get(9),
                    tags: r.get::<Option<String>, _>(10).and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default(),
                },
            )
        })
        .collect())
}
