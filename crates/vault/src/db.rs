//! The control plane: users, machines, registration secrets, jobs and policies, in SQLite (the
//! default, `DATA/vault.db`, for one vault server) or PostgreSQL (for one or several servers
//! sharing it).
//!
//! Both go through sqlx's `Any` driver with the same SQL, written to mean the same in both:
//! `$N` placeholders (SQLite takes them too), the column `end` always quoted (a reserved word in
//! PostgreSQL), `INSERT ... RETURNING id` instead of SQLite's last row ID, and no untyped NULL
//! parameters (PostgreSQL cannot infer their type). Only the table definitions differ: 64-bit
//! integers are `BIGINT` in PostgreSQL (sqlx binds `i64`, which a 32-bit `INTEGER` refuses),
//! `INTEGER` in SQLite (always 64-bit there), and existing SQLite files keep their tables.
//!
//! Tokens and secrets are stored only as BLAKE3 hashes (they are 256-bit random values, so a
//! fast hash is the right one); the plaintext is shown once, to whoever asked for it.

use std::str::FromStr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ferry_api::JobUpdate;
use sqlx::any::AnyPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::AnyPool;
use sqlx::{ConnectOptions, Connection, Row};

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

/// Which database holds the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a `--database` location names: `sqlite:PATH` (also `sqlite://PATH`), or
    /// `postgres://` / `postgresql://` URLs.
    pub fn of(location: &str) -> Result<Backend> {
        if location.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            // Not echoed: a mistyped URL may still hold a password.
            bail!("--database: expected sqlite:PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE (the value is not shown: it may hold a password)")
        }
    }
}

/// A PostgreSQL URL as it may be shown: `USER@HOST:PORT/DATABASE`, never the password.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => {
            let user = if u.username().is_empty() { String::new() } else { format!("{}@", u.username()) };
            let host = u.host_str().unwrap_or("(default host)");
            let port = u.port().unwrap_or(5432);
            let password = if u.password().is_some() { " (password redacted)" } else { "" };
            format!("{user}{host}:{port}{}{password}", u.path())
        }
        Err(_) => "(an unparsable URL, not shown: it may hold a password)".into(),
    }
}

/// `text` with the URL's password (as written, and percent-decoded) replaced, for error
/// messages from the driver (which do not include it today, but nothing promises that).
fn scrub(text: String, url: &str) -> String {
    let Some(password) = url::Url::parse(url).ok().and_then(|u| u.password().map(str::to_string)) else {
        return text;
    };
    let mut decoded = Vec::new();
    let b = password.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok())) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                i += 3;
            }
            (c, _) => {
                decoded.push(c);
                i += 1;
            }
        }
    }
    let mut text = text;
    let decoded = String::from_utf8_lossy(&decoded).into_owned();
    for p in [password, decoded] {
        // A very short password would turn every such letter in the message into stars.
        if p.len() >= 3 {
            text = text.replace(&p, "***");
        }
    }
    text
}

/// A fixed key for PostgreSQL's advisory lock around table creation (any 64-bit number that no
/// other program on the database uses; this one is "ferry" in ASCII).
const SCHEMA_LOCK: i64 = 0x0066_6572_7279;

const SQLITE_TABLES: [&str; 8] = [
    "CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, role TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE, created TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS machines (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, token_hash TEXT NOT NULL UNIQUE, created TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS registrations (secret_hash TEXT PRIMARY KEY, expires INTEGER NOT NULL, used INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS policies (machine TEXT PRIMARY KEY, policy TEXT NOT NULL, updated TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, machine TEXT NOT NULL, kind TEXT NOT NULL, \
     state TEXT NOT NULL, start TEXT NOT NULL, \"end\" TEXT, bytes INTEGER NOT NULL DEFAULT 0, files INTEGER NOT NULL DEFAULT 0, \
     errors TEXT NOT NULL DEFAULT '[]', heartbeat INTEGER NOT NULL)",
    IMPORT_JOBS_SQLITE,
    "CREATE TABLE IF NOT EXISTS traffic (machine TEXT PRIMARY KEY, bytes_in INTEGER NOT NULL, objects_in INTEGER NOT NULL, \
     bytes_out INTEGER NOT NULL, objects_out INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER NOT NULL, actor TEXT NOT NULL, \
     action TEXT NOT NULL, target TEXT NOT NULL, detail TEXT NOT NULL)",
];

