use crate::common::*;

#[test]
fn several_passphrases() {
    let env = Env::new();
    env.init();
    let second = "second passphrase for the repo";
    env.cmd(&["key", "add"]).env("FERRY_NEW_PASSWORD", second).output().unwrap();
    let keys = env.json(&["key", "list"]);
    assert_eq!(keys.as_array().unwrap().len(), 2);
    // Both open the repository.
    let o = env.cmd(&["recovery-points"]).env("FERRY_PASSWORD", second).output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    // The key in use cannot be removed; the other can.
    let current = keys.as_array().unwrap().iter().find(|k| k["current"] == true).unwrap()["id"].as_str().unwrap().to_string();
    let other = keys.as_array().unwrap().iter().find(|k| k["current"] == false).unwrap()["id"].as_str().unwrap().to_string();
    assert_eq!(env.run(&["key", "remove", &current[..12]]).status.code(), Some(1));
    env.ok(&["key", "remove", &other[..12]]);
    let o = env.cmd(&["recovery-points"]).env("FERRY_PASSWORD", second).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    // passwd replaces the current one.
    let third = "third passphrase, long enough";
    let o = env.cmd(&["key", "passwd"]).env("FERRY_NEW_PASSWORD", third).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(env.run(&["recovery-points"]).status.code(), Some(1));
    let o = env.cmd(&["recovery-points"]).env("FERRY_PASSWORD", third).output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    // Passphrases never appear in key files.
    for p in walkdir(&std::path::Path::new(&env.repo).join("keys")) {
        let text = std::fs::read_to_string(p).unwrap();
        assert!(!text.contains(third) && !text.contains(PASSPHRASE));
    }
}

#[test]
fn password_file_first_line() {
    let env = Env::new();
    let f = env.path("pw");
    std::fs::write(&f, format!("{PASSPHRASE}\nignored second line\n")).unwrap();
    let o = env.cmd(&["init", "--password-file", f.to_str().unwrap()]).env_remove("FERRY_PASSWORD").output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    env.ok(&["recovery-points"]);
}
