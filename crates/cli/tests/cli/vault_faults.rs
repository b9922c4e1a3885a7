//! The vault under stress: store faults and a restart, twenty machines at once, a network that
//! keeps dropping connections, and jobs whose agents fall silent.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::vault::{machine, Vault};

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
    assert!(matches!(status.code(), Some(0 | 1)), "{status:?}");
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