const POSTGRES_TABLES: [&str; 8] = [
    "CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, role TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE, created TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS machines (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, token_hash TEXT NOT NULL UNIQUE, created TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS registrations (secret_hash TEXT PRIMARY KEY, expires BIGINT NOT NULL, used BIGINT NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS policies (machine TEXT PRIMARY KEY, policy TEXT NOT NULL, updated TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS jobs (id BIGSERIAL PRIMARY KEY, machine TEXT NOT NULL, kind TEXT NOT NULL, \
     state TEXT NOT NULL, start TEXT NOT NULL, \"end\" TEXT, bytes BIGINT NOT NULL DEFAULT 0, files BIGINT NOT NULL DEFAULT 0, \
     errors TEXT NOT NULL DEFAULT '[]', heartbeat BIGINT NOT NULL)",
    IMPORT_JOBS_POSTGRES,
    "CREATE TABLE IF NOT EXISTS traffic (machine TEXT PRIMARY KEY, bytes_in BIGINT NOT NULL, objects_in BIGINT NOT NULL, \
     bytes_out BIGINT NOT NULL, objects_out BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS audit (id BIGSERIAL PRIMARY KEY, time BIGINT NOT NULL, actor TEXT NOT NULL, \
     action TEXT NOT NULL, target TEXT NOT NULL, detail TEXT NOT NULL)",
];

/// Tables whose definition is the same on both databases (no autoincrement, BIGINT only).
const SHARED_TABLES: [&str; 7] = [DEVICE_JOBS, JOB_TOTALS, STORAGE_SAMPLES, STORAGE_SAMPLES_INDEX, SESSIONS, ALERTS_SENT, USER_PASSWORDS];

/// Import jobs (crate::imports). `tracking` is unique across all jobs (NULLs do not collide);
/// `disk_key` is sealed under the vault's escrow key; `disks` and `errors` are JSON.
const IMPORT_JOBS_SQLITE: &str = "CREATE TABLE IF NOT EXISTS import_jobs (name TEXT PRIMARY KEY, machine TEXT NOT NULL, \
     container TEXT NOT NULL, state TEXT NOT NULL, created INTEGER NOT NULL, deadline INTEGER NOT NULL, carrier TEXT, \
     tracking TEXT UNIQUE, return_address TEXT, disk_key TEXT NOT NULL, set_id TEXT, manifest_digest TEXT, \
     disks TEXT NOT NULL, recovery_point TEXT, receipt TEXT, errors TEXT NOT NULL, cleaned INTEGER NOT NULL DEFAULT 0, \
     updated INTEGER NOT NULL)";
const IMPORT_JOBS_POSTGRES: &str = "CREATE TABLE IF NOT EXISTS import_jobs (name TEXT PRIMARY KEY, machine TEXT NOT NULL, \
     container TEXT NOT NULL, state TEXT NOT NULL, created BIGINT NOT NULL, deadline BIGINT NOT NULL, carrier TEXT, \
     tracking TEXT UNIQUE, return_address TEXT, disk_key TEXT NOT NULL, set_id TEXT, manifest_digest TEXT, \
     disks TEXT NOT NULL, recovery_point TEXT, receipt TEXT, errors TEXT NOT NULL, cleaned BIGINT NOT NULL DEFAULT 0, \
     updated BIGINT NOT NULL)";

/// What a device job (an import job whose disks are the vault's seed devices) adds:
/// crate::devices. `unlock_expires` is 0 until a device is prepared.
const DEVICE_JOBS: &str = "CREATE TABLE IF NOT EXISTS device_jobs (name TEXT PRIMARY KEY, device_type TEXT NOT NULL, \
     capacity BIGINT NOT NULL, unlock_expires BIGINT NOT NULL DEFAULT 0)";

/// What a backup job's end reported: the size of the data it covered (its machine's protected
/// size then) and the recovery point it made.
const JOB_TOTALS: &str = "CREATE TABLE IF NOT EXISTS job_totals (job BIGINT PRIMARY KEY, total_bytes BIGINT NOT NULL, \
     recovery_point TEXT, tags TEXT NOT NULL DEFAULT '[]')";
/// What each machine stores and protects, sampled by the vault (crate::samples).
const STORAGE_SAMPLES: &str = "CREATE TABLE IF NOT EXISTS storage_samples (time BIGINT NOT NULL, machine TEXT NOT NULL, \
     stored_bytes BIGINT NOT NULL, stored_objects BIGINT NOT NULL, protected_bytes BIGINT NOT NULL)";
