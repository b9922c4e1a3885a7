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
        let mut child = env.cmd(&["backup", s, "--checkpoint-every", "1"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(*ms + (i as u64) * 37));
        let _ = child.kill();
        let _ = child.wait();
        env.ok(&["check"]);
        assert!(env.json(&["recovery-points"]).as_array().unwrap().len() >= 1);
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
    let s = src.to_str().unwrap();
    // Slow the backup down enough to interrupt it after checkpoints: throttle through many small checkpoints.
    let mut child = env.cmd(&["backup", s, "--checkpoint-every", "1"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    // Wait until at least one index file (a checkpoint) exists, then kill.
    let index = std::path::Path::new(&env.repo).join("index");
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if index.exists() && std::fs::read_dir(&index).unwrap().count() > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let finished = child.wait().unwrap().success();
    env.ok(&["check"]);
    let resumed = env.backup(&src);
    if !finished {
        let total: u64 = walkdir(&src).iter().filter(|p| p.is_file()).map(|p| std::fs::metadata(p).unwrap().len()).sum();
        assert!(resumed["bytes_read"].as_u64().unwrap() < total, "resumed backup re-read everything: {resumed}");
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
        let mut child = env.cmd(&["prune"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
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
