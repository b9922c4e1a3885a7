//! Offline seeding with disks (issue #4), end to end with the real binary: a vault on loopback,
//! a registered machine, an offline backup to a staging folder, diskprep onto three small
//! disks, shipping, import into a storage container (Azurite when the test services run, a
//! local folder otherwise), ingest, restore, and an online incremental afterwards; then each
//! kind of bad input.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::*;
use crate::vault::{machine, Vault};

pub(crate) fn unique() -> String {
    format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos())
}

/// Where import jobs' containers go: Azurite when it runs, else a folder.
fn container_base(scratch: &Path) -> String {
    if std::env::var("FERRY_TEST_AZURITE").is_ok() {
        format!("az://ferry-seed-{}", unique())
    } else {
        eprintln!("note: FERRY_TEST_AZURITE not set (run scripts/test.sh): import containers are local folders");
        scratch.join("containers").to_string_lossy().into_owned()
    }
}

/// A vault site: the vault, its owner's scratch area, an import operator's token file.
pub(crate) struct Site {
    pub(crate) vault: Vault,
    pub(crate) admin: Env,
    pub(crate) operator: PathBuf,
    pub(crate) containers: String,
}

impl Site {
    pub(crate) fn start(env: &[(&str, &str)]) -> Site {
        let admin = machine();
        let containers = container_base(admin.dir.path());
        Site::start_on(admin, containers, env)
    }

    /// A site whose vault is started as the README shows, with its embedded default for the
    /// import containers (`DATA/imports`).
    pub(crate) fn start_default(env: &[(&str, &str)]) -> Site {
        let admin = machine();
        let vault = Vault::start_with(&[], env);
        let containers = vault.data("imports");
        Site::with_operator(admin, vault, containers)
    }

    /// A site whose import containers are under `containers`.
    fn start_on(admin: Env, containers: String, env: &[(&str, &str)]) -> Site {
        let args = ["--import-container", containers.as_str(), "--shipping-address", "Ferry vault site, Dock 4"];
        Site::with_operator(admin, Vault::start_with(&args, env), containers)
    }

    fn with_operator(admin: Env, vault: Vault, containers: String) -> Site {
        let token = vault.admin(&admin, &["vault", "user", "add", "ops", "--role", "import-operator"]);
        let operator = admin.path("ops.token");
        std::fs::write(&operator, token.trim()).unwrap();
        Site { vault, admin, operator, containers }
    }

    /// `ferry ARGS` as the import operator (any exit code).
    pub(crate) fn import(&self, args: &[&str]) -> Output {
        let mut a = args.to_vec();
        let cert = self.vault.data("vault-cert.pem");
        let token = self.operator.to_string_lossy().into_owned();
        a.extend(["--vault", &self.vault.url, "--vault-cert", &cert, "--token-file", &token]);
        self.admin.run(&a)
    }

    /// The vault's byte counter of data received from machine `name`.
    pub(crate) fn bytes_received(&self, name: &str) -> u64 {
        let list: serde_json::Value = serde_json::from_str(&self.vault.admin(&self.admin, &["vault", "machines", "--json"])).unwrap();
        list.as_array().unwrap().iter().find(|m| m["name"] == name).unwrap()["bytes_received"].as_u64().unwrap()
    }
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs and expects failure (exit 1) with every one of `needles` in the message.
pub(crate) fn fails(o: Output, needles: &[&str]) -> String {
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "expected a failure, got {:?}: {err}", o.status.code());
    for n in needles {
        assert!(err.contains(n), "{n:?} not in: {err}");
    }
    eprintln!("refused as expected: {}", err.trim());
    err
}

pub(crate) fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Sizes of the staging location's packs, largest first.
fn pack_sizes(staging: &Path) -> Vec<u64> {
    let mut sizes: Vec<u64> =
        walkdir(&staging.join("data")).into_iter().filter(|p| p.is_file()).map(|p| p.metadata().unwrap().len()).collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    sizes
}

