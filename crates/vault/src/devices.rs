//! Seed devices: the vault's side of the Data Box workflow (issue #5, design in
//! docs/design/seed-devices.md, protocol in docs/protocol.md "Seed devices").
//!
//! A device job is an import job (same table, same name space, same import, ingest and
//! receipt) whose disks are devices the vault provisions: it is ordered for a machine, each of
//! its devices is prepared at the vault's site (a header bound to the job and the machine, and
//! an unlock credential for the machine's owner), travels to the customer, is written and
//! sealed by the machine's agent, travels back, is imported and ingested, and is erased:
//!
//! ```text
//! ordered → prepared → shipped-to-customer → delivered → in-use → returning → received
//!         → transferring → completed → ingesting → ingested → erased
//! ```
//!
//! Logistics states may be skipped forward (a device handed over at the counter is never
//! "shipped"), never moved back. Every erasure is written to the `audit` table.

use ferry_api::{DiskRecord, DiskSetReport, ImportJob, JobState};

use crate::db::Db;
use crate::error::VaultError;
use crate::imports::Refusal;
use crate::Result;

/// What a device of type `disk` holds by default (Azure Data Box Disk: 7.2 TB).
pub const DISK_CAPACITY: u64 = 7_200_000_000_000;
/// What a device of type `box` holds by default (Azure Data Box: 80 TB).
pub const BOX_CAPACITY: u64 = 80_000_000_000_000;
/// Most devices one job may have (as disks).
pub const MAX_DEVICES: usize = 10;

/// The default capacity of a device type, or `None` for an unknown type.
pub fn capacity_of(device_type: &str) -> Option<u64> {
    match device_type {
        "disk" => Some(DISK_CAPACITY),
        "box" => Some(BOX_CAPACITY),
        _ => None,
    }
}

/// How long an unlock credential opens its device (30 days; `FERRY_VAULT_UNLOCK_VALID_S`
/// overrides it, for tests).
pub fn unlock_valid_s() -> i64 {
    std::env::var("FERRY_VAULT_UNLOCK_VALID_S").ok().and_then(|v| v.parse().ok()).unwrap_or(30 * 24 * 3600)
}

/// States from which the machine may write its device (the credential is alive).
pub const WRITABLE: [JobState; 4] = [JobState::Prepared, JobState::ShippedToCustomer, JobState::Delivered, JobState::InUse];

/// The logistics moves an operator records with `ferry device status JOB --set STATE`: the
/// target state and the states it may be reached from.
pub fn logistics_from(to: JobState) -> Option<&'static [JobState]> {
    Some(match to {
        JobState::ShippedToCustomer => &[JobState::Prepared, JobState::ShippedToCustomer],
        JobState::Delivered => &[JobState::Prepared, JobState::ShippedToCustomer, JobState::Delivered],
        JobState::InUse => &[JobState::Prepared, JobState::ShippedToCustomer, JobState::Delivered, JobState::InUse],
        JobState::Returning => &[JobState::ShippedToCustomer, JobState::Delivered, JobState::InUse, JobState::Returning],
        _ => return None,
    })
}

/// Attempts at a guarded change of a job's disk records before giving up.
const RETRIES: usize = 20;

fn wrong(name: &str, job: &ImportJob, why: impl Into<String>) -> Refusal {
    Refusal::WrongState { name: name.into(), state: job.state.as_str(), why: why.into() }
}

impl Db {
    /// A device job (not a disk import job).
    pub async fn device_job(&self, name: &str) -> Result<std::result::Result<ImportJob, Refusal>> {
        match self.import_job(name).await? {
            Some(j) if j.device.is_some() => Ok(Ok(j)),
            Some(_) => Ok(Err(Refusal::WrongState {
                name: name.into(),
                state: "an import job for customer disks",
                why: "it is not a device job: use `ferry import-job` and `ferry import run` for it".into(),
            })),
            None => Ok(Err(Refusal::NoSuchJob(name.into()))),
        }
    }

    /// Every device job (of one machine, by ID), newest first.
    pub async fn device_jobs(&self, machine: Option<&str>) -> Result<Vec<ImportJob>> {
        Ok(self.import_jobs(machine).await?.into_iter().filter(|j| j.device.is_some()).collect())
    }

