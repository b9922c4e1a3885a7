//! Storage samples' rows: what each machine stored and protected at each sampling time, and
//! the reads the dashboard's charts, the alerts and `/metrics` make of them.

use sqlx::Row;

use super::Db;
use crate::samples::Sample;
use crate::Result;

impl Db {
    /// Records one sample of machine `machine`.
    pub async fn add_sample(&self, machine: &str, s: &Sample) -> Result<()> {
        sqlx::query(
            "INSERT INTO storage_samples (time, machine, stored_bytes, stored_objects, protected_bytes) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(s.time)
        .bind(machine)
        .bind(s.stored_bytes as i64)
        .bind(s.stored_objects as i64)
        .bind(s.protected_bytes as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A machine's samples since `since` (Unix time), oldest first.
    pub async fn samples(&self, machine: &str, since: i64) -> Result<Vec<Sample>> {
        let rows = sqlx::query(
            "SELECT time, stored_bytes, stored_objects, protected_bytes FROM storage_samples \
             WHERE machine = $1 AND time >= $2 ORDER BY time",
        )
        .bind(machine)
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(sample_of).collect())
    }

    /// The vault's totals since `since`, per sample time (the machines' samples of one round
    /// share a time), oldest first.
    pub async fn vault_samples(&self, since: i64) -> Result<Vec<Sample>> {
        let rows = sqlx::query(
            "SELECT time, CAST(SUM(stored_bytes) AS BIGINT), CAST(SUM(stored_objects) AS BIGINT), CAST(SUM(protected_bytes) AS BIGINT) \
             FROM storage_samples WHERE time >= $1 GROUP BY time ORDER BY time",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(sample_of).collect())
    }

    /// Each machine's newest sample.
    pub async fn latest_samples(&self) -> Result<std::collections::HashMap<String, Sample>> {
        let rows = sqlx::query(
            "SELECT s.machine, s.time, s.stored_bytes, s.stored_objects, s.protected_bytes FROM storage_samples s \
             JOIN (SELECT machine, MAX(time) AS t FROM storage_samples GROUP BY machine) l ON l.machine = s.machine AND l.t = s.time",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let n = |i: usize| r.get::<i64, _>(i).max(0) as u64;
                (r.get::<String, _>(0), Sample { time: r.get(1), stored_bytes: n(2), stored_objects: n(3), protected_bytes: n(4) })
            })
            .collect())
    }

    /// The newest sample's time, if any.
    pub(crate) async fn newest_sample(&self) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT MAX(time) FROM storage_samples").fetch_one(&self.pool).await?;
        Ok(row.get::<Option<i64>, _>(0))
    }
}

fn sample_of(r: &sqlx::any::AnyRow) -> Sample {
    let n = |i: usize| r.get::<i64, _>(i).max(0) as u64;
    Sample { time: r.get(0), stored_bytes: n(1), stored_objects: n(2), protected_bytes: n(3) }
}
