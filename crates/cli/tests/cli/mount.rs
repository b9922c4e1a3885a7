//! `ferry mount`: the real binary serving a real FUSE mount (the tests run as root, with
//! /dev/fuse), checked with ordinary file-system calls against the source it was backed up from.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::vault::{machine, Vault};

/// A running `ferry mount`; unmounted (and its process ended) when dropped, even when the test
/// failed.
pub(crate) struct Mounted {
    child: Child,
    mp: PathBuf,
    log: PathBuf,
}

fn is_mounted(mp: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    mounts.lines().any(|l| l.split(' ').nth(1) == Some(mp.to_str().unwrap()))
}

fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Mounted {
    /// Runs `ferry mount MP ARGS...` in `env` and waits until the mount serves.
    pub(crate) fn start(env: &Env, mp: &Path, args: &[&str]) -> Mounted {
        // (A dead mount there fails every look: the mount command's to deal with.)
        if std::fs::symlink_metadata(mp).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
            std::fs::create_dir_all(mp).unwrap();
        }
        let log = PathBuf::from(format!("{}.log", mp.display()));
        let mut cmd = env.cmd(&[&["mount", mp.to_str().unwrap()], args].concat());
        let child = cmd.stdout(Stdio::null()).stderr(std::fs::File::create(&log).unwrap()).spawn().unwrap();
        let mut m = Mounted { child, mp: mp.to_path_buf(), log };
        let deadline = Instant::now() + Duration::from_mins(1);
        // (Not the mount point's content: a dead mount there answers from the kernel's cache
        // for a second.)
        while !m.stderr().lines().any(|l| l.starts_with("mounted ")) {
            if let Some(status) = m.child.try_wait().unwrap() {
                panic!("ferry mount ended ({status}): {}", m.stderr());
            }
            assert!(Instant::now() < deadline, "not mounted after 60 s: {}", m.stderr());
            std::thread::sleep(Duration::from_millis(50));
        }
        m
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        assert!(Command::new("kill").args([sig, &self.child.id().to_string()]).status().unwrap().success());
    }

    /// Waits for the process to end by itself.
    fn wait(&mut self, secs: u64) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "ferry mount still running after {secs} s: {}", self.stderr());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Where `src` is in the newest recovery point.
    pub(crate) fn latest(&self, src: &Path) -> PathBuf {
        self.mp.join("latest").join(src.strip_prefix("/").unwrap())
    }
}

impl Drop for Mounted {
    /// Ends the process (SIGTERM, then SIGKILL), and unmounts what it leaves: its mount if it
    /// was still running, or a dead one (but not another process's live mount at the place).
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("ferry mount's stderr:\n{}", self.stderr());
        }
        let running = self.child.try_wait().ok().flatten().is_none();
        if running {
            let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let dead = std::fs::read_dir(&self.mp).err().and_then(|e| e.raw_os_error()) == Some(107);
        if is_mounted(&self.mp) && (running || dead) {
            let _ = Command::new("umount").arg("-l").arg(&self.mp).status();
        }
    }
}

/// make_tree, plus a FIFO and a folder too large to list in one FUSE reply.
fn odd_tree(env: &Env) -> PathBuf {
    let src = env.path("src");
    make_tree(&src);
    assert!(Command::new("mkfifo").arg(src.join("fifo")).status().unwrap().success());
    std::fs::create_dir(src.join("many")).unwrap();
    for i in 0..1500 {
        std::fs::write(src.join(format!("many/file-with-a-longish-name-{i:04}")), i.to_string()).unwrap();
    }
    src
}

