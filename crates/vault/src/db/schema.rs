//! The control plane's schema: numbered migrations, applied once each and in order, in a
//! transaction, on SQLite and PostgreSQL alike, and recorded in `schema_migrations`.
//!
//! Migration 1 is the schema as it was before this table existed: its statements are all
//! `IF NOT EXISTS`, so a database made by an earlier vault (tables, no `schema_migrations`) is
//! upgraded in place: it gains only the tables it lacks, keeps its rows, and is then at
//! version 1. Later migrations are applied as written. A database whose version is newer than
//! this vault knows is refused rather than used half-understood.
//!
//! The definitions differ only in their types: 64-bit integers are `BIGINT` in PostgreSQL (sqlx
//! binds `i64`, which a 32-bit `INTEGER` refuses), `INTEGER` in SQLite (always 64-bit there);
//! existing SQLite files keep their tables (same columns, `end` unquoted in the oldest).

use anyhow::{bail, Result};
use sqlx::{AnyPool, Row};

use super::Backend;

/// One step of the schema.
struct Migration {
    version: i64,
    /// What it does, recorded with it.
    name: &'static str,
    /// Its statements, with `{int}` for the 64-bit integer type and `{id}` for an
    /// auto-numbered primary key (see [`for_backend`]).
    statements: &'static [&'static str],
}

impl Migration {
    fn statements(&self, backend: Backend) -> Vec<String> {
        self.statements.iter().map(|s| for_backend(s, backend)).collect()
    }
}

/// A statement as `backend` takes it: `{int}` is `INTEGER` in SQLite (always 64-bit there),
/// `BIGINT` in PostgreSQL; `{id}` is `INTEGER PRIMARY KEY AUTOINCREMENT` or `BIGSERIAL PRIMARY KEY`.
fn for_backend(statement: &str, backend: Backend) -> String {
    let (int, id) = match backend {
        Backend::Sqlite => ("INTEGER", "INTEGER PRIMARY KEY AUTOINCREMENT"),
        Backend::Postgres => ("BIGINT", "BIGSERIAL PRIMARY KEY"),
    };
    statement.replace("{id}", id).replace("{int}", int)
}

/// Every migration, oldest first; versions count up from 1 without gaps. Never edit one that
/// was released: add the next.
const MIGRATIONS: [Migration; 5] = [
    Migration { version: 1, name: "the control plane's tables of the vault before versioned migrations", statements: &V1 },
    Migration { version: 2, name: "failed dashboard logins and lockouts", statements: &V2 },
    Migration { version: 3, name: "tokens expire, are revoked and record their last use", statements: &V3 },
    Migration { version: 4, name: "settings every server of the vault shares", statements: &V4 },
    Migration { version: 5, name: "export jobs: recovery points that travel to their machine on disks", statements: &V5 },
];

/// Migration 1 (its text on each database is pinned by the tests).
const V1: [&str; 15] = [
    "CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, role TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE, created TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS machines (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, token_hash TEXT NOT NULL UNIQUE, created TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS registrations (secret_hash TEXT PRIMARY KEY, expires {int} NOT NULL, used {int} NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS policies (machine TEXT PRIMARY KEY, policy TEXT NOT NULL, updated TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS jobs (id {id}, machine TEXT NOT NULL, kind TEXT NOT NULL, \
     state TEXT NOT NULL, start TEXT NOT NULL, \"end\" TEXT, bytes {int} NOT NULL DEFAULT 0, files {int} NOT NULL DEFAULT 0, \
     errors TEXT NOT NULL DEFAULT '[]', heartbeat {int} NOT NULL)",
    // Import jobs (db::import_jobs). `tracking` is unique across all jobs (NULLs do not
    // collide); `disk_key` is sealed under the vault's escrow key; `disks` and `errors` are JSON.
    "CREATE TABLE IF NOT EXISTS import_jobs (name TEXT PRIMARY KEY, machine TEXT NOT NULL, \
     container TEXT NOT NULL, state TEXT NOT NULL, created {int} NOT NULL, deadline {int} NOT NULL, carrier TEXT, \
     tracking TEXT UNIQUE, return_address TEXT, disk_key TEXT NOT NULL, set_id TEXT, manifest_digest TEXT, \
     disks TEXT NOT NULL, recovery_point TEXT, receipt TEXT, errors TEXT NOT NULL, cleaned {int} NOT NULL DEFAULT 0, \
     updated {int} NOT NULL)",
    "CREATE TABLE IF NOT EXISTS traffic (machine TEXT PRIMARY KEY, bytes_in {int} NOT NULL, objects_in {int} NOT NULL, \
     bytes_out {int} NOT NULL, objects_out {int} NOT NULL)",
    "CREATE TABLE IF NOT EXISTS audit (id {id}, time {int} NOT NULL, actor TEXT NOT NULL, \
     action TEXT NOT NULL, target TEXT NOT NULL, detail TEXT NOT NULL)",
    DEVICE_JOBS,
    JOB_TOTALS,
    STORAGE_SAMPLES,
    STORAGE_SAMPLES_INDEX,
    SESSIONS,
    ALERTS_SENT,
    USER_PASSWORDS,
];

