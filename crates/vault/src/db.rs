//! The control plane: users, machines and registration secrets, in SQLite.
//!
//! Tokens and secrets are stored only as BLAKE3 hashes (they are 256-bit random values, so a
//! fast hash is the right one); the plaintext is shown once, to whoever asked for it.

use anyhow::{Context, Result};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::Row;

use crate::Role;

/// A random 256-bit token, hex-encoded.
pub fn new_token() -> String {
    hex::encode(ferry_crypto::random_bytes::<32>())
}

/// What the database keeps of a token or secret.
pub fn token_hash(token: &str) -> String {
    blake3::hash(token.trim().as_bytes()).to_hex().to_string()
}

/// Who a token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    User { name: String, role: Role },
    Machine { id: String },
}

#[derive(Debug, Clone)]
pub struct Db {
    pool: SqlitePool,
}

impl Db {
    /// Opens (or creates) the database file and its tables.
    pub async fn open(path: &std::path::Path) -> Result<Db> {
        let opts = SqliteConnectOptions::new().filename(path).create_if_missing(true).journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .with_context(|| format!("open the vault database {}", path.display()))?;
        for stmt in [
            "CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, role TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE, created TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS machines (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, token_hash TEXT NOT NULL UNIQUE, created TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS registrations (secret_hash TEXT PRIMARY KEY, expires INTEGER NOT NULL, used INTEGER NOT NULL DEFAULT 0)",
            "CREATE TABLE IF NOT EXISTS policies (machine TEXT PRIMARY KEY, policy TEXT NOT NULL, updated TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, machine TEXT NOT NULL, kind TEXT NOT NULL, \
             state TEXT NOT NULL, start TEXT NOT NULL, end TEXT, bytes INTEGER NOT NULL DEFAULT 0, files INTEGER NOT NULL DEFAULT 0, \
             errors TEXT NOT NULL DEFAULT '[]', heartbeat INTEGER NOT NULL)",
        ] {
            sqlx::query(stmt).execute(&pool).await.context("create the vault tables")?;
        }
        Ok(Db { pool })
    }

    pub async fn has_owner(&self) -> Result<bool> {
        let n: i64 = sqlx::query("SELECT COUNT(*) FROM users WHERE role = 'owner'").fetch_one(&self.pool).await?.get(0);
        Ok(n > 0)
    }

    /// Adds a user; returns the user's token (shown once).
    pub async fn add_user(&self, name: &str, role: Role) -> Result<String> {
        let token = new_token();
        sqlx::query("INSERT INTO users (name, role, token_hash, created) VALUES (?, ?, ?, ?)")
            .bind(name)
            .bind(role.as_str())
            .bind(token_hash(&token))
            .bind(now_rfc3339())
            .execute(&self.pool)
            .await
            .with_context(|| format!("add user {name:?} (does the name exist already?)"))?;
        Ok(token)
    }

    /// The principal a token belongs to, if any.
    pub async fn principal(&self, token: &str) -> Result<Option<Principal>> {
        let h = token_hash(token);
        if let Some(row) = sqlx::query("SELECT name, role FROM users WHERE token_hash = ?").bind(&h).fetch_optional(&self.pool).await? {
            let role: String = row.get(1);
            let role = Role::parse(&role).with_context(|| format!("unknown role {role:?} in the database"))?;
            return Ok(Some(Principal::User { name: row.get(0), role }));
        }
        let m = sqlx::query("SELECT id FROM machines WHERE token_hash = ?").bind(&h).fetch_optional(&self.pool).await?;
        Ok(m.map(|row| Principal::Machine { id: row.get(0) }))
    }

    /// A one-time registration secret valid until `expires` (Unix seconds).
    pub async fn add_registration(&self, expires: i64) -> Result<String> {
        let secret = new_token();
        sqlx::query("INSERT INTO registrations (secret_hash, expires) VALUES (?, ?)")
            .bind(token_hash(&secret))
            .bind(expires)
            .execute(&self.pool)
            .await?;
        Ok(secret)
    }

    /// Uses up a registration secret and creates the machine: `Ok(None)` when the secret is
    /// unknown, used or expired. Returns the machine's ID and token.
    pub async fn register(&self, secret: &str, name: &str, now: i64) -> Result<Option<(String, String)>> {
        let mut tx = self.pool.begin().await?;
        let used = sqlx::query("UPDATE registrations SET used = 1 WHERE secret_hash = ? AND used = 0 AND expires > ?")
            .bind(token_hash(secret))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if used.rows_affected() != 1 {
            return Ok(None);
        }
        let id = hex::encode(ferry_crypto::random_bytes::<16>());
        let token = new_token();
        sqlx::query("INSERT INTO machines (id, name, token_hash, created) VALUES (?, ?, ?, ?)")
            .bind(&id)
            .bind(name)
            .bind(token_hash(&token))
            .bind(now_rfc3339())
            .execute(&mut *tx)
            .await
            .with_context(|| format!("a machine named {name:?} is already registered"))?;
        tx.commit().await?;
        Ok(Some((id, token)))
    }

