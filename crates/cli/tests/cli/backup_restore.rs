use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::process::Command;

use crate::common::*;

/// Makes a hard link at `link` to `original` itself (a symlink is not followed).
fn hard_link_no_follow(original: &std::path::Path, link: &std::path::Path) {
    rustix::fs::linkat(rustix::fs::CWD, original, rustix::fs::CWD, link, rustix::fs::AtFlags::empty()).unwrap();
}

#[test]
fn round_trip_is_exact() {
    let (env, src) = Env::with_tree();
    // Hard links between FIFOs and between symlinks (one of them in another folder).
    rustix::fs::mknodat(rustix::fs::CWD, src.join("pipe"), rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o640), 0).unwrap();
    hard_link_no_follow(&src.join("pipe"), &src.join("pipe-again"));
    hard_link_no_follow(&src.join("link"), &src.join("docs/link-again"));
    let s = env.backup(&src);
    assert_eq!(s["files_new"], 7, "{s}");
    assert!(s["recovery_point"].as_str().unwrap().len() == 64);
    let target = env.path("restore");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let out = restored(&target, &src);
    assert_same_tree(&src, &out);
    // Sparse stays sparse.
    let m = std::fs::metadata(out.join("sparse.img")).unwrap();
    assert!(m.blocks() * 512 < 1 << 20, "sparse file restored with {} blocks", m.blocks());
    // Extended attribute (when the file system supports user xattrs).
    if xattr::get(src.join("docs/a.txt"), "user.ferry").ok().flatten().is_some() {
        assert_eq!(xattr::get(out.join("docs/a.txt"), "user.ferry").unwrap().as_deref(), Some(&b"value"[..]));
    }
    // Hard links stay linked: between files, FIFOs and symlinks alike.
    let ino = |p: &str| std::fs::symlink_metadata(out.join(p)).unwrap().ino();
    assert_eq!(ino("hardlink.txt"), ino("docs/a.txt"));
    assert_eq!(ino("pipe-again"), ino("pipe"), "hard-linked FIFOs");
    assert_eq!(ino("docs/link-again"), ino("link"), "hard-linked symlinks");
    for p in ["pipe", "link"] {
        assert_eq!(std::fs::symlink_metadata(out.join(p)).unwrap().nlink(), 2, "{p}");
    }
    assert!(std::fs::symlink_metadata(out.join("pipe")).unwrap().file_type().is_fifo());
    assert_eq!(std::fs::read_link(out.join("docs/link-again")).unwrap(), std::path::Path::new("docs/a.txt"));
}

/// Small files are created with their recorded permission bits and finished through one
/// descriptor, skipping the chmod, chown and truncate that would change nothing. Bits the umask
/// strips (a file mode 0666 under umask 022), set-user-ID, no permissions at all, an empty file,
/// and a file ending in zero blocks (shorter than its size after its last write) must all still
/// come back exactly; restoring over them too.
#[test]
fn modes_sizes_and_owners_of_small_files_are_exact() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut tail_zeros = b"data before the zeros\n".repeat(300);
    tail_zeros.resize(tail_zeros.len() + 3 * 4096, 0);
    let files: [(&str, Vec<u8>, u32); 7] = [
        ("rw-everyone", b"a".to_vec(), 0o666),
        ("setuid", b"#!/bin/sh\n".to_vec(), 0o4755),
        ("nothing", b"locked".to_vec(), 0o000),
        ("group", b"group data".to_vec(), 0o640),
        ("empty-open", Vec::new(), 0o777),
        ("tail-zeros", tail_zeros, 0o644),
        ("sticky", b"s".to_vec(), 0o1644),
    ];
    for (name, data, mode) in &files {
        std::fs::write(src.join(name), data).unwrap();
        std::fs::set_permissions(src.join(name), std::fs::Permissions::from_mode(*mode)).unwrap();
    }
    env.backup(&src);
    let target = env.path("restore");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let out = restored(&target, &src);
    let check = |when: &str| {
        for (name, data, mode) in &files {
            let m = std::fs::symlink_metadata(out.join(name)).unwrap();
            assert_eq!(m.mode() & 0o7777, *mode, "{when}: mode of {name}");
            assert_eq!(m.len(), data.len() as u64, "{when}: size of {name}");
            let s = std::fs::symlink_metadata(src.join(name)).unwrap();
            assert_eq!((m.uid(), m.gid()), (s.uid(), s.gid()), "{when}: owner of {name}");
            assert_eq!(m.mtime(), s.mtime(), "{when}: mtime of {name}");
        }
        // Content (0o000 is readable by root only; the test may not be root).
        let body = std::fs::read(out.join("tail-zeros")).unwrap();
        assert_eq!(body, files[5].1, "{when}: content of tail-zeros");
    };
    check("fresh restore");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap(), "--overwrite", "always"]);
    check("restore over it");
}