/// Dashboard logins: the session cookie's hash, its user, expiry and CSRF token (crate::dashboard).
const SESSIONS: &str = "CREATE TABLE IF NOT EXISTS sessions (id_hash TEXT PRIMARY KEY, user_name TEXT NOT NULL, \
     expires BIGINT NOT NULL, csrf TEXT NOT NULL)";
/// Users' dashboard passwords: Argon2id hashes (crate::dashboard).
const USER_PASSWORDS: &str = "CREATE TABLE IF NOT EXISTS user_passwords (name TEXT PRIMARY KEY, salt TEXT NOT NULL, \
     hash TEXT NOT NULL)";
/// Alerts sent by webhook or e-mail, by key (crate::alerts): each is sent once.
const ALERTS_SENT: &str = "CREATE TABLE IF NOT EXISTS alerts_sent (key TEXT PRIMARY KEY, time BIGINT NOT NULL)";
const STORAGE_SAMPLES_INDEX: &str = "CREATE INDEX IF NOT EXISTS storage_samples_by_machine ON storage_samples (machine, time)";

#[derive(Debug, Clone)]
pub struct Db {
    pub(crate) pool: AnyPool,
    backend: Backend,
    shown: String,
}

impl Db {
    /// Opens the SQLite database file `path`, creating it and its tables if missing.
    pub async fn open_file(path: &std::path::Path) -> Result<Db> {
        // Absolute: a relative path would read as a host name in the URL.
        let path = std::path::absolute(path).with_context(|| format!("find the vault database {}", path.display()))?;
        let url = SqliteConnectOptions::new().filename(&path).to_url_lossy();
        Db::open(url.as_str()).await
    }

