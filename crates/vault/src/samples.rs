//! Storage samples: what each machine stores in the vault (the bytes and objects under its
//! prefix in the store) and protects (the size of the data its last backup covered), taken on a
//! timer so that the dashboard's charts and `/metrics` never list the store per request
//! (docs/design/dashboard.md).
//!
//! Every server of a vault samples; a server skips a round when the newest sample is younger
//! than the interval, so several servers on one database add about one sample per interval
//! (a race adds a duplicate, which the charts tolerate).

use std::sync::Arc;

use ferry_store::Store;
use serde::Serialize;

use crate::db::Db;
use crate::Result;

/// Seconds between samples (15 minutes; `FERRY_VAULT_SAMPLE_S` overrides it).
pub fn sample_every_s() -> i64 {
    std::env::var("FERRY_VAULT_SAMPLE_S").ok().and_then(|v| v.parse().ok()).filter(|s: &i64| *s > 0).unwrap_or(15 * 60)
}

/// One machine's sizes at one time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// Unix time.
    pub time: i64,
    pub stored_bytes: u64,
    pub stored_objects: u64,
    pub protected_bytes: u64,
}

/// The bytes and objects under machine `id`'s prefix.
pub fn stored(store: &dyn Store, id: &str) -> ferry_store::Result<(u64, u64)> {
    let objects = store.list(&format!("machines/{id}/"))?;
    Ok((objects.iter().map(|o| o.size).sum(), objects.len() as u64))
}

/// Samples every machine now, unless another server did within the interval (`force`: always).
pub async fn sample_all(db: &Db, store: &Arc<dyn Store>, force: bool) -> Result<usize> {
    let now = chrono::Utc::now().timestamp();
    if !force && db.newest_sample().await?.is_some_and(|t| now - t < sample_every_s()) {
        return Ok(0);
    }
    let protected = db.protected_bytes().await?;
    let machines = db.machines().await?;
    for (id, _, _) in &machines {
        let (store, machine) = (store.clone(), id.clone());
        let (bytes, objects) = tokio::task::spawn_blocking(move || stored(store.as_ref(), &machine)).await??;
        let s =
            Sample { time: now, stored_bytes: bytes, stored_objects: objects, protected_bytes: protected.get(id).copied().unwrap_or(0) };
        db.add_sample(id, &s).await?;
    }
    Ok(machines.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn samples_count_each_machines_objects_and_last_backup() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let db = Db::open_file(&dir.path().join("v.db")).await.unwrap();
            let store: Arc<dyn Store> = Arc::new(ferry_store::MemoryStore::new());
            let secret = db.add_registration(i64::MAX).await.unwrap();
            let (a, _) = db.register(&secret, "a", 0).await.unwrap().unwrap();
            let secret = db.add_registration(i64::MAX).await.unwrap();
            let (b, _) = db.register(&secret, "b", 0).await.unwrap().unwrap();
            store.put(&format!("machines/{a}/data/x"), Bytes::from(vec![0u8; 100])).unwrap();
            store.put(&format!("machines/{a}/index/y"), Bytes::from(vec![0u8; 20])).unwrap();
            store.put(&format!("machines/{b}/data/z"), Bytes::from(vec![0u8; 7])).unwrap();
            for total in [1000, 3000] {
                let id = db.create_job(&a, "backup", 0).await.unwrap();
                let end = ferry_api::JobUpdate {
                    state: "completed".into(),
                    bytes: 1,
                    files: 1,
                    errors: vec![],
                    total_bytes: Some(total),
                    recovery_point: None,
                    tags: vec![],
                };
                db.update_job(id, &a, &end, 1).await.unwrap();
            }
            assert_eq!(sample_all(&db, &store, false).await.unwrap(), 2);
            assert_eq!(sample_all(&db, &store, false).await.unwrap(), 0, "a second round within the interval is skipped");
            let latest = db.latest_samples().await.unwrap();
            let sa = &latest[&a];
            assert_eq!((sa.stored_bytes, sa.stored_objects, sa.protected_bytes), (120, 2, 3000));
            assert_eq!((latest[&b].stored_bytes, latest[&b].protected_bytes), (7, 0));
            store.put(&format!("machines/{a}/data/w"), Bytes::from(vec![0u8; 5])).unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
            sample_all(&db, &store, true).await.unwrap();
            let history = db.samples(&a, 0).await.unwrap();
            assert_eq!(history.iter().map(|s| s.stored_bytes).collect::<Vec<_>>(), vec![120, 125]);
            let vault = db.vault_samples(0).await.unwrap();
            assert_eq!(vault.iter().map(|s| (s.stored_bytes, s.protected_bytes)).collect::<Vec<_>>(), vec![(127, 3000), (132, 3000)]);
        });
    }
}