#[test]
fn unchanged_files_are_not_read_again_and_changes_are_found() {
    let (env, src) = Env::with_tree();
    env.backup(&src);
    let second = env.backup(&src);
    assert_eq!(second["bytes_read"], 0, "{second}");
    assert_eq!(second["files_unchanged"], 7);
    assert!(second["bytes_added"].as_u64().unwrap() < 4096, "{second}");
    // A file not read still has its extended attributes recorded (read by path, not from an
    // open descriptor as for a file read).
    if xattr::get(src.join("docs/a.txt"), "user.ferry").ok().flatten().is_some() {
        let target = env.path("unchanged");
        env.ok(&["restore", "latest", "--target", target.to_str().unwrap(), "--include", "a.txt"]);
        let out = restored(&target, &src);
        assert_eq!(xattr::get(out.join("docs/a.txt"), "user.ferry").unwrap().as_deref(), Some(&b"value"[..]));
    }
    std::fs::write(src.join("docs/new.txt"), b"new file").unwrap();
    std::fs::write(src.join("big.bin"), noise(5 << 20, 2)).unwrap();
    let third = env.backup(&src);
    assert_eq!(third["files_new"], 1, "{third}");
    assert_eq!(third["files_changed"], 1, "{third}");
    assert_eq!(third["bytes_read"], (5 << 20) + 8);
    let points = env.json(&["recovery-points"]);
    assert_eq!(points.as_array().unwrap().len(), 3);
    for field in ["id", "time", "host", "paths", "tags", "parent", "summary"] {
        assert!(points[0].get(field).is_some(), "missing {field}");
    }
    assert_eq!(points[2]["parent"], points[1]["id"]);
    let first = points[0]["id"].as_str().unwrap();
    let last = points[2]["id"].as_str().unwrap();
    let diff = env.ok(&["diff", &first[..8], last]);
    assert!(diff.contains("+  ") && diff.contains("docs/new.txt"), "{diff}");
    assert!(diff.contains("M  ") && diff.contains("big.bin"), "{diff}");
    let ls = env.ok(&["ls", "latest"]);
    assert!(ls.contains("/docs/deep/deeper/b.txt"), "{ls}");
    let alias = env.ok(&["snapshots"]);
    assert!(alias.contains("3 recovery point"), "{alias}");
}

#[test]
fn a_file_named_alone_shares_the_files_cache_without_displacing_its_folder() {
    let (env, src) = Env::with_tree();
    let big = src.join("big.bin");
    env.backup(&src);
    // The file alone, unchanged: found in its folder's files cache record.
    let alone = env.backup(&big);
    assert_eq!((alone["bytes_read"].as_u64(), alone["files_unchanged"].as_u64()), (Some(0), Some(1)), "{alone}");
    // Changed and backed up alone: read, and merged into its folder's record...
    std::fs::write(&big, noise(3 << 20, 9)).unwrap();
    let changed = env.backup(&big);
    assert_eq!(changed["bytes_read"], 3 << 20, "{changed}");
    // ...so the whole folder's next backup reads nothing: neither the file (its new entry) nor
    // the others (their entries were kept).
    let whole = env.backup(&src);
    assert_eq!((whole["bytes_read"].as_u64(), whole["files_unchanged"].as_u64()), (Some(0), Some(7)), "{whole}");
    // A file gone from the folder and one added: only the new one is read, then nothing.
    std::fs::remove_file(src.join("script.sh")).unwrap();
    std::fs::write(src.join("docs/b.txt"), b"another").unwrap();
    let after = env.backup(&src);
    assert_eq!((after["bytes_read"].as_u64(), after["files_new"].as_u64()), (Some(7), Some(1)), "{after}");
    assert_eq!(env.backup(&src)["bytes_read"], 0);
}