/// A disk capacity for which the staging location's objects need exactly `n` disks, by
/// diskprep's own placement rule (`ferry_seed::disks_needed`).
pub(crate) fn capacity_for(staging: &Path, job: &str, n: u32) -> u64 {
    let store = ferry_store::open(staging.to_str().unwrap()).unwrap();
    let mut objects = Vec::new();
    for prefix in ["config", "keys/", "data/", "index/", "packlists/", "recovery-points/"] {
        for o in store.list(prefix).unwrap() {
            if prefix != "config" || o.key == "config" {
                objects.push(ferry_seed::SourceObject { phase: ferry_api::commit_phase(&o.key), key: o.key, size: o.size });
            }
        }
    }
    let largest = pack_sizes(staging)[0];
    let mut cap = largest;
    loop {
        match ferry_seed::disks_needed(job, &objects, cap) {
            Ok(k) if k == n => return cap,
            Ok(k) if k < n => panic!("no capacity makes {n} disks for {objects:?}: {k} at {cap}"),
            _ => cap += 32 << 10,
        }
    }
}

/// A machine's source: the usual tree and 18 MiB of incompressible files (three packs or more).
pub(crate) fn source(m: &Env) -> PathBuf {
    let src = m.path("src");
    make_tree(&src);
    for i in 0..6 {
        std::fs::write(src.join(format!("data{i}.bin")), noise(3 << 20, 10 + i)).unwrap();
    }
    src
}

/// Machine `m1` of `site` with a [`source`] backed up offline for import job `job`: the
/// machine, its source and staging folders and the backup's JSON summary.
pub(crate) fn offline_machine(site: &Site, job: &str) -> (Env, PathBuf, PathBuf, serde_json::Value) {
    let m = machine();
    site.vault.register(&site.admin, &m, "m1");
    let src = source(&m);
    let staging = m.path("staging");
    let b = m.json(&["backup", s(&src), "--offline", "--staging", s(&staging), "--import-job", job]);
    (m, src, staging, b)
}

