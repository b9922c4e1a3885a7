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

    /// Every machine: (id, name, created).
    pub async fn machines(&self) -> Result<Vec<(String, String, String)>> {
        let rows = sqlx::query("SELECT id, name, created FROM machines ORDER BY name").fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