#[test]
fn excludes_tags_and_include_restore() {
    let (env, src) = Env::with_tree();
    std::fs::write(src.join("docs/skip.tmp"), b"x").unwrap();
    let exfile = env.path("excludes");
    std::fs::write(&exfile, "# comment\nempty\n").unwrap();
    env.ok(&["backup", src.to_str().unwrap(), "--exclude", "*.tmp", "--exclude-file", exfile.to_str().unwrap(), "--tag", "nightly"]);
    let ls = env.ok(&["ls", "latest"]);
    assert!(!ls.contains("skip.tmp") && !ls.contains("/empty\n"), "{ls}");
    let pts = env.json(&["recovery-points", "--tag", "nightly"]);
    assert_eq!(pts[0]["tags"][0], "nightly");
    let target = env.path("r");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap(), "--include", "deeper"]);
    let out = restored(&target, &src);
    assert!(out.join("docs/deep/deeper/b.txt").exists());
    assert!(!out.join("big.bin").exists());
    assert!(!out.join("docs/a.txt").exists());
}

#[test]
fn unreadable_files_make_a_partial_recovery_point() {
    let (env, src) = Env::with_tree();
    // /proc/self/mem cannot be read from offset 0, even by root.
    let o = env.run(&["backup", src.to_str().unwrap(), "/proc/self/mem", env.path("missing").to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let errors = v["errors"].as_array().unwrap();
    let paths: Vec<&str> = errors.iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert!(paths.iter().any(|p| p.ends_with("/mem")), "{v}");
    assert!(paths.iter().any(|p| p.ends_with("/missing")), "{v}");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("missing"), "{stderr}");
    // The good files are in the recovery point.
    let target = env.path("r");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &restored(&target, &src));
}

#[test]
fn restore_never_writes_through_a_symlink_in_the_target() {
    let (env, src) = Env::with_tree();
    env.backup(&src);
    // The target already holds a symlink where a restored file will go, pointing outside.
    let target = env.path("r");
    let out = restored(&target, &src);
    std::fs::create_dir_all(out.join("docs")).unwrap();
    let victim = env.path("victim.txt");
    std::fs::write(&victim, b"must not change").unwrap();
    std::os::unix::fs::symlink(&victim, out.join("docs/a.txt")).unwrap();
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap(), "--overwrite", "always"]);
    assert_eq!(std::fs::read(&victim).unwrap(), b"must not change");
    assert_eq!(std::fs::read(out.join("docs/a.txt")).unwrap(), b"hello\n");
}

#[test]
fn restore_is_restartable_and_respects_overwrite() {
    let (env, src) = Env::with_tree();
    env.backup(&src);
    let target = env.path("r");
    let t = target.to_str().unwrap();
    env.ok(&["restore", "latest", "--target", t]);
    let out = restored(&target, &src);
    // A second run skips everything already restored.
    let v = env.json(&["restore", "latest", "--target", t]);
    assert_eq!(v["result"]["files"], 0, "{v}");
    // A damaged restored file is repaired by if-changed (size differs), kept by never.
    std::fs::write(out.join("big.bin"), b"truncated").unwrap();
    env.ok(&["restore", "latest", "--target", t, "--overwrite", "never"]);
    assert_eq!(std::fs::read(out.join("big.bin")).unwrap(), b"truncated");
    env.ok(&["restore", "latest", "--target", t]);
    assert_same_tree(&src, &out);
}

