//! Repository locks: a backup holds a shared lock, prune an exclusive one while it rewrites
//! the index. Prune's sweep also reads the shared locks to know which backups started before
//! its mark (see `prune`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use ferry_format::lock::{Lock, MAGIC, REFRESH_EVERY_S, STALE_AFTER_S, VERSION};

use crate::Repository;

/// Another process holds a lock that excludes the one asked for.
#[derive(Debug, thiserror::Error)]
#[error(
    "the repository is locked by {holder}; try again when it has finished (a lock of a dead process expires {} minutes after its last refresh)",
    STALE_AFTER_S / 60
)]
pub struct Locked {
    pub holder: String,
}

/// A lock held by this process; refreshed by a timer thread while held, deleted on release
/// or drop.
#[derive(Debug)]
pub struct RepoLock {
    inner: std::sync::Arc<Held>,
    refresher: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug)]
struct Held {
    key: String,
    store: std::sync::Arc<dyn ferry_store::Store>,
    lock: Mutex<Lock>,
    released: AtomicBool,
    /// Signals the refresher to stop.
    stop: (Mutex<bool>, std::sync::Condvar),
}

fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Every lock that is not stale, with its object key.
pub fn live_locks(repo: &Repository) -> crate::Result<Vec<(String, Lock)>> {
    let mut out = Vec::new();
    for o in repo.store().list("locks/").context("list locks")? {
        let Ok(b) = repo.store().get(&o.key) else {
            continue;
        }; // removed meanwhile
        let Ok(l) = serde_json::from_slice::<Lock>(&b) else {
            tracing::warn!("ignoring unreadable lock {}", o.key);
            continue;
        };
        if l.magic == MAGIC && now_unix() - l.refreshed < STALE_AFTER_S && !holder_is_dead(&l) {
            out.push((o.key, l));
        }
    }
    Ok(out)
}

/// A lock taken on this host by a process that no longer exists (killed, crashed) is stale at
/// once rather than after [`STALE_AFTER_S`].
fn holder_is_dead(l: &Lock) -> bool {
    // The boot ID tells this machine from clones that share its host name.
    !l.boot_id.is_empty()
        && l.boot_id == boot_id()
        && l.host == crate::repository::host_name()
        && l.pid != std::process::id()
        && !std::path::Path::new(&format!("/proc/{}", l.pid)).exists()
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string()).unwrap_or_default()
}

fn describe(l: &Lock) -> String {
    format!("{} on {} (pid {}) since {}", l.purpose, l.host, l.pid, l.started)
}

impl RepoLock {
    /// Takes a lock. Fails if an exclusive lock is held (or, for an exclusive lock, any lock).
    pub fn acquire(repo: &Repository, exclusive: bool, purpose: &str) -> crate::Result<RepoLock> {
        let check = |own: Option<&str>| -> Result<()> {
            for (key, l) in live_locks(repo)? {
                if Some(key.as_str()) == own {
                    continue;
                }
                if l.exclusive || exclusive {
                    return Err(Locked { holder: describe(&l) }.into());
                }
            }
            Ok(())
        };
        check(None)?;
        let lock = Lock {
            magic: MAGIC.into(),
            version: VERSION,
            exclusive,
            started: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            refreshed: now_unix(),
            host: crate::repository::host_name(),
            pid: std::process::id(),
            purpose: purpose.into(),
            boot_id: boot_id(),
        };
        let key = format!("locks/{}", hex::encode(ferry_crypto::random_bytes::<16>()));
        repo.store().put(&key, Bytes::from(serde_json::to_vec(&lock)?)).context("write lock")?;
        let held = std::sync::Arc::new(Held {
            key,
            store: repo.store().clone(),
            lock: Mutex::new(lock),
            released: AtomicBool::new(false),
            stop: (Mutex::new(false), std::sync::Condvar::new()),
        });
        let h = held.clone();
        let refresher = std::thread::Builder::new()
            .name("ferry-lock".into())
            .spawn(move || loop {
                let (m, cv) = &h.stop;
                let stopped = m.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                // Waits for the refresh interval unless stopped, also when the stop came first.
                let (stopped, _) = cv
                    .wait_timeout_while(stopped, Duration::from_secs(REFRESH_EVERY_S), |stop| !*stop)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if *stopped {
                    return;
                }
                drop(stopped);
                if let Err(e) = h.refresh() {
                    tracing::warn!("{e:#}");
                }
            })
            .context("start the lock refresher")?;
        let held = RepoLock { inner: held, refresher: Some(refresher) };
        // Two processes may have written at once: look again now that ours is visible.
        check(Some(&held.inner.key))?;
        Ok(held)
    }

    /// Like [`RepoLock::acquire`], but while another process's lock excludes this one, tries
    /// again every 5 s for up to `wait` (a vault's garbage collection holds an exclusive lock
    /// for seconds to minutes; a scheduled backup should wait for it, not fail).
    pub fn acquire_patiently(repo: &Repository, exclusive: bool, purpose: &str, wait: Duration) -> crate::Result<RepoLock> {
        let start = std::time::Instant::now();
        loop {
            match Self::acquire(repo, exclusive, purpose) {
                Err(e) if start.elapsed() < wait => match e.find::<Locked>() {
                    Some(l) => {
                        tracing::info!("waiting for the repository: locked by {}", l.holder);
                        std::thread::sleep(
                            Duration::from_secs(5).min(wait.saturating_sub(start.elapsed()).max(Duration::from_millis(100))),
                        );
                    }
                    None => return Err(e),
                },
                r => return r,
            }
        }
    }

    /// When the lock was taken (RFC 3339).
    pub fn started(&self) -> String {
        self.inner.lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner).started.clone()
    }

    /// The lock's object key.
    pub fn key(&self) -> &str {
        &self.inner.key
    }

    /// Removes the lock and stops refreshing it.
    pub fn release(&self) {
        {
            let (m, cv) = &self.inner.stop;
            *m.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = true;
            cv.notify_all();
        }
        if !self.inner.released.swap(true, Ordering::SeqCst) {
            if let Err(e) = self.inner.store.delete(&self.inner.key) {
                tracing::warn!("could not remove lock {}: {e}", self.inner.key);
            }
        }
    }
}

impl Held {
    fn refresh(&self) -> Result<()> {
        if self.released.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut l = self.lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        l.refreshed = now_unix();
        self.store.put(&self.key, Bytes::from(serde_json::to_vec(&*l)?)).with_context(|| format!("refresh lock {}", self.key))?;
        Ok(())
    }
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        self.release();
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
    }
}