    /// Adds the next device to a job being prepared (ordered or prepared): returns the job and
    /// the device's number. The set ID is the job's (made at the first device).
    pub async fn add_device(
        &self,
        name: &str,
        new_set_id: &str,
        unlock_expires: i64,
    ) -> Result<std::result::Result<(ImportJob, u32, String), Refusal>> {
        for _ in 0..RETRIES {
            let job = match self.device_job(name).await? {
                Ok(j) => j,
                Err(r) => return Ok(Err(r)),
            };
            if !matches!(job.state, JobState::Ordered | JobState::Prepared) {
                let why = "its devices can no longer be prepared (they left the vault's site); order a new device job";
                return Ok(Err(wrong(name, &job, why)));
            }
            if job.disks.len() >= MAX_DEVICES {
                return Ok(Err(wrong(name, &job, format!("it has {MAX_DEVICES} devices already, the most one job may have"))));
            }
            let set_id = job.set_id.clone().unwrap_or_else(|| new_set_id.to_string());
            let number = job.disks.len() as u32 + 1;
            let mut disks = job.disks.clone();
            disks.push(DiskRecord { id: number, state: "prepared".into(), bytes: 0, objects: 0, copied: 0, skipped: 0, errors: vec![] });
            let from = [JobState::Ordered, JobState::Prepared];
            if self.swap_disks(name, &job.disks, &disks, &from, JobState::Prepared, Some((&set_id, None))).await? {
                self.set_unlock_expires(name, unlock_expires).await?;
                let job = self.import_job(name).await?.ok_or_else(|| VaultError::Vanished { what: "device job", name: name.into() })?;
                return Ok(Ok((job, number, set_id)));
            }
        }
        Err(VaultError::Raced(name.into()).into())
    }

    /// Records a logistics move (`ferry device status JOB --set STATE`), with the carrier and
    /// tracking number of the leg when it is a shipment.
    pub async fn device_logistics(
        &self,
        name: &str,
        to: JobState,
        carrier: Option<&str>,
        tracking: Option<&str>,
    ) -> Result<std::result::Result<ImportJob, Refusal>> {
        let job = match self.device_job(name).await? {
            Ok(j) => j,
            Err(r) => return Ok(Err(r)),
        };
        let Some(from) = logistics_from(to) else {
            return Ok(Err(wrong(name, &job, format!("{} is not a state an operator sets", to.as_str()))));
        };
        if let Some(t) = tracking {
            if let Some(other) = self.tracking_holder(t, name).await? {
                return Ok(Err(Refusal::TrackingTaken { tracking: t.into(), other }));
            }
        }
        let mut set: Vec<(&str, Option<&str>)> = Vec::new();
        if tracking.is_some() {
            set.push(("tracking", tracking));
            set.push(("carrier", carrier));
        }
        self.transition(name, from, to, &set, |s| match s {
            JobState::Ordered => "its device is not prepared yet: run `ferry device prepare` first".into(),
            _ => format!("a device job does not go from {} to {}", s.as_str(), to.as_str()),
        })
        .await
    }

    /// The machine's agent starts writing its devices: `in-use`, if the credential is alive.
    pub async fn device_in_use(&self, name: &str, now: i64) -> Result<std::result::Result<ImportJob, Refusal>> {
        let job = match self.device_job(name).await? {
            Ok(j) => j,
            Err(r) => return Ok(Err(r)),
        };
        let expires = self.unlock_expires(name).await?;
        if expires <= now && WRITABLE.contains(&job.state) {
            let why =
                "its unlock credential expired: the owner fetches a new one (`ferry device prepare` prints it again, or GET .../unlock)";
            return Ok(Err(wrong(name, &job, why)));
        }
        self.transition(name, &WRITABLE, JobState::InUse, &[], |_| {
            "its devices are no longer written by the machine: the unlock credential is expired".into()
        })
        .await
    }
    /// The machine sealed its devices: records the set's manifest digest and each device's
    /// size; the job stays `in-use` until the owner sends the devices back.
    pub async fn device_sealed(&self, name: &str, set: &DiskSetReport) -> Result<std::result::Result<ImportJob, Refusal>> {
        for _ in 0..RETRIES {
            let job = match self.device_job(name).await? {
                Ok(j) => j,
                Err(r) => return Ok(Err(r)),
            };
            if job.state != JobState::InUse {
                return Ok(Err(wrong(name, &job, "only a device in use is sealed")));
            }
            if job.set_id.as_deref() != Some(set.set_id.as_str()) {
                let why = format!("its devices are set {}, not {}", job.set_id.clone().unwrap_or_default(), set.set_id);
                return Ok(Err(wrong(name, &job, why)));
            }
            let mut disks = job.disks.clone();
            for d in &mut disks {
                if let Some(s) = set.disks.iter().find(|s| s.id == d.id) {
                    d.state = "sealed".into();
                    d.bytes = s.bytes;
                    d.objects = s.objects;
                }
            }
            let digest = set.manifest_digest.as_deref();
            let swapped =
                self.swap_disks(name, &job.disks, &disks, &[JobState::InUse], JobState::InUse, Some((&set.set_id, digest))).await?;
            if swapped {
                return Ok(Ok(self
                    .import_job(name)
                    .await?
                    .ok_or_else(|| VaultError::Vanished { what: "device job", name: name.into() })?));
            }
        }
        Err(VaultError::Raced(name.into()).into())
    }

