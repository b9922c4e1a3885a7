//! The vault's dashboard (issue #6) through HTTP with a user's token (`Authorization: Bearer`):
//! what each page shows after real backups and an import job, and what it refuses. The login
//! form and the session cookie are driven in a browser by the browser tests.

use crate::common::*;
use crate::seeding::{s, Site};
use crate::vault::{machine, registration};

fn page(site: &Site, token: &str, path: &str) -> String {
    let c = ferry_store::VaultClient::new(&site.vault.url, &site.vault.fingerprint(), token).unwrap();
    c.get_text(path).unwrap()
}

#[test]
fn pages_show_machines_recovery_points_jobs_and_import_jobs_to_users_only() {
    // Import jobs must ship within an hour here: the dashboard warns within three days.
    let site = Site::start(&[("FERRY_VAULT_SAMPLE_S", "1"), ("FERRY_VAULT_SHIP_WITHIN_S", "3600")]);
    let m = machine();
    site.vault.register(&site.admin, &m, "web1");
    // A backup of a path that does not exist makes a partial recovery point, its error reported.
    let missing = m.path("no-such-folder");
    assert_eq!(m.run(&["backup", s(&missing)]).status.code(), Some(3));
    let (_tree, src) = Env::with_tree();
    let rp = m.json(&["backup", s(&src), "--tag", "nightly"])["recovery_point"].as_str().unwrap().to_string();
    let tree: u64 = walkdir(&src).iter().map(|p| p.symlink_metadata().unwrap()).filter(std::fs::Metadata::is_file).map(|m| m.len()).sum();
    let owner = std::fs::read_to_string(site.vault.data("owner.token")).unwrap().trim().to_string();
    let reader = site.vault.admin(&site.admin, &["vault", "user", "add", "auditor", "--role", "reader"]).trim().to_string();
    let machine_token = registration(&m)["token"].as_str().unwrap().to_string();
    let c = ferry_store::VaultClient::new(&site.vault.url, &site.vault.fingerprint(), &owner).unwrap();
    c.post_json("/v1/import-jobs", &serde_json::json!({"name": "ship-1", "machine": "web1"})).unwrap();

    // The overview: the machine, its last backup and sizes once sampled, and the vault's chart.
    let start = std::time::Instant::now();
    let protected = format!("<td>{:.1} MiB</td>", tree as f64 / f64::from(1 << 20));
    let overview = loop {
        let p = page(&site, &reader, "/");
        if p.contains("<svg") && p.contains(&protected) {
            break p;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(20), "no sizes or chart after 20 s:\n{p}");
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    assert!(overview.contains("href=\"/machines/web1\""), "{overview}");
    assert!(overview.contains("<td class=\"ok\">ok</td>"), "{overview}");
    assert!(overview.contains("import job ship-1 must ship by"), "the deadline is an alert: {overview}");
    assert!(overview.contains("auditor (reader)"), "{overview}");
    // The machine's page: its recovery point with size and file count, the failed job's error.
    let mp = page(&site, &reader, "/machines/web1");
    assert!(mp.contains(&rp[..16]), "{mp}");
    assert!(mp.contains("Recovery points (2)"), "{mp}");
    assert!(mp.contains("no-such-folder"), "the partial backup's error names the path: {mp}");
    assert!(mp.contains(&protected), "the recovery point's size: {mp}");
    assert!(mp.contains("<td>nightly</td>"), "its tags: {mp}");
    // Import jobs, with their state and the deadline counting down.
    let ip = page(&site, &reader, "/imports");
    assert!(ip.contains("ship-1") && ip.contains("created") && ip.contains("min left"), "{ip}");
    assert!(ip.contains("class=\"warn\""), "a deadline within three days is highlighted: {ip}");

    // Refused: no token, a machine's token, an unknown token all get the login page only.
    for token in ["", machine_token.as_str(), "not-a-token"] {
        let p = page(&site, token, "/");
        assert!(p.contains("name=\"token\"") && !p.contains("web1"), "token {token:?} saw:\n{p}");
        assert!(!page(&site, token, "/imports").contains("ship-1"));
    }
    // A reader's pages offer no action but logging out.
    for p in [&overview, &mp, &ip] {
        let forms = p.matches("<form").count();
        assert_eq!(forms, 1, "one form (log out) on a reader's page:\n{p}");
        assert!(p.contains("action=\"/logout\""));
        for secret in [&owner, &reader, &machine_token] {
            assert!(!p.contains(secret.as_str()), "a token on a page");
        }
    }
    let css = page(&site, "", "/static/ferry.css");
    assert!(css.contains("svg.chart"));
}

/// Visits `paths` in chromium (see tests/browser/visit.cjs) after logging in with `token`
/// (`-`: not logged in); `None` when the browser is not installed (scripts/test.sh installs it).
pub(crate) fn browse(site: &Site, token: &str, paths: &[&str]) -> Option<serde_json::Value> {
    let Ok(module) = std::env::var("FERRY_TEST_BROWSER") else {
        eprintln!("skipped: FERRY_TEST_BROWSER not set (run scripts/test.sh)");
        return None;
    };
    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/visit.cjs");
    let out = std::process::Command::new("node")
        .arg(script)
        .args([site.vault.url.as_str(), token, s(&shots)])
        .args(paths)
        .env("FERRY_TEST_BROWSER", module)
        .output()
        .unwrap();
    assert!(out.status.success(), "browser: {}", String::from_utf8_lossy(&out.stderr));
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

pub(crate) fn texts(v: &serde_json::Value) -> Vec<String> {
    v["pages"].as_array().unwrap().iter().map(|p| p["text"].as_str().unwrap().to_string()).collect()
}

#[test]
fn in_a_browser_a_user_logs_in_and_follows_machines_recovery_points_and_an_import_job() {
    if std::env::var("FERRY_TEST_BROWSER").is_err() {
        eprintln!("skipped: FERRY_TEST_BROWSER not set (run scripts/test.sh)");
        return;
    }
    let site = Site::start(&[("FERRY_VAULT_SAMPLE_S", "1")]);
    let owner = std::fs::read_to_string(site.vault.data("owner.token")).unwrap().trim().to_string();
    let reader = site.vault.admin(&site.admin, &["vault", "user", "add", "auditor", "--role", "reader"]).trim().to_string();

    // Before any machine: the overview says so. Without login, every page is the login page.
    let v = browse(&site, &owner, &["/=empty-vault"]).unwrap();
    assert!(texts(&v)[0].contains("No machine is registered yet"), "{v}");
    let v = browse(&site, "-", &["/", "/imports", "/machines/m1"]).unwrap();
    for p in v["pages"].as_array().unwrap() {
        assert_eq!(p["final"], "/login", "{p}");
        assert!(!p["text"].as_str().unwrap().contains("m1"), "{p}");
    }
    let v = browse(&site, "not-a-token", &["/login=login-refused"]).unwrap();
    assert_eq!(v["login_error"], "This token is not valid for this vault.", "{v}");

    // A machine seeds offline (the job travels while the browser watches) after a first backup.
    let (m, src, staging, b) = crate::seeding::offline_machine(&site, "seed-web");
    let rp = b["recovery_point"].as_str().unwrap().to_string();
    let disk = m.path("disk1");
    m.ok(&crate::seeding::strs(&crate::seeding::diskprep_args(&staging, &[&disk], 1 << 30)));
    m.ok(&["import-job", "ship", "seed-web", "--carrier", "DHL", "--tracking", "TRK-WEB-1"]);

    let v = browse(&site, &reader, &["/=overview", "/imports=imports-shipping"]).unwrap();
    assert_eq!(v["after_login"], "/", "{v}");
    let cookie = &v["cookies"][0];
    assert_eq!(
        (cookie["httpOnly"].as_bool(), cookie["secure"].as_bool(), cookie["sameSite"].as_str()),
        (Some(true), Some(true), Some("Strict"))
    );
    let t = texts(&v);
    assert!(t[0].contains("m1") && t[0].contains("auditor (reader)"), "{}", t[0]);
    assert!(t[1].contains("seed-web") && t[1].contains("shipping") && t[1].contains("DHL TRK-WEB-1"), "{}", t[1]);

    // Imported and ingested at the vault's site: the page shows the job's new state, the
    // machine its seeded recovery point, and its chart once sampled twice.
    let o = site.import_run("seed-web", &[&disk]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    std::thread::sleep(std::time::Duration::from_millis(2500));
    m.backup(&src);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let v = browse(&site, &reader, &["/imports=imports-ingested", "/machines/m1=machine", "/=overview-chart"]).unwrap();
    let t = texts(&v);
    assert!(t[0].contains("seed-web") && t[0].contains("ingested"), "{}", t[0]);
    assert!(t[1].contains(&rp[..16]) && t[1].contains("Recovery points (2)"), "{}", t[1]);
    assert!(v["pages"][1]["charts"].as_u64() == Some(1) && v["pages"][2]["charts"].as_u64() == Some(1), "{v}");

    // A user logs in with a name and password too, once the owner set one; a wrong one is refused.
    let pw_file = site.admin.path("auditor.pw");
    std::fs::write(&pw_file, "correct horse battery staple\n").unwrap();
    site.vault.admin(&site.admin, &["vault", "user", "password", "auditor", "--password-file", s(&pw_file)]);
    let v2 = browse(&site, "pw:auditor:correct horse battery staple", &["/machines/m1"]).unwrap();
    assert_eq!(v2["after_login"], "/", "{v2}");
    assert!(texts(&v2)[0].contains(&rp[..16]), "{v2}");
    let v2 = browse(&site, "pw:auditor:wrong horse battery staple", &["/login=login-wrong-password"]).unwrap();
    assert_eq!(v2["login_error"], "This user name and password do not match.", "{v2}");

    // A reader's pages offer nothing that changes the vault (only logging out); no page shows
    // the token.
    for p in v["pages"].as_array().unwrap() {
        let forms: Vec<&str> = p["forms"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
        assert_eq!(forms, vec!["/logout"], "{p}");
        assert_eq!(p["token_in_page"], false, "{p}");
    }
}

/// Every role, logged in through the browser, gets the pages the API's role rules let it read
/// (docs/protocol.md): an import operator, whom the API refuses every machine's data, sees no
/// machine on the overview and is refused a machine's page; every user reads import jobs.
#[test]
fn in_a_browser_each_role_sees_only_what_the_api_lets_it_read() {
    if std::env::var("FERRY_TEST_BROWSER").is_err() {
        eprintln!("skipped: FERRY_TEST_BROWSER not set (run scripts/test.sh)");
        return;
    }
    let site = Site::start(&[]);
    let m = machine();
    site.vault.register(&site.admin, &m, "web1");
    let pages = ["/", "/machines/web1", "/machines/no-such-machine", "/imports"];
    // (role, status of each page, sees web1 on the overview)
    let matrix = [
        ("owner", [200, 200, 404, 200], true),
        ("contributor", [200, 200, 404, 200], true),
        ("backup-operator", [200, 200, 404, 200], true),
        ("reader", [200, 200, 404, 200], true),
        ("import-operator", [200, 403, 403, 200], false),
    ];
    for (role, statuses, sees) in matrix {
        let token = site.vault.admin(&site.admin, &["vault", "user", "add", &format!("u-{role}"), "--role", role]).trim().to_string();
        let v = browse(&site, &token, &pages).unwrap();
        assert_eq!(v["after_login"], "/", "{role}: {v}");
        let got: Vec<u64> = v["pages"].as_array().unwrap().iter().map(|p| p["status"].as_u64().unwrap()).collect();
        assert_eq!(got, statuses, "{role}: the statuses of {pages:?}");
        let t = texts(&v);
        assert_eq!(t[0].contains("web1"), sees, "{role} on the overview:\n{}", t[0]);
        assert!(t[0].contains(&format!("u-{role} ({role})")), "{role} is logged in:\n{}", t[0]);
        if !sees {
            assert!(!t[1].contains("Recovery points") && t[1].contains("may not see"), "{role} on web1's page:\n{}", t[1]);
            assert_eq!(t[1], t[2], "a refused page does not tell whether the machine exists");
        }
    }
}

/// A listener that answers every HTTP request 200 and keeps the bodies.
fn webhook_sink() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = got.clone();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let mut r = BufReader::new(conn);
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            let _ = r.read_exact(&mut body);
            keep.lock().unwrap().push(String::from_utf8_lossy(&body).into_owned());
            let _ = r.get_mut().write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, got)
}

/// A minimal SMTP server that accepts every message and keeps it.
fn smtp_sink() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("smtp://{}", l.local_addr().unwrap());
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = got.clone();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let mut w = conn.try_clone().unwrap();
            let mut r = BufReader::new(conn);
            let _ = w.write_all(b"220 sink ESMTP\r\n");
            let (mut data, mut message) = (false, String::new());
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if data {
                    if line == ".\r\n" {
                        data = false;
                        keep.lock().unwrap().push(std::mem::take(&mut message));
                        let _ = w.write_all(b"250 queued\r\n");
                    } else {
                        message.push_str(&line);
                    }
                    continue;
                }
                let cmd = line.to_ascii_uppercase();
                let answer: &[u8] = if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
                    b"250 sink\r\n"
                } else if cmd.starts_with("DATA") {
                    data = true;
                    b"354 go on\r\n"
                } else if cmd.starts_with("QUIT") {
                    let _ = w.write_all(b"221 bye\r\n");
                    break;
                } else {
                    b"250 ok\r\n"
                };
                let _ = w.write_all(answer);
            }
        }
    });
    (url, got)
}

