//! The vault against a compromised machine and the people around it (issue #24, docs/security.md):
//! each test acts as the attacker would, on a vault started as the README shows.

use std::os::unix::fs::PermissionsExt;

use crate::common::*;
use crate::seeding::{diskprep_args, fails, s, strs, Site};
use crate::vault::machine;

/// A machine names the vault's own store (or any other place) as its import job's container:
/// refused, naming the allowed locations. Its legitimate job then goes to `DATA/imports/JOB`,
/// and its cleanup removes only what the import wrote: the other machine's backups stay
/// restorable, exactly.
#[test]
fn a_machine_cannot_aim_an_import_at_the_vaults_store_or_anywhere_else() {
    let site = Site::start_default(&[]);
    let (m1, m2) = (machine(), machine());
    site.vault.register(&site.admin, &m1, "m1");
    site.vault.register(&site.admin, &m2, "m2");
    let src2 = m2.path("src");
    make_tree(&src2);
    m2.backup(&src2);

    let src1 = m1.path("src");
    make_tree(&src1);
    let staging = m1.path("staging");
    let offline = |job: &str, container: &str| {
        m1.run(&["backup", s(&src1), "--offline", "--staging", s(&staging), "--import-job", job, "--container", container])
    };
    let store = site.vault.data("store");
    let imports = site.vault.data("imports");
    for target in [store.as_str(), &format!("{store}/machines"), &site.vault.data(""), "/tmp", &m1.path("mine").display().to_string()] {
        fails(offline("evil", target), &["import locations", &imports, "LOCATION/JOBNAME"]);
    }
    let jobs = m1.json(&["import-job", "list"]);
    assert!(jobs.as_array().unwrap().is_empty(), "no job was made: {jobs}");

    // The legitimate way: the vault's location, the job under it.
    m1.ok(&["backup", s(&src1), "--offline", "--staging", s(&staging), "--import-job", "evil"]);
    assert_eq!(m1.json(&["import-job", "show", "evil"])["container"], format!("{imports}/evil"));
    let disk = m1.path("disk1");
    m1.ok(&strs(&diskprep_args(&staging, &[&disk], 1 << 30)));
    m1.ok(&["import-job", "ship", "evil", "--carrier", "DHL", "--tracking", "TRK-EVIL-1"]);
    let out = site.import_run("evil", &[&disk]);
    assert_eq!(out.status.code(), Some(0), "{}", crate::seeding::stderr(&out));
    // Something else in the job's container is not the job's to remove.
    std::fs::write(format!("{imports}/evil/operator-notes.txt"), b"kept").unwrap();
    let cleaned = m1.json(&["import-job", "cleanup", "evil", "--staging", s(&staging)]);
    eprintln!("cleanup: {cleaned}");
    let left: Vec<_> = walkdir(std::path::Path::new(&format!("{imports}/evil"))).into_iter().filter(|p| p.is_file()).collect();
    assert_eq!(left.len(), 1, "only what the import wrote is removed: {left:?}");

    // The other machine's repository is whole.
    m2.ok(&["check", "--read-data"]);
    let target = m2.path("restore");
    m2.ok(&["restore", "latest", "--target", s(&target)]);
    assert_same_tree(&src2, &restored(&target, &src2));
}

/// A vault started with an import location on its own store, or around its data folder, does
/// not start.
#[test]
fn import_locations_that_reach_the_store_or_the_data_folder_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("vault");
    for (location, why) in
        [(data.join("store").join("seeds"), "overlaps the vault's own store"), (dir.path().to_path_buf(), "overlaps the vault's own store")]
    {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["vault", "serve", "--data", s(&data), "--listen", "127.0.0.1:0", "--import-container", s(&location)])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(why) && err.contains("--import-container"), "{err}");
    }
}

/// A default vault and machine m1 with one backup, both run under umask 022 (each test runs in
/// a process of its own, whose umask the vault and the agent inherit).
fn backed_up_under_umask_022() -> (Site, crate::common::Env) {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    let site = Site::start_default(&[]);
    let m = machine();
    site.vault.register(&site.admin, &m, "m1");
    let src = m.path("src");
    make_tree(&src);
    m.backup(&src);
    (site, m)
}