#[test]
fn a_mount_shows_the_files_as_they_were_backed_up() {
    let env = Env::new();
    env.init();
    let src = odd_tree(&env);
    let first = env.json(&["backup", src.to_str().unwrap(), "--tag", "nightly"]);
    let m = Mounted::start(&env, &env.path("mp"), &[]);
    let root = m.latest(&src);
    assert_same_tree(&src, &root);
    // Owner, FIFO, hard links (one inode), extended attributes, the sparse file's zeros.
    for rel in ["docs/a.txt", "fifo", "link", "big.bin", "docs"] {
        let (a, b) = (std::fs::symlink_metadata(src.join(rel)).unwrap(), std::fs::symlink_metadata(root.join(rel)).unwrap());
        assert_eq!((a.uid(), a.gid(), a.mode()), (b.uid(), b.gid(), b.mode()), "{rel}");
    }
    assert!(std::fs::symlink_metadata(root.join("fifo")).unwrap().file_type().is_fifo());
    let ino = |p: &str| std::fs::metadata(root.join(p)).unwrap().ino();
    assert_eq!(ino("hardlink.txt"), ino("docs/a.txt"), "hard links share their inode number");
    assert_ne!(ino("hardlink.txt"), ino("script.sh"));
    if let Ok(Some(v)) = xattr::get(src.join("docs/a.txt"), "user.ferry") {
        assert_eq!(xattr::get(root.join("docs/a.txt"), "user.ferry").unwrap(), Some(v));
        let names: Vec<_> = xattr::list(root.join("docs/a.txt")).unwrap().collect();
        assert!(names.iter().any(|n| n == "user.ferry"), "{names:?}");
    }
    let mut sparse = std::fs::File::open(root.join("sparse.img")).unwrap();
    let mut head = vec![1u8; 4096];
    sparse.read_exact(&mut head).unwrap();
    assert!(head.iter().all(|&b| b == 0));
    // Writing is refused.
    assert!(std::fs::OpenOptions::new().write(true).open(root.join("docs/a.txt")).is_err());
    assert!(std::fs::write(root.join("new.txt"), b"x").is_err());

    // The layout: latest, recovery-points/, hosts/<host>/, tags/<tag>/.
    let names = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        v.sort();
        v
    };
    let id = first["recovery_point"].as_str().unwrap();
    let points = names(&m.mp.join("recovery-points"));
    assert_eq!(points.len(), 1);
    assert!(points[0].ends_with(&format!("Z_{}", &id[..8])), "{points:?}");
    assert_eq!(std::fs::read_link(m.mp.join("latest")).unwrap(), Path::new("recovery-points").join(&points[0]));
    let hosts = names(&m.mp.join("hosts"));
    assert_eq!(hosts.len(), 1, "{hosts:?}");
    let via_host = m.mp.join("hosts").join(&hosts[0]).join(&points[0]);
    assert_eq!(std::fs::read_link(&via_host).unwrap(), Path::new("../../recovery-points").join(&points[0]));
    assert_eq!(
        std::fs::read(m.mp.join("tags/nightly").join(&points[0]).join(src.strip_prefix("/").unwrap()).join("docs/a.txt")).unwrap(),
        b"hello\n"
    );

    // A backup made while mounted shows up at the next listing of recovery-points/.
    std::fs::write(src.join("docs/new.txt"), b"made while mounted").unwrap();
    env.backup(&src);
    assert_eq!(names(&m.mp.join("recovery-points")).len(), 2);
    wait_for("latest to follow", 5, || std::fs::read(m.latest(&src).join("docs/new.txt")).is_ok());
    assert_eq!(std::fs::read(m.latest(&src).join("docs/new.txt")).unwrap(), b"made while mounted");
}

#[test]
fn sigterm_unmounts_and_a_killed_mount_does_not_block_the_next() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    make_tree(&src);
    env.backup(&src);
    let mp = env.path("mp");
    let mut m = Mounted::start(&env, &mp, &[]);
    m.signal("-TERM");
    assert!(m.wait(20).success(), "{}", m.stderr());
    assert!(!is_mounted(&mp), "unmounted on SIGTERM");
    drop(m);

    // SIGINT with a file open in the mount: detached at once, and the process ends once the
    // file is closed (the file stays readable until then).
    let mut m = Mounted::start(&env, &mp, &[]);
    let mut open = std::fs::File::open(m.latest(&src).join("docs/a.txt")).unwrap();
    m.signal("-INT");
    wait_for("the mount to be detached", 20, || !is_mounted(&mp));
    let mut text = String::new();
    open.read_to_string(&mut text).unwrap();
    assert_eq!(text, "hello\n");
    drop(open);
    assert!(m.wait(20).success(), "{}", m.stderr());
    drop(m);

    // kill -9: the mount stays, dead ("Transport endpoint is not connected").
    let mut m = Mounted::start(&env, &mp, &[]);
    m.signal("-KILL");
    m.wait(20);
    let e = std::fs::read_dir(&mp).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(107), "a dead FUSE mount: {e}");
    // The next mount detaches it, says so, and serves.
    let killed = m;
    let mut m = Mounted::start(&env, &mp, &[]);
    drop(killed);
    assert!(m.stderr().contains("detached"), "{}", m.stderr());
    assert_same_tree(&src, &m.latest(&src));
    // `umount` (as fusermount -u does) ends the process cleanly too.
    assert!(Command::new("umount").arg(&mp).status().unwrap().success());
    assert!(m.wait(20).success(), "{}", m.stderr());
}