#[test]
fn usage_errors_exit_2_and_missing_repo_is_clear() {
    let env = Env::new();
    assert_eq!(env.run(&["backup"]).status.code(), Some(2));
    assert_eq!(env.run(&["restore", "latest"]).status.code(), Some(2));
    let o = env.run(&["recovery-points"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("ferry init"), "{}", String::from_utf8_lossy(&o.stderr));
    let short = env.cmd(&["init"]).env("FERRY_PASSWORD", "short").output().unwrap();
    assert_eq!(short.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&short.stderr).contains("16 characters"));
    env.init();
    let again = env.run(&["init"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

#[test]
fn a_new_cache_uses_the_parent_recovery_point() {
    let (env, src) = Env::with_tree();
    env.backup(&src);
    // Another machine's view of the same repository: an empty cache.
    let out = env.cmd(&["backup", src.to_str().unwrap(), "--json"]).env("FERRY_CACHE_DIR", env.path("other-cache")).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["bytes_read"], 0, "{v}");
    assert_eq!(v["files_unchanged"], 7, "{v}");
}

#[test]
fn owners_are_restored_when_root() {
    if rustix_is_root() {
        let (env, src) = Env::with_tree();
        std::os::unix::fs::lchown(src.join("docs/a.txt"), Some(1234), Some(4321)).unwrap();
        std::os::unix::fs::lchown(src.join("link"), Some(55), Some(66)).unwrap();
        env.backup(&src);
        let target = env.path("r");
        env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
        let out = restored(&target, &src);
        let m = std::fs::metadata(out.join("docs/a.txt")).unwrap();
        assert_eq!((m.uid(), m.gid()), (1234, 4321));
        let l = std::fs::symlink_metadata(out.join("link")).unwrap();
        assert_eq!((l.uid(), l.gid()), (55, 66));
    } else {
        eprintln!("skipped: owners are restored only when running as root");
    }
}

fn rustix_is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[test]
fn read_data_subset_checks_part_of_the_packs() {
    let (env, src) = Env::with_tree();
    env.backup(&src);
    let v = env.json(&["check", "--read-data-subset", "50%"]);
    let read = v["packs_read"].as_u64().unwrap();
    let total = v["packs"].as_u64().unwrap();
    assert!(read >= 1 && read <= total, "{v}");
    assert_eq!(env.run(&["check", "--read-data-subset", "150"]).status.code(), Some(1));
}

/// `--one-file-system` stays on the file system of each given path: a mount point below it is
/// recorded as an empty folder. Uses `/dev` with its `/dev/shm` mount, which every Linux
/// machine this runs on has (checked first).
#[test]
fn one_file_system_does_not_cross_mount_points() {
    let dev = std::fs::metadata("/dev").map(|m| m.dev());
    let shm = std::fs::metadata("/dev/shm").map(|m| m.dev());
    match (dev, shm) {
        (Ok(d), Ok(s)) if d != s => {}
        _ => panic!("this test needs /dev/shm mounted on a file system of its own below /dev (tmpfs)"),
    }
    let env = Env::new();
    env.init();
    let marker_dir = std::path::PathBuf::from(format!("/dev/shm/ferry-ofs-test-{}", std::process::id()));
    std::fs::create_dir_all(&marker_dir).unwrap();
    std::fs::write(marker_dir.join("marker"), b"on tmpfs").unwrap();
    let marker = marker_dir.join("marker");
    let ls = |rp: &str, path: &str| -> Vec<String> {
        env.json(&["ls", rp, path]).as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap().to_string()).collect()
    };
    env.ok(&["backup", "/dev", "--one-file-system"]);
    let listed = ls("latest", "/dev");
    assert!(listed.iter().any(|p| p == "/dev/null"), "/dev itself was backed up: {listed:?}");
    assert!(listed.iter().any(|p| p == "/dev/shm"), "the mount point is recorded: {listed:?}");
    assert!(!listed.iter().any(|p| p.starts_with("/dev/shm/")), "nothing below the mount point: {listed:?}");
    // A given path on another file system is backed up, with what is on it.
    let v = env.json(&["backup", marker_dir.to_str().unwrap(), "--one-file-system"]);
    let rp = v["recovery_point"].as_str().unwrap().to_string();
    assert!(ls(&rp, marker_dir.to_str().unwrap()).iter().any(|p| p == marker.to_str().unwrap()));
    std::fs::remove_dir_all(&marker_dir).unwrap();
}

/// A small tmpfs mounted for one test; unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(at: &std::path::Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(at).unwrap();
        let o = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", at.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success(), "this test mounts a small tmpfs and needs root: {}", String::from_utf8_lossy(&o.stderr));
        SmallDisk(at.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// Small files (written by the decoding threads) and a large one (its blocks written by the
/// writer threads, directly where tmpfs allows it): either way one error stops the restore.
#[test]
fn a_full_target_disk_stops_the_restore_with_one_clear_error() {
    let env = Env::new();
    env.init();
    for (name, files, size) in [("small-files", 4, 2 << 20), ("large-file", 1, 40 << 20)] {
        let src = env.path(name);
        std::fs::create_dir_all(&src).unwrap();
        for i in 0..files {
            std::fs::write(src.join(format!("big{i}.bin")), noise(size, i)).unwrap();
        }
        env.backup(&src);
        let target = env.path(&format!("small-{name}"));
        let _disk = SmallDisk::mount(&target, "3m");
        let o = env.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains("free space on the target"), "{name}: {err}");
        assert_eq!(err.matches("No space left").count(), 1, "{name}: one error, not one per chunk: {err}");
    }
}

/// A walk holds one open descriptor per level of the tree, however deep: a tree 150 folders
/// deep backs up and restores with at most 256 open files (`prlimit`), with a file at every
/// tenth level. (Holding each folder's listing open while descending as well would need more
/// than 300.)
#[test]
fn a_deep_tree_round_trips_within_a_small_open_file_limit() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    let mut dir = src.clone();
    for level in 0..150 {
        dir = dir.join("d");
        std::fs::create_dir_all(&dir).unwrap();
        if level % 10 == 0 {
            std::fs::write(dir.join(format!("f{level}")), format!("level {level}\n").repeat(level + 1)).unwrap();
        }
    }
    let limited = |args: &[&str]| {
        let c = env.cmd(args);
        let mut p = Command::new("prlimit");
        p.args(["--nofile=256:256", "--"]).arg(c.get_program()).args(c.get_args());
        for (k, v) in c.get_envs() {
            match v {
                Some(v) => p.env(k, v),
                None => p.env_remove(k),
            };
        }
        let o = p.output().unwrap();
        assert!(o.status.success(), "ferry {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    limited(&["backup", src.to_str().unwrap()]);
    let target = env.path("restore");
    limited(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &restored(&target, &src));
}

/// `--sparse`: `always` (the default) makes holes of every all-zero block, zeros the source had
/// written included; `never` writes every byte (files fully allocated); `auto` makes holes only
/// in the files that had holes when they were backed up. Checked by the blocks each restored
/// file has, for a file with holes, one of written zeros large enough to be written directly
/// (several chunks), a small one of zeros (restored in one go) and a preallocated one.
#[test]
fn sparse_modes_choose_which_zeros_become_holes() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let holey = std::fs::File::create(src.join("holey.img")).unwrap();
    holey.set_len(8 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&holey, &noise(64 << 10, 3), 4 << 20).unwrap();
    let mut zeros = noise(1 << 20, 4);
    zeros.resize(35 << 20, 0);
    zeros.extend(noise(1 << 20, 5));
    std::fs::write(src.join("zeros.bin"), &zeros).unwrap();
    std::fs::write(src.join("small-zeros"), vec![0u8; 64 << 10]).unwrap();
    let pre = std::fs::File::create(src.join("prealloc.db")).unwrap();
    rustix::fs::fallocate(&pre, rustix::fs::FallocateFlags::empty(), 0, 4 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&pre, b"header", 0).unwrap();
    drop((holey, pre));

    let allocated = |p: &std::path::Path| std::fs::metadata(p).unwrap().blocks() * 512;
    let names = ["holey.img", "zeros.bin", "small-zeros", "prealloc.db"];
    for n in names {
        let len = std::fs::metadata(src.join(n)).unwrap().len();
        let sparse_source = n == "holey.img";
        assert_eq!(allocated(&src.join(n)) < len, sparse_source, "the source's {n} (this test needs a file system with holes)");
    }
    env.backup(&src);
    // (mode, which files come back with holes)
    for (mode, holes) in [
        (None, &["holey.img", "zeros.bin", "small-zeros", "prealloc.db"][..]),
        (Some("always"), &["holey.img", "zeros.bin", "small-zeros", "prealloc.db"][..]),
        (Some("never"), &[][..]),
        (Some("auto"), &["holey.img"][..]),
    ] {
        let target = env.path(&format!("restore-{}", mode.unwrap_or("default")));
        let mut args = vec!["restore", "latest", "--target", target.to_str().unwrap()];
        args.extend(mode.iter().flat_map(|m| ["--sparse", m]));
        env.ok(&args);
        let out = restored(&target, &src);
        assert_same_tree(&src, &out);
        for n in names {
            let (got, len) = (allocated(&out.join(n)), std::fs::metadata(out.join(n)).unwrap().len());
            if holes.contains(&n) {
                assert!(got < len / 4, "--sparse {mode:?}: {n} has holes: {got} bytes allocated of {len}");
            } else {
                assert!(got >= len, "--sparse {mode:?}: {n} is fully allocated: {got} bytes allocated of {len}");
            }
        }
    }
    assert_eq!(env.run(&["restore", "latest", "--target", "/tmp/x", "--sparse", "sometimes"]).status.code(), Some(2));
}
