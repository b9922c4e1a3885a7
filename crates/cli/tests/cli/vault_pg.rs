//! Several vault servers serving one vault: one PostgreSQL database, one object store (Azure
//! Blob, on Azurite), one certificate. Real `ferry vault serve` processes on loopback.
//!
//! Needs `FERRY_TEST_POSTGRES` (a URL whose role may create databases and roles) and Azurite
//! (`FERRY_TEST_AZURITE` and the `AZURE_*` variables); `bash scripts/test.sh` starts both and
//! sets them. Without them these tests fail: they are not skipped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: the vault's PostgreSQL tests need PostgreSQL and Azurite. Run `bash scripts/test.sh` \
             (it starts them and sets the variables), or `scripts/test-services.sh start` and then \
             `eval \"$(scripts/test-services.sh env)\"`"
        )
    })
}

fn unique() -> String {
    hex::encode(ferry_crypto::random_bytes::<6>())
}

/// Runs SQL on the test cluster as the role of `FERRY_TEST_POSTGRES`.
fn admin_sql(sql: &str) -> Result<(), String> {
    use sqlx::{Connection, Executor};
    let admin = required_env("FERRY_TEST_POSTGRES");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let mut c = sqlx::PgConnection::connect(&admin)
            .await
            .map_err(|e| format!("cannot connect to FERRY_TEST_POSTGRES (is scripts/test-services.sh running?): {e}"))?;
        c.execute(sqlx::raw_sql(sql)).await.map_err(|e| format!("{sql}: {e}"))?;
        c.close().await.map_err(|e| e.to_string())
    })
}

/// A fresh database owned by a fresh role with a random password; both dropped at the end.
pub(crate) struct Database {
    name: String,
    password: String,
    pub(crate) url: String,
}

impl Database {
    pub(crate) fn create() -> Database {
        // postgres://USER:PASSWORD@HOST:PORT/DATABASE: the same server, our role and database.
        let admin = required_env("FERRY_TEST_POSTGRES");
        let host_port = admin
            .split_once('@')
            .and_then(|(_, rest)| rest.split('/').next())
            .unwrap_or_else(|| panic!("FERRY_TEST_POSTGRES: expected postgres://USER:PASSWORD@HOST:PORT/DATABASE"))
            .to_string();
        let name = format!("ferry_test_{}", unique());
        let password = format!("pw-{}", unique());
        // Membership lets the admin role make the database owned by the new one.
        admin_sql(&format!("CREATE ROLE {name} LOGIN PASSWORD '{password}'; GRANT {name} TO CURRENT_USER")).unwrap();
        admin_sql(&format!("CREATE DATABASE {name} OWNER {name}")).unwrap();
        let url = format!("postgres://{name}:{password}@{host_port}/{name}");
        Database { name, password, url }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // Best effort, never a panic: a failed test must still report its own failure.
        let name = &self.name;
        let dropped = admin_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .and_then(|()| admin_sql(&format!("DROP ROLE IF EXISTS {name}")));
        if let Err(e) = dropped {
            eprintln!("could not drop the test database {name}: {e}");
        }
    }
}

/// A fresh Azure container (on Azurite); the vault server creates it on first use.
pub(crate) fn azure_store() -> String {
    required_env("FERRY_TEST_AZURITE");
    format!("az://ferry-pg-{}/vault", unique())
}

/// One `ferry vault serve` process; killed when dropped.
struct Server {
    child: Child,
    dir: tempfile::TempDir,
    url: String,
}

/// How a server is started: the database through `--database` or `FERRY_VAULT_DATABASE`, and
/// another server's certificate or its own self-signed one.
struct Start<'a> {
    database: &'a str,
    database_in_env: bool,
    store: &'a str,
    tls: Option<(PathBuf, PathBuf)>,
    /// The vault secret to start with (`--secret-file`); `None`: the server's own.
    secret: Option<PathBuf>,
}

