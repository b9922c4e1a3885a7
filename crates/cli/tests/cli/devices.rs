//! Seed devices (issue #5), end to end with the real binary: a vault on loopback orders and
//! prepares devices (folders here), the machine backs up straight onto them with the unlock
//! credential, the devices come back, are imported (Azurite when the test services run),
//! ingested, restored from, and erased; then each kind of bad input.

use std::path::{Path, PathBuf};

use crate::common::*;
use crate::seeding::{fails, flip, s, source, stderr, unflip, zstd_len, Site};
use crate::vault::machine;

impl Site {
    /// `ferry device ...` as the vault's owner; stdout.
    fn owner(&self, args: &[&str]) -> String {
        self.vault.admin(&self.admin, args)
    }

    /// Orders a device job for machine `m` (JSON answer).
    fn order(&self, m: &str, extra: &[&str]) -> String {
        let mut a = vec!["device", "order", "--machine", m, "--type", "disk", "--json"];
        a.extend(extra);
        let j: serde_json::Value = serde_json::from_str(&self.owner(&a)).unwrap();
        j["device_job"].as_str().unwrap().to_string()
    }

    /// Prepares a new device folder `name` for `job`; the device and its unlock file.
    fn prepare(&self, job: &str, name: &str) -> (PathBuf, PathBuf) {
        let dev = self.admin.path(name);
        std::fs::create_dir_all(&dev).unwrap();
        let unlock = self.admin.path(&format!("{name}.unlock"));
        self.owner(&["device", "prepare", job, "--path", s(&dev), "--unlock-out", s(&unlock)]);
        (dev, unlock)
    }

    fn device(&self, job: &str) -> serde_json::Value {
        serde_json::from_str(&self.owner(&["device", "status", job, "--json"])).unwrap()
    }

    fn device_import(&self, job: &str, devs: &[&Path]) -> std::process::Output {
        let logs = self.admin.path("logs");
        let mut a = vec!["device", "import", job, "--log-dir", s(&logs)];
        for d in devs {
            a.extend(["--path", s(d)]);
        }
        self.import(&a)
    }
}

/// `ferry backup SRC --device D... --unlock-file U` as machine `m` (any exit code).
fn device_backup(m: &Env, src: &Path, devs: &[&Path], unlock: &Path) -> std::process::Output {
    let mut a = vec!["backup", s(src), "--json", "--unlock-file", s(unlock)];
    for d in devs {
        a.extend(["--device", s(d)]);
    }
    m.run(&a)
}

/// Every file under a device's FERRY-DEVICE folder.
fn device_files(dev: &Path) -> Vec<PathBuf> {
    walkdir(&dev.join("FERRY-DEVICE")).into_iter().filter(|p| p.is_file()).collect()
}

