//! Progress on a terminal: the real binary under a pseudo-terminal (`script` from util-linux),
//! as a user at a shell sees it, and none without one.

use std::path::Path;
use std::process::Command;

use crate::common::*;

/// `ferry ARGS` run by `script` on a pseudo-terminal; returns what the terminal showed.
fn on_terminal(env: &Env, args: &[&str]) -> String {
    let ferry = env.cmd(args);
    let line = std::iter::once(ferry.get_program()).chain(ferry.get_args()).map(|a| shell_quote(a.to_str().unwrap())).collect::<Vec<_>>();
    let mut script = Command::new("script");
    script.args(["-qec", &line.join(" "), "/dev/null"]);
    for (k, v) in ferry.get_envs() {
        match v {
            Some(v) => script.env(k, v),
            None => script.env_remove(k),
        };
    }
    let out = script.output().expect("run `script` (util-linux)");
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "ferry {args:?} on a terminal: {}\n{shown}", out.status);
    shown
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The largest `N` of the frames' "N/TOTAL files".
fn most_files_shown(shown: &str, total: usize) -> usize {
    let suffix = format!("/{total} files");
    shown
        .match_indices(&suffix)
        .filter_map(|(at, _)| {
            let digits: String = shown[..at].chars().rev().take_while(char::is_ascii_digit).collect();
            digits.chars().rev().collect::<String>().parse().ok()
        })
        .max()
        .unwrap_or(0)
}

fn many_files(root: &Path, n: usize) {
    for i in 0..n {
        let dir = root.join(format!("d{}", i % 40));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("f{i}")), noise(3000 + i % 500, i as u64)).unwrap();
    }
}

#[test]
fn backup_and_restore_show_bytes_and_files_on_a_terminal_and_nothing_without_one() {
    const FILES: usize = 5000;
    let env = Env::new();
    env.init();
    let src = env.path("src");
    many_files(&src, FILES);

    let shown = on_terminal(&env, &["backup", src.to_str().unwrap()]);
    assert!(shown.contains("backup ["), "the backup's bar: {shown}");

    let target = env.path("restored");
    let shown = on_terminal(&env, &["restore", "latest", "--target", target.to_str().unwrap()]);
    assert!(shown.contains("restore ["), "the restore's bar: {shown}");
    let files = most_files_shown(&shown, FILES);
    assert!(files > 0, "the restore's file counter moved (it stayed at 0 before issue #26): {shown}");
    assert_same_tree(&src, &restored(&target, &src));

    // Without a terminal: the summary only, no bar.
    let o = env.run(&["restore", "latest", "--target", env.path("again").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && !err.contains("files ETA") && !err.contains('\u{1b}'), "{err}");
}
