//! The control plane's data layer: users, machines, registration secrets, jobs and policies,
//! import and device jobs, storage samples, dashboard sessions and the audit log, in SQLite (the
//! default, `DATA/vault.db`, for one vault server) or PostgreSQL (for one or several servers
//! sharing it). This module holds the pool and its opening, the backend, and token hashing; each
//! domain's SQL is in its own submodule (`users`, `machines`, `jobs`, ...) as methods of [`Db`],
//! and no code outside `db` writes SQL. The tables and their migrations are in [`schema`].
//!
//! Both databases go through sqlx's `Any` driver with the same SQL, written to mean the same in
//! both: `$N` placeholders (SQLite takes them too), the column `end` always quoted (a reserved
//! word in PostgreSQL), `INSERT ... RETURNING id` instead of SQLite's last row ID, and no untyped
//! NULL parameters (PostgreSQL cannot infer their type).
//!
//! Tokens and secrets are stored only as BLAKE3 hashes (they are 256-bit random values, so a
//! fast hash is the right one); the plaintext is shown once, to whoever asked for it.

use std::str::FromStr;
use std::time::Duration;

use anyhow::{anyhow, Context};
use sqlx::any::AnyPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::AnyPool;
use sqlx::{ConnectOptions, Connection};

use crate::error::Error;
use crate::Role;

mod alerts_sent;
pub mod audit;
mod device_jobs;
pub(crate) mod export_jobs;
mod import_jobs;
pub(crate) mod jobs;
pub(crate) mod logins;
mod machines;
mod samples;
pub(crate) mod schema;
mod sessions;
mod settings;
mod users;

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
    pub fn of(location: &str) -> crate::error::Result<Backend> {
        if location.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            // Not echoed: a mistyped URL may still hold a password.
            Err(Error::Location)
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
    let decoded = percent_encoding::percent_decode_str(&password).decode_utf8_lossy().into_owned();
    let mut text = text;
    for p in [password, decoded] {
        // A very short password would turn every such letter in the message into stars.
        if p.len() >= 3 {
            text = text.replace(&p, "***");
        }
    }
    text
}

/// The control plane's database: a pool of connections, which backend it is, and how it is
/// named in messages. Cheap to clone (the clones share the pool).
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    shown: String,
}

impl Db {
    /// Opens the SQLite database file `path`, creating it and its tables if missing.
    pub async fn open_file(path: &std::path::Path) -> crate::error::Result<Db> {
        // Absolute: a relative path would read as a host name in the URL.
        let path = std::path::absolute(path).with_context(|| format!("find the vault database {}", path.display()))?;
        let url = SqliteConnectOptions::new().filename(&path).to_url_lossy();
        Db::open(url.as_str()).await
    }

    /// Opens the database at `location` (`sqlite:PATH`, `postgres://...`) and applies the schema's
    /// migrations it lacks (db::schema). Safe when several vault servers open one PostgreSQL
    /// database at once.
    pub async fn open(location: &str) -> crate::error::Result<Db> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of(location)?;
        let (pool, shown) = match backend {
            Backend::Sqlite => open_sqlite(location).await?,
            Backend::Postgres => open_postgres(location).await?,
        };
        let db = Db { pool, backend, shown };
        if let Err(source) = schema::migrate(&db.pool, backend).await {
            return Err(Error::Schema { shown: db.shown, source });
        }
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
}

/// SQLite: the file is made (and write-ahead logging turned on, which the file keeps) with the
/// SQLite driver itself, since the Any driver takes only a URL and a URL has no journal mode.
async fn open_sqlite(location: &str) -> crate::error::Result<(AnyPool, String)> {
    let opts = SqliteConnectOptions::from_str(location)
        .with_context(|| format!("--database {location:?}: expected sqlite:PATH"))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
    let path = opts.get_filename().to_path_buf();
    if location.contains(":memory:") || location.contains("mode=memory") {
        return Err(anyhow!(
            "--database {location:?}: an in-memory database would lose the vault's users and machines at every restart; give a file"
        )
        .into());
    }
    let shown = format!("SQLite {}", path.display());
    let conn = opts.connect().await.with_context(|| format!("open the vault database {}", path.display()))?;
    conn.close().await.map_err(anyhow::Error::from)?;
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

async fn open_postgres(url: &str) -> crate::error::Result<(AnyPool, String)> {
    let shown = redact(url);
    let failed = |e: String| Error::Connect { shown: shown.clone(), reason: scrub(e, url) };
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

/// Now, as the tables keep times written out (RFC 3339, UTC, whole seconds).
fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Unix time `unix` as RFC 3339 (UTC, whole seconds): how every time read from the tables is
/// shown.
pub(crate) fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Test harness shared by the vault's database tests: one body run on a fresh SQLite file and,
/// when `FERRY_TEST_POSTGRES` is set (scripts/test.sh sets it), on PostgreSQL in a fresh schema,
/// with a tag that makes names unique to the run.
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
            use sqlx::{Connection, Executor};
            let tag = format!("-{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
            // A schema of its own (dropped at the end), so that every test migrates from
            // scratch, whatever schema version another branch's tests left in the database.
            let schema = format!("ferry_test_{}_{}", std::process::id(), &tag[1..]);
            let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
            admin.execute(format!("CREATE SCHEMA {schema}").as_str()).await.unwrap();
            let sep = if url.contains('?') { '&' } else { '?' };
            let db = Db::open(&format!("{url}{sep}options=-c%20search_path%3D{schema}")).await.unwrap();
            body(db, tag).await;
            admin.execute(format!("DROP SCHEMA {schema} CASCADE").as_str()).await.unwrap();
        });
    }
}

#[cfg(test)]
mod upgrade_tests;

#[cfg(test)]
mod tests {
    use super::testing::block_on;
    use super::*;
    use ferry_api::JobUpdate;

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
            assert_eq!((all[0].id, all[0].state.as_str()), (j2, "failed"));
            assert_eq!(all[1].bytes, 1 << 40);
            assert_eq!(all[1].end, Some(rfc3339(1_003)));
            assert_eq!(all[1].errors, ["e"]);
            assert_eq!(db.jobs(Some(&machine)).await.unwrap().len(), 2);
            assert!(db.jobs(Some("another")).await.unwrap().is_empty());

            let policy = |path: &str| ferry_api::BackupPolicy { paths: vec![path.into()], ..Default::default() };
            db.set_policy(&machine, &policy("/a")).await.unwrap();
            db.set_policy(&machine, &policy("/b")).await.unwrap();
            assert_eq!(db.policy(&machine).await.unwrap(), Some(policy("/b")));
            assert_eq!(db.machines().await.unwrap().len(), 1);
            db.add_user("r", Role::Reader, None).await.unwrap();
            assert!(db.add_user("r", Role::Reader, None).await.is_err(), "names are unique");
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
