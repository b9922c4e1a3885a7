//! Retention enforced by the vault, which never holds a key (design: docs/design/vault.md).
//!
//! A backup through the vault writes, before its recovery point, a key-less *pack list*
//! (`packlists/<id>`: time, retention group, packs used; `ferry_format::packlist`). From those
//! alone the vault, per machine:
//!
//! 1. **applies the policy's keep counts** to the recovery points and *soft-deletes* the others:
//!    `recovery-points/<id>` moves to `deleted/recovery-points/<id>`, out of the agents' sight
//!    but still restorable (`ferry vault undelete`) for the soft-delete period (14 days);
//! 2. **purges** soft-deleted recovery points older than that period (the object, then its
//!    pack list);
//! 3. **collects garbage**: every pack no pack list of a live or soft-deleted recovery point
//!    names, and older than a grace period (packs of an interrupted backup, which the next
//!    run reuses, are young), is deleted. First a `deleted-packs/<random>` record lists them,
//!    so agents drop them from their index and never deduplicate against them; then the packs
//!    go. The vault holds an exclusive repository lock meanwhile and collects nothing while
//!    any other lock is live (a backup running), and nothing at all while a recovery point
//!    without a pack list exists (it might use any pack).
//!
//! Packs are the unit: a pack still partly used stays whole (`ferry prune`, which could repack
//! with the key, refuses repositories with pack lists).

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use ferry_format::lock::{Lock, MAGIC as LOCK_MAGIC, STALE_AFTER_S, VERSION as LOCK_VERSION};
use ferry_format::packlist::{DeletedPacks, PackList};
use ferry_format::retention::{self, Candidate};
use ferry_format::{PackId, RecoveryPointId};
use ferry_store::Store;

use ferry_api::{Keep, SoftDeletedPoint};

use crate::db::rfc3339;
use crate::Result;

/// Where soft-deleted recovery points are kept, under a machine's repository.
pub const SOFT_DELETED: &str = "deleted/recovery-points/";
/// An undeleted recovery point is exempt from retention for one soft-delete period.
pub const HOLDS: &str = "holds/";

/// Timings of retention; from the environment so tests can shorten them.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a soft-deleted recovery point stays restorable.
    pub soft_delete_s: i64,
    /// How old an unlisted pack must be to be deleted.
    pub gc_grace_s: i64,
}

impl Timing {
    pub fn from_env() -> Timing {
        let var = |name: &str, default: i64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
        Timing { soft_delete_s: var("FERRY_VAULT_SOFT_DELETE_S", 14 * 86_400), gc_grace_s: var("FERRY_VAULT_GC_GRACE_S", 86_400) }
    }
}

/// What one retention run did, as the API answers it (recovery points by ID, hex).
pub type Report = ferry_api::RetentionReport;

/// One machine's repository in the vault's store.
pub struct MachineRepo {
    store: Arc<dyn Store>,
    base: String,
}

impl MachineRepo {
    pub fn new(store: Arc<dyn Store>, machine: &str) -> MachineRepo {
        MachineRepo { store, base: format!("machines/{machine}/") }
    }

    fn key(&self, k: &str) -> String {
        format!("{}{k}", self.base)
    }

    /// (relative key, size, modified) under `prefix`.
    pub(crate) fn list(&self, prefix: &str) -> Result<Vec<(String, u64, Option<i64>)>> {
        let found = self.store.list(&self.key(prefix)).with_context(|| format!("list {prefix}"))?;
        Ok(found.into_iter().filter_map(|o| Some((o.key.strip_prefix(&self.base)?.to_string(), o.size, o.modified))).collect())
    }

    pub(crate) fn ids(&self, prefix: &str) -> Result<Vec<(RecoveryPointId, Option<i64>)>> {
        Ok(self.list(prefix)?.into_iter().filter_map(|(k, _, m)| Some((RecoveryPointId::from_hex(k.strip_prefix(prefix)?)?, m))).collect())
    }

