//! The vault and the online agent: a real `ferry vault serve` process on loopback, machines
//! registered with it, and the engine's commands run against it without `--repo`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// A running vault; killed when dropped.
pub(crate) struct Vault {
    child: Child,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) url: String,
    /// Extra arguments of `vault serve` (kept for restarts).
    args: Vec<String>,
}

impl Vault {
    pub(crate) fn start() -> Vault {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["vault", "serve", "--data", dir.path().join("vault").to_str().unwrap(), "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let v = Vault { child, dir, url: format!("https://127.0.0.1:{port}"), args: vec![] };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !v.log().contains("listening on") {
            assert!(Instant::now() < deadline, "the vault did not start: {}", v.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        v
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    pub(crate) fn data(&self, f: &str) -> String {
        self.dir.path().join("vault").join(f).to_string_lossy().into_owned()
    }

    /// Makes a credentials file and returns its path.
    pub(crate) fn credentials(&self, env: &Env, name: &str) -> PathBuf {
        let out = env.path(name);
        self.admin(env, &["vault", "credentials", "--out", out.to_str().unwrap()]);
        out
    }
}

impl Drop for Vault {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A protected machine: no repository location, its own config (registration) and cache.
pub(crate) fn machine() -> Env {
    Env::with_repo(String::new())
}

#[test]
fn register_back_up_and_restore_through_the_vault() {
    let vault = Vault::start();
    let admin = machine();
    let m1 = machine();
    let creds = vault.credentials(&admin, "creds.json");
    let v = m1.json(&["register", "--vault-credentials", creds.to_str().unwrap(), "--name", "m1"]);
    assert_eq!(v["name"], "m1", "{v}");
    // The credentials were for one machine only.
    let m2 = machine();
    let o = m2.run(&["register", "--vault-credentials", creds.to_str().unwrap(), "--name", "m2"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("already used"), "{err}");

    let src = m1.path("src");
    make_tree(&src);
    let b = m1.backup(&src);
    assert_eq!(b["files_new"], 7, "{b}");
    // A second backup of unchanged data sends almost nothing.
    let again = m1.backup(&src);
    assert!(again["bytes_added"].as_u64().unwrap() < 4096, "{again}");
    let target = m1.path("restore");
    m1.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &restored(&target, &src));
    m1.ok(&["check", "--read-data"]);
    // The vault stored only ciphertext: no file name or content of the source in its store.
    let store = PathBuf::from(vault.data("store"));
    let stored: Vec<_> = walkdir(&store).into_iter().filter(|p| p.is_file()).collect();
    assert!(stored.len() > 5, "the repository is in the vault's store: {stored:?}");
    for f in &stored {
        let bytes = std::fs::read(f).unwrap();
        for clear in [&b"deeper"[..], b"deep\ndeep\n", b"echo hi"] {
            assert!(!bytes.windows(clear.len()).any(|w| w == clear), "{} holds {clear:?} in clear", f.display());
        }
    }
    let listed: serde_json::Value = serde_json::from_str(&vault.admin(&admin, &["vault", "machines", "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
}

#[test]
fn a_machine_reaches_only_its_own_repository_and_only_the_pinned_vault() {
    let vault = Vault::start();
    let admin = machine();
    let (a, b) = (machine(), machine());
    vault.register(&admin, &a, "a");
    vault.register(&admin, &b, "b");
    let src = a.path("src");
    make_tree(&src);
    a.backup(&src);
    // Machine b, with its own token, aims at machine a's repository: refused, nothing changes.
    let reg_path = b.path("config").join("registration.json");
    let a_reg: serde_json::Value = serde_json::from_slice(&std::fs::read(a.path("config").join("registration.json")).unwrap()).unwrap();
    let mut b_reg: serde_json::Value = serde_json::from_slice(&std::fs::read(&reg_path).unwrap()).unwrap();
    b_reg["machine"] = a_reg["machine"].clone();
    std::fs::write(&reg_path, serde_json::to_vec(&b_reg).unwrap()).unwrap();
    let before = walkdir(&PathBuf::from(vault.data("store"))).len();
    let o = b.run(&["recovery-points"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("may not read"), "{err}");
    let o = b.run(&["backup", src.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(walkdir(&PathBuf::from(vault.data("store"))).len(), before, "nothing was written");
    // A registration whose pinned certificate is not the vault's reaches nothing.
    let mut wrong = a_reg.clone();
    wrong["cert_sha256"] = serde_json::json!("00".repeat(32));
    std::fs::write(a.path("config").join("registration.json"), serde_json::to_vec(&wrong).unwrap()).unwrap();
    let o = a.run(&["recovery-points"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("certificate"), "{err}");
}

impl Vault {
    /// `ferry ...` run by `env` against this vault as the owner, any exit code.
    pub(crate) fn admin_run(&self, env: &Env, args: &[&str]) -> std::process::Output {
        let mut a = args.to_vec();
        a.extend(["--vault", &self.url]);
        let (token, cert) = (self.data("owner.token"), self.data("vault-cert.pem"));
        a.extend(["--token-file", &token, "--vault-cert", &cert]);
        env.run(&a)
    }

    /// `ferry ...` as the owner, which must succeed; returns stdout.
    pub(crate) fn admin(&self, env: &Env, args: &[&str]) -> String {
        let o = self.admin_run(env, args);
        assert_eq!(o.status.code(), Some(0), "ferry {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    }

    /// Registers machine `m` as `name`, with credentials `admin` makes for it.
    pub(crate) fn register(&self, admin: &Env, m: &Env, name: &str) {
        let creds = self.credentials(admin, &format!("{name}.json"));
        m.ok(&["register", "--vault-credentials", creds.to_str().unwrap(), "--name", name]);
    }

    pub(crate) fn fingerprint(&self) -> String {
        ferry_store::cert_file_fingerprint(std::path::Path::new(&self.data("vault-cert.pem"))).unwrap()
    }

    /// A store on machine `machine`'s repository with `token`.
    pub(crate) fn store(&self, token: &str, machine: &str) -> ferry_store::VaultStore {
        let client = ferry_store::VaultClient::new(&self.url, &self.fingerprint(), token).unwrap();
        ferry_store::VaultStore::new(client, machine)
    }
}

pub(crate) fn registration(env: &Env) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(env.path("config").join("registration.json")).unwrap()).unwrap()
}

#[test]
fn every_role_against_every_operation() {
    use ferry_store::Store;
    let vault = Vault::start();
    let admin = machine();
    let (a, b) = (machine(), machine());
    vault.register(&admin, &a, "a");
    vault.register(&admin, &b, "b");
    let (ra, rb) = (registration(&a), registration(&b));
    let machine_a = ra["machine"].as_str().unwrap().to_string();
    let owner = std::fs::read_to_string(vault.data("owner.token")).unwrap().trim().to_string();
    let owner_store = vault.store(&owner, &machine_a);
    // (who, token, read, write, delete) on machine a's repository.
    let mut cases: Vec<(String, String, bool, bool, bool)> = Vec::new();
    for (role, read, write, delete) in [
        ("owner", true, true, true),
        ("contributor", true, true, true),
        ("backup-operator", true, true, false),
        ("reader", true, false, false),
        ("import-operator", false, false, false),
    ] {
        let token = vault.admin(&admin, &["vault", "user", "add", &format!("u-{role}"), "--role", role]).trim().to_string();
        cases.push((role.into(), token, read, write, delete));
    }
    cases.push(("machine a".into(), ra["token"].as_str().unwrap().into(), true, true, false));
    cases.push(("machine b".into(), rb["token"].as_str().unwrap().into(), false, false, false));
    for (i, (who, token, read, write, delete)) in cases.iter().enumerate() {
        let s = vault.store(token, &machine_a);
        assert_eq!(s.get("config").is_ok(), *read, "{who}: read");
        assert_eq!(s.list("").is_ok(), *read, "{who}: list");
        let key = format!("gc/written-by-{i}");
        let w = s.put_if_absent(&key, bytes::Bytes::from_static(b"{}"));
        assert_eq!(w.is_ok(), *write, "{who}: write {w:?}");
        assert_eq!(owner_store.head(&key).unwrap().is_some(), *write, "{who}: a refused write leaves nothing");
        let victim = format!("gc/victim-{i}");
        owner_store.put_if_absent(&victim, bytes::Bytes::from_static(b"{}")).unwrap();
        let d = s.delete(&victim);
        assert_eq!(d.is_ok(), *delete, "{who}: delete {d:?}");
        assert_eq!(owner_store.head(&victim).unwrap().is_none(), *delete, "{who}: a refused delete changes nothing");
        if !*read {
            let e = s.get("config").unwrap_err();
            assert!(e.message.contains("may not"), "{who}: {e}");
        }
    }
    // The vault's own operations on machine a's repository, by the same principals:
    // (run retention, list soft-deleted, undelete, set the policy).
    let expected = [
        ("owner", [true, true, true, true]),
        ("contributor", [true, true, true, true]),
        ("backup-operator", [false, true, true, false]),
        ("reader", [false, true, false, false]),
        ("import-operator", [false; 4]),
        ("machine a", [false; 4]),
        ("machine b", [false; 4]),
    ];
    let no_body = serde_json::json!({});
    for ((who, token, ..), (name, allowed)) in cases.iter().zip(expected) {
        assert_eq!(who, name);
        let c = ferry_store::VaultClient::new(&vault.url, &vault.fingerprint(), token).unwrap();
        let r = c.post_json(&format!("/v1/machines/{machine_a}/retention"), &no_body);
        assert_eq!(r.is_ok(), allowed[0], "{who}: retention {r:?}");
        let r = c.get_json(&format!("/v1/machines/{machine_a}/deleted"));
        assert_eq!(r.is_ok(), allowed[1], "{who}: list soft-deleted {r:?}");
        // Nothing is soft-deleted: whoever may undelete hears 404, the others 403.
        let r = c.post_json(&format!("/v1/machines/{machine_a}/deleted/{}/undelete", "0".repeat(64)), &no_body);
        assert_eq!(r.as_ref().err().map(|e| e.is_not_found()), Some(allowed[2]), "{who}: undelete {r:?}");
        let policy = serde_json::json!({"paths": ["/x"], "times": ["01:00"]});
        let r = c.put_json(&format!("/v1/machines/{machine_a}/policy"), &policy);
        assert_eq!(r.is_ok(), allowed[3], "{who}: set policy {r:?}");
    }
    // Only an owner adds users and makes credentials.
    let reader = &cases[3].1;
    let reader_file = admin.path("reader.token");
    std::fs::write(&reader_file, reader).unwrap();
    let cert = vault.data("vault-cert.pem");
    let as_reader = ["--vault", &vault.url, "--token-file", reader_file.to_str().unwrap(), "--vault-cert", &cert];
    let o = admin.run(&[&["vault", "user", "add", "intruder", "--role", "owner"][..], &as_reader].concat());
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("only an owner"), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn restore_on_another_machine_with_a_user_token_and_the_passphrase() {
    let vault = Vault::start();
    let admin = machine();
    let m1 = machine();
    vault.register(&admin, &m1, "m1");
    let src = m1.path("src");
    make_tree(&src);
    m1.backup(&src);
    // A third machine, not registered: a reader's token, the vault's certificate, m1's passphrase.
    let token = vault.admin(&admin, &["vault", "user", "add", "restorer", "--role", "reader"]);
    let third = machine();
    let token_file = third.path("token");
    std::fs::write(&token_file, token.trim()).unwrap();
    let target = third.path("r");
    let (cert, tf) = (vault.data("vault-cert.pem"), token_file.to_str().unwrap().to_string());
    let remote = ["--machine", "m1", "--vault", &vault.url, "--vault-cert", &cert, "--token-file", &tf];
    let mut args = vec!["restore", "latest", "--target", target.to_str().unwrap()];
    args.extend(remote);
    third.ok(&args);
    assert_same_tree(&src, &restored(&target, &src));
    let mut args = vec!["recovery-points"];
    args.extend(remote);
    let mut args_json = args.clone();
    args_json.push("--json");
    let points: serde_json::Value = serde_json::from_str(&third.ok(&args_json)).unwrap();
    assert_eq!(points.as_array().unwrap().len(), 1);
    // Without the passphrase, the vault's data is of no use to the reader.
    let o = third.cmd(&args).env("FERRY_PASSWORD", "a wrong passphrase, long enough").output().unwrap();
    assert_eq!(o.status.code(), Some(1));
}

impl Vault {
    /// Starts a vault on `data` (a folder kept across restarts) with extra environment.
    pub(crate) fn start_in(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Vault {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Self::spawn(dir, port, vec![], env)
    }

    /// Starts a vault with extra `vault serve` arguments and environment.
    pub(crate) fn start_with(args: &[&str], env: &[(&str, &str)]) -> Vault {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Self::spawn(tempfile::tempdir().unwrap(), port, args.iter().map(|a| a.to_string()).collect(), env)
    }

    pub(crate) fn spawn(dir: tempfile::TempDir, port: u16, args: Vec<String>, env: &[(&str, &str)]) -> Vault {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.path().join("serve.log")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.args(["vault", "serve", "--data", dir.path().join("vault").to_str().unwrap(), "--listen", &format!("127.0.0.1:{port}")])
            .args(&args)
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let v = Vault { child, dir, url: format!("https://127.0.0.1:{port}"), args };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            if up && v.log().contains("listening on") {
                return v;
            }
            assert!(Instant::now() < deadline, "the vault did not start: {}", v.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the vault and starts it again on the same folder and port.
    pub(crate) fn restart(mut self) -> Vault {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let port: u16 = self.url.rsplit(':').next().unwrap().parse().unwrap();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        let args = std::mem::take(&mut self.args);
        drop(self);
        Self::spawn(dir, port, args, &[])
    }
}

#[test]
fn backups_survive_store_faults_at_the_vault_and_a_vault_restart() {
    // 5 % of the vault's store requests fail; the vault's retries hide them.
    let vault = Vault::start_in(tempfile::tempdir().unwrap(), &[("FERRY_FAULT_INJECT", "0.05:11")]);
    assert!(vault.log().contains("injecting store faults"), "{}", vault.log());
    let admin = machine();
    let m = machine();
    vault.register(&admin, &m, "m");
    let src = m.path("src");
    make_tree(&src);
    for i in 0..20 {
        std::fs::write(src.join(format!("small-{i}.txt")), format!("file {i}\n").repeat(100 + i)).unwrap();
    }
    m.backup(&src);
    m.ok(&["check", "--read-data"]);
    // Killed while a backup runs: the backup fails cleanly, the next one completes and the
    // repository checks.
    std::fs::write(src.join("more.bin"), noise(64 << 20, 5)).unwrap();
    let mut backup = m.cmd(&["backup", src.to_str().unwrap()]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let vault = vault.restart();
    let status = backup.wait().unwrap();
    assert!(matches!(status.code(), Some(0) | Some(1)), "{status:?}");
    m.backup(&src);
    m.ok(&["check", "--read-data"]);
    let target = m.path("r");
    m.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &restored(&target, &src));
    drop(vault);
}

#[test]
fn twenty_machines_back_up_at_once() {
    let vault = Vault::start();
    let admin = machine();
    let machines: Vec<(Env, PathBuf)> = (0..20)
        .map(|i| {
            let m = machine();
            m.ok(&[
                "register",
                "--vault-credentials",
                vault.credentials(&admin, &format!("c{i}.json")).to_str().unwrap(),
                "--name",
                &format!("m{i}"),
            ]);
            let src = m.path("src");
            std::fs::create_dir_all(&src).unwrap();
            for j in 0..30 {
                std::fs::write(src.join(format!("f{j}.txt")), format!("machine {i} file {j}\n").repeat(200)).unwrap();
            }
            std::fs::write(src.join("blob.bin"), noise(2 << 20, i as u64)).unwrap();
            (m, src)
        })
        .collect();
    let running: Vec<_> = machines
        .iter()
        .map(|(m, src)| m.cmd(&["backup", "--json", src.to_str().unwrap()]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap())
        .collect();
    for (child, (m, src)) in running.into_iter().zip(&machines) {
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
        let target = m.path("r");
        m.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
        assert_same_tree(src, &restored(&target, src));
    }
    // Bounded: the vault holds at most the uploads in flight (a generous bound; bench/vault.sh
    // records the figure).
    let hwm_kb = vault.peak_rss_kb();
    assert!(hwm_kb < 512 * 1024, "vault peak RSS {hwm_kb} KiB after 20 concurrent backups");
}

impl Vault {
    /// The vault process's peak resident memory (VmHWM), KiB.
    fn peak_rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

/// A TCP relay to `to` that cuts every other connection after it has carried a random number
/// of bytes (either way) below `cut_within`: a network that keeps dropping. Returns its port
/// and the count of connections cut; it relays until the process ends.
fn flaky_relay(to: std::net::SocketAddr, cut_within: u64) -> (u16, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicU64, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let cuts = std::sync::Arc::new(AtomicU64::new(0));
    let counted = cuts.clone();
    std::thread::spawn(move || {
        for (n, client) in listener.incoming().enumerate() {
            let Ok(client) = client else { continue };
            let Ok(server) = std::net::TcpStream::connect(to) else { continue };
            // Deterministic "random": a multiplicative hash of the connection's number.
            let cut_after = if n % 2 == 0 { (n as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) % cut_within } else { u64::MAX };
            let carried = std::sync::Arc::new(AtomicU64::new(0));
            for (mut from, mut into) in [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)] {
                let (carried, cuts) = (carried.clone(), counted.clone());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        let n = match from.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if carried.fetch_add(n as u64, Ordering::Relaxed) + n as u64 > cut_after {
                            cuts.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        if into.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = from.shutdown(std::net::Shutdown::Both);
                    let _ = into.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
    (port, cuts)
}

#[test]
fn backups_complete_over_a_network_that_keeps_dropping_connections() {
    let vault = Vault::start();
    let admin = machine();
    let m = machine();
    vault.register(&admin, &m, "m");
    let vault_addr: std::net::SocketAddr = vault.url.trim_start_matches("https://").parse().unwrap();
    // Half the connections are cut within their first 12 MiB: many uploads are cut mid-body.
    let (port, cuts) = flaky_relay(vault_addr, 12 << 20);
    let via = format!("https://127.0.0.1:{port}");
    let src = m.path("src");
    make_tree(&src);
    std::fs::write(src.join("big.bin"), noise(40 << 20, 9)).unwrap();
    let s: serde_json::Value = serde_json::from_str(&m.ok(&["backup", "--json", "--vault", &via, src.to_str().unwrap()])).unwrap();
    assert!(cuts.load(std::sync::atomic::Ordering::Relaxed) > 0, "the relay cut no connection");
    assert!(s["bytes_added"].as_u64().unwrap() > 40 << 20, "{s}");
    // Nothing lost or damaged: checked and restored directly, without the relay.
    m.ok(&["check", "--read-data"]);
    let target = m.path("r");
    m.ok(&["restore", "latest", "--target", target.to_str().unwrap(), "--vault", &via]);
    assert_same_tree(&src, &restored(&target, &src));
    // The same data again sends almost nothing.
    let again: serde_json::Value = serde_json::from_str(&m.ok(&["backup", "--json", "--vault", &via, src.to_str().unwrap()])).unwrap();
    assert!(again["bytes_added"].as_u64().unwrap() < 64 << 10, "{again}");
}

#[test]
fn backups_and_restores_are_jobs_and_silent_agents_fail() {
    let vault = Vault::start_in(tempfile::tempdir().unwrap(), &[("FERRY_VAULT_JOB_TIMEOUT_S", "3")]);
    let admin = machine();
    let m = machine();
    vault.register(&admin, &m, "m");
    let src = m.path("src");
    make_tree(&src);
    let b = m.cmd(&["backup", "--json", src.to_str().unwrap()]).env("FERRY_JOB_HEARTBEAT_S", "1").output().unwrap();
    assert_eq!(b.status.code(), Some(0), "{}", String::from_utf8_lossy(&b.stderr));
    assert!(!String::from_utf8_lossy(&b.stderr).contains("WARN"), "reports reached the vault: {}", String::from_utf8_lossy(&b.stderr));
    let target = m.path("r");
    let r = m.cmd(&["restore", "latest", "--target", target.to_str().unwrap()]).output().unwrap();
    assert_eq!(r.status.code(), Some(0), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(!String::from_utf8_lossy(&r.stderr).contains("WARN"), "reports reached the vault: {}", String::from_utf8_lossy(&r.stderr));
    let jobs = |args: &[&str]| -> Vec<serde_json::Value> {
        let mut a = vec!["vault", "jobs", "--json"];
        a.extend(args);
        serde_json::from_str::<serde_json::Value>(&vault.admin(&admin, &a)).unwrap().as_array().unwrap().clone()
    };
    let list = jobs(&["--machine", "m"]);
    assert_eq!(list.len(), 2, "{list:?}");
    let (restore, backup) = (&list[0], &list[1]);
    // The restore counts the hard link apart from the files.
    for (j, kind, files) in [(backup, "backup", 7), (restore, "restore", 6)] {
        for field in ["id", "machine", "kind", "state", "start", "end", "bytes", "files", "errors"] {
            assert!(j.get(field).is_some(), "{field} missing: {j}");
        }
        assert_eq!((j["kind"].as_str(), j["state"].as_str(), j["machine"].as_str()), (Some(kind), Some("completed"), Some("m")), "{j}");
        assert_eq!(j["files"], files, "{j}");
        assert!(j["end"].is_string(), "{j}");
    }
    assert!(backup["bytes"].as_u64().unwrap() > 5 << 20, "{backup}");
    // An agent killed mid-backup stops reporting: its job is marked failed.
    std::fs::write(src.join("big2.bin"), noise(96 << 20, 9)).unwrap();
    let mut child = m.cmd(&["backup", src.to_str().unwrap()]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while jobs(&[]).len() < 3 {
        assert!(Instant::now() < deadline, "the third job never appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let newest = &jobs(&[])[0];
    assert_eq!(newest["state"], "failed", "{newest}");
    assert!(newest["errors"].to_string().contains("stopped reporting"), "{newest}");
}

#[test]
fn the_agent_runs_the_policy_it_fetches_from_the_vault() {
    let vault = Vault::start();
    let admin = machine();
    let m = machine();
    vault.register(&admin, &m, "m");
    let src = m.path("src");
    make_tree(&src);
    // No policy yet: the agent says so.
    let o = m.run(&["agent", "run", "--once"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no policy"), "{}", String::from_utf8_lossy(&o.stderr));
    // A bad policy is refused with the reason.
    let bad = admin.run(&["vault", "policy", "set", "m", "--path", src.to_str().unwrap(), "--at", "25:00"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("25:00"), "{}", String::from_utf8_lossy(&bad.stderr));
    vault.admin(
        &admin,
        &[
            "vault",
            "policy",
            "set",
            "m",
            "--path",
            src.to_str().unwrap(),
            "--exclude",
            "*.bin",
            "--at",
            "02:00",
            "--at",
            "14:30",
            "--keep-daily",
            "7",
        ],
    );
    let shown: serde_json::Value = serde_json::from_str(&vault.admin(&admin, &["vault", "policy", "show", "m"])).unwrap();
    assert_eq!(shown["times"], serde_json::json!(["02:00", "14:30"]), "{shown}");
    assert_eq!(shown["keep"]["daily"], 7, "{shown}");
    m.ok(&["agent", "run", "--once"]);
    let points = m.json(&["recovery-points"]);
    assert_eq!(points.as_array().unwrap().len(), 1, "{points}");
    assert_eq!(points[0]["paths"][0], src.to_str().unwrap(), "{points}");
    assert_eq!(points[0]["tags"][0], "policy", "{points}");
    let listed = m.json(&["ls", "latest", src.to_str().unwrap()]);
    let names: Vec<&str> = listed.as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert!(names.iter().any(|n| n.ends_with("/docs/a.txt")) && !names.iter().any(|n| n.ends_with(".bin")), "{names:?}");
    let jobs: serde_json::Value = serde_json::from_str(&vault.admin(&admin, &["vault", "jobs", "--json"])).unwrap();
    assert_eq!(jobs[0]["state"], "completed", "{jobs}");
}

#[test]
fn the_agent_keeps_to_the_policy_bandwidth_limit() {
    let vault = Vault::start();
    let admin = machine();
    let m = machine();
    vault.register(&admin, &m, "m");
    let src = m.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("noise.bin"), noise(4 << 20, 3)).unwrap();
    // 1 MiB/s at any time of day: 4 MiB of incompressible data cannot go in under 3 s.
    vault.admin(
        &admin,
        &["vault", "policy", "set", "m", "--path", src.to_str().unwrap(), "--at", "03:00", "--work-limit", "1024", "--other-limit", "1024"],
    );
    let started = Instant::now();
    let o = m.run(&["agent", "run", "--once"]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("limited to 1024 KiB/s"), "{}", String::from_utf8_lossy(&o.stderr));
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(3), "4 MiB at 1 MiB/s took only {took:?}");
    // A bad window is refused.
    let bad = vault.admin_run(
        &admin,
        &["vault", "policy", "set", "m", "--path", src.to_str().unwrap(), "--at", "03:00", "--work-hours", "18:00-08:00"],
    );
    assert_eq!(bad.status.code(), Some(1));
}

/// Total size of the packs under a vault's store folder.
fn pack_bytes(vault: &Vault) -> u64 {
    walkdir(std::path::Path::new(&vault.data("store")))
        .iter()
        .filter(|p| p.components().any(|c| c.as_os_str() == "data") && p.is_file())
        .map(|p| p.metadata().unwrap().len())
        .sum()
}

#[test]
fn the_vault_enforces_retention_soft_deletes_and_reclaims_space() {
    // Soft-deleted recovery points expire after 3 s here (14 days by default); unused packs
    // go at once (a day by default).
    let vault = Vault::start_in(tempfile::tempdir().unwrap(), &[("FERRY_VAULT_SOFT_DELETE_S", "3"), ("FERRY_VAULT_GC_GRACE_S", "0")]);
    let admin = machine();
    let m = machine();
    vault.register(&admin, &m, "m");
    let src = m.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let file = src.join("a.bin");
    let mut ids = Vec::new();
    for seed in 1..=3 {
        std::fs::write(&file, noise(3 << 20, seed)).unwrap();
        ids.push(m.backup(&src)["recovery_point"].as_str().unwrap().to_string());
    }
    let src_s = src.to_str().unwrap();
    vault.admin(&admin, &["vault", "policy", "set", "m", "--path", src_s, "--at", "03:00", "--keep-daily", "1"]);
    let points = |env: &Env| env.json(&["recovery-points"]).as_array().unwrap().len();
    let full = pack_bytes(&vault);

    // All three are of today: the policy keeps the newest; the others are soft-deleted only.
    let r: serde_json::Value = serde_json::from_str(&vault.admin(&admin, &["vault", "retention", "m", "--json"])).unwrap();
    assert_eq!(r["soft_deleted"].as_array().unwrap().len(), 2, "{r}");
    assert_eq!(r["packs_deleted"], 0, "soft-deleted recovery points keep their data: {r}");
    assert_eq!(points(&m), 1);
    let deleted: serde_json::Value = serde_json::from_str(&vault.admin(&admin, &["vault", "deleted", "m", "--json"])).unwrap();
    assert_eq!(deleted.as_array().unwrap().len(), 2, "{deleted}");

    // Undeleted by a prefix of its ID, the first is restorable again.
    vault.admin(&admin, &["vault", "undelete", "m", &ids[0][..12]]);
    assert_eq!(points(&m), 2);
    let target = m.path("restore1");
    m.ok(&["restore", &ids[0][..12], "--target", target.to_str().unwrap()]);
    assert_eq!(std::fs::read(restored(&target, &file)).unwrap(), noise(3 << 20, 1));
    // A machine cannot undelete or run retention.
    let own = registration(&m);
    let store = vault.store(own["token"].as_str().unwrap(), own["machine"].as_str().unwrap());
    use ferry_store::Store;
    assert!(store.put("deleted-packs/x", bytes::Bytes::from_static(b"{}")).is_err(), "only the vault writes deleted-packs records");

    // After the soft-delete period the second goes for good, with its pack; the first's hold
    // has ended too, so it is soft-deleted again.
    std::thread::sleep(Duration::from_millis(3200));
    let r: serde_json::Value = serde_json::from_str(&vault.admin(&admin, &["vault", "retention", "m", "--json"])).unwrap();
    assert_eq!(r["purged"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["soft_deleted"].as_array().unwrap().len(), 1, "{r}");
    assert!(r["packs_deleted"].as_u64().unwrap() >= 1, "{r}");
    std::thread::sleep(Duration::from_millis(3200));
    let r: serde_json::Value = serde_json::from_str(&vault.admin(&admin, &["vault", "retention", "m", "--json"])).unwrap();
    assert_eq!(r["purged"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(points(&m), 1);
    let left = pack_bytes(&vault);
    assert!(left < full - (5 << 20), "two 3 MiB files' packs reclaimed: {full} -> {left}");
    m.ok(&["check", "--read-data"]);

    // The first file's content again: its blobs went with their packs, so the backup must
    // store them anew rather than deduplicate against the machine's stale local index.
    std::fs::write(&file, noise(3 << 20, 1)).unwrap();
    let s = m.backup(&src);
    assert!(s["bytes_added"].as_u64().unwrap() > 3 << 20, "{s}");
    let target = m.path("restore2");
    m.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(std::fs::read(restored(&target, &file)).unwrap(), noise(3 << 20, 1));
    m.ok(&["check", "--read-data"]);

    // An owner with the passphrase cannot prune behind the vault's back (repacking would move
    // data out of the packs the vault keeps).
    let o = vault.admin_run(&admin, &["prune", "--machine", "m"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("enforced by its vault"), "{}", String::from_utf8_lossy(&o.stderr));

    let jobs: serde_json::Value = serde_json::from_str(&vault.admin(&admin, &["vault", "jobs", "--machine", "m", "--json"])).unwrap();
    let kinds: Vec<&str> =
        jobs.as_array().unwrap().iter().filter(|j| j["state"] == "completed").filter_map(|j| j["kind"].as_str()).collect();
    assert!(kinds.contains(&"retention") && kinds.contains(&"gc"), "{jobs}");
}

#[test]
fn metrics_show_machines_jobs_and_traffic_to_users_only() {
    let vault = Vault::start_with(&[], &[("FERRY_VAULT_SAMPLE_S", "1")]);
    let admin = machine();
    let m = machine();
    vault.register(&admin, &m, "metered");
    let (_tree, src) = Env::with_tree();
    m.backup(&src);
    let client = |token: &str| ferry_store::VaultClient::new(&vault.url, &vault.fingerprint(), token).unwrap();
    let reader = vault.admin(&admin, &["vault", "user", "add", "watcher", "--role", "reader"]).trim().to_string();
    let text = client(&reader).get_text("/metrics").unwrap();
    for want in [
        "ferry_vault_machines 1",
        "ferry_vault_jobs{kind=\"backup\",state=\"completed\"} 1",
        "ferry_vault_machine_last_backup_timestamp_seconds{machine=\"metered\"}",
        "# TYPE ferry_vault_machine_bytes_received_total counter",
    ] {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }
    let value = |text: &str, prefix: &str| -> Option<f64> {
        text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
    };
    let received = value(&text, "ferry_vault_machine_bytes_received_total{machine=\"metered\"}").unwrap();
    assert!(received > 0.0, "{text}");
    // The sizes come from the vault's storage samples (every second here): what the machine
    // stores, and what its backup covered (the tree's size, as the backup reported it).
    let start = std::time::Instant::now();
    let (stored, protected) = loop {
        let text = client(&reader).get_text("/metrics").unwrap();
        let p = value(&text, "ferry_vault_protected_bytes{machine=\"metered\"}");
        if let (Some(s), Some(p)) = (value(&text, "ferry_vault_stored_bytes{machine=\"metered\"}"), p.filter(|p| *p > 0.0)) {
            break (s, p);
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(15), "no storage sample after 15 s:\n{text}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let tree: u64 = walkdir(&src).iter().map(|p| p.symlink_metadata().unwrap()).filter(|m| m.is_file()).map(|m| m.len()).sum();
    assert_eq!(protected as u64, tree, "protected bytes = the backed-up tree's file sizes");
    assert!(stored >= received * 0.5, "stored {stored} vs received {received}");
    let machines: serde_json::Value = serde_json::from_str(&vault.admin(&admin, &["vault", "machines", "--json"])).unwrap();
    assert_eq!(machines[0]["protected_bytes"].as_u64(), Some(tree), "{machines}");
    // Without a token: 401; with the machine's token: refused.
    let e = client("").get_text("/metrics").unwrap_err();
    assert!(e.to_string().contains("401") || e.to_string().to_lowercase().contains("token"), "{e}");
    let token = registration(&m)["token"].as_str().unwrap().to_string();
    let e = client(&token).get_text("/metrics").unwrap_err();
    assert!(e.to_string().contains("metrics"), "{e}");
    assert!(!text.contains(&token) && !text.contains(&reader), "no token in the metrics");
}
