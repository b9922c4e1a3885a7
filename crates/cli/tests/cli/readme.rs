//! The README as a user follows it: every command block of its vault, seeding, device and
//! export-job sections runs, in order, as written, against real vault servers on loopback (the vault's
//! default address, 127.0.0.1:8450), and every `ferry ...` command its prose mentions in those
//! sections exists with the options it names. A README that drifts from the program fails here.
//!
//! Each block is preceded by `<!-- runs on: SITE -->`: `vault` (the vault's host), a machine
//! (`laptop`, `web1`, `elsewhere`), or `scale-out` (the two-server recipe). Every site has its
//! own home folder (so its own Ferry configuration and cache) and keeps its exported variables
//! from one block to the next; all sites share one working folder and one file-system root,
//! as if files and disks were carried between them. What differs from the README's world, and
//! nothing else, is rewritten (see [`REWRITES`]): absolute paths live under the test's folder,
//! the scale-out recipe's database, store and addresses are the test services' and spare
//! loopback addresses, `vault:8450` is 127.0.0.1, a device job's name is the one `device order`
//! printed, and the new passphrase a user types at the prompt comes from `FERRY_PASSWORD_FILE`.
//! The first seed disk is a 12 MiB file system, so that the seed spans onto the second as the
//! README shows. `ferry vault serve` lines run in the background, each waited for until it listens; the
//! servers are stopped when the test ends.
//!
//! Needs PostgreSQL and Azurite for the scale-out block (`bash scripts/test.sh` starts them).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::vault_pg::{azure_store, Database};

const SECTIONS: [&str; 4] = ["### A vault", "### Offline seeding", "### Seed devices", "### Export jobs"];

/// (README text, what it becomes here). Applied in this order, to command blocks only.
const REWRITES: &[(&str, &str)] = &[
    ("postgres://ferry:PASSWORD@db.internal/ferry", "$README_DATABASE"),
    ("az://backups/vault", "$README_STORE"),
    ("10.0.0.1:8450", "127.0.0.2:8450"),
    ("10.0.0.2:8450", "127.0.0.3:8450"),
    ("https://vault:8450", "https://127.0.0.1:8450"),
];

/// Absolute paths of the README's machines: they live under the test's folder (`$ROOT`).
const ROOTED: [&str; 5] = ["/srv/", "/mnt/", "/media/", "/tmp/", "/data"];

/// The name the README gives a device job; replaced by the one `device order` prints.
const DEVICE_JOB_EXAMPLE: &str = "device-1a2b3c4d";

struct Block {
    site: String,
    /// README.md line of the block's opening fence.
    line: usize,
    code: String,
}

fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The lines of the sections [`SECTIONS`] names, with their README line numbers.
fn section_lines(text: &str) -> Vec<(usize, &str)> {
    let mut inside = false;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') && !line.starts_with("# ") {
            inside = SECTIONS.iter().any(|s| line.starts_with(s));
        }
        if inside {
            out.push((i + 1, line));
        }
    }
    out
}

/// The command blocks of the sections; a block without its `runs on` comment fails the test.
fn blocks(lines: &[(usize, &str)]) -> Vec<Block> {
    let mut out = Vec::new();
    let mut site: Option<String> = None;
    let mut open: Option<Block> = None;
    for &(n, line) in lines {
        if let Some(b) = open.as_mut() {
            if line.starts_with("```") {
                out.push(open.take().unwrap());
            } else {
                b.code.push_str(line);
                b.code.push('\n');
            }
        } else if let Some(s) = line.strip_prefix("<!-- runs on: ").and_then(|s| s.strip_suffix(" -->")) {
            site = Some(s.to_string());
        } else if line.starts_with("```") {
            let site = site.take().unwrap_or_else(|| panic!("README.md line {n}: a block without `<!-- runs on: SITE -->` above it"));
            open = Some(Block { site, line: n, code: String::new() });
        }
    }
    out
}