    /// Marks device `number` erased; the job is `erased` once all its devices are.
    pub async fn device_erased(&self, name: &str, number: u32) -> Result<std::result::Result<ImportJob, Refusal>> {
        for _ in 0..RETRIES {
            let job = match self.device_job(name).await? {
                Ok(j) => j,
                Err(r) => return Ok(Err(r)),
            };
            if !matches!(job.state, JobState::Ingested | JobState::Erased | JobState::Cancelled) {
                let why = "a device is erased only after its seed is ingested (or the job was cancelled): \
                           erasing now would lose the only copy of the machine's first backup";
                return Ok(Err(wrong(name, &job, why)));
            }
            let mut disks = job.disks.clone();
            let Some(d) = disks.iter_mut().find(|d| d.id == number) else {
                return Ok(Err(wrong(name, &job, format!("it has no device {number}"))));
            };
            d.state = "erased".into();
            let all = disks.iter().all(|d| d.state == "erased");
            let to = if all && job.state != JobState::Cancelled { JobState::Erased } else { job.state };
            let from = [job.state];
            if self.swap_disks(name, &job.disks, &disks, &from, to, None).await? {
                return Ok(Ok(self
                    .import_job(name)
                    .await?
                    .ok_or_else(|| VaultError::Vanished { what: "device job", name: name.into() })?));
            }
        }
        Err(VaultError::Raced(name.into()).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_job_travels_and_is_erased_on_sqlite() {
        crate::db::testing::on_sqlite(|db, tag| async move { travels(&db, &tag).await });
    }

    /// The same on PostgreSQL.
    #[test]
    fn a_device_job_travels_and_is_erased_on_postgres() {
        crate::db::testing::on_postgres(|db, tag| async move { travels(&db, &tag).await });
    }

    async fn travels(db: &Db, tag: &str) {
        let n = |s: &str| format!("{s}{tag}");
        let (job, disk_job) = (n("device-1"), n("disks-1"));
        let secret = db.add_registration(i64::MAX).await.unwrap();
        let (m, _) = db.register(&secret, &n("m1"), 0).await.unwrap().unwrap();
        let now = chrono::Utc::now().timestamp();
        let j = db.order_device_job(&job, &m, "/c/d1", "sealed", "disk", DISK_CAPACITY, now).await.unwrap().unwrap();
        assert_eq!((j.state, j.kind.as_str(), j.deadline.as_deref()), (JobState::Ordered, "device", None));
        assert_eq!(j.device.as_ref().map(|d| (d.device_type.as_str(), d.capacity)), Some(("disk", DISK_CAPACITY)));
        assert!(db.order_device_job(&job, &m, "/c/d1", "s", "box", 1, now).await.unwrap().is_err(), "one name, one job");
        // A disk import job is not a device job.
        db.create_import_job(&disk_job, &m, "/c/x", "s", now).await.unwrap().unwrap();
        assert!(db.device_job(&disk_job).await.unwrap().unwrap_err().to_string().contains("not a device job"));
        assert_eq!(db.device_jobs(Some(&m)).await.unwrap().len(), 1);

        // Not usable before it is prepared; two devices get numbers 1 and 2 and one set.
        assert!(db.device_logistics(&job, JobState::ShippedToCustomer, None, Some("T")).await.unwrap().is_err());
        let (_, d1, set1) = db.add_device(&job, &"a".repeat(32), now + 100).await.unwrap().unwrap();
        let (j, d2, set2) = db.add_device(&job, &"b".repeat(32), now + 100).await.unwrap().unwrap();
        assert_eq!((d1, d2, &set1, &set2), (1, 2, &"a".repeat(32), &"a".repeat(32)));
        assert_eq!((j.state, j.disks.len()), (JobState::Prepared, 2));
        assert!(j.device.unwrap().unlock_expires.is_some());

        // Out to the customer; a tracking number belongs to one job; no going back.
        let t1 = n("OUT-1");
        let j = db.device_logistics(&job, JobState::ShippedToCustomer, Some("DHL"), Some(&t1)).await.unwrap().unwrap();
        assert_eq!((j.state, j.tracking.as_deref()), (JobState::ShippedToCustomer, Some(t1.as_str())));
        db.device_logistics(&job, JobState::Delivered, None, None).await.unwrap().unwrap();
        assert!(db.add_device(&job, &"c".repeat(32), now).await.unwrap().is_err(), "no device added once shipped");
        assert!(db.device_logistics(&job, JobState::ShippedToCustomer, None, Some(&n("x"))).await.unwrap().is_err());

        // The machine writes them while the credential lives; an expired credential is refused.
        db.set_unlock_expires(&job, now - 1).await.unwrap();
        let e = db.device_in_use(&job, now).await.unwrap().unwrap_err().to_string();
        assert!(e.contains("expired"), "{e}");
        db.set_unlock_expires(&job, now + 100).await.unwrap();
        db.device_in_use(&job, now).await.unwrap().unwrap();
        let disks: Vec<DiskRecord> = (1..=2)
            .map(|id| DiskRecord {
                id,
                state: "sealed".into(),
                bytes: 10 * u64::from(id),
                objects: 2,
                copied: 0,
                skipped: 0,
                errors: vec![],
            })
            .collect();
        let wrong_set =
            DiskSetReport { set_id: "f".repeat(32), manifest_digest: Some("d".repeat(64)), disks: disks.clone(), complete: true };
        assert!(db.device_sealed(&job, &wrong_set).await.unwrap().is_err(), "another set");
        let set = DiskSetReport { set_id: set1.clone(), manifest_digest: Some("d".repeat(64)), disks, complete: true };
        let j = db.device_sealed(&job, &set).await.unwrap().unwrap();
        assert_eq!(
            (j.manifest_digest.as_deref(), j.disks[1].bytes, j.disks[1].state.as_str()),
            (Some("d".repeat(64).as_str()), 20, "sealed")
        );

        // Back; not erasable before ingest; received, ingested, then erased device by device.
        db.device_logistics(&job, JobState::Returning, Some("DHL"), Some(&n("BACK-1"))).await.unwrap().unwrap();
        let e = db.device_erased(&job, 1).await.unwrap().unwrap_err().to_string();
        assert!(e.contains("only after its seed is ingested"), "{e}");
        db.receive_import_job(&job, &set.disks).await.unwrap().unwrap();
        db.update_import_transfer(&job, JobState::Completed, &set.disks, &[]).await.unwrap().unwrap();
        db.set_import_ingest(&job, &[JobState::Completed], JobState::Ingesting, None, None, &[]).await.unwrap().unwrap();
        db.set_import_ingest(&job, &[JobState::Ingesting], JobState::Ingested, Some("rp"), Some("{}"), &[]).await.unwrap().unwrap();
        assert!(db.device_in_use(&job, now).await.unwrap().is_err(), "the credential dies with the job");
        assert_eq!(db.device_erased(&job, 1).await.unwrap().unwrap().state, JobState::Ingested);
        assert!(db.device_erased(&job, 3).await.unwrap().is_err(), "no device 3");
        assert_eq!(db.device_erased(&job, 2).await.unwrap().unwrap().state, JobState::Erased);

        db.audit("user alice", "device-erased", &job, &serde_json::json!({"device": 1})).await.unwrap();
        let log = db.audit_log(Some(&job)).await.unwrap();
        assert_eq!((log.len(), log[0].actor.as_str(), log[0].action.as_str()), (1, "user alice", "device-erased"));
    }
}
