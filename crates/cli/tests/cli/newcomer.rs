//! What a new user following the README meets (issue #26): commands that end as Unix tools do,
//! errors that say what to do.

use std::process::Stdio;

use crate::common::*;

/// `ferry ls latest | head -1`: the reader goes away; the command ends quietly (no panic, no
/// message), with the status of a process a closed pipe ends.
#[test]
fn a_closed_pipe_ends_a_command_quietly() {
    let (env, src) = Env::with_tree();
    for i in 0..300 {
        std::fs::write(src.join(format!("f{i:03}")), b"x").unwrap();
    }
    env.backup(&src);
    let mut child = env.cmd(&["ls", "latest"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take()); // the reader is gone before the first line is written
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{err}");
    assert_eq!(out.status.code(), Some(141), "{err}");
}

/// Without a terminal, a missing passphrase is named with every way to give it.
#[test]
fn without_a_terminal_the_passphrase_error_names_every_way_to_give_it() {
    let env = Env::new();
    let out = env.cmd(&["init"]).env_remove("FERRY_PASSWORD").stdin(Stdio::null()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for way in ["--password-file FILE", "FERRY_PASSWORD_FILE", "FERRY_PASSWORD"] {
        assert!(err.contains(way), "{way} in: {err}");
    }
    let (env, _) = Env::with_tree();
    let out = env.cmd(&["key", "add"]).stdin(Stdio::null()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    for way in ["--new-password-file FILE", "FERRY_NEW_PASSWORD_FILE", "FERRY_NEW_PASSWORD"] {
        assert!(err.contains(way), "{way} in: {err}");
    }
}

/// `vault machines` in text says how each machine is doing, `vault jobs` keeps its columns
/// under its header.
#[test]
fn vault_listings_read_as_tables() {
    let vault = crate::vault::Vault::start();
    let admin = crate::vault::machine();
    let m = crate::vault::machine();
    vault.register(&admin, &m, "laptop");
    let src = m.path("src");
    make_tree(&src);
    m.backup(&src);

    let text = vault.admin(&admin, &["vault", "machines"]);
    eprintln!("{text}");
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    for column in ["NAME", "LAST BACKUP", "STORED", "PROTECTED", "STATE"] {
        assert!(header.contains(column), "{header}");
    }
    let laptop = lines.next().unwrap();
    assert!(laptop.starts_with("laptop ") && laptop.ends_with(" ok"), "{laptop}");
    assert!(laptop.contains(&chrono::Utc::now().format("%Y-%m-%d").to_string()), "the last backup's time: {laptop}");

    let text = vault.admin(&admin, &["vault", "jobs"]);
    eprintln!("{text}");
    let lines: Vec<&str> = text.lines().collect();
    let at = |line: &str, word: &str| line.find(word).unwrap_or_else(|| panic!("{word} in {line}"));
    let job = lines.iter().find(|l| l.contains("backup")).unwrap();
    assert_eq!(at(lines[0], "machine"), at(job, "laptop"), "the machine column under its header:\n{text}");
    assert_eq!(at(lines[0], "state"), at(job, "completed"), "the state column under its header:\n{text}");
    let files_end = job.len() - 2 - job.split_whitespace().last().unwrap().len();
    assert_eq!(at(lines[0], "files") + "files".len(), files_end, "the files column ends under its header:\n{text}");
}

/// Help teaches: a command's own options come first, the global ones under their own heading,
/// examples at the end; completions and manual pages come from the same definition.
#[test]
fn help_completions_and_manual_pages() {
    let env = Env::new();
    let help = env.ok(&["backup", "--help"]);
    let (own, global) = (help.find("--exclude").unwrap(), help.find("Global options:").expect("a heading for global options"));
    assert!(own < global && help.find("--repo").unwrap() > global, "{help}");
    assert!(help.contains("Examples:\n  ferry backup"), "{help}");

    let bash = env.ok(&["completions", "bash"]);
    assert!(bash.contains("_ferry()") && bash.contains("recovery-points"), "{bash}");
    let zsh = env.ok(&["completions", "zsh"]);
    assert!(zsh.contains("#compdef ferry"), "{zsh}");

    let dir = env.path("man");
    env.ok(&["man", "--out", dir.to_str().unwrap()]);
    let page = std::fs::read_to_string(dir.join("ferry-backup.1")).unwrap();
    assert!(page.contains(".TH ferry-backup 1") && page.contains("exclude"), "{page}");
    assert!(dir.join("ferry-vault-user-revoke.1").exists());
    assert!(env.ok(&["man"]).contains(".TH ferry 1"));
}