/// Every `ferry ...` in inline code outside the blocks.
fn inline_commands(lines: &[(usize, &str)]) -> Vec<(usize, String)> {
    let mut in_block = false;
    let mut out = Vec::new();
    // Inline code may wrap onto the next line: join the prose first.
    let mut prose = String::new();
    let mut starts = Vec::new();
    for &(n, line) in lines {
        if line.starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if !in_block {
            starts.push((prose.len(), n));
            prose.push_str(line);
            prose.push(' ');
        }
    }
    for (i, span) in prose.split('`').enumerate() {
        if i % 2 == 1 && span.starts_with("ferry ") {
            let offset = prose.find(&format!("`{span}`")).unwrap_or(0);
            let line = starts.iter().rev().find(|(at, _)| *at <= offset).map_or(0, |(_, n)| *n);
            out.push((line, span.split_whitespace().collect::<Vec<_>>().join(" ")));
        }
    }
    out
}

fn rewrite(code: &str) -> String {
    // One command per line: continuation lines joined, comments dropped.
    let mut text = code.replace("\\\n", " ");
    for (from, to) in REWRITES {
        text = text.replace(from, to);
    }
    for path in ROOTED {
        // A path starts a word or a variable's value.
        for before in [' ', '='] {
            text = text.replace(&format!("{before}{path}"), &format!("{before}$ROOT{path}"));
        }
    }
    text = text.replace(DEVICE_JOB_EXAMPLE, "$DEVICE_JOB");
    let mut out = String::new();
    for line in text.lines() {
        let uncommented = line.split(" #").next().unwrap_or(line).trim_end();
        if let Some(args) = uncommented.strip_prefix("ferry vault serve ") {
            // Its `&` dropped: `serve` puts it in the background.
            out.push_str(&format!("serve {}\n", args.trim_end_matches('&').trim_end()));
        } else if uncommented.starts_with("ferry device order ") {
            // What it prints is the name the user types into the next commands.
            out.push_str(&format!("DEVICE_JOB=$({uncommented})\nexport DEVICE_JOB\necho \"$DEVICE_JOB\"\n"));
        } else {
            out.push_str(&format!("{line}\n"));
        }
    }
    out
}

/// What every block's script starts with: the site's variables, and `serve`.
const PRELUDE: &str = r#"set -euo pipefail
cd "$ROOT/desk"
if [ -f "$SITE_DIR/env.sh" ]; then . "$SITE_DIR/env.sh"; fi
serve() {
    local log
    log=$(mktemp "$ROOT/serve-XXXX.log")
    ferry vault serve "$@" >"$log" 2>&1 &
    local pid=$!
    echo "$pid" >>"$ROOT/servers"
    for _ in $(seq 600); do
        if grep -q 'listening on' "$log"; then return 0; fi
        if ! kill -0 "$pid" 2>/dev/null; then echo "ferry vault serve $* exited:" >&2; cat "$log" >&2; return 1; fi
        sleep 0.1
    done
    echo "ferry vault serve $* did not start listening within 60 s:" >&2; cat "$log" >&2; return 1
}
"#;

