//! The vault and the online agent: a real `ferry vault serve` process on loopback, machines
//! registered with it, and the engine's commands run against it without `--repo`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// A running vault; killed when dropped.
struct Vault {
    child: Child,
    dir: tempfile::TempDir,
    url: String,
}

impl Vault {
    fn start() -> Vault {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["vault", "serve", "--data", dir.path().join("vault").to_str().unwrap(), "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let v = Vault { child, dir, url: format!("https://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !v.log().contains("listening on") {
            assert!(Instant::now() < deadline, "the vault did not start: {}", v.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        v
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    fn data(&self, f: &str) -> String {
        self.dir.path().join("vault").join(f).to_string_lossy().into_owned()
    }

    /// Makes a credentials file and returns its path.
    fn credentials(&self, env: &Env, name: &str) -> PathBuf {
        let out = env.path(name);
        env.ok(&[
            "vault",
            "credentials",
            "--out",
            out.to_str().unwrap(),
            "--vault",
            &self.url,
            "--token-file",
            &self.data("owner.token"),
            "--vault-cert",
            &self.data("vault-cert.pem"),
        ]);
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
fn machine() -> Env {
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
    let listed = admin.json(&[
        "vault",
        "machines",
        "--vault",
        &vault.url,
        "--token-file",
        &vault.data("owner.token"),
        "--vault-cert",
        &vault.data("vault-cert.pem"),
    ]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
}

#[test]
fn a_machine_reaches_only_its_own_repository_and_only_the_pinned_vault() {
    let vault = Vault::start();
    let admin = machine();
    let (a, b) = (machine(), machine());
    a.ok(&["register", "--vault-credentials", vault.credentials(&admin, "a.json").to_str().unwrap(), "--name", "a"]);
    b.ok(&["register", "--vault-credentials", vault.credentials(&admin, "b.json").to_str().unwrap(), "--name", "b"]);
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