#[test]
fn a_seed_travels_on_three_disks_and_afterwards_only_changes_cross_the_network() {
    let site = Site::start(&[]);
    let (m, src, staging, b) = offline_machine(&site, "seed-1");
    let rp = b["recovery_point"].as_str().unwrap().to_string();
    let sent = site.bytes_received("m1");
    eprintln!("registration and offline backup: {sent} bytes sent to the vault");
    assert!(sent < 64 << 10, "registration and the offline backup sent {sent} bytes to the vault: the data must stay in staging");
    let job = m.json(&["import-job", "show", "seed-1"]);
    assert_eq!(job["state"], "created", "{job}");
    assert!(job["deadline"].is_string(), "{job}");

    // Diskprep onto three disks, each too small for the whole seed.
    let cap = capacity_for(&staging, "seed-1", 3);
    let disks: Vec<PathBuf> = (1..=3).map(|i| m.path(&format!("disk{i}"))).collect();
    let all: Vec<&Path> = disks.iter().map(PathBuf::as_path).collect();
    let out = m.ok(&strs(&diskprep_args(&staging, &all, cap)));
    assert!(out.contains("3 disks prepared"), "{out}");
    assert!(out.contains("Ferry vault site, Dock 4"), "diskprep prints the shipping address: {out}");
    for d in &disks {
        let used: u64 = walkdir(d).iter().filter(|p| p.is_file()).map(|p| p.metadata().unwrap().len()).sum();
        assert!(used <= cap, "disk {} holds {used} bytes, more than its capacity {cap}", d.display());
        // Nothing on a disk is readable without the disk key: no file name, no content.
        for f in walkdir(d).into_iter().filter(|p| p.is_file()) {
            let bytes = std::fs::read(&f).unwrap();
            for clear in [&b"deeper"[..], b"deep\ndeep\n", b"echo hi", b"recovery-points"] {
                assert!(!bytes.windows(clear.len()).any(|w| w == clear), "{} holds {clear:?} in clear", f.display());
            }
        }
    }
    assert_eq!(m.json(&["import-job", "show", "seed-1"])["state"], "awaiting-shipment");

    // Cleanup before ingest is refused; the import operator cannot use disks not shipped yet.
    fails(m.run(&["import-job", "cleanup", "seed-1", "--staging", s(&staging)]), &["seed-1", "no ingest receipt"]);
    // ... and says what to do next, in words, not API paths.
    let err = fails(site.import_run("seed-1", &all), &["seed-1", "awaiting-shipment", "ferry import-job ship seed-1"]);
    assert!(!err.contains("/v1/"), "{err}");

    m.ok(&["import-job", "ship", "seed-1", "--carrier", "DHL", "--tracking", "TRK-0001", "--return-address", "Customer, Main St 1"]);
    let job = m.json(&["import-job", "show", "seed-1"]);
    assert_eq!((job["state"].as_str(), job["tracking"].as_str()), (Some("shipping"), Some("TRK-0001")), "{job}");
    assert!(job["deadline"].is_null(), "a shipped job no longer expires: {job}");

    // The import operator imports; the vault ingests at once.
    let out = site.import_run("seed-1", &all);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let logs = site.admin.path("logs");
    assert!(stderr(&out).contains(&format!("logs of each disk are in {}", logs.display())), "says where its logs are: {}", stderr(&out));
    let job = m.json(&["import-job", "show", "seed-1"]);
    assert_eq!(job["state"], "ingested", "{job}");
    assert_eq!(job["recovery_point"], rp.as_str(), "{job}");
    for d in job["disks"].as_array().unwrap() {
        assert_eq!(d["state"], "completed", "{job}");
    }
    assert!(site.admin.path("logs").join("seed-1-disk2-copy.log").exists(), "a copy log per disk");
    // Importing the same seed twice changes nothing.
    fails(site.import_run("seed-1", &all), &["seed-1", "ingested already"]);

    // The seeded recovery point restores identically, through the vault.
    let target = m.path("restore");
    m.ok(&["restore", &rp, "--target", s(&target)]);
    assert_same_tree(&src, &restored(&target, &src));

    // Receipt, then cleanup: the container copy and the staging location are emptied.
    let receipt = m.json(&["import-job", "show", "seed-1", "--receipt"]);
    assert_eq!(receipt["recovery_points"][0], rp.as_str(), "{receipt}");
    let seed_file = staging.join("seed.json");
    let seed = std::fs::read(&seed_file).unwrap();
    m.ok(&["import-job", "cleanup", "seed-1", "--staging", s(&staging)]);
    assert!(std::fs::read_dir(&staging).unwrap().next().is_none(), "the staging location is emptied, seed.json too");
    // As after a cleanup killed while emptying the staging location (the receipt verified, a
    // file and seed.json left): a rerun finishes it; once empty, a rerun has nothing to do.
    let mut seed: serde_json::Value = serde_json::from_slice(&seed).unwrap();
    seed["receipt_verified"] = true.into();
    std::fs::write(&seed_file, serde_json::to_vec(&seed).unwrap()).unwrap();
    std::fs::write(staging.join("left-over"), b"x").unwrap();
    m.ok(&["import-job", "cleanup", "seed-1", "--staging", s(&staging)]);
    assert!(std::fs::read_dir(&staging).unwrap().next().is_none(), "the rerun empties it");
    m.ok(&["import-job", "cleanup", "seed-1", "--staging", s(&staging)]);
    let container = ferry_store::open(&format!("{}/seed-1", site.containers)).unwrap();
    assert!(container.list("").unwrap().is_empty(), "the container copy is removed");

    // A 1 % change goes over the network, and only it.
    let changed = noise(240 << 10, 99);
    std::fs::write(src.join("new.bin"), &changed).unwrap();
    let before = site.bytes_received("m1");
    let b = m.backup(&src);
    let sent = site.bytes_received("m1") - before;
    assert_eq!(b["bytes_sent"].as_u64(), Some(sent), "the backup reports what the vault received: {b}");
    assert_eq!((b["files_new"].as_u64(), b["files_changed"].as_u64()), (Some(1), Some(0)), "{b}");
    assert_eq!(b["bytes_read"].as_u64(), Some(changed.len() as u64), "files the seed holds are not read again: {b}");
    let compressed = zstd_len(&changed);
    eprintln!("after the seed: a change of {compressed} compressed bytes sent {sent} bytes to the vault");
    assert!(
        (sent as f64) <= 1.2 * compressed as f64,
        "the incremental after the seed sent {sent} bytes for a change of {compressed} compressed bytes"
    );
}

