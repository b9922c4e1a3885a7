//! Device jobs' rows: the `device_jobs` table (what was ordered, when the unlock credential
//! expires) and the guarded swap of a device job's disk records (crate::devices has the rules).

use anyhow::Context;
use sqlx::Row;

use super::import_jobs::{in_list, NewJob};
use super::Db;
use crate::error::VaultError;
use crate::Result;
use ferry_api::{DiskRecord, ImportJob, JobState};

use crate::imports::Refusal;

impl Db {
    /// Records a new device job in state `ordered`, with its sealed device key.
    #[allow(clippy::too_many_arguments)]
    pub async fn order_device_job(
        &self,
        name: &str,
        machine: &str,
        container: &str,
        sealed_key: &str,
        device_type: &str,
        capacity: u64,
        now: i64,
    ) -> Result<std::result::Result<ImportJob, Refusal>> {
        let mut tx = self.pool.begin().await?;
        let new = NewJob { name, machine, container, state: JobState::Ordered, deadline: now, sealed_key, now };
        if !new.insert(&mut *tx).await? {
            tx.rollback().await?;
            let job = self.import_job(name).await?.ok_or_else(|| VaultError::Vanished { what: "job", name: name.into() })?;
            return Ok(Err(Refusal::NameTaken { name: name.into(), machine: job.machine_name, state: job.state.as_str() }));
        }
        sqlx::query("INSERT INTO device_jobs (name, device_type, capacity, unlock_expires) VALUES ($1, $2, $3, 0)")
            .bind(name)
            .bind(device_type)
            .bind(i64::try_from(capacity).context("capacity too large")?)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let job = self.import_job(name).await?.ok_or_else(|| VaultError::Vanished { what: "device job", name: name.into() })?;
        Ok(Ok(job))
    }

    /// Replaces a job's disk records, moving it from `from` to `to`, only if nobody changed the
    /// records meanwhile (two devices erased at once must not lose one's record). `false`: the
    /// records or the state changed; read again and retry.
    pub(crate) async fn swap_disks(
        &self,
        name: &str,
        old: &[DiskRecord],
        new: &[DiskRecord],
        from: &[JobState],
        to: JobState,
        set: Option<(&str, Option<&str>)>,
    ) -> Result<bool> {
        let now = chrono::Utc::now().timestamp();
        let (old, new) = (serde_json::to_string(old)?, serde_json::to_string(new)?);
        let extra = match set {
            Some((_, Some(_))) => ", set_id = $6, manifest_digest = $7",
            Some((_, None)) => ", set_id = $6",
            None => "",
        };
        let first = match set {
            Some((_, Some(_))) => 8,
            Some((_, None)) => 7,
            None => 6,
        };
        let sql = format!(
            "UPDATE import_jobs SET state = $1, disks = $2, updated = $3{extra} WHERE name = $4 AND disks = $5 AND state IN ({})",
            in_list(from, first)
        );
        let mut q = sqlx::query(&sql).bind(to.as_str()).bind(new).bind(now).bind(name).bind(old);
        if let Some((set_id, digest)) = set {
            q = q.bind(set_id.to_string());
            if let Some(d) = digest {
                q = q.bind(d.to_string());
            }
        }
        for s in from {
            q = q.bind(s.as_str());
        }
        Ok(q.execute(&self.pool).await?.rows_affected() == 1)
    }

    /// Sets when the job's unlock credentials stop working.
    pub async fn set_unlock_expires(&self, name: &str, expires: i64) -> Result<()> {
        sqlx::query("UPDATE device_jobs SET unlock_expires = $1 WHERE name = $2").bind(expires).bind(name).execute(&self.pool).await?;
        Ok(())
    }

    /// When the job's unlock credentials stop working (0: none prepared yet).
    pub(crate) async fn unlock_expires(&self, name: &str) -> Result<i64> {
        let row = sqlx::query("SELECT unlock_expires FROM device_jobs WHERE name = $1").bind(name).fetch_optional(&self.pool).await?;
        Ok(row.map_or(0, |r| r.get(0)))
    }
}