fn mode(p: &str) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Under the usual umask 022, the vault's files are its own: the data folder 0700, the
/// database, its journal, the keys and every object of the store 0600; an installation made
/// open is repaired at the next start, and says so.
#[test]
fn the_vaults_files_are_private_under_umask_022() {
    let (site, _) = backed_up_under_umask_022();
    assert_eq!(mode(&site.vault.data("")), 0o700);
    let mut files = 0;
    for p in walkdir(std::path::Path::new(&site.vault.data(""))) {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        let m = meta.permissions().mode() & 0o777;
        if meta.is_file() {
            assert_eq!(m & 0o077, 0, "{} is {m:o}", p.display());
            files += 1;
        } else if meta.is_dir() {
            assert_eq!(m & 0o077, 0, "{} is {m:o}", p.display());
        }
    }
    assert!(files > 10, "the store's objects were looked at too ({files} files)");

    // An installation left open (an older vault, a careless copy) is closed at the next start.
    for p in [site.vault.data(""), site.vault.data("vault.db"), site.vault.data("vault-key.pem")] {
        let m = if std::path::Path::new(&p).is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).unwrap();
    }
    let vault = site.vault.restart();
    assert!(vault.log().contains("permissions repaired"), "{}", vault.log());
    assert_eq!((mode(&vault.data("")), mode(&vault.data("vault.db")), mode(&vault.data("vault-key.pem"))), (0o700, 0o600, 0o600));
}

/// The agent's configuration (its vault token) and cache (its file names) are private under
/// umask 022, and an open one is closed at the next command, said once.
#[test]
fn the_agents_config_and_cache_are_private_under_umask_022() {
    let (_site, m) = backed_up_under_umask_022();
    let (config, cache) = (m.path("config"), m.path("cache"));
    for dir in [&config, &cache] {
        assert_eq!(mode(s(dir)), 0o700, "{}", dir.display());
        for p in walkdir(dir) {
            let meta = std::fs::metadata(&p).unwrap();
            assert_eq!(meta.permissions().mode() & 0o077, 0, "{} is {:o}", p.display(), meta.permissions().mode());
        }
    }
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = m.run(&["recovery-points"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("was open to other users (mode 755)"), "{out:?}");
    assert_eq!(mode(s(&config)), 0o700);
    let out = m.run(&["recovery-points"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("open to other users"), "said once: {out:?}");
}

/// Tokens end: a user's expires when asked to, an owner revokes a user's or a machine's at
/// once, removes a user, and sees when each token was made and last used. A revoked machine
/// registers again under its name and finds its recovery points.
#[test]
fn tokens_expire_and_are_revoked_at_once() {
    let site = Site::start_default(&[]);
    let vault = &site.vault;
    let admin = &site.admin;
    let token_file = |name: &str, token: &str| {
        let p = admin.path(&format!("{name}.token"));
        std::fs::write(&p, token.trim()).unwrap();
        p
    };
    let as_user = |file: &std::path::Path, args: &[&str]| {
        let cert = vault.data("vault-cert.pem");
        let mut a = args.to_vec();
        a.extend(["--vault", &vault.url, "--vault-cert", &cert, "--token-file", s(file)]);
        admin.run(&a)
    };
    let reader = token_file("reader", &vault.admin(admin, &["vault", "user", "add", "auditor", "--role", "reader"]));
    let temp = token_file("temp", &vault.admin(admin, &["vault", "user", "add", "temp", "--role", "reader", "--expires", "3s"]));
    assert!(as_user(&reader, &["vault", "machines"]).status.success());
    assert!(as_user(&temp, &["vault", "machines"]).status.success(), "valid until it expires");
    std::thread::sleep(std::time::Duration::from_secs(4));
    fails(as_user(&temp, &["vault", "machines"]), &["unknown, expired or revoked"]);

    let list = vault.admin(admin, &["vault", "user", "list"]);
    eprintln!("{list}");
    let line = |name: &str| list.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in {list}")).to_string();
    assert!(line("auditor").ends_with("active") && line("auditor").contains(&chrono::Utc::now().format("%Y-%m-%d").to_string()));
    assert!(line("temp").ends_with("expired"), "{list}");

    vault.admin(admin, &["vault", "user", "revoke", "auditor"]);
    fails(as_user(&reader, &["vault", "machines"]), &["unknown, expired or revoked"]);
    assert!(vault.admin(admin, &["vault", "user", "list"]).lines().any(|l| l.starts_with("auditor") && l.contains("revoked")));
    vault.admin(admin, &["vault", "user", "remove", "auditor"]);
    assert!(!vault.admin(admin, &["vault", "user", "list"]).contains("auditor"));
    // The vault keeps one working owner.
    fails(vault.admin_run(admin, &["vault", "user", "revoke", "owner"]), &["only owner"]);

    // A machine's token revoked: refused at once; its backups stay; it registers again.
    let m = machine();
    vault.register(admin, &m, "m1");
    let src = m.path("src");
    make_tree(&src);
    let first = m.backup(&src)["recovery_point"].as_str().unwrap().to_string();
    vault.admin(admin, &["vault", "machine", "revoke", "m1"]);
    fails(m.run(&["backup", s(&src)]), &["unknown, expired or revoked"]);
    vault.register(admin, &m, "m1");
    let target = m.path("restore");
    m.ok(&["restore", &first, "--target", s(&target)]);
    assert_same_tree(&src, &restored(&target, &src));
}