#[test]
fn a_seed_device_travels_from_order_to_erasure_and_afterwards_only_changes_cross_the_network() {
    let site = Site::start(&[]);
    let m = machine();
    site.vault.register(&site.admin, &m, "m1");
    let src = source(&m);

    // Two devices of 20 MiB each: the source (31 MiB, 27 MiB compressed) spans them.
    let job = site.order("m1", &["--capacity", "20MiB"]);
    let (d1, unlock) = site.prepare(&job, "dev1");
    let (d2, unlock2) = site.prepare(&job, "dev2");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(unlock.metadata().unwrap().permissions().mode() & 0o777, 0o600, "the unlock credential is a secret");
    }
    let j = site.device(&job);
    assert_eq!((j["state"].as_str(), j["disks"].as_array().unwrap().len()), (Some("prepared"), 2), "{j}");
    assert!(!j.to_string().contains(&std::fs::read_to_string(&unlock).unwrap()[..40]), "status shows no credential");
    site.owner(&["device", "status", &job, "--set", "shipped-to-customer", "--carrier", "DHL", "--tracking", "OUT-1"]);
    site.owner(&["device", "status", &job, "--set", "delivered"]);

    // The machine writes its first backup straight onto the devices: nothing crosses the network.
    let unlock_m = m.path("unlock.json");
    std::fs::copy(&unlock2, &unlock_m).unwrap();
    let o = device_backup(&m, &src, &[&d1, &d2], &unlock_m);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // The header line gives the capacity ordered (2 x 20 MiB), not the host's free space.
    assert!(stderr(&o).contains("device(s) of job") && stderr(&o).contains("40.00 MiB ordered"), "{}", stderr(&o));
    let b: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rp = b["recovery_point"].as_str().unwrap().to_string();
    let sent = site.bytes_received("m1");
    assert!(sent < 64 << 10, "the device backup sent {sent} bytes to the vault: the data must go onto the devices");
    for d in [&d1, &d2] {
        let files = device_files(d);
        assert!(files.iter().any(|f| f.to_string_lossy().contains("/data/")), "both devices hold packs: {files:?}");
        let used: u64 = files.iter().map(|f| f.metadata().unwrap().len()).sum();
        assert!(used <= 20 << 20, "device {} holds {used} bytes, more than its 20 MiB", d.display());
        for f in &files {
            let name = f.file_name().unwrap().to_string_lossy();
            assert!(name != "config" && !f.to_string_lossy().contains("/keys/"), "no key file on a device: {}", f.display());
            let bytes = std::fs::read(f).unwrap();
            for clear in [&b"deeper"[..], b"deep\ndeep\n", b"echo hi"] {
                assert!(!bytes.windows(clear.len()).any(|w| w == clear), "{} holds {clear:?} in clear", f.display());
            }
        }
    }
    let j = site.device(&job);
    assert_eq!(j["state"], "in-use", "{j}");
    assert!(j["disks"].as_array().unwrap().iter().all(|d| d["state"] == "sealed"), "{j}");
    // Sealed devices take no second backup.
    fails(device_backup(&m, &src, &[&d1, &d2], &unlock_m), &["sealed already"]);

    // Erasing before the ingest is refused and touches nothing.
    let before = device_files(&d1).len();
    fails(site.import(&["device", "erase", &job, "--path", s(&d1)]), &[&job, "only after its seed is ingested"]);
    assert_eq!(device_files(&d1).len(), before);

    // Back at the vault's site: imported, ingested.
    site.owner(&["device", "status", &job, "--set", "returning", "--carrier", "DHL", "--tracking", "BACK-1"]);
    let o = site.device_import(&job, &[&d1, &d2]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let j = site.device(&job);
    assert_eq!((j["state"].as_str(), j["recovery_point"].as_str()), (Some("ingested"), Some(rp.as_str())), "{j}");
    assert!(site.admin.path("logs").join(format!("{job}-device2-copy.log")).exists(), "a copy log per device");
    fails(site.device_import(&job, &[&d1, &d2]), &[&job, "imported only once"]);

    // The seed restores identically through the vault.
    let target = m.path("restore");
    m.ok(&["restore", &rp, "--target", s(&target)]);
    assert_same_tree(&src, &restored(&target, &src));

    // Erased, verified, recorded in the audit log.
    site.import(&["device", "erase", &job, "--path", s(&d1), "--path", s(&d2)]);
    for d in [&d1, &d2] {
        assert!(!d.join("FERRY-DEVICE").exists(), "{} still holds FERRY-DEVICE", d.display());
    }
    let j = site.device(&job);
    assert_eq!(j["state"], "erased", "{j}");
    let erasures: Vec<&serde_json::Value> = j["audit"].as_array().unwrap().iter().filter(|a| a["action"] == "device-erased").collect();
    assert_eq!(erasures.len(), 2, "{j}");
    assert!(erasures[0]["actor"].as_str().unwrap().contains("ops"), "the import operator is named: {j}");
    // In text, the audit log reads as lines of words.
    let text = site.owner(&["device", "status", &job]);
    let erased: Vec<&str> = text.lines().filter(|l| l.contains("device erased: ")).collect();
    assert_eq!(erased.len(), 2, "{text}");
    assert!(erased[0].contains("device 1") && erased[0].contains("MiB") && erased[0].contains("verified yes"), "{text}");
    assert!(!text.contains('{'), "{text}");

    // A 1 % change goes over the network, and only it.
    let changed = noise(240 << 10, 77);
    std::fs::write(src.join("new.bin"), &changed).unwrap();
    let before = site.bytes_received("m1");
    let b = m.backup(&src);
    let sent = site.bytes_received("m1") - before;
    assert_eq!(b["bytes_read"].as_u64(), Some(changed.len() as u64), "files the seed holds are not read again: {b}");
    let compressed = zstd_len(&changed);
    eprintln!("after the device seed: a change of {compressed} compressed bytes sent {sent} bytes");
    assert!((sent as f64) <= 1.2 * compressed as f64, "sent {sent} bytes for a change of {compressed} compressed bytes");
}