    /// Opens the database at `location` (`sqlite:PATH`, `postgres://...`) and creates the tables
    /// that are missing. Safe when several vault servers open one PostgreSQL database at once.
    pub async fn open(location: &str) -> Result<Db> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of(location)?;
        let (pool, shown) = match backend {
            Backend::Sqlite => open_sqlite(location).await?,
            Backend::Postgres => open_postgres(location).await?,
        };
        let db = Db { pool, backend, shown };
        db.create_tables().await.with_context(|| format!("create the vault's tables in {}", db.shown))?;
        Ok(db)
    }

    /// The database, for messages: `SQLite /path/vault.db` or `PostgreSQL USER@HOST:PORT/DB`
    /// (never a password).
    pub fn describe(&self) -> &str {
        &self.shown
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    async fn create_tables(&self) -> Result<()> {
        match self.backend {
            Backend::Sqlite => {
                // SQLite serialises writers itself; these files predate PostgreSQL support and
                // keep their tables (same columns, `end` unquoted in their definition).
                for stmt in SQLITE_TABLES.iter().chain(&SHARED_TABLES) {
                    sqlx::query(stmt).execute(&self.pool).await?;
                }
            }
            Backend::Postgres => {
                // Two servers starting at once on an empty database would race in
                // CREATE TABLE IF NOT EXISTS (both see no table, one fails on the catalog's
                // unique index). A transaction-scoped advisory lock makes them take turns; DDL
                // is transactional in PostgreSQL, so the second sees the first one's tables.
                let mut tx = self.pool.begin().await?;
                // The lock function returns `void`, which the Any driver cannot decode: wrap it.
                sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock($1)) AS schema_lock").bind(SCHEMA_LOCK).execute(&mut *tx).await?;
                for stmt in POSTGRES_TABLES.iter().chain(&SHARED_TABLES) {
                    sqlx::query(stmt).execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    pub async fn has_owner(&self) -> Result<bool> {
        let row = sqlx::query("SELECT 1 FROM users WHERE role = 'owner' LIMIT 1").fetch_optional(&self.pool).await?;
        Ok(row.is_some())
    }

    /// Creates the user `owner` (role owner) unless an owner exists; returns its token when this
    /// call made it. One statement, so of several servers starting at once on one database
    /// exactly one makes the owner: the others find it (or collide on the name and do nothing).
    pub async fn create_owner_if_none(&self) -> Result<Option<String>> {
        let token = new_token();
        let r = sqlx::query(
            "INSERT INTO users (name, role, token_hash, created) SELECT $1, $2, $3, $4 \
             WHERE NOT EXISTS (SELECT 1 FROM users WHERE role = 'owner') ON CONFLICT (name) DO NOTHING",
        )
        .bind("owner")
        .bind(Role::Owner.as_str())
        .bind(token_hash(&token))
        .bind(now_rfc3339())
        .execute(&self.pool)
        .await
        .context("create the owner user")?;
        Ok((r.rows_affected() == 1).then_some(token))
    }

    /// Adds a user; returns the user's token (shown once).
    pub async fn add_user(&self, name: &str, role: Role) -> Result<String> {
        let token = new_token();
        sqlx::query("INSERT INTO users (name, role, token_hash, created) VALUES ($1, $2, $3, $4)")
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
        if let Some(row) = sqlx::query("SELECT name, role FROM users WHERE token_hash = $1").bind(&h).fetch_optional(&self.pool).await? {
            let role: String = row.get(1);
            let role = Role::parse(&role).with_context(|| format!("unknown role {role:?} in the database"))?;
            return Ok(Some(Principal::User { name: row.get(0), role }));
        }
        let m = sqlx::query("SELECT id FROM machines WHERE token_hash = $1").bind(&h).fetch_optional(&self.pool).await?;
        Ok(m.map(|row| Principal::Machine { id: row.get(0) }))
    }

    /// A one-time registration secret valid until `expires` (Unix seconds).
    pub async fn add_registration(&self, expires: i64) -> Result<String> {
        let secret = new_token();
        sqlx::query("INSERT INTO registrations (secret_hash, expires) VALUES ($1, $2)")
            .bind(token_hash(&secret))
            .bind(expires)
            .execute(&self.pool)
            .await?;
        Ok(secret)
    }

    /// Uses up a registration secret and creates the machine: `Ok(None)` when the secret is
    /// unknown, used or expired. Returns the machine's ID and token.
    ///
    /// One-time even with several servers on one PostgreSQL database, at its default isolation
    /// (READ COMMITTED): the UPDATE locks the secret's row, a concurrent UPDATE of the same row
    /// waits for this transaction and then re-checks `used = 0` on the committed row, so it
    /// changes nothing. If the machine cannot be created (its name is taken), the transaction
    /// rolls back and the secret stays usable.
    pub async fn register(&self, secret: &str, name: &str, now: i64) -> Result<Option<(String, String)>> {
        let mut tx = self.pool.begin().await?;
        let used = sqlx::query("UPDATE registrations SET used = 1 WHERE secret_hash = $1 AND used = 0 AND expires > $2")
            .bind(token_hash(secret))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if used.rows_affected() != 1 {
            return Ok(None);
        }
        let id = hex::encode(ferry_crypto::random_bytes::<16>());
        let token = new_token();
        sqlx::query("INSERT INTO machines (id, name, token_hash, created) VALUES ($1, $2, $3, $4)")
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
    pub async fn jobs(&self, machine: Option<&str>) -> Result<Vec<serde_json::Value>> {
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
        sqlx::query(
            "INSERT INTO policies (machine, policy, updated) VALUES ($1, $2, $3) \
             ON CONFLICT (machine) DO UPDATE SET policy = excluded.policy, updated = excluded.updated",
        )
        .bind(machine)
        .bind(policy.to_string())
        .bind(now_rfc3339())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn policy(&self, machine: &str) -> Result<Option<serde_json::Value>> {
        let row = sqlx::query("SELECT policy FROM policies WHERE machine = $1").bind(machine).fetch_optional(&self.pool).await?;
        Ok(row.and_then(|r| serde_json::from_str(&r.get::<String, _>(0)).ok()))
    }

    /// Counts what a machine's requests carried: object bytes received (uploads) and sent
    /// (downloads). The vault's byte counters, per machine, since its registration.
    pub async fn add_traffic(&self, machine: &str, bytes_in: u64, objects_in: u64, bytes_out: u64, objects_out: u64) -> Result<()> {
        sqlx::query(
            "INSERT INTO traffic (machine, bytes_in, objects_in, bytes_out, objects_out) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (machine) DO UPDATE SET bytes_in = traffic.bytes_in + excluded.bytes_in, \
             objects_in = traffic.objects_in + excluded.objects_in, bytes_out = traffic.bytes_out + excluded.bytes_out, \
             objects_out = traffic.objects_out + excluded.objects_out",
        )
        .bind(machine)
        .bind(bytes_in as i64)
        .bind(objects_in as i64)
        .bind(bytes_out as i64)
        .bind(objects_out as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every machine's counters: machine ID -> (bytes in, objects in, bytes out, objects out).
    pub async fn traffic(&self) -> Result<std::collections::HashMap<String, [u64; 4]>> {
        let rows = sqlx::query("SELECT machine, bytes_in, objects_in, bytes_out, objects_out FROM traffic").fetch_all(&self.pool).await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let n = |i: usize| r.get::<i64, _>(i).max(0) as u64;
                (r.get::<String, _>(0), [n(1), n(2), n(3), n(4)])
            })
            .collect())
    }

    /// Every machine: (id, name, created).
    pub async fn machines(&self) -> Result<Vec<(String, String, String)>> {
        let rows = sqlx::query("SELECT id, name, created FROM machines ORDER BY name").fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
    }
}

/// SQLite: the file is made (and write-ahead logging turned on, which the file keeps) with the
/// SQLite driver itself, since the Any driver takes only a URL and a URL has no journal mode.
async fn open_sqlite(location: &str) -> Result<(AnyPool, String)> {
    let opts = SqliteConnectOptions::from_str(location)
        .with_context(|| format!("--database {location:?}: expected sqlite:PATH"))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
    let path = opts.get_filename().to_path_buf();
    if location.contains(":memory:") || location.contains("mode=memory") {
        bail!("--database {location:?}: an in-memory database would lose the vault's users and machines at every restart; give a file");
    }
    let shown = format!("SQLite {}", path.display());
    let conn = opts.connect().await.with_context(|| format!("open the vault database {}", path.display()))?;
    conn.close().await?;
    // An absolute path: a relative one would read as a host name in the URL.
    let absolute = std::fs::canonicalize(&path).with_context(|| format!("find the vault database {}", path.display()))?;
    let url = SqliteConnectOptions::new().filename(&absolute).to_url_lossy();
    let pool = AnyPoolOptions::new()
        .max_connections(4)
        .connect(url.as_str())
        .await
        .with_context(|| format!("open the vault database {}", path.display()))?;
    Ok((pool, shown))
}

async fn open_postgres(url: &str) -> Result<(AnyPool, String)> {
    let shown = redact(url);
    let failed = |e: String| {
        anyhow!(
            "cannot connect to PostgreSQL at {shown}: {} — is it running, and are the host, port, user, password and database name right?",
            scrub(e, url)
        )
    };
    // One connection first, for the driver's own error (refused, unknown host, authentication):
    // the pool would retry such errors until its timeout and then report only the timeout.
    let first = tokio::time::timeout(Duration::from_secs(20), sqlx::AnyConnection::connect(url))
        .await
        .map_err(|_| failed("no answer within 20 s".into()))?
        .map_err(|e| failed(e.to_string()))?;
    first.close().await.ok();
    let pool = AnyPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(20))
        .connect(url)
        .await
        .map_err(|e| failed(e.to_string()))?;
    Ok((pool, format!("PostgreSQL {shown}")))
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Test harness shared by the vault's database tests: one body run on a fresh SQLite file and,
/// when `FERRY_TEST_POSTGRES` is set (scripts/test.sh sets it), on PostgreSQL, with a tag that
/// makes names unique to the run in the shared database.
#[cfg(test)]
pub(crate) mod testing {
    use super::Db;

    pub(crate) fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    }

    pub(crate) fn on_sqlite<F: std::future::Future<Output = ()>>(body: impl FnOnce(Db, String) -> F) {
        block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let db = Db::open_file(&dir.path().join("v.db")).await.unwrap();
            body(db, String::new()).await;
        });
    }

    pub(crate) fn on_postgres<F: std::future::Future<Output = ()>>(body: impl FnOnce(Db, String) -> F) {
        let Ok(url) = std::env::var("FERRY_TEST_POSTGRES") else {
            eprintln!("skipped: FERRY_TEST_POSTGRES not set (run scripts/test.sh)");
            return;
        };
        block_on(async {
            let db = Db::open(&url).await.unwrap();
            let tag = format!("-{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
            body(db, tag).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::testing::block_on;
    use super::*;

    /// Every call once, on a SQLite file made by an earlier version of the vault (its table
    /// definitions, `end` unquoted): the `$N` placeholders, the quoted `"end"` and RETURNING
    /// must work on such files.
    #[test]
    fn sqlite_files_of_earlier_versions_keep_working() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.db");
        block_on(async {
            use sqlx::Executor;
            let opts = SqliteConnectOptions::new().filename(&path).create_if_missing(true);
            let mut conn = opts.connect().await.unwrap();
            conn.execute(
                "CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, machine TEXT NOT NULL, kind TEXT NOT NULL, \
                 state TEXT NOT NULL, start TEXT NOT NULL, end TEXT, bytes INTEGER NOT NULL DEFAULT 0, files INTEGER NOT NULL DEFAULT 0, \
                 errors TEXT NOT NULL DEFAULT '[]', heartbeat INTEGER NOT NULL)",
            )
            .await
            .unwrap();
            conn.close().await.unwrap();

            let db = Db::open_file(&path).await.unwrap();
            assert_eq!(db.backend(), Backend::Sqlite);
            assert!(db.describe().starts_with("SQLite "), "{}", db.describe());
            assert!(!db.has_owner().await.unwrap());
            let owner = db.create_owner_if_none().await.unwrap().expect("the first call makes the owner");
            assert!(db.create_owner_if_none().await.unwrap().is_none(), "one owner");
            assert!(matches!(db.principal(&owner).await.unwrap(), Some(Principal::User { role: Role::Owner, .. })));
            assert!(db.principal("nobody").await.unwrap().is_none());

            let secret = db.add_registration(2_000_000_000).await.unwrap();
            let (machine, token) = db.register(&secret, "m", 1_000).await.unwrap().unwrap();
            assert!(db.register(&secret, "m2", 1_000).await.unwrap().is_none(), "one-time");
            assert_eq!(db.principal(&token).await.unwrap(), Some(Principal::Machine { id: machine.clone() }));
            let expired = db.add_registration(500).await.unwrap();
            assert!(db.register(&expired, "m3", 1_000).await.unwrap().is_none(), "expired");

            let j1 = db.create_job(&machine, "backup", 1_000).await.unwrap();
            let j2 = db.create_job(&machine, "restore", 1_001).await.unwrap();
            assert!(j2 > j1);
            let beat = JobUpdate {
                state: "running".into(),
                bytes: 5,
                files: 1,
                errors: vec![],
                total_bytes: None,
                recovery_point: None,
                tags: vec![],
            };
            assert!(db.update_job(j1, &machine, &beat, 1_002).await.unwrap());
            let done = JobUpdate {
                state: "completed".into(),
                bytes: 1 << 40,
                files: 7,
                errors: vec!["e".into()],
                total_bytes: Some(9),
                recovery_point: None,
                tags: vec![],
            };
            assert!(db.update_job(j1, &machine, &done, 1_003).await.unwrap());
            assert!(!db.update_job(j1, &machine, &done, 1_004).await.unwrap(), "ended");
            assert!(!db.update_job(j2, "another", &beat, 1_004).await.unwrap(), "not its job");
            assert_eq!(db.reap_jobs(1_000_000, 300).await.unwrap(), 1);
            let all = db.jobs(None).await.unwrap();
            assert_eq!(all.len(), 2);
            assert_eq!((all[0]["id"].as_i64(), all[0]["state"].as_str()), (Some(j2), Some("failed")));
            assert_eq!(all[1]["bytes"], 1u64 << 40);
            assert_eq!(all[1]["end"], rfc3339(1_003));
            assert_eq!(all[1]["errors"], serde_json::json!(["e"]));
            assert_eq!(db.jobs(Some(&machine)).await.unwrap().len(), 2);
            assert!(db.jobs(Some("another")).await.unwrap().is_empty());

            db.set_policy(&machine, &serde_json::json!({"a": 1})).await.unwrap();
            db.set_policy(&machine, &serde_json::json!({"a": 2})).await.unwrap();
            assert_eq!(db.policy(&machine).await.unwrap(), Some(serde_json::json!({"a": 2})));
            assert_eq!(db.machines().await.unwrap().len(), 1);
            db.add_user("r", Role::Reader).await.unwrap();
            assert!(db.add_user("r", Role::Reader).await.is_err(), "names are unique");
        });
    }

    #[test]
    fn locations_and_redaction() {
        assert_eq!(Backend::of("sqlite:/x/vault.db").unwrap(), Backend::Sqlite);
        assert_eq!(Backend::of("postgresql://u@h/db").unwrap(), Backend::Postgres);
        let e = Backend::of("mysql://u:hunter22@h/db").unwrap_err().to_string();
        assert!(!e.contains("hunter22"), "{e}");
        assert_eq!(redact("postgres://ferry:s3cret@127.0.0.1:5433/vault"), "ferry@127.0.0.1:5433/vault (password redacted)");
        assert_eq!(redact("postgres://db.example/vault"), "db.example:5432/vault");
        assert!(!redact("postgres://u:p@[bad").contains("p@"));
        assert_eq!(scrub("auth failed for s3cret!x".into(), "postgres://u:s3cret%21x@h/db"), "auth failed for ***");
    }
}
