use crate::common::*;

fn repo_bytes(repo: &str) -> u64 {
    walkdir(std::path::Path::new(repo)).iter().filter(|p| p.is_file()).map(|p| std::fs::metadata(p).unwrap().len()).sum()
}

#[test]
fn forget_and_prune_reclaim_space_and_keep_the_rest() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..4u64 {
        std::fs::write(src.join("data.bin"), noise(2 << 20, 10 + i)).unwrap();
        std::fs::write(src.join(format!("keep{i}.txt")), format!("file {i}")).unwrap();
        env.backup(&src);
    }
    let before = repo_bytes(&env.repo);
    let v = env.json(&["forget", "--keep-last", "1", "--dry-run"]);
    assert_eq!(v["removed"].as_array().unwrap().len(), 3);
    assert_eq!(env.json(&["recovery-points"]).as_array().unwrap().len(), 4);
    env.ok(&["forget", "--keep-last", "1"]);
    assert_eq!(env.json(&["recovery-points"]).as_array().unwrap().len(), 1);
    let r = env.json(&["prune"]);
    assert!(r["packs_deleted"].as_u64().unwrap() >= 1, "{r}");
    let after = repo_bytes(&env.repo);
    assert!(after < before - (5 << 20), "before {before}, after {after}");
    env.ok(&["check", "--read-data"]);
    let target = env.path("r");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &restored(&target, &src));
    // A backup after prune still deduplicates correctly and the repository checks.
    env.backup(&src);
    env.ok(&["check", "--read-data"]);
}

#[test]
fn prune_defers_sweep_while_a_backup_holds_a_lock() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.bin"), noise(1 << 20, 1)).unwrap();
    env.backup(&src);
    std::fs::write(src.join("a.bin"), noise(1 << 20, 2)).unwrap();
    env.backup(&src);
    env.ok(&["forget", "--keep-last", "1"]);
    // A lock of a backup that started now (as a running backup would hold).
    let lock = serde_json::json!({"magic": "ferry-lock", "version": 1, "exclusive": false,
        "started": chrono_now(), "refreshed": unix_now(), "host": "other", "pid": 1, "purpose": "backup"});
    let locks = std::path::Path::new(&env.repo).join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    std::fs::write(locks.join("00ff"), serde_json::to_vec(&lock).unwrap()).unwrap();
    let r = env.json(&["prune"]);
    assert_eq!(r["packs_deleted"], 0, "{r}");
    assert_eq!(r["mark_deferred"], true, "{r}");
    env.ok(&["check", "--read-data"]);
    // The backup finishes (its lock goes): the next prune sweeps.
    std::fs::remove_file(locks.join("00ff")).unwrap();
    let r = env.json(&["prune"]);
    assert!(r["packs_deleted"].as_u64().unwrap() >= 1, "{r}");
    env.ok(&["check", "--read-data"]);
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn chrono_now() -> String {
    // RFC 3339 in UTC without pulling chrono into the tests.
    let out = std::process::Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn bytes_added_is_what_the_repository_grew_by() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.bin"), noise(3 << 20, 3)).unwrap();
    for round in 0..2u64 {
        let before = repo_bytes(&env.repo);
        let v = env.backup(&src);
        let after = repo_bytes(&env.repo);
        assert_eq!(v["bytes_added"].as_u64().unwrap(), after - before, "round {round}: {v}");
        std::fs::write(src.join("b.txt"), format!("round {round}")).unwrap();
    }
}

#[test]
fn prune_keeps_the_used_members_of_a_bundle_and_drops_the_rest() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    // 60 small files: stored together in one bundle.
    for i in 0..60u64 {
        std::fs::write(src.join(format!("f{i:02}.txt")), format!("small file {i}\n").repeat(50 + i as usize)).unwrap();
    }
    env.backup(&src);
    // Most of them go; the next recovery point keeps ten.
    for i in 10..60u64 {
        std::fs::remove_file(src.join(format!("f{i:02}.txt"))).unwrap();
    }
    env.backup(&src);
    env.ok(&["forget", "--keep-last", "1"]);
    let r = env.json(&["prune"]);
    assert!(r["packs_repacked"].as_u64().unwrap() >= 1, "the bundle's pack is mostly unused: {r}");
    env.ok(&["check", "--read-data"]);
    let target = env.path("r");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &restored(&target, &src));
    // The new bundle holds only the used members: nothing is left to repack or delete.
    let again = env.json(&["prune", "--dry-run"]);
    assert_eq!((again["packs_repacked"].as_u64(), again["packs_unused"].as_u64()), (Some(0), Some(0)), "{again}");
}