/// The first seed disk: a 12 MiB file system (tmpfs; the tests run as root), so that the seed
/// spans onto the second disk as the README's commands expect. Unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path) -> SmallDisk {
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", "size=12m", "readme-disk"]).arg(at).output().unwrap();
        assert!(
            out.status.success(),
            "mount a 12 MiB tmpfs at {} (the tests run as root): {}",
            at.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk(at.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Kills the background vault servers when the test ends, whatever happened.
struct Servers(PathBuf);

impl Drop for Servers {
    fn drop(&mut self) {
        for pid in std::fs::read_to_string(&self.0).unwrap_or_default().lines() {
            let _ = Command::new("kill").arg(pid).status();
        }
    }
}

fn make_sources(root: &Path) {
    // The documents are small files; the data is 24 MB that does not compress, three packs.
    for (dir, files, size) in [("sites/laptop/home/Documents", 12, 20_000), ("data", 48, 500_000)] {
        let dir = root.join(dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        for i in 0..files {
            let body = crate::common::noise(size + i * 3_000, i as u64);
            std::fs::write(dir.join(if i % 3 == 0 { format!("sub/f{i}") } else { format!("f{i}") }), body).unwrap();
        }
    }
    for d in ["desk", "srv", "mnt", "media/d1", "media/d2", "media/dev1", "media/e1", "media/e2", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
}

#[test]
fn every_command_of_the_readme_vault_seeding_and_device_sections_runs_as_written() {
    let text = readme();
    let lines = section_lines(&text);
    let blocks = blocks(&lines);
    assert!(blocks.len() >= 10, "found only {} command blocks in the README's vault sections", blocks.len());

    let root_dir = tempfile::tempdir().unwrap();
    let root = root_dir.path();
    make_sources(root);
    std::fs::write(root.join("passphrase"), "the passphrase a user types at the prompt\n").unwrap();
    let _servers = Servers(root.join("servers"));
    let _disk = SmallDisk::mount(&root.join("media/d1"));
    let database = Database::create();
    let store = azure_store();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_ferry")).parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());

    for block in &blocks {
        let site_dir = root.join("sites").join(&block.site);
        std::fs::create_dir_all(site_dir.join("home")).unwrap();
        let script = format!("{PRELUDE}{}export -p >\"$SITE_DIR/env.sh\"\n", rewrite(&block.code));
        let mut cmd = Command::new("bash");
        cmd.arg("-c").arg(&script).env_clear();
        for (k, v) in std::env::vars() {
            if k.starts_with("AZURE_") || k.starts_with("AWS_") || k == "LANG" {
                cmd.env(k, v);
            }
        }
        let out = cmd
            .env("PATH", &path)
            .env("HOME", site_dir.join("home"))
            .env("ROOT", root)
            .env("SITE_DIR", &site_dir)
            .env("FERRY_PASSWORD_FILE", root.join("passphrase"))
            .env("README_DATABASE", &database.url)
            .env("README_STORE", &store)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "README.md line {} (runs on: {}) failed ({}):\n{}\nstdout:\n{stdout}\nstderr:\n{}",
            block.line,
            block.site,
            out.status,
            block.code,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // What the blocks did, seen from outside: the restores hold the laptop's documents.
    let restored = crate::common::walkdir(&root.join("tmp/r"));
    assert!(restored.iter().any(|p| p.ends_with("Documents/f1")), "restore left {restored:?}");
    // ... and the restore from the export disks holds the laptop's latest backup, the data.
    let from_disks = crate::common::walkdir(&root.join("tmp/restored"));
    assert!(from_disks.iter().any(|p| p.ends_with("data/f1")), "restore from the disks left {from_disks:?}");
}

/// The subcommands `ferry WORDS` has, from its help.
fn help(words: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry")).args(words).arg("--help").output().unwrap();
    assert!(out.status.success(), "ferry {} --help: {}", words.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_command_the_readme_vault_sections_mention_exists_with_its_options() {
    let text = readme();
    let commands = inline_commands(&section_lines(&text));
    assert!(commands.len() >= 10, "found only {} inline commands: {commands:?}", commands.len());
    for (line, command) in commands {
        let words: Vec<&str> = command.split_whitespace().skip(1).collect();
        // The subcommand path: words the help lists as commands.
        let mut path: Vec<&str> = Vec::new();
        let mut page = help(&[]);
        for w in &words {
            let listed = page.lines().any(|l| l.split_whitespace().next() == Some(w));
            if w.starts_with('-') || !page.contains("Commands:") || !listed {
                break;
            }
            path.push(w);
            page = help(&path);
        }
        assert!(!path.is_empty(), "README.md line {line}: `{command}` names no ferry command");
        for option in words.iter().filter(|w| w.starts_with("--")) {
            let option = option.split('=').next().unwrap_or(option);
            let named = page
                .match_indices(option)
                .any(|(at, _)| page[at + option.len()..].chars().next().is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '-')));
            assert!(named, "README.md line {line}: `{command}`: `ferry {}` has no option {option}", path.join(" "));
        }
    }
}