    pub(crate) fn pack_list(&self, id: &RecoveryPointId) -> anyhow::Result<Option<PackList>> {
        match self.store.get(&self.key(&PackList::object_key(id))) {
            Ok(b) => match PackList::decode(&b, id) {
                Ok(p) => Ok(Some(p)),
                Err(e) => {
                    tracing::warn!("{}: pack list of recovery point {} is unreadable: {e}", self.base, id.short());
                    Ok(None)
                }
            },
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e).with_context(|| format!("read the pack list of {}", id.short())),
        }
    }

    /// Moves an object to another key (copy, then delete: a crash between leaves both, which
    /// the next run sorts out). False if there is no object at `from` (another vault server
    /// moved it meanwhile).
    fn rename(&self, from: &str, to: &str) -> anyhow::Result<bool> {
        let bytes = match self.store.get(&self.key(from)) {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Ok(false),
            Err(e) => return Err(e).with_context(|| format!("read {from}")),
        };
        self.store.put(&self.key(to), bytes).with_context(|| format!("write {to}"))?;
        self.store.delete(&self.key(from)).with_context(|| format!("delete {from}"))?;
        Ok(true)
    }

    /// The soft-deleted recovery points.
    pub fn soft_deleted(&self, timing: Timing) -> Result<Vec<SoftDeletedPoint>> {
        Ok(self
            .ids(SOFT_DELETED)?
            .into_iter()
            .map(|(id, at)| SoftDeletedPoint { id: id.to_hex(), deleted_at: at, expires_at: at.map(|t| t + timing.soft_delete_s) })
            .collect())
    }

    /// Puts a soft-deleted recovery point back, exempt from retention for one soft-delete
    /// period. False if there is no such soft-deleted recovery point.
    pub fn undelete(&self, id: &RecoveryPointId) -> Result<bool> {
        let from = format!("{SOFT_DELETED}{}", id.to_hex());
        if self.store.head(&self.key(&from)).context("look up the soft-deleted recovery point")?.is_none() {
            return Ok(false);
        }
        // The hold first: the recovery point must not be deleted again as soon as it is back.
        let hold = format!("{HOLDS}{}", id.to_hex());
        self.store.put(&self.key(&hold), Bytes::new()).context("record the hold")?;
        Ok(self.rename(&from, &id.object_key())?)
    }

    /// Applies `keep`, purges expired soft-deleted recovery points and collects garbage.
    pub fn enforce(&self, keep: &Keep, timing: Timing, now: i64) -> Result<Report> {
        let mut report = Report::default();
        let live = self.ids("recovery-points/")?;
        report.recovery_points = live.len() as u64;
        let mut holds = HashSet::new();
        for (key, _, at) in self.list(HOLDS)? {
            if at.is_none_or(|t| now - t < timing.soft_delete_s) {
                holds.insert(key[HOLDS.len()..].to_string());
            } else {
                self.store.delete(&self.key(&key)).context("remove an expired hold")?;
            }
        }

        // 1. Keep counts -> soft deletes. Pack lists are read one at a time; only their times
        // and groups are kept (a pack list can name millions of packs).
        let mut candidates = Vec::new();
        let mut unlisted = 0u64;
        for (id, _) in &live {
            match self.pack_list(id)? {
                Some(p) if !holds.contains(&id.to_hex()) => candidates.push(Candidate { id: *id, group: p.group, time: p.time }),
                Some(_) => {} // held: kept, and not counted against the policy
                None => unlisted += 1,
            }
        }
        let policy = retention::Policy {
            last: None,
            daily: (keep.daily > 0).then_some(keep.daily as usize),
            weekly: (keep.weekly > 0).then_some(keep.weekly as usize),
            monthly: (keep.monthly > 0).then_some(keep.monthly as usize),
            yearly: (keep.yearly > 0).then_some(keep.yearly as usize),
        };
        if !policy.is_empty() {
            for d in retention::apply(&policy, &candidates) {
                if !d.keep && self.rename(&d.id.object_key(), &format!("{SOFT_DELETED}{}", d.id.to_hex()))? {
                    tracing::info!("{}: soft-deleted recovery point {} of {}", self.base, d.id.short(), d.time);
                    report.soft_deleted.push(d.id.to_hex());
                }
            }
        }
        report.kept = report.recovery_points - report.soft_deleted.len() as u64;

        // 2. Purge what has been soft-deleted for the whole period.
        for (id, at) in self.ids(SOFT_DELETED)? {
            // A store that does not say when counts the object as deleted now.
            if at.is_some_and(|t| now - t >= timing.soft_delete_s) {
                self.store.delete(&self.key(&format!("{SOFT_DELETED}{}", id.to_hex()))).context("purge a soft-deleted recovery point")?;
                self.store.delete(&self.key(&PackList::object_key(&id))).context("delete a pack list")?;
                tracing::info!("{}: purged recovery point {}", self.base, id.short());
                report.purged.push(id.to_hex());
            }
        }

        // 3. Garbage.
        report.gc_skipped = self.collect_garbage(unlisted, timing, now, &mut report)?;
        Ok(report)
    }

    fn collect_garbage(&self, unlisted: u64, timing: Timing, now: i64, report: &mut Report) -> Result<Option<String>> {
        if unlisted > 0 {
            return Ok(Some(format!(
                "{unlisted} recovery point(s) have no pack list (written without the vault, or by an older Ferry): they may use any pack"
            )));
        }
        let Some(lock) = self.lock(now)? else {
            return Ok(Some("a backup or another repository operation holds a lock; garbage is collected on a later run".into()));
        };
        let result = (|| -> Result<Option<String>> {
            // The packs of every recovery point, live or soft-deleted, listed under the lock (a
            // backup that finished meanwhile counts too), one pack list at a time.
            let mut used: HashSet<PackId> = HashSet::new();
            for prefix in ["recovery-points/", SOFT_DELETED] {
                for (id, _) in self.ids(prefix)? {
                    match self.pack_list(&id)? {
                        Some(p) => used.extend(p.packs),
                        None => return Ok(Some(format!("recovery point {} has no pack list: it may use any pack", id.short()))),
                    }
                }
            }
            let mut doomed = Vec::new();
            for (key, size, modified) in self.list("data/")? {
                let Some(id) = key.rsplit('/').next().and_then(PackId::from_hex) else { continue };
                let old_enough = modified.is_some_and(|t| now - t >= timing.gc_grace_s);
                if !used.contains(&id) && old_enough {
                    doomed.push((id, key, size));
                }
            }
            if doomed.is_empty() {
                return Ok(None);
            }
            // The record MUST be stored before any pack goes (agents read it to forget them).
            let record = DeletedPacks::new(rfc3339(now), doomed.iter().map(|(id, _, _)| *id).collect());
            let name = format!("{}{}", DeletedPacks::PREFIX, hex::encode(ferry_crypto::random_bytes::<16>()));
            self.store.put(&self.key(&name), Bytes::from(record.encode())).context("store the deleted-packs record")?;
            for (_, key, size) in &doomed {
                self.store.delete(&self.key(key)).with_context(|| format!("delete {key}"))?;
                report.packs_deleted += 1;
                report.bytes_deleted += size;
                self.refresh_lock(&lock)?;
            }
            tracing::info!("{}: deleted {} packs, {} bytes", self.base, report.packs_deleted, report.bytes_deleted);
            Ok(None)
        })();
        let released = self.store.delete(&self.key(&lock.0)).context("release the vault's lock");
        let skipped = result?;
        released?;
        Ok(skipped)
    }

    /// Takes an exclusive repository lock, the same kind agents take (`ferry_format::lock`);
    /// `None` if another live lock exists.
    fn lock(&self, now: i64) -> Result<Option<(String, std::cell::Cell<i64>)>> {
        let others = |own: Option<&str>| -> Result<bool> {
            for (key, _, _) in self.list("locks/")? {
                if Some(key.as_str()) == own {
                    continue;
                }
                let Ok(bytes) = self.store.get(&self.key(&key)) else { continue };
                if let Ok(l) = serde_json::from_slice::<Lock>(&bytes) {
                    if l.magic == LOCK_MAGIC && chrono::Utc::now().timestamp() - l.refreshed < STALE_AFTER_S {
                        return Ok(true);
                    }
                }
            }
            Ok(false)
        };
        if others(None)? {
            return Ok(None);
        }
        let key = format!("locks/{}", hex::encode(ferry_crypto::random_bytes::<16>()));
        self.store.put(&self.key(&key), lock_bytes(now)).context("write the vault's lock")?;
        // Two writers may have locked at once: look again now that ours is visible.
        if others(Some(&key))? {
            self.store.delete(&self.key(&key)).context("release the vault's lock")?;
            return Ok(None);
        }
        Ok(Some((key, std::cell::Cell::new(now))))
    }

    fn refresh_lock(&self, lock: &(String, std::cell::Cell<i64>)) -> Result<()> {
        let now = chrono::Utc::now().timestamp();
        if now - lock.1.get() >= ferry_format::lock::REFRESH_EVERY_S as i64 {
            self.store.put(&self.key(&lock.0), lock_bytes(now)).context("refresh the vault's lock")?;
            lock.1.set(now);
        }
        Ok(())
    }
}