    /// Opens a running job for `machine`; returns its ID.
    pub async fn create_job(&self, machine: &str, kind: &str, now: i64) -> Result<i64> {
        let id = sqlx::query("INSERT INTO jobs (machine, kind, state, start, heartbeat) VALUES (?, ?, 'running', ?, ?)")
            .bind(machine)
            .bind(kind)
            .bind(rfc3339(now))
            .bind(now)
            .execute(&self.pool)
            .await?
            .last_insert_rowid();
        Ok(id)
    }

    /// Records a running job's progress, or its end (`state` other than running). Only the
    /// machine's own, still running jobs change; false if there is none such.
    pub async fn update_job(&self, id: i64, machine: &str, u: &JobUpdate, now: i64) -> Result<bool> {
        let end = (u.state != "running").then(|| rfc3339(now));
        let r = sqlx::query(
            "UPDATE jobs SET state = ?, bytes = ?, files = ?, errors = ?, heartbeat = ?, end = COALESCE(?, end) \
             WHERE id = ? AND machine = ? AND state = 'running'",
        )
        .bind(&u.state)
        .bind(u.bytes as i64)
        .bind(u.files as i64)
        .bind(serde_json::to_string(&u.errors)?)
        .bind(now)
        .bind(end)
        .bind(id)
        .bind(machine)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Marks failed every running job whose agent has not reported for `timeout_s`.
    pub async fn reap_jobs(&self, now: i64, timeout_s: i64) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE jobs SET state = 'failed', end = ?, errors = '[\"the agent stopped reporting\"]' \
             WHERE state = 'running' AND heartbeat < ?",
        )
        .bind(rfc3339(now))
        .bind(now - timeout_s)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    /// Jobs, newest first; of one machine (by ID) if given.
    pub async fn jobs(&self, machine: Option<&str>) -> Result<Vec<serde_json::Value>> {
        let rows = sqlx::query(
            "SELECT j.id, m.name, j.kind, j.state, j.start, j.end, j.bytes, j.files, j.errors FROM jobs j \
             JOIN machines m ON m.id = j.machine WHERE (? IS NULL OR j.machine = ?) ORDER BY j.id DESC LIMIT 1000",
        )
        .bind(machine)
        .bind(machine)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let errors: String = r.get(8);
                serde_json::json!({
                    "id": r.get::<i64, _>(0),
                    "machine": r.get::<String, _>(1),
                    "kind": r.get::<String, _>(2),
                    "state": r.get::<String, _>(3),
                    "start": r.get::<String, _>(4),
                    "end": r.get::<Option<String>, _>(5),
                    "bytes": r.get::<i64, _>(6),
                    "files": r.get::<i64, _>(7),
                    "errors": serde_json::from_str::<serde_json::Value>(&errors).unwrap_or_default(),
                })
            })
            .collect())
    }

    pub async fn set_policy(&self, machine: &str, policy: &serde_json::Value) -> Result<()> {
        sqlx::query("INSERT INTO policies (machine, policy, updated) VALUES (?, ?, ?) ON CONFLICT(machine) DO UPDATE SET policy = excluded.policy, updated = excluded.updated")
            .bind(machine)
            .bind(policy.to_string())
            .bind(now_rfc3339())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn policy(&self, machine: &str) -> Result<Option<serde_json::Value>> {
        let row = sqlx::query("SELECT policy FROM policies WHERE machine = ?").bind(machine).fetch_optional(&self.pool).await?;
        Ok(row.and_then(|r| serde_json::from_str(&r.get::<String, _>(0)).ok()))
    }

    /// Every machine: (id, name, created).
    pub async fn machines(&self) -> Result<Vec<(String, String, String)>> {
        let rows = sqlx::query("SELECT id, name, created FROM machines ORDER BY name").fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// What an agent reports about a job.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct JobUpdate {
    /// running | completed | completed-with-errors | failed
    pub state: String,
    #[serde(default)]
    pub bytes: u64,
    #[serde(default)]
    pub files: u64,
    #[serde(default)]
    pub errors: Vec<String>,
}