/// The size of `data` compressed as the repository stores it (zstd level 3; data that does
/// not shrink is stored as it is).
pub(crate) fn zstd_len(data: &[u8]) -> u64 {
    zstd::bulk::compress(data, 3).unwrap().len().min(data.len()) as u64
}

/// `--disk` arguments for `disks`.
fn disk_args(disks: &[&Path]) -> Vec<String> {
    disks.iter().flat_map(|d| ["--disk".to_string(), d.display().to_string()]).collect()
}

/// `ferry diskprep` of `staging` onto `disks` (each capped at `cap`), as machine `m`.
/// The arguments of `ferry diskprep` of `staging` onto `disks` (made if missing), each capped at
/// `cap`.
pub(crate) fn diskprep_args(staging: &Path, disks: &[&Path], cap: u64) -> Vec<String> {
    let mut a = vec!["diskprep".to_string(), "--staging".into(), staging.display().to_string()];
    for d in disks {
        std::fs::create_dir_all(d).unwrap();
        a.extend(["--disk".to_string(), format!("{}:{cap}", d.display())]);
    }
    a
}

pub(crate) fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// `ferry diskprep` as machine `m`.
fn diskprep(m: &Env, staging: &Path, disks: &[&Path], cap: u64) -> Output {
    m.run(&strs(&diskprep_args(staging, disks, cap)))
}

impl Site {
    pub(crate) fn import_run(&self, job: &str, disks: &[&Path]) -> Output {
        let logs = self.admin.path("logs");
        let mut a =
            vec!["import".to_string(), "run".into(), "--import-job".into(), job.into(), "--log-dir".into(), logs.display().to_string()];
        a.extend(disk_args(disks));
        self.import(&strs(&a))
    }
}

/// Flips one byte of `file` (at its middle); returns a closure's worth of undo: the old byte.
pub(crate) fn flip(file: &Path) -> (PathBuf, u64, u8) {
    let mut bytes = std::fs::read(file).unwrap();
    let at = bytes.len() / 2;
    let old = bytes[at];
    bytes[at] ^= 0x40;
    std::fs::write(file, &bytes).unwrap();
    (file.to_path_buf(), at as u64, old)
}

pub(crate) fn unflip((file, at, old): (PathBuf, u64, u8)) {
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[at as usize] = old;
    std::fs::write(&file, &bytes).unwrap();
}

/// The largest object file on a disk.
pub(crate) fn biggest_object(disk: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = walkdir(&disk.join("FERRY-SEED/objects")).into_iter().filter(|p| p.is_file()).collect();
    files.sort_by_key(|p| std::cmp::Reverse(p.metadata().unwrap().len()));
    files.remove(0)
}