impl Server {
    fn spawn(s: &Start) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
        let data = dir.path().join("vault");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.args(["vault", "serve", "--data", data.to_str().unwrap(), "--listen", &format!("127.0.0.1:{port}"), "--store", s.store]);
        if s.database_in_env {
            cmd.env("FERRY_VAULT_DATABASE", s.database);
        } else {
            cmd.args(["--database", s.database]);
        }
        if let Some((cert, key)) = &s.tls {
            cmd.args(["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);
        }
        if let Some(secret) = &s.secret {
            cmd.args(["--secret-file", secret.to_str().unwrap()]);
        }
        let child = cmd.stdout(Stdio::null()).stderr(log).spawn().unwrap();
        Server { child, dir, url: format!("https://127.0.0.1:{port}") }
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_mins(1);
        while !self.log().contains("listening on") {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the vault server exited ({status}) during start-up: {}", self.log());
            }
            assert!(Instant::now() < deadline, "the vault server did not start: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn start(s: &Start) -> Server {
        let mut server = Server::spawn(s);
        server.wait_ready();
        server
    }

    /// Kills the process; its folder (certificate, owner token) stays until the drop.
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    fn data(&self, f: &str) -> PathBuf {
        self.dir.path().join("vault").join(f)
    }

    /// `ferry ARGS` run by `env` against this server with the user token in `token_file`,
    /// trusting the certificate `cert`; any exit code.
    fn as_user(&self, env: &Env, token_file: &Path, cert: &Path, args: &[&str]) -> Output {
        let mut a = args.to_vec();
        a.extend(["--vault", &self.url, "--token-file", token_file.to_str().unwrap(), "--vault-cert", cert.to_str().unwrap()]);
        env.run(&a)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn ok(o: Output, what: &str) -> String {
    assert_eq!(o.status.code(), Some(0), "{what}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

fn machine() -> Env {
    Env::with_repo(String::new())
}

#[test]
fn two_servers_serve_one_vault_from_one_database_and_one_store() {
    let db = Database::create();
    let store = azure_store();
    let mut a = Server::start(&Start { database: &db.url, database_in_env: false, store: &store, tls: None, secret: None });
    let (cert, key) = (a.data("vault-cert.pem"), a.data("vault-key.pem"));
    // B, as the README's recipe says: A's certificate and A's vault secret. A server with
    // another secret does not start (it could not open the disk keys A sealed).
    let secret = a.data("vault-secret.key");
    let mut c = Server::spawn(&Start { database: &db.url, database_in_env: false, store: &store, tls: None, secret: None });
    let status = c.child.wait().unwrap();
    assert!(!status.success() && c.log().contains("--secret-file"), "{}", c.log());
    let b = Server::start(&Start {
        database: &db.url,
        database_in_env: true,
        store: &store,
        tls: Some((cert.clone(), key)),
        secret: Some(secret),
    });
    // A made the owner; B found it and wrote no token.
    assert!(a.log().contains("first start"), "{}", a.log());
    let owner = a.data("owner.token");
    assert!(owner.exists());
    assert!(!b.data("owner.token").exists(), "a second owner token: {}", b.log());
    assert!(b.log().contains("the owner exists already"), "{}", b.log());
    for s in [&a, &b] {
        assert!(s.log().contains(&format!("{}@127.0.0.1", db.name)), "the log names the database: {}", s.log());
        assert!(!s.log().contains(&db.password), "the password in the log: {}", s.log());
    }
    let admin = machine();
    let on = |s: &Server, args: &[&str]| ok(s.as_user(&admin, &owner, &cert, args), &format!("{args:?} on {}", s.url));

    // A machine registers through A (its registration pins A's URL and certificate) and backs
    // up through A.
    let creds = admin.path("m1.json");
    on(&a, &["vault", "credentials", "--out", creds.to_str().unwrap()]);
    let m1 = machine();
    m1.ok(&["register", "--vault-credentials", creds.to_str().unwrap(), "--name", "m1"]);
    let reg: serde_json::Value = serde_json::from_slice(&std::fs::read(m1.path("config/registration.json")).unwrap()).unwrap();
    assert_eq!(reg["vault"], a.url.as_str(), "{reg}");
    let src = m1.path("src");
    make_tree(&src);
    m1.backup(&src);

    // Jobs written through A are seen through B.
    let jobs: serde_json::Value = serde_json::from_str(&on(&b, &["vault", "jobs", "--json"])).unwrap();
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(
        (jobs[0]["machine"].as_str(), jobs[0]["kind"].as_str(), jobs[0]["state"].as_str()),
        (Some("m1"), Some("backup"), Some("completed"))
    );

    // A user added through A authenticates on B.
    let reader = on(&a, &["vault", "user", "add", "reader1", "--role", "reader"]);
    let reader_file = admin.path("reader.token");
    std::fs::write(&reader_file, reader.trim()).unwrap();
    let listed = ok(b.as_user(&admin, &reader_file, &cert, &["vault", "machines", "--json"]), "machines as the reader on B");
    assert!(listed.contains("\"m1\""), "{listed}");

    // Credentials made on B are one-time across the servers: used through A, refused through B.
    let creds_b = admin.path("from-b.json");
    on(&b, &["vault", "credentials", "--out", creds_b.to_str().unwrap()]);
    let mut file: serde_json::Value = serde_json::from_slice(&std::fs::read(&creds_b).unwrap()).unwrap();
    assert_eq!(file["vault"], b.url.as_str());
    file["vault"] = serde_json::json!(a.url);
    let creds_b_via_a = admin.path("from-b-via-a.json");
    std::fs::write(&creds_b_via_a, serde_json::to_vec(&file).unwrap()).unwrap();
    let m2 = machine();
    m2.ok(&["register", "--vault-credentials", creds_b_via_a.to_str().unwrap(), "--name", "m2"]);
    let m3 = machine();
    let o = m3.run(&["register", "--vault-credentials", creds_b.to_str().unwrap(), "--name", "m3"]);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already used"), "{}", String::from_utf8_lossy(&o.stderr));

    // One secret, six machines racing for it through both servers at once: exactly one wins.
    let race = admin.path("race.json");
    on(&b, &["vault", "credentials", "--out", race.to_str().unwrap()]);
    let mut race_a: serde_json::Value = serde_json::from_slice(&std::fs::read(&race).unwrap()).unwrap();
    race_a["vault"] = serde_json::json!(a.url);
    let race_via_a = admin.path("race-a.json");
    std::fs::write(&race_via_a, serde_json::to_vec(&race_a).unwrap()).unwrap();
    let racers: Vec<Env> = (0..6).map(|_| machine()).collect();
    let children: Vec<Child> = racers
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let file = if i % 2 == 0 { &race_via_a } else { &race };
            m.cmd(&["register", "--vault-credentials", file.to_str().unwrap(), "--name", &format!("racer{i}")])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outcomes: Vec<Output> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    let winners = outcomes.iter().filter(|o| o.status.success()).count();
    assert_eq!(winners, 1, "{:?}", outcomes.iter().map(|o| String::from_utf8_lossy(&o.stderr).into_owned()).collect::<Vec<_>>());
    for o in outcomes.iter().filter(|o| !o.status.success()) {
        assert!(String::from_utf8_lossy(&o.stderr).contains("already used"), "{}", String::from_utf8_lossy(&o.stderr));
    }

    // A device job ordered through A is prepared through B: its device key, sealed with the
    // vault's secret on A, opens on B; both sign with one receipt key.
    let job = on(&a, &["device", "order", "--machine", "m1", "--type", "disk", "--capacity", "20MiB"]).trim().to_string();
    let dev = admin.path("dev1");
    std::fs::create_dir_all(&dev).unwrap();
    let unlock = admin.path("unlock.json");
    on(&b, &["device", "prepare", &job, "--path", dev.to_str().unwrap(), "--unlock-out", unlock.to_str().unwrap()]);
    let status = on(&a, &["device", "status", &job, "--json"]);
    assert!(status.contains("\"prepared\""), "{status}");
    let fp = ferry_store::cert_file_fingerprint(&cert).unwrap();
    let key = |s: &Server| ferry_store::VaultClient::new(&s.url, &fp, "").unwrap().health().unwrap().receipt_key;
    assert_eq!(key(&a), key(&b));

    // A stops. The machine reaches its repository through B with --vault: the same recovery
    // point, restored and checked byte for byte.
    a.stop();
    let via_b = |args: &[&str]| -> String {
        let mut v = args.to_vec();
        v.extend(["--vault", &b.url]);
        m1.ok(&v)
    };
    let points: serde_json::Value = serde_json::from_str(&via_b(&["recovery-points", "--json"])).unwrap();
    assert_eq!(points.as_array().unwrap().len(), 1, "{points}");
    let target = m1.path("restored");
    via_b(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &restored(&target, &src));
    via_b(&["check", "--read-data"]);
    // Everything m1 did through B is in the shared job list.
    let jobs: serde_json::Value = serde_json::from_str(&on(&b, &["vault", "jobs", "--json", "--machine", "m1"])).unwrap();
    let kinds: Vec<&str> = jobs.as_array().unwrap().iter().map(|j| j["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"restore") && kinds.contains(&"backup"), "{jobs}");
    let machines = on(&b, &["vault", "machines", "--json"]);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&machines).unwrap().as_array().unwrap().len(), 3, "m1, m2, one racer: {machines}");
}

#[test]
fn servers_starting_at_once_on_an_empty_database_make_one_owner() {
    // Each round: a fresh database, three servers started together (the table creation and the
    // owner race); all must come up, and exactly one writes an owner token.
    for round in 0..3 {
        let db = Database::create();
        let store = azure_store();
        // The servers of one vault share its secret (a file made here, as an operator would).
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("vault-secret.key");
        std::fs::write(&secret, format!("{}\n", hex::encode(ferry_crypto::random_bytes::<32>()))).unwrap();
        let start = Start { database: &db.url, database_in_env: false, store: &store, tls: None, secret: Some(secret) };
        let mut servers: Vec<Server> = (0..3).map(|_| Server::spawn(&start)).collect();
        for s in &mut servers {
            s.wait_ready();
        }
        let owners: Vec<&Server> = servers.iter().filter(|s| s.data("owner.token").exists()).collect();
        assert_eq!(owners.len(), 1, "round {round}: {:?}", servers.iter().map(Server::log).collect::<Vec<_>>());
        // The one owner token works on every server (each has its own certificate here).
        let env = machine();
        for s in &servers {
            let o = s.as_user(&env, &owners[0].data("owner.token"), &s.data("vault-cert.pem"), &["vault", "machines"]);
            assert_eq!(o.status.code(), Some(0), "round {round}: {}", String::from_utf8_lossy(&o.stderr));
        }
    }
}

#[test]
fn a_database_that_cannot_be_reached_is_named_without_its_password() {
    let db = Database::create();
    let store = azure_store();
    let wrong = db.url.replace(&db.password, "not-the-password-42");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let closed = format!("postgres://someone:secret-pw-99@127.0.0.1:{port}/nothing");
    for (url, secret) in [(&wrong, "not-the-password-42"), (&closed, "secret-pw-99")] {
        let dir = tempfile::tempdir().unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args([
                "vault",
                "serve",
                "--data",
                dir.path().to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
                "--store",
                &store,
                "--database",
                url,
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains("cannot connect to PostgreSQL at") && err.contains("password redacted"), "{err}");
        assert!(!err.contains(secret), "the password is shown: {err}");
    }
    // Not a database URL at all: refused before anything starts, the value not echoed.
    let o = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["vault", "serve", "--data", "/nonexistent/x", "--database", "mysql://u:hunter22@h/db"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("sqlite:PATH or postgres://") && !err.contains("hunter22"), "{err}");
}

#[test]
fn sqlite_given_with_database_serves_as_the_default_does() {
    // SQLite through --database sqlite:PATH (the default, DATA/vault.db, is what vault.rs uses).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("control plane.db");
    let location = format!("sqlite:{}", file.display());
    let store = dir.path().join("store");
    let a = Server::start(&Start { database: &location, database_in_env: false, store: store.to_str().unwrap(), tls: None, secret: None });
    assert!(file.exists(), "{}", a.log());
    assert!(!a.data("vault.db").exists(), "the default file is not used");
    let admin = machine();
    let (owner, cert) = (a.data("owner.token"), a.data("vault-cert.pem"));
    let creds = admin.path("c.json");
    ok(a.as_user(&admin, &owner, &cert, &["vault", "credentials", "--out", creds.to_str().unwrap()]), "credentials");
    let m = machine();
    m.ok(&["register", "--vault-credentials", creds.to_str().unwrap(), "--name", "m"]);
    let src = m.path("src");
    make_tree(&src);
    m.backup(&src);
    let jobs = ok(a.as_user(&admin, &owner, &cert, &["vault", "jobs", "--json"]), "jobs");
    assert!(jobs.contains("\"completed\""), "{jobs}");
}
