use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const PASSPHRASE: &str = "integration test passphrase";

/// A scratch area with a repository location, a cache and a passphrase.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub repo: String,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo").to_string_lossy().into_owned();
        Env { dir, repo }
    }

    pub fn with_repo(repo: String) -> Env {
        Env { dir: tempfile::tempdir().unwrap(), repo }
    }

    /// A new repository (initialised) and a source tree from [`make_tree`] at `src`.
    pub fn with_tree() -> (Env, PathBuf) {
        let env = Env::new();
        env.init();
        let src = env.path("src");
        make_tree(&src);
        (env, src)
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
        c.args(args)
            .env("FERRY_REPO", &self.repo)
            .env("FERRY_PASSWORD", PASSPHRASE)
            .env("FERRY_CACHE_DIR", self.path("cache"))
            .env("FERRY_CONFIG_DIR", self.path("config"))
            .env_remove("FERRY_PASSWORD_FILE")
            .env_remove("FERRY_FAULT_INJECT");
        c
    }

    /// Runs and returns the output (any exit code).
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs, expects exit code `code`, returns stdout.
    pub fn expect(&self, code: i32, args: &[&str]) -> String {
        let o = self.run(args);
        assert_eq!(
            o.status.code(),
            Some(code),
            "ferry {args:?}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        self.expect(0, args)
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    pub fn init(&self) {
        self.ok(&["init"]);
    }

    /// Backs up and returns the JSON summary.
    pub fn backup(&self, path: &Path) -> serde_json::Value {
        self.json(&["backup", path.to_str().unwrap()])
    }
}

/// Restored location of `src` under `target` (restored by full path).
pub fn restored(target: &Path, src: &Path) -> PathBuf {
    target.join(src.strip_prefix("/").unwrap())
}

/// Compares two trees: contents, kinds, modes, mtimes, symlink targets, hard-link structure.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let list = |root: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = walkdir(root).into_iter().map(|p| p.strip_prefix(root).unwrap().to_path_buf()).collect();
        v.sort();
        v
    };
    let (la, lb) = (list(a), list(b));
    assert_eq!(la, lb, "different file lists");
    for rel in la {
        let (pa, pb) = (a.join(&rel), b.join(&rel));
        let (ma, mb) = (std::fs::symlink_metadata(&pa).unwrap(), std::fs::symlink_metadata(&pb).unwrap());
        assert_eq!(ma.file_type(), mb.file_type(), "{}", rel.display());
        assert_eq!(ma.mode(), mb.mode(), "mode of {}", rel.display());
        if !ma.is_dir() {
            assert_eq!((ma.mtime(), ma.mtime_nsec()), (mb.mtime(), mb.mtime_nsec()), "mtime of {}", rel.display());
        }
        if ma.is_file() {
            assert_eq!(ma.len(), mb.len(), "size of {}", rel.display());
            assert!(std::fs::read(&pa).unwrap() == std::fs::read(&pb).unwrap(), "content of {}", rel.display());
            assert_eq!(ma.nlink(), mb.nlink(), "links of {}", rel.display());
        }
        if ma.file_type().is_symlink() {
            assert_eq!(std::fs::read_link(&pa).unwrap(), std::fs::read_link(&pb).unwrap());
        }
    }
}

pub fn walkdir(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

/// Deterministic pseudo-random bytes: the workspace's shared test data.
pub use ferry_testkit::bytes as noise;

/// A source tree with many kinds of entries.
pub fn make_tree(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(root.join("docs/deep/deeper")).unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::write(root.join("docs/a.txt"), b"hello\n").unwrap();
    std::fs::write(root.join("docs/deep/deeper/b.txt"), b"deep\n".repeat(1000)).unwrap();
    std::fs::write(root.join("big.bin"), noise(5 << 20, 1)).unwrap();
    std::fs::write(root.join("empty.txt"), b"").unwrap();
    std::fs::write(root.join("script.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(root.join("script.sh"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("docs/a.txt", root.join("link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", root.join("dangling")).unwrap();
    std::fs::hard_link(root.join("docs/a.txt"), root.join("hardlink.txt")).unwrap();
    // A sparse file: 8 MiB with one byte in the middle.
    let f = std::fs::File::create(root.join("sparse.img")).unwrap();
    f.set_len(8 << 20).unwrap();
    std::os::unix::fs::FileExt::write_at(&f, b"x", 4 << 20).unwrap();
    let _ = xattr::set(root.join("docs/a.txt"), "user.ferry", b"value");
    filetime::set_file_mtime(root.join("docs/a.txt"), filetime::FileTime::from_unix_time(1_600_000_000, 123_456_789)).unwrap();
}