#[test]
fn bad_disks_and_bad_requests_are_named_and_lose_nothing() {
    let site = Site::start(&[]);
    let (m, m2) = (machine(), machine());
    site.vault.register(&site.admin, &m, "m1");
    site.vault.register(&site.admin, &m2, "m2");
    let src = m.path("src");
    make_tree(&src);
    std::fs::write(src.join("more.bin"), noise(6 << 20, 7)).unwrap();
    let staging = m.path("staging");
    m.ok(&["backup", s(&src), "--offline", "--staging", s(&staging), "--import-job", "bad-1"]);

    // A disk too small for a single object: named, nothing written, the job still waits.
    let tiny = m.path("tiny");
    let err = fails(diskprep(&m, &staging, &[&tiny], 100 << 10), &["does not fit", "tiny"]);
    assert!(err.contains("data/"), "the object is named: {err}");
    assert!(walkdir(&tiny).is_empty(), "nothing written to the too small disk");
    // Shipping before the disks are ready is refused.
    fails(m.run(&["import-job", "ship", "bad-1", "--carrier", "DHL", "--tracking", "T-1"]), &["bad-1", "diskprep"]);

    let cap = capacity_for(&staging, "bad-1", 2);
    let (d1, d2) = (m.path("d1"), m.path("d2"));
    // A disk holding someone's files is not wiped without a yes (no terminal to ask on here).
    std::fs::create_dir_all(&d1).unwrap();
    std::fs::write(d1.join("family-photos.jpg"), b"precious").unwrap();
    fails(diskprep(&m, &staging, &[&d1, &d2], cap), &["d1"]);
    assert_eq!(std::fs::read(d1.join("family-photos.jpg")).unwrap(), b"precious", "nothing wiped without a yes");
    let mut yes = diskprep_args(&staging, &[&d1, &d2], cap);
    yes.push("--yes".into());
    let o = m.run(&strs(&yes));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!d1.join("family-photos.jpg").exists(), "--yes wipes");

    // Roles: a reader sees the job but neither ships it nor reads its disk key.
    let reader = site.vault.admin(&site.admin, &["vault", "user", "add", "auditor", "--role", "reader"]);
    let reader_file = site.admin.path("reader.token");
    std::fs::write(&reader_file, reader.trim()).unwrap();
    let as_reader = |args: &[&str]| {
        let mut a = args.to_vec();
        let cert = site.vault.data("vault-cert.pem");
        a.extend(["--vault", &site.vault.url, "--vault-cert", &cert, "--token-file", reader_file.to_str().unwrap()]);
        site.admin.run(&a)
    };
    let listed = as_reader(&["import-job", "list", "--json"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("bad-1"), "{}", stderr(&listed));
    fails(as_reader(&["import-job", "ship", "bad-1", "--carrier", "X", "--tracking", "R-1"]), &["may not ship"]);
    fails(as_reader(&["diskprep", "--staging", s(&staging), "--disk", s(&m.path("d9"))]), &["may not read disk keys"]);
    m.ok(&["import-job", "ship", "bad-1", "--carrier", "DHL", "--tracking", "T-1"]);
    let mine = m.json(&["import-job", "list"]);
    assert_eq!(mine.as_array().unwrap().len(), 1, "a machine lists its own jobs: {mine}");

    // Another machine's job, on its own disk; it cannot reuse the tracking number.
    let src2 = m2.path("src");
    std::fs::create_dir_all(&src2).unwrap();
    std::fs::write(src2.join("f"), noise(100 << 10, 3)).unwrap();
    let staging2 = m2.path("staging");
    m2.ok(&["backup", s(&src2), "--offline", "--staging", s(&staging2), "--import-job", "bad-2"]);
    let x1 = m2.path("x1");
    let o = diskprep(&m2, &staging2, &[&x1], 1 << 30);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    fails(m2.run(&["import-job", "ship", "bad-2", "--carrier", "UPS", "--tracking", "T-1"]), &["T-1", "bad-1"]);
    // A machine sees only its own jobs.
    fails(m2.run(&["import-job", "show", "bad-1"]), &["bad-1"]);

    // The set must be exactly the job's disks.
    fails(site.import_run("bad-1", &[&d1]), &["disk 2", "missing"]);
    let job = m.json(&["import-job", "show", "bad-1"]);
    assert_eq!(job["disks"][1]["state"], "never-received", "{job}");
    fails(site.import_run("bad-1", &[&d1, &d1, &d2]), &["both disk 1", "d1"]);
    fails(site.import_run("bad-1", &[&d1, &x1]), &["x1", "bad-2"]);
    // A tampered manifest, a label forged without the key.
    let undo = flip(&d1.join("FERRY-SEED/manifest.bin"));
    fails(site.import_run("bad-1", &[&d1, &d2]), &["manifest", "d1"]);
    unflip(undo);
    let label = d2.join("FERRY-SEED/label.json");
    let original = std::fs::read_to_string(&label).unwrap();
    let mut forged: serde_json::Value = serde_json::from_str(&original).unwrap();
    forged["created"] = "2020-01-01T00:00:00Z".into();
    std::fs::write(&label, serde_json::to_vec(&forged).unwrap()).unwrap();
    fails(site.import_run("bad-1", &[&d1, &d2]), &["d2", "key"]);
    std::fs::write(&label, original).unwrap();
    let job = m.json(&["import-job", "show", "bad-1"]);
    let states: Vec<&str> = job["disks"].as_array().unwrap().iter().map(|d| d["state"].as_str().unwrap()).collect();
    assert!(states.contains(&"key-invalid"), "the disk's state says why: {job}");

    // One byte flipped in an object: the import names disk and object and ingests nothing.
    let undo = flip(&biggest_object(&d2));
    let err = fails(site.import_run("bad-1", &[&d1, &d2]), &["completed with errors"]);
    assert!(err.contains("d2") || err.contains("disk 2"), "{err}");
    let job = m.json(&["import-job", "show", "bad-1"]);
    assert_eq!(job["state"], "completed-with-errors", "{job}");
    let points = m.json(&["recovery-points"]);
    assert_eq!(points.as_array().unwrap().len(), 0, "nothing ingested from a damaged set: {points}");
    let logs = std::fs::read_to_string(site.admin.path("logs").join("bad-1-disk2-error.log")).unwrap();
    assert!(logs.contains("data/"), "the error log names the object: {logs}");
    // Mended (the disk read again), the same import completes.
    unflip(undo);
    let o = site.import_run("bad-1", &[&d1, &d2]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(m.json(&["import-job", "show", "bad-1"])["state"], "ingested");
    fails(site.import_run("bad-1", &[&d1, &d2]), &["ingested already"]);
    assert_eq!(m.json(&["recovery-points"]).as_array().unwrap().len(), 1);
    m.ok(&["check", "--read-data"]);
}

#[test]
fn a_job_not_shipped_in_time_expires_and_its_disks_are_refused() {
    let site = Site::start(&[("FERRY_VAULT_SHIP_WITHIN_S", "3")]);
    let m = machine();
    site.vault.register(&site.admin, &m, "m1");
    let src = m.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"some data").unwrap();
    let staging = m.path("staging");
    m.ok(&["backup", s(&src), "--offline", "--staging", s(&staging), "--import-job", "late"]);
    let d1 = m.path("d1");
    let o = diskprep(&m, &staging, &[&d1], 1 << 30);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert_eq!(m.json(&["import-job", "show", "late"])["state"], "expired");
    fails(m.run(&["import-job", "ship", "late", "--carrier", "DHL", "--tracking", "T-9"]), &["late", "expired", "new import job"]);
    fails(site.import_run("late", &[&d1]), &["late", "expired"]);
}