#[test]
fn an_expired_credential_is_refused() {
    let site = Site::start(&[("FERRY_VAULT_UNLOCK_VALID_S", "2")]);
    let m = machine();
    site.vault.register(&site.admin, &m, "m1");
    let src = m.path("src");
    make_tree(&src);
    let job = site.order("m1", &[]);
    let (dev, unlock) = site.prepare(&job, "dev");
    std::thread::sleep(std::time::Duration::from_secs(3));
    fails(device_backup(&m, &src, &[&dev], &unlock), &["expired", &job]);
    assert!(walkdir(&dev.join("FERRY-DEVICE/repo")).iter().all(|p| !p.is_file()), "nothing written");
}

#[test]
fn bad_devices_and_credentials_are_refused_and_lose_nothing() {
    let site = Site::start(&[]);
    let (m, m2) = (machine(), machine());
    site.vault.register(&site.admin, &m, "m1");
    site.vault.register(&site.admin, &m2, "m2");
    let src = m.path("src");
    make_tree(&src);
    std::fs::write(src.join("more.bin"), noise(6 << 20, 5)).unwrap();

    let a = site.order("m1", &[]);
    let b = site.order("m1", &[]);
    let c = site.order("m2", &[]);
    let (dev_a, unlock_a) = site.prepare(&a, "a");
    let (_dev_b, unlock_b) = site.prepare(&b, "b");
    let (dev_c, unlock_c) = site.prepare(&c, "c");

    // A device is prepared empty; a device of another job is not prepared over.
    let full = site.admin.path("full");
    std::fs::create_dir_all(&full).unwrap();
    std::fs::write(full.join("photo.jpg"), b"precious").unwrap();
    let o = site.vault.admin_run(&site.admin, &["device", "prepare", &a, "--path", s(&full), "--unlock-out", s(&site.admin.path("x"))]);
    fails(o, &["not empty"]);
    assert_eq!(std::fs::read(full.join("photo.jpg")).unwrap(), b"precious");
    let o = site.vault.admin_run(&site.admin, &["device", "prepare", &b, "--path", s(&dev_a), "--unlock-out", s(&site.admin.path("x"))]);
    fails(o, &[&a, "erase it first"]);

    // Wrong credential, another machine's device, an altered credential.
    fails(device_backup(&m, &src, &[&dev_a], &unlock_b), &["does not open", &a]);
    fails(device_backup(&m, &src, &[&dev_c], &unlock_c), &["m2", "not this machine"]);
    let mut forged: serde_json::Value = serde_json::from_slice(&std::fs::read(&unlock_a).unwrap()).unwrap();
    forged["expires"] = "2099-01-01T00:00:00Z".into();
    let forged_file = m.path("forged.json");
    std::fs::write(&forged_file, serde_json::to_vec(&forged).unwrap()).unwrap();
    fails(device_backup(&m, &src, &[&dev_a], &forged_file), &["altered"]);
    assert!(walkdir(&dev_a.join("FERRY-DEVICE/repo")).iter().all(|p| !p.is_file()), "nothing written by a refused backup");

    // A device too small: says what would fit and what else to do, writes nothing.
    let small = site.order("m1", &["--capacity", "2MiB"]);
    let (dev_s, unlock_s) = site.prepare(&small, "small");
    let err = fails(device_backup(&m, &src, &[&dev_s], &unlock_s), &["would fit", "second device", "--offline"]);
    assert!(err.contains('%'), "{err}");
    assert!(walkdir(&dev_s.join("FERRY-DEVICE/repo")).iter().all(|p| !p.is_file()));

    // Roles: a reader sees device jobs but orders, prepares and reads credentials not.
    let reader = site.vault.admin(&site.admin, &["vault", "user", "add", "auditor", "--role", "reader"]);
    let reader_file = site.admin.path("reader.token");
    std::fs::write(&reader_file, reader.trim()).unwrap();
    let as_reader = |args: &[&str]| {
        let (cert, token) = (site.vault.data("vault-cert.pem"), reader_file.to_string_lossy().into_owned());
        let mut v = args.to_vec();
        v.extend(["--vault", &site.vault.url, "--vault-cert", &cert, "--token-file", &token]);
        site.admin.run(&v)
    };
    fails(as_reader(&["device", "order", "--machine", "m1", "--type", "box"]), &["may not"]);
    let spare = site.admin.path("spare");
    std::fs::create_dir_all(&spare).unwrap();
    fails(as_reader(&["device", "prepare", &a, "--path", s(&spare), "--unlock-out", s(&site.admin.path("y"))]), &["may not"]);
    let o = as_reader(&["device", "status", &a, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("device_key"));

    // The real backup onto A; then a tampered device is refused, naming the file, and nothing
    // is ingested; once the device is as sealed, the import goes through, once.
    let o = device_backup(&m, &src, &[&dev_a], &unlock_a);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut packs: Vec<PathBuf> = device_files(&dev_a).into_iter().filter(|f| f.to_string_lossy().contains("/data/")).collect();
    packs.sort_by_key(|p| std::cmp::Reverse(p.metadata().unwrap().len()));
    let pack = packs[0].clone();
    let pack_name = pack.file_name().unwrap().to_string_lossy().into_owned();

    let flipped = flip(&pack);
    fails(site.device_import(&a, &[&dev_a]), &[&pack_name[..16], "changed"]);
    unflip(flipped);
    let added = pack.with_file_name("extra");
    std::fs::write(&added, b"smuggled").unwrap();
    fails(site.device_import(&a, &[&dev_a]), &["extra", "added"]);
    std::fs::remove_file(&added).unwrap();
    let kept = std::fs::read(&pack).unwrap();
    std::fs::remove_file(&pack).unwrap();
    fails(site.device_import(&a, &[&dev_a]), &[&pack_name[..16], "removed"]);
    std::fs::write(&pack, &kept).unwrap();
    let seal = dev_a.join("FERRY-DEVICE/seal.bin");
    let sealed = flip(&seal);
    fails(site.device_import(&a, &[&dev_a]), &["seal"]);
    unflip(sealed);
    assert_ne!(site.device(&a)["state"], "ingested", "nothing ingested from a tampered device");

    let o = site.device_import(&a, &[&dev_a]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    fails(site.device_import(&a, &[&dev_a]), &["imported only once"]);
}

#[test]
fn a_device_backup_killed_at_random_moments_resumes_and_imports() {
    let site = Site::start(&[]);
    let m = machine();
    site.vault.register(&site.admin, &m, "m1");
    let src = source(&m);
    let job = site.order("m1", &[]);
    let (dev, unlock) = site.prepare(&job, "dev");
    let args = ["backup", s(&src), "--device", s(&dev), "--unlock-file", s(&unlock), "--checkpoint-every", "1"];
    let mut killed = 0;
    for ms in [120u64, 250, 400, 600] {
        let mut child = m.cmd(&args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(ms));
        let _ = child.kill();
        let status = child.wait().unwrap();
        if dev.join("FERRY-DEVICE/seal.bin").exists() {
            // It sealed before the kill (and may have been killed before it told the vault):
            // the later moments are past the end.
            eprintln!("sealed; the backup then {status}");
            break;
        }
        killed += 1;
    }
    eprintln!("{killed} device backups killed before they sealed");
    assert!(killed > 0, "no backup was killed mid-way: the kill moments are too late for this machine");
    // As after a backup killed between sealing and telling the vault: the vault has no seal.
    // A rerun records it (checked whole); with the seal recorded, a rerun is refused.
    let recorded = !site.device(&job)["manifest_digest"].is_null();
    if dev.join("FERRY-DEVICE/seal.bin").exists() && recorded {
        fails(device_backup(&m, &src, &[&dev], &unlock), &["sealed already"]);
    } else {
        let o = device_backup(&m, &src, &[&dev], &unlock);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(!site.device(&job)["manifest_digest"].is_null(), "the seal is recorded");
    }
    let rps = m.json(&["recovery-points"]);
    assert!(rps.as_array().unwrap().is_empty(), "nothing reaches the vault before the import: {rps}");
    let o = site.device_import(&job, &[&dev]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rps = m.json(&["recovery-points"]);
    let rp = rps[0]["id"].as_str().unwrap().to_string();
    let target = m.path("restore");
    m.ok(&["restore", &rp, "--target", s(&target)]);
    assert_same_tree(&src, &restored(&target, &src));
}