#[test]
fn alerts_go_out_once_by_webhook_and_by_email() {
    let (hook, posts) = webhook_sink();
    let (smtp, mails) = smtp_sink();
    let args = [
        "--alert-webhook",
        &hook,
        "--smtp",
        &smtp,
        "--alert-email",
        "ops@example.com",
        "--alert-from",
        "vault@example.com",
        "--storage-alert",
        "1KB",
    ];
    let vault = crate::vault::Vault::start_with(&args, &[("FERRY_VAULT_ALERT_S", "1"), ("FERRY_VAULT_SAMPLE_S", "1")]);
    let (admin, m) = (machine(), machine());
    vault.register(&admin, &m, "web2");
    // A partial backup (its path is missing) and more than 1 KB stored: two alerts.
    let (_tree, src) = Env::with_tree();
    m.backup(&src);
    assert_eq!(m.run(&["backup", s(&m.path("gone"))]).status.code(), Some(3));
    let start = std::time::Instant::now();
    let all = |v: &std::sync::Mutex<Vec<String>>| v.lock().unwrap().join("\n");
    while !(all(&posts).contains("web2: last backup completed with errors") && all(&posts).contains("over the alert threshold")) {
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "alerts not posted after 30 s: {}", all(&posts));
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    while !all(&mails).contains("completed with errors") {
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "no alert e-mail after 30 s: {}", all(&mails));
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let mail = all(&mails);
    assert!(
        mail.contains("To: ops@example.com") && mail.contains("From: vault@example.com") && mail.contains("Subject: Ferry vault"),
        "{mail}"
    );
    let post: serde_json::Value = serde_json::from_str(&posts.lock().unwrap()[0]).unwrap();
    assert!(post["alerts"][0]["key"].is_string() && post["alerts"][0]["level"].is_string(), "{post}");
    // Sent once: later rounds add nothing for the same occurrences.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(all(&posts).matches("web2: last backup completed with errors").count(), 1, "{}", all(&posts));
    assert_eq!(all(&mails).matches("web2: last backup completed with errors").count(), 1);
}