/// Runs `args` as `env` and kills it after `ms` milliseconds; true if it ended by itself.
pub(crate) fn run_killed(env: &Env, args: &[String], ms: u64) -> bool {
    let mut child = env.cmd(&strs(args)).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(ms);
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status.success();
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    eprintln!("killed {:?} after {ms} ms", &args[..2]);
    false
}

#[test]
fn diskprep_and_import_killed_at_random_moments_resume() {
    let site = Site::start(&[]);
    let (m, src, staging, _) = offline_machine(&site, "kill-1");
    let cap = capacity_for(&staging, "kill-1", 3);
    let disks: Vec<PathBuf> = (1..=3).map(|i| m.path(&format!("disk{i}"))).collect();
    let prep = diskprep_args(&staging, &disks.iter().map(PathBuf::as_path).collect::<Vec<_>>(), cap);
    // Pseudo-random kill moments, different in every run, printed for a rerun by hand.
    let seed = u64::from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos());
    let mut x = seed | 1;
    let mut next = |max: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        20 + x % max
    };
    eprintln!("kill moments from seed {seed}");
    for _ in 0..4 {
        if run_killed(&m, &prep, next(600)) {
            break;
        }
    }
    let o = m.run(&strs(&prep));
    assert_eq!(o.status.code(), Some(0), "diskprep after kills: {}", stderr(&o));
    m.ok(&["import-job", "ship", "kill-1", "--carrier", "DHL", "--tracking", "K-1"]);

    let cert = site.vault.data("vault-cert.pem");
    let mut import = vec!["import".to_string(), "run".into(), "--import-job".into(), "kill-1".into()];
    import.extend(["--log-dir".to_string(), site.admin.path("logs").display().to_string()]);
    import.extend(disk_args(&disks.iter().map(PathBuf::as_path).collect::<Vec<_>>()));
    import.extend(["--vault".to_string(), site.vault.url.clone(), "--vault-cert".into(), cert, "--token-file".into()]);
    import.push(site.operator.display().to_string());
    let mut finished = false;
    for _ in 0..4 {
        if run_killed(&site.admin, &import, next(800)) {
            finished = true;
            break;
        }
    }
    if !finished {
        let o = site.admin.run(&strs(&import));
        let err = stderr(&o);
        // Killed once the disks were copied: the vault's ingest goes on (or has ended) without
        // the operator's command, and the import says so instead of asking for the disk key.
        assert!(
            o.status.success() || err.contains("ingested already") || err.contains("is being ingested by the vault already"),
            "import after kills: {err}"
        );
    }
    // Wait for an ingest the last kill may have left running in the vault.
    let deadline = std::time::Instant::now() + std::time::Duration::from_mins(1);
    while m.json(&["import-job", "show", "kill-1"])["state"] != "ingested" {
        assert!(std::time::Instant::now() < deadline, "{}", m.json(&["import-job", "show", "kill-1"]));
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(m.json(&["recovery-points"]).as_array().unwrap().len(), 1, "ingested once");
    let target = m.path("restore");
    m.ok(&["restore", "latest", "--target", s(&target)]);
    assert_same_tree(&src, &restored(&target, &src));
}