/// Migration 2: failed dashboard logins per user name and per client address, and the lockouts
/// they caused (db::logins).
const V2: [&str; 1] = ["CREATE TABLE login_failures (scope TEXT NOT NULL, key TEXT NOT NULL, failures {int} NOT NULL, \
     since {int} NOT NULL, locked_until {int} NOT NULL, PRIMARY KEY (scope, key))"];

/// Migration 3: tokens that end (db::users, db::machines): a user's token may expire and be
/// revoked, and records when it was last used (Unix seconds); a machine's may be revoked (it
/// registers again).
const V3: [&str; 4] = [
    "ALTER TABLE users ADD COLUMN expires {int}",
    "ALTER TABLE users ADD COLUMN revoked {int}",
    "ALTER TABLE users ADD COLUMN last_used {int}",
    "ALTER TABLE machines ADD COLUMN revoked {int}",
];

/// Migration 4: facts every server of the vault must agree on, by name (db::settings).
const V4: [&str; 1] = ["CREATE TABLE vault_settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)"];

/// Migration 5: export jobs (db::export_jobs), the mirror of import jobs: `recovery_point` is
/// the full ID, `paths` JSON; `disk_key` is sealed under the vault's escrow key; `tracking` is
/// unique across export jobs (NULLs do not collide); `disks` and `errors` are JSON.
const V5: [&str; 1] = ["CREATE TABLE export_jobs (name TEXT PRIMARY KEY, machine TEXT NOT NULL, recovery_point TEXT NOT NULL, \
     paths TEXT NOT NULL, state TEXT NOT NULL, created {int} NOT NULL, deadline {int} NOT NULL, carrier TEXT, \
     tracking TEXT UNIQUE, return_address TEXT, disk_key TEXT NOT NULL, set_id TEXT, manifest_digest TEXT, \
     disks TEXT NOT NULL, errors TEXT NOT NULL, updated {int} NOT NULL)"];

// Tables whose definition is the same on both databases (no autoincrement, BIGINT only).

/// What a device job (an import job whose disks are the vault's seed devices) adds
/// (db::device_jobs). `unlock_expires` is 0 until a device is prepared.
const DEVICE_JOBS: &str = "CREATE TABLE IF NOT EXISTS device_jobs (name TEXT PRIMARY KEY, device_type TEXT NOT NULL, \
     capacity BIGINT NOT NULL, unlock_expires BIGINT NOT NULL DEFAULT 0)";
/// What a backup job's end reported: the size of the data it covered (its machine's protected
/// size then) and the recovery point it made.
const JOB_TOTALS: &str = "CREATE TABLE IF NOT EXISTS job_totals (job BIGINT PRIMARY KEY, total_bytes BIGINT NOT NULL, \
     recovery_point TEXT, tags TEXT NOT NULL DEFAULT '[]')";
/// What each machine stores and protects, sampled by the vault (db::samples).
const STORAGE_SAMPLES: &str = "CREATE TABLE IF NOT EXISTS storage_samples (time BIGINT NOT NULL, machine TEXT NOT NULL, \
     stored_bytes BIGINT NOT NULL, stored_objects BIGINT NOT NULL, protected_bytes BIGINT NOT NULL)";
const STORAGE_SAMPLES_INDEX: &str = "CREATE INDEX IF NOT EXISTS storage_samples_by_machine ON storage_samples (machine, time)";
/// Dashboard logins: the session cookie's hash, its user, expiry and CSRF token (db::users).
const SESSIONS: &str = "CREATE TABLE IF NOT EXISTS sessions (id_hash TEXT PRIMARY KEY, user_name TEXT NOT NULL, \
     expires BIGINT NOT NULL, csrf TEXT NOT NULL)";
/// Users' dashboard passwords: Argon2id hashes (db::users).
const USER_PASSWORDS: &str = "CREATE TABLE IF NOT EXISTS user_passwords (name TEXT PRIMARY KEY, salt TEXT NOT NULL, \
     hash TEXT NOT NULL)";
