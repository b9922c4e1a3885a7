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
        assert_eq!(r.as_ref().err().map(ferry_store::StoreError::is_not_found), Some(allowed[2]), "{who}: undelete {r:?}");
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
        Self::spawn(tempfile::tempdir().unwrap(), port, args.iter().map(std::string::ToString::to_string).collect(), env)
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

impl Vault {
    /// The vault process's peak resident memory (VmHWM), KiB.
    pub(crate) fn peak_rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}
