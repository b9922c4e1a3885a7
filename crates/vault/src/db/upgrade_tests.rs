//! Databases made before versioned migrations (tests/fixtures/vault-v0.*.sql: the tables of
//! commit cfcd4f7 and a few rows of each) open with today's `Db`, are upgraded in place and keep
//! their rows, read back through the public functions, on SQLite and on PostgreSQL.

use sqlx::{ConnectOptions, Connection, Executor, Row};

use super::testing::block_on;
use super::*;

const SQLITE_TABLES: &str = include_str!("../../tests/fixtures/vault-v0.sqlite.sql");
const POSTGRES_TABLES: &str = include_str!("../../tests/fixtures/vault-v0.postgres.sql");
const ROWS: &str = include_str!("../../tests/fixtures/vault-v0.rows.sql");

/// The machine of the fixture.
const M: &str = "aa11aa11aa11aa11aa11aa11aa11aa11";

/// The statements of a fixture file, without its comment lines.
fn statements(sql: &str) -> Vec<String> {
    let text: String = sql.lines().filter(|l| !l.starts_with("--")).map(|l| format!("{l}\n")).collect();
    text.split(";\n").map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// Makes the fixture's tables and rows in the (empty) database at `url`.
async fn load(url: &str, tables: &str) {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    for stmt in statements(tables).into_iter().chain(statements(ROWS)) {
        conn.execute(stmt.as_str()).await.unwrap_or_else(|e| panic!("{stmt}: {e}"));
    }
    conn.close().await.unwrap();
}

#[test]
fn a_sqlite_file_made_before_migrations_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault.db");
    block_on(async {
        let opts = SqliteConnectOptions::new().filename(&path).create_if_missing(true);
        opts.connect().await.unwrap().close().await.unwrap();
        load(SqliteConnectOptions::new().filename(&path).to_url_lossy().as_str(), SQLITE_TABLES).await;
        let db = Db::open_file(&path).await.unwrap();
        read_back(&db).await;
        // Opened again: nothing left to upgrade, nothing lost.
        db.pool.close().await;
        read_back_again(&Db::open_file(&path).await.unwrap()).await;
    });
}