fn lock_bytes(now: i64) -> Bytes {
    let l = Lock {
        magic: LOCK_MAGIC.into(),
        version: LOCK_VERSION,
        exclusive: true,
        started: rfc3339(now),
        refreshed: now,
        host: "ferry-vault".into(),
        pid: std::process::id(),
        purpose: "vault retention".into(),
        // Empty: agents on the vault's host must not judge it by its PID.
        boot_id: String::new(),
    };
    Bytes::from(serde_json::to_vec(&l).expect("a lock serializes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "0123456789abcdef0123456789abcdef";

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Arc<dyn Store>,
        repo: MachineRepo,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = ferry_store::open(dir.path().to_str().unwrap()).unwrap();
        Fixture { repo: MachineRepo::new(store.clone(), M), store, _dir: dir }
    }

    impl Fixture {
        fn put(&self, key: &str, bytes: &[u8]) {
            self.store.put(&format!("machines/{M}/{key}"), Bytes::copy_from_slice(bytes)).unwrap();
        }
        fn exists(&self, key: &str) -> bool {
            self.store.get(&format!("machines/{M}/{key}")).is_ok()
        }
        fn pack(&self, n: u8) -> PackId {
            let id = PackId::from_bytes([n; 32]);
            self.put(&id.object_key(), b"FRYPAK pack");
            id
        }
        /// A recovery point with its pack list.
        fn point(&self, n: u8, time: &str, packs: &[PackId]) -> RecoveryPointId {
            let id = RecoveryPointId::from_bytes([100 + n; 32]);
            self.put(&id.object_key(), b"sealed recovery point");
            self.put(&PackList::object_key(&id), &PackList::new(id, time.into(), "g".into(), packs.to_vec()).encode());
            id
        }
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    #[test]
    fn keeps_by_policy_soft_deletes_then_purges_and_collects_unused_packs() {
        let f = fixture();
        let (a, b, c, d) = (f.pack(1), f.pack(2), f.pack(3), f.pack(4));
        let r1 = f.point(1, "2026-11-01T10:00:00Z", &[a, b]);
        let r2 = f.point(2, "2026-11-01T11:00:00Z", &[b, c]);
        let r3 = f.point(3, "2026-11-01T12:00:00Z", &[c, d]);
        let keep = Keep { daily: 1, ..Keep::default() };
        let long = Timing { soft_delete_s: 1000, gc_grace_s: 0 };

        let r = f.repo.enforce(&keep, long, now()).unwrap();
        assert_eq!((r.recovery_points, r.kept), (3, 1));
        assert_eq!(r.soft_deleted.len(), 2);
        assert!(f.exists(&r3.object_key()) && !f.exists(&r1.object_key()) && !f.exists(&r2.object_key()));
        assert!(f.exists(&format!("{SOFT_DELETED}{}", r1.to_hex())));
        assert_eq!(r.packs_deleted, 0, "soft-deleted recovery points keep their packs: {r:?}");
        assert_eq!(f.repo.soft_deleted(long).unwrap().len(), 2);

        // Undeleted: back, and exempt from the policy for a while.
        assert!(f.repo.undelete(&r1).unwrap());
        assert!(f.exists(&r1.object_key()));
        let r = f.repo.enforce(&keep, long, now()).unwrap();
        assert!(r.soft_deleted.is_empty(), "{r:?}");
        assert!(!f.repo.undelete(&r1).unwrap(), "not soft-deleted any more");

        // The period over (zero here): r1's hold has expired too, so both go for good in one
        // run, with the packs only they used.
        let over = Timing { soft_delete_s: 0, gc_grace_s: 0 };
        let mut r = f.repo.enforce(&keep, over, now()).unwrap();
        assert_eq!(r.soft_deleted, vec![r1.to_hex()]);
        r.purged.sort();
        assert_eq!(r.purged, {
            let mut v = vec![r1.to_hex(), r2.to_hex()];
            v.sort();
            v
        });
        assert!(r.gc_skipped.is_none(), "{r:?}");
        assert_eq!(r.packs_deleted, 2, "{r:?}");
        assert!(!f.exists(&a.object_key()) && !f.exists(&b.object_key()));
        assert!(f.exists(&c.object_key()) && f.exists(&d.object_key()));
        // The record came first and names exactly the deleted packs.
        let records = f.repo.list(DeletedPacks::PREFIX).unwrap();
        assert_eq!(records.len(), 1);
        let rec = DeletedPacks::decode(&f.store.get(&format!("machines/{M}/{}", records[0].0)).unwrap()).unwrap();
        assert_eq!(rec.packs, {
            let mut v = vec![a, b];
            v.sort();
            v
        });
        assert!(f.repo.list("locks/").unwrap().is_empty(), "the vault released its lock");
    }

    #[test]
    fn collects_nothing_while_unsure() {
        let f = fixture();
        let unused = f.pack(9);
        let keep = Keep { daily: 7, ..Keep::default() };
        let now = now();
        // Young packs may belong to an interrupted backup that the next run resumes.
        let r = f.repo.enforce(&keep, Timing { soft_delete_s: 0, gc_grace_s: 3600 }, now).unwrap();
        assert_eq!(r.packs_deleted, 0);
        let t = Timing { soft_delete_s: 0, gc_grace_s: 0 };
        // A live lock: a backup is running.
        let lock = Lock {
            magic: LOCK_MAGIC.into(),
            version: LOCK_VERSION,
            exclusive: false,
            started: rfc3339(now),
            refreshed: now,
            host: "h".into(),
            pid: 1,
            purpose: "backup".into(),
            boot_id: String::new(),
        };
        f.put("locks/x", &serde_json::to_vec(&lock).unwrap());
        let r = f.repo.enforce(&keep, t, now).unwrap();
        assert!(r.gc_skipped.as_deref().unwrap().contains("lock"), "{r:?}");
        assert!(f.exists(&unused.object_key()));
        f.store.delete(&format!("machines/{M}/locks/x")).unwrap();
        // A recovery point without a pack list might use any pack.
        f.put(&RecoveryPointId::from_bytes([5; 32]).object_key(), b"rp");
        let r = f.repo.enforce(&keep, t, now).unwrap();
        assert!(r.gc_skipped.as_deref().unwrap().contains("no pack list"), "{r:?}");
        assert!(f.exists(&unused.object_key()));
        f.store.delete(&format!("machines/{M}/{}", RecoveryPointId::from_bytes([5; 32]).object_key())).unwrap();
        let r = f.repo.enforce(&keep, t, now).unwrap();
        assert_eq!(r.packs_deleted, 1);
        // No keep counts: nothing is ever soft-deleted.
        let p = f.point(1, "2020-01-01T00:00:00Z", &[]);
        f.point(2, "2021-01-01T00:00:00Z", &[]);
        let r = f.repo.enforce(&Keep::default(), t, now).unwrap();
        assert!(r.soft_deleted.is_empty() && f.exists(&p.object_key()));
    }
}
