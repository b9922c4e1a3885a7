//! Kill -9 at random moments: the repository always checks, the next run completes, no
//! completed recovery point is lost, and an interrupted backup does not re-read what it stored.

use std::time::Duration;

use crate::common::*;

fn source(env: &Env) -> std::path::PathBuf {
    let src = env.path("src");
    for d in 0..8u64 {
        let dir = src.join(format!("d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..40u64 {
            std::fs::write(dir.join(format!("f{f}")), noise(200_000 + (f as usize) * 1000, d * 100 + f)).unwrap();
        }
        std::fs::write(dir.join("large.bin"), noise(6 << 20, d)).unwrap();
    }
    src
}

#[test]
fn killed_backups_leave_a_consistent_repository_and_resume() {
    let env = Env::new();
    env.init();
    let src = source(&env);
    let s = src.to_str().unwrap();
    let first = env.backup(&src);
    let total = first["bytes_read"].as_u64().unwrap();
    // Change everything so the next backups have real work, then kill them at various moments.
    for d in 0..8u64 {
        std::fs::write(src.join(format!("d{d}/large.bin")), noise(6 << 20, 1000 + d)).unwrap();
        for f in 0..40u64 {
            std::fs::write(src.join(format!("d{d}/f{f}")), noise(200_000, 5000 + d * 100 + f)).unwrap();
        }
    }
    for (i, ms) in [30u64, 120, 250, 400, 700].iter().enumerate() {
        let mut child = spawn_quiet(&env, &["backup", s, "--checkpoint-every", "1"]);
        std::thread::sleep(Duration::from_millis(*ms + (i as u64) * 37));
        let _ = child.kill();
        let _ = child.wait();
        env.ok(&["check"]);
        assert!(!env.json(&["recovery-points"]).as_array().unwrap().is_empty());
    }
    let resumed = env.backup(&src);
    assert!(resumed["bytes_read"].as_u64().unwrap() <= total, "{resumed}");
    env.ok(&["check", "--read-data"]);
    let target = env.path("r");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &restored(&target, &src));
}

#[test]
fn interrupted_backup_does_not_reread_stored_files() {
    let env = Env::new();
    env.init();
    let src = source(&env);
    for d in 0..8u64 {
        std::fs::write(src.join(format!("d{d}/larger.bin")), noise(16 << 20, 300 + d)).unwrap();
    }
    let s = src.to_str().unwrap();
    let mut child = spawn_quiet(&env, &["backup", s, "--checkpoint-every", "1"]);
    // Kill once two index files exist: the uploader writes them one after the other, so the
    // files cache entries of the first checkpoint are committed by then.
    let index = std::path::Path::new(&env.repo).join("index");
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_mins(1) {
        // Count finished index files only (the local store writes `NAME#N` first, then renames).
        let done = std::fs::read_dir(&index)
            .map_or(0, |d| d.filter(|e| e.as_ref().is_ok_and(|e| !e.file_name().to_string_lossy().contains('#'))).count());
        if child.try_wait().unwrap().is_some() || done >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    let finished = child.wait().unwrap().success();
    env.ok(&["check"]);
    let out = env.cmd(&["backup", s, "--json"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let resumed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{stderr}"));
    let resumed = serde_json::json!({"summary": resumed, "stderr": stderr});
    let resumed = &resumed["summary"];
    if !finished {
        let total: u64 = walkdir(&src).iter().filter(|p| p.is_file()).map(|p| std::fs::metadata(p).unwrap().len()).sum();
        assert!(resumed["bytes_read"].as_u64().unwrap() < total, "resumed backup re-read everything: {resumed}\n{stderr}");
        assert!(resumed["files_unchanged"].as_u64().unwrap() > 0, "{resumed}");
    }
    env.ok(&["check", "--read-data"]);
}

#[test]
fn killed_prune_leaves_a_consistent_repository() {
    for ms in [5u64, 20, 60, 150] {
        let env = Env::new();
        env.init();
        let src = env.path("src");
        std::fs::create_dir_all(&src).unwrap();
        for i in 0..3u64 {
            for f in 0..20u64 {
                std::fs::write(src.join(format!("f{f}")), noise(300_000, i * 100 + f)).unwrap();
            }
            env.backup(&src);
        }
        env.ok(&["forget", "--keep-last", "1"]);
        let mut child = spawn_quiet(&env, &["prune"]);
        // Kill it after it has taken its lock, i.e. while it works.
        wait_for_entries(&std::path::Path::new(&env.repo).join("locks"));
        std::thread::sleep(Duration::from_millis(ms));
        let _ = child.kill();
        let _ = child.wait();
        env.ok(&["check", "--read-data"]);
        env.ok(&["prune"]);
        env.ok(&["check", "--read-data"]);
        assert_eq!(env.json(&["recovery-points"]).as_array().unwrap().len(), 1);
        let target = env.path("r");
        env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
        assert_same_tree(&src, &restored(&target, &src));
    }
}

/// Waits (up to 20 s) until `dir` has an entry.
fn wait_for_entries(dir: &std::path::Path) {
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn prune_while_a_backup_runs_loses_nothing() {
    let env = Env::new();
    env.init();
    let src = source(&env);
    let s = src.to_str().unwrap();
    env.backup(&src);
    // Change half the data, back up in the background, and meanwhile forget + prune.
    for d in 0..4u64 {
        std::fs::write(src.join(format!("d{d}/large.bin")), noise(6 << 20, 7000 + d)).unwrap();
    }
    let mut child = env
        .cmd(&["backup", s, "--checkpoint-every", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut prunes = 0;
    while child.try_wait().unwrap().is_none() {
        env.ok(&["forget", "--keep-last", "1"]);
        env.ok(&["prune"]);
        prunes += 1;
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(prunes >= 1);
    // Once nothing runs, a prune sweeps what was deferred; everything checks and restores.
    env.ok(&["prune"]);
    env.ok(&["check", "--read-data"]);
    let target = env.path("r");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &restored(&target, &src));
}

/// Starts ferry in the background with its output discarded (it is about to be killed).
fn spawn_quiet(env: &Env, args: &[&str]) -> std::process::Child {
    env.cmd(args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap()
}
