use crate::common::*;

fn packs(repo: &str) -> Vec<std::path::PathBuf> {
    walkdir(&std::path::Path::new(repo).join("data")).into_iter().filter(|p| p.is_file()).collect()
}

#[test]
fn wrong_passphrase_is_a_clear_error() {
    let env = Env::new();
    env.init();
    let o = env.cmd(&["recovery-points"]).env("FERRY_PASSWORD", "not the right passphrase").output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("wrong passphrase"), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn newer_format_version_is_refused_clearly() {
    let env = Env::new();
    env.init();
    let cfg = std::path::Path::new(&env.repo).join("config");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    v["version"] = 7.into();
    std::fs::write(&cfg, serde_json::to_vec(&v).unwrap()).unwrap();
    let o = env.run(&["recovery-points"]);
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("newer") && e.contains("upgrade"), "{e}");
}

#[test]
fn damaged_pack_is_named_with_affected_files_and_the_rest_restores() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("victim.bin"), noise(3 << 20, 5)).unwrap();
    env.backup(&src);
    // A second backup puts other files into other packs.
    std::fs::write(src.join("safe.txt"), b"unaffected").unwrap();
    env.backup(&src);
    env.ok(&["check", "--read-data"]);
    // Damage the biggest pack (victim.bin's data).
    let victim_pack = flip_a_byte_of_the_biggest_pack(&env);
    // Structure check passes (sizes match); reading data finds it.
    let o = env.run(&["check", "--read-data"]);
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8_lossy(&o.stdout);
    let name = victim_pack.file_name().unwrap().to_str().unwrap();
    assert!(out.contains(name), "pack not named: {out}");
    assert!(out.contains("victim.bin"), "file not named: {out}");
    assert!(!out.contains("safe.txt"), "{out}");
    // Restore: the unaffected file comes back, the damaged one is reported, exit 3.
    let target = env.path("r");
    let o = env.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("victim.bin"));
    assert_eq!(std::fs::read(restored(&target, &src).join("safe.txt")).unwrap(), b"unaffected");
}

/// Flips byte 100 (inside its first stored unit) of the repository's biggest pack; returns it.
pub(crate) fn flip_a_byte_of_the_biggest_pack(env: &Env) -> std::path::PathBuf {
    let mut ps = packs(&env.repo);
    ps.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    let victim = ps.last().unwrap().clone();
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&victim, &bytes).unwrap();
    victim
}

/// A small file (one chunk: restored in one go) whose data is damaged is reported once, and is
/// not left behind half made.
#[test]
fn a_damaged_small_file_is_reported_once() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/victim.txt"), noise(100 << 10, 6)).unwrap();
    env.backup(&src);
    std::fs::write(src.join("safe.txt"), b"unaffected").unwrap();
    env.backup(&src);
    flip_a_byte_of_the_biggest_pack(&env);
    let target = env.path("r");
    let o = env.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().filter(|l| l.contains("victim.txt")).count(), 1, "{err}");
    assert!(!restored(&target, &src).join("sub/victim.txt").exists());
    assert_eq!(std::fs::read(restored(&target, &src).join("safe.txt")).unwrap(), b"unaffected");
}

#[test]
fn missing_pack_and_truncated_index_are_found() {
    let (env, src) = Env::with_tree();
    env.backup(&src);
    let mut ps = packs(&env.repo);
    ps.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    let gone = ps.last().unwrap().clone();
    std::fs::remove_file(&gone).unwrap();
    let o = env.run(&["check"]);
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("missing from the store") && out.contains(gone.file_name().unwrap().to_str().unwrap()), "{out}");
    assert!(out.contains("big.bin"), "{out}");

    let env = Env::new();
    env.init();
    env.backup(&src);
    let index = walkdir(&std::path::Path::new(&env.repo).join("index"))[0].clone();
    let b = std::fs::read(&index).unwrap();
    std::fs::write(&index, &b[..b.len() / 2]).unwrap();
    let fresh = Env::with_repo(env.repo.clone()); // a new cache must rebuild from the damaged index
    let o = fresh.run(&["check"]);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("index file"), "{out}");
}

#[test]
fn damaged_recovery_point_fails_check() {
    let (env, src) = Env::with_tree();
    env.backup(&src);
    let rp = walkdir(&std::path::Path::new(&env.repo).join("recovery-points"))[0].clone();
    let mut b = std::fs::read(&rp).unwrap();
    let n = b.len();
    b[n - 5] ^= 0x55;
    std::fs::write(&rp, &b).unwrap();
    let o = env.run(&["check"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("recovery point"), "{}", String::from_utf8_lossy(&o.stdout));
}