/// Alerts sent by webhook or e-mail, by key (db::alerts_sent): each is sent once.
const ALERTS_SENT: &str = "CREATE TABLE IF NOT EXISTS alerts_sent (key TEXT PRIMARY KEY, time BIGINT NOT NULL)";

/// The record of applied migrations (the same on both databases).
const MIGRATIONS_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied BIGINT NOT NULL)";

/// The database's schema version: the newest migration applied (0: none).
const CURRENT: &str = "SELECT COALESCE(MAX(version), 0) FROM schema_migrations";

/// A fixed key for PostgreSQL's advisory lock around migrations (any 64-bit number that no
/// other program on the database uses; this one is "ferry" in ASCII).
const SCHEMA_LOCK: i64 = 0x0066_6572_7279;

/// The newest schema version this vault knows.
pub(crate) const LATEST: i64 = MIGRATIONS.len() as i64;

/// Applies the migrations `pool`'s database lacks, one transaction each. Safe when several
/// vault servers open one PostgreSQL database at once.
pub(super) async fn migrate(pool: &AnyPool, backend: Backend) -> Result<()> {
    loop {
        let mut tx = pool.begin().await?;
        if backend == Backend::Postgres {
            // Two servers starting at once would race in CREATE TABLE IF NOT EXISTS (both see
            // no table, one fails on the catalog's unique index) and in applying a step. A
            // transaction-scoped advisory lock makes them take turns; DDL is transactional in
            // PostgreSQL, so the second sees the first one's tables and versions. (SQLite
            // serialises writers itself.)
            // The lock function returns `void`, which the Any driver cannot decode: wrap it.
            sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock($1)) AS schema_lock").bind(SCHEMA_LOCK).execute(&mut *tx).await?;
        }
        sqlx::query(MIGRATIONS_TABLE).execute(&mut *tx).await?;
        let current: i64 = sqlx::query(CURRENT).fetch_one(&mut *tx).await?.get(0);
        if current > LATEST {
            bail!("the database's schema is version {current}, newer than this vault's ({LATEST}): run a newer ferry");
        }
        let Some(step) = MIGRATIONS.iter().find(|m| m.version == current + 1) else {
            tx.commit().await?;
            return Ok(());
        };
        for stmt in step.statements(backend) {
            sqlx::query(&stmt).execute(&mut *tx).await?;
        }
        sqlx::query("INSERT INTO schema_migrations (version, name, applied) VALUES ($1, $2, $3)")
            .bind(step.version)
            .bind(step.name)
            .bind(chrono::Utc::now().timestamp())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
}

/// The database's schema version (0: no migration applied).
#[cfg(test)]
pub(crate) async fn version(pool: &AnyPool) -> Result<i64> {
    Ok(sqlx::query(CURRENT).fetch_one(pool).await?.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_count_up_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "{}", m.name);
            assert_eq!(m.statements(Backend::Sqlite).len(), m.statements(Backend::Postgres).len(), "{}", m.name);
        }
    }

    /// Every migration is pinned, statement by statement, on each database (a released one is
    /// never edited); migration 1 is the text as when each database had its own.
    #[test]
    fn migrations_are_pinned_on_both_databases() {
        for (version, backend, pinned) in [
            (1, Backend::Sqlite, include_str!("../../tests/fixtures/migration-1.sqlite.sql")),
            (1, Backend::Postgres, include_str!("../../tests/fixtures/migration-1.postgres.sql")),
            (2, Backend::Sqlite, include_str!("../../tests/fixtures/migration-2.sqlite.sql")),
            (2, Backend::Postgres, include_str!("../../tests/fixtures/migration-2.postgres.sql")),
            (3, Backend::Sqlite, include_str!("../../tests/fixtures/migration-3.sqlite.sql")),
            (3, Backend::Postgres, include_str!("../../tests/fixtures/migration-3.postgres.sql")),
            (4, Backend::Sqlite, include_str!("../../tests/fixtures/migration-4.sqlite.sql")),
            (4, Backend::Postgres, include_str!("../../tests/fixtures/migration-4.postgres.sql")),
            (5, Backend::Sqlite, include_str!("../../tests/fixtures/migration-5.sqlite.sql")),
            (5, Backend::Postgres, include_str!("../../tests/fixtures/migration-5.postgres.sql")),
        ] {
            let statements = MIGRATIONS[version - 1].statements(backend);
            assert_eq!(statements, pinned.lines().collect::<Vec<_>>(), "migration {version} on {backend:?}");
        }
        assert_eq!(LATEST, 5, "a new migration is pinned here too");
    }
}
