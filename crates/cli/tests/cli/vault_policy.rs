//! What the vault decides for its machines: the policy the agent fetches (schedule, bandwidth
//! limit), retention with soft deletes and reclaimed space, and the metrics shown to users.

use std::time::{Duration, Instant};

use crate::common::*;
use crate::vault::{machine, registration, Vault};

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

    // A backup and a restore run by hand keep to the policy too...
    std::fs::write(src.join("more.bin"), noise(4 << 20, 4)).unwrap();
    let started = Instant::now();
    let o = m.run(&["backup", src.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("limited to 1024 KiB/s"), "{}", String::from_utf8_lossy(&o.stderr));
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(3), "by hand, 4 MiB at 1 MiB/s took only {took:?}");
    let started = Instant::now();
    m.ok(&["restore", "latest", "--target", m.path("r1").to_str().unwrap()]);
    // (Transfers are paced one after another: the first goes at once, each next waits for the
    // one before it to have taken its time.)
    assert!(started.elapsed() >= Duration::from_secs(3), "8 MiB restored at 1 MiB/s took only {:?}", started.elapsed());
    // ... unless the command line says otherwise (0: no limit).
    std::fs::write(src.join("third.bin"), noise(4 << 20, 5)).unwrap();
    let started = Instant::now();
    m.ok(&["backup", src.to_str().unwrap(), "--limit-upload", "0"]);
    assert!(started.elapsed() < Duration::from_secs(3), "--limit-upload 0 still limited: {:?}", started.elapsed());
    m.ok(&["restore", "latest", "--target", m.path("r2").to_str().unwrap(), "--limit-download", "0"]);

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
    let tree: u64 = walkdir(&src).iter().map(|p| p.symlink_metadata().unwrap()).filter(std::fs::Metadata::is_file).map(|m| m.len()).sum();
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