#[test]
fn plan_compares_the_network_with_disks() {
    let env = Env::new();
    let big = env.json(&["plan", "--size", "20TB", "--uplink", "10Mbit", "--disk-speed", "200MB/s"]);
    assert_eq!((big["recommendation"].as_str(), big["disks"].as_u64()), (Some("disks"), Some(3)), "{big}");
    // 20 TB at 1.25 MB/s: 185 days; on disks: six local passes at 200 MB/s and 3 days' shipping.
    let network_days = big["network_s"].as_f64().unwrap() / 86400.0;
    assert!((network_days - 185.2).abs() < 1.0, "{big}");
    let small = env.json(&["plan", "--size", "10GB", "--uplink", "1Gbit", "--disk-speed", "200MB/s"]);
    assert_eq!(small["recommendation"], "network", "{small}");
    // A measured source: text compresses, and the disk speed is measured when not given.
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..20 {
        std::fs::write(src.join(format!("t{i}.txt")), format!("line {i} of some very repetitive text\n").repeat(2000)).unwrap();
    }
    let p = env.json(&["plan", "--source", s(&src), "--uplink", "100Mbit", "--measure-in", s(&env.path("."))]);
    assert!(p["compressibility"].as_f64().unwrap() < 0.2, "{p}");
    assert!(p["disk_bytes_per_s"].as_f64().unwrap() > 0.0, "{p}");
    fails(env.run(&["plan", "--size", "10GB", "--uplink", "fast"]), &["--uplink", "100Mbit"]);
}

#[test]
fn a_seed_is_imported_into_an_s3_bucket() {
    if std::env::var("FERRY_TEST_S3").is_err() {
        eprintln!("skipped: FERRY_TEST_S3 not set (run scripts/test.sh)");
        return;
    }
    let site = Site::start_on(machine(), format!("s3://ferry-seed-{}", unique()), &[]);
    let m = machine();
    site.vault.register(&site.admin, &m, "m1");
    let src = m.path("src");
    make_tree(&src);
    let staging = m.path("staging");
    m.ok(&["backup", s(&src), "--offline", "--staging", s(&staging), "--import-job", "s3-seed"]);
    let d1 = m.path("d1");
    let o = diskprep(&m, &staging, &[&d1], 1 << 30);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    m.ok(&["import-job", "ship", "s3-seed", "--carrier", "DHL", "--tracking", &format!("S3-{}", unique())]);
    let o = site.import_run("s3-seed", &[&d1]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let job = m.json(&["import-job", "show", "s3-seed"]);
    assert!(job["container"].as_str().unwrap().starts_with("s3://"), "{job}");
    assert_eq!(job["state"], "ingested", "{job}");
    let target = m.path("restore");
    m.ok(&["restore", "latest", "--target", s(&target)]);
    assert_same_tree(&src, &restored(&target, &src));
}