#[test]
fn a_postgres_database_made_before_migrations_keeps_its_rows() {
    let Ok(url) = std::env::var("FERRY_TEST_POSTGRES") else {
        eprintln!("skipped: FERRY_TEST_POSTGRES not set (run scripts/test.sh)");
        return;
    };
    block_on(async {
        // A schema of its own in the shared database: the fixture's tables are made empty.
        let schema = format!("ferry_v0_{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
        sqlx::any::install_default_drivers();
        let mut admin = sqlx::AnyConnection::connect(&url).await.unwrap();
        admin.execute(format!("CREATE SCHEMA {schema}").as_str()).await.unwrap();
        let scoped = format!("{url}{}options=-c%20search_path%3D{schema}", if url.contains('?') { '&' } else { '?' });
        load(&scoped, POSTGRES_TABLES).await;
        let db = Db::open(&scoped).await.unwrap();
        read_back(&db).await;
        db.pool.close().await;
        let db = Db::open(&scoped).await.unwrap();
        read_back_again(&db).await;
        db.pool.close().await;
        admin.execute(format!("DROP SCHEMA {schema} CASCADE").as_str()).await.unwrap();
    });
}

/// Every table's rows, through the functions that read them; then rows added after them.
async fn read_back(db: &Db) {
    assert_eq!(schema::version(&db.pool).await.unwrap(), schema::LATEST, "upgraded");
    assert!(db.has_owner().await.unwrap());
    assert!(db.create_owner_if_none().await.unwrap().is_none(), "the owner exists");
    assert_eq!(db.principal("owner-token").await.unwrap(), Some(Principal::User { name: "owner".into(), role: Role::Owner }));
    assert_eq!(db.principal("viewer-token").await.unwrap(), Some(Principal::User { name: "viewer".into(), role: Role::Reader }));
    assert_eq!(db.principal("machine-token").await.unwrap(), Some(Principal::Machine { id: M.into() }));
    assert_eq!(db.machines().await.unwrap(), vec![(M.to_string(), "laptop".to_string(), "2026-01-02T03:06:00Z".to_string())]);
    let policy = db.policy(M).await.unwrap().expect("the policy is kept");
    assert_eq!((policy.paths, policy.times), (vec!["/home".to_string()], vec!["02:30".to_string()]));
    assert_eq!(db.traffic().await.unwrap()[M], [10, 2, 30, 4]);

    let jobs = db.jobs(None).await.unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(
        jobs[0],
        ferry_api::JobView {
            id: 2,
            machine: "laptop".into(),
            kind: "restore".into(),
            state: "failed".into(),
            start: "2026-01-02T04:00:00Z".into(),
            end: Some("2026-01-02T04:01:00Z".into()),
            bytes: 0,
            files: 0,
            errors: vec!["disk full".into()],
        }
    );
    assert_eq!((jobs[1].id, jobs[1].bytes, jobs[1].state.as_str()), (1, 1234, "completed"));
    assert_eq!(db.protected_bytes().await.unwrap()[M], 99999);

    let samples = db.samples(M, 0).await.unwrap();
    assert_eq!(
        samples.iter().map(|s| (s.time, s.stored_bytes, s.stored_objects)).collect::<Vec<_>>(),
        [(1767323000, 500, 7), (1767323900, 600, 8)]
    );
    assert_eq!(db.latest_samples().await.unwrap()[M].time, 1767323900);
    assert_eq!(db.vault_samples(1767323500).await.unwrap().len(), 1);

    let seed = db.import_job("seed-1").await.unwrap().unwrap();
    assert_eq!((seed.state, seed.machine_name.as_str(), seed.kind.as_str()), (ferry_api::JobState::Shipping, "laptop", "disks"));
    assert_eq!((seed.carrier.as_deref(), seed.tracking.as_deref(), seed.deadline.as_deref()), (Some("DHL"), Some("TRK-1"), None));
    assert_eq!((seed.disks.len(), seed.disks[0].objects, seed.created.as_str()), (1, 3, "2026-01-02T03:03:20Z"));
    assert_eq!(db.import_job_key("seed-1").await.unwrap().as_deref(), Some("sealed-disk-key"));
    let device = db.device_job("dev-1").await.unwrap().unwrap();
    let order = device.device.unwrap();
    assert_eq!((device.state, order.device_type.as_str(), order.capacity), (ferry_api::JobState::Prepared, "disk", 7_200_000_000_000));
    assert_eq!(order.unlock_expires.as_deref(), Some("2026-02-02T02:40:00Z"));
    assert_eq!(db.import_jobs(Some(M)).await.unwrap().len(), 2);
    assert_eq!(db.device_jobs(None).await.unwrap().len(), 1);

    assert_eq!((db.user_count().await.unwrap(), db.machine_count().await.unwrap()), (2, 1));
    assert_eq!(db.session("session-id", 1767400000).await.unwrap(), Some(("owner".into(), Role::Owner, "csrf-of-the-session".into())));
    assert_eq!(db.session("session-id", 4000000001).await.unwrap(), None, "expired");
    assert_eq!(db.stored_password("viewer").await.unwrap(), Some(("00112233445566778899aabbccddeeff".into(), "0".repeat(64))));
    let sent = db.sent(&["job-failed-2", "job-failed-3"]).await.unwrap();
    assert_eq!(sent.into_iter().collect::<Vec<_>>(), ["job-failed-2"]);
    assert_eq!(db.expiring_registrations(3999999999, 4000000001).await.unwrap().len(), 1);
    let counts = db.job_counts().await.unwrap();
    assert!(counts.contains(&("backup".into(), "completed".into(), 1)) && counts.len() == 2, "{counts:?}");
    assert_eq!(db.last_backups(&["backup"]).await.unwrap(), [("laptop".to_string(), 1767323400)]);

    let audit = db.audit_log(Some("dev-1")).await.unwrap();
    assert_eq!((audit.len(), audit[0].id, audit[0].action.as_str(), audit[0].detail.as_str()), (1, 1, "device-prepared", "{\"device\":1}"));

    // New rows go after the old ones (the ID sequences carried on), and the one-time
    // registration secret still works once.
    assert_eq!(db.create_job(M, "backup", 1767400000).await.unwrap(), 3);
    db.audit("user owner", "device-erased", "dev-1", &serde_json::json!({})).await.unwrap();
    assert_eq!(db.audit_log(None).await.unwrap().last().unwrap().id, 2);
    let (desktop, _) = db.register("registration-secret", "desktop", 1767400000).await.unwrap().expect("the secret was unused");
    assert!(db.register("registration-secret", "desktop2", 1767400000).await.unwrap().is_none());
    assert_ne!(desktop, M);
}

/// What `read_back` left, after the database was opened once more.
async fn read_back_again(db: &Db) {
    let applied: i64 = sqlx::query("SELECT COUNT(*) FROM schema_migrations").fetch_one(&db.pool).await.unwrap().get(0);
    assert_eq!(applied, schema::LATEST, "each migration once");
    assert_eq!(db.jobs(None).await.unwrap().len(), 3);
    assert_eq!(db.machines().await.unwrap().len(), 2);
    assert_eq!(db.audit_log(None).await.unwrap().len(), 2);
    assert_eq!(db.principal("owner-token").await.unwrap(), Some(Principal::User { name: "owner".into(), role: Role::Owner }));
}

#[test]
fn a_database_of_a_newer_vault_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault.db");
    block_on(async {
        let db = Db::open_file(&path).await.unwrap();
        sqlx::query("INSERT INTO schema_migrations (version, name, applied) VALUES ($1, 'from the future', 0)")
            .bind(schema::LATEST + 1)
            .execute(&db.pool)
            .await
            .unwrap();
        db.pool.close().await;
        let e = Db::open_file(&path).await.unwrap_err();
        assert!(matches!(e, crate::Error::Schema { .. }), "{e:?}");
        let e = format!("{:#}", anyhow::Error::from(e));
        assert!(e.contains("newer than this vault's") && e.contains(&format!("version {}", schema::LATEST + 1)), "{e}");
    });
}