#[test]
fn a_corrupt_chunk_fails_only_its_files_read_and_names_it() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("victim.bin"), noise(3 << 20, 5)).unwrap();
    env.backup(&src);
    std::fs::write(src.join("safe.txt"), b"unaffected").unwrap();
    env.backup(&src);
    let pack = crate::damage::flip_a_byte_of_the_biggest_pack(&env);
    let m = Mounted::start(&env, &env.path("mp"), &[]);
    let e = std::fs::read(m.latest(&src).join("victim.bin")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(5), "EIO: {e}");
    assert_eq!(std::fs::read(m.latest(&src).join("safe.txt")).unwrap(), b"unaffected");
    let log = m.stderr();
    let pack_name = pack.file_name().unwrap().to_str().unwrap();
    assert!(log.contains("victim.bin") && log.contains(pack_name), "the file and the pack are named: {log}");
    // Still serving.
    assert_eq!(std::fs::read(m.latest(&src).join("safe.txt")).unwrap(), b"unaffected");
    // `fusermount3 -u` (or Debian's older `fusermount -u`) unmounts, and the process ends well.
    let mut m = m;
    let helper = ["fusermount3", "fusermount"].into_iter().find(|h| Command::new(h).arg("-V").output().is_ok());
    if let Some(h) = helper {
        assert!(Command::new(h).arg("-u").arg(&m.mp).status().unwrap().success());
        assert!(m.wait(20).success(), "{}", m.stderr());
    }
}

#[test]
fn bad_input_is_one_line_that_says_what_to_do_and_mounts_nothing() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    make_tree(&src);
    env.backup(&src);
    let one_line = |args: &[&str], expect: &str| {
        let o = env.run(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    };
    let missing = env.path("no-such-folder");
    one_line(&["mount", missing.to_str().unwrap()], "does not exist");
    assert!(!missing.exists());
    let full = env.path("full");
    std::fs::create_dir_all(&full).unwrap();
    std::fs::write(full.join("x"), b"x").unwrap();
    one_line(&["mount", full.to_str().unwrap()], "not empty");
    let mp = env.path("mp");
    std::fs::create_dir_all(&mp).unwrap();
    one_line(&["mount", mp.to_str().unwrap(), "--recovery-point", "ffffffff"], "ffffffff");
    one_line(&["mount", mp.to_str().unwrap(), "--cache-size", "lots"], "--cache-size");
    for dir in [&full, &mp] {
        assert!(!is_mounted(dir));
    }
    assert_eq!(std::fs::read_dir(&mp).unwrap().count(), 0, "nothing changed");
    // A chosen recovery point is all the mount shows.
    std::fs::write(src.join("later.txt"), b"x").unwrap();
    let second = env.backup(&src);
    let m = Mounted::start(&env, &mp, &["--recovery-point", second["recovery_point"].as_str().unwrap()]);
    assert_eq!(std::fs::read_dir(m.mp.join("recovery-points")).unwrap().count(), 1);
    assert!(m.latest(&src).join("later.txt").exists());
}

#[test]
fn a_mount_through_the_vault_own_machine_and_another() {
    let vault = Vault::start();
    let admin = machine();
    let m1 = machine();
    vault.register(&admin, &m1, "m1");
    let src = m1.path("src");
    make_tree(&src);
    m1.backup(&src);
    // The machine itself, with its registration.
    {
        let m = Mounted::start(&m1, &m1.path("mp"), &[]);
        assert_same_tree(&src, &m.latest(&src));
    }
    // Another machine: a reader's token, the vault's certificate, m1's passphrase.
    let token = vault.admin(&admin, &["vault", "user", "add", "restorer", "--role", "reader"]);
    let third = machine();
    let token_file = third.path("token");
    std::fs::write(&token_file, token.trim()).unwrap();
    let (cert, tf) = (vault.data("vault-cert.pem"), token_file.to_str().unwrap().to_string());
    let remote = ["--machine", "m1", "--vault", &vault.url, "--vault-cert", &cert, "--token-file", &tf];
    let m = Mounted::start(&third, &third.path("mp"), &remote);
    assert_same_tree(&src, &m.latest(&src));
    drop(m);
    // A machine the vault does not have: one line, nothing mounted.
    let mp = third.path("mp2");
    std::fs::create_dir_all(&mp).unwrap();
    let mut args = vec!["mount", mp.to_str().unwrap()];
    args.extend(["--machine", "nosuch", "--vault", &vault.url, "--vault-cert", &cert, "--token-file", &tf]);
    let o = third.run(&args);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("nosuch") && err.trim().lines().count() == 1, "{err}");
    assert!(!is_mounted(&mp));
}
