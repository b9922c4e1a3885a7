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
    let rp = m.backup(&src)["recovery_point"].as_str().unwrap().to_string();
    let tree: u64 = walkdir(&src).iter().map(|p| p.symlink_metadata().unwrap()).filter(|m| m.is_file()).map(|m| m.len()).sum();
    let owner = std::fs::read_to_string(site.vault.data("owner.token")).unwrap().trim().to_string();
    let reader = site.vault.admin(&site.admin, &["vault", "user", "add", "auditor", "--role", "reader"]).trim().to_string();
    let machine_token = registration(&m)["token"].as_str().unwrap().to_string();
    let c = ferry_store::VaultClient::new(&site.vault.url, &site.vault.fingerprint(), &owner).unwrap();
    c.post_json("/v1/import-jobs", &serde_json::json!({"name": "ship-1", "machine": "web1"})).unwrap();

    // The overview: the machine, its last backup and sizes once sampled, and the vault's chart.
    let start = std::time::Instant::now();
    let protected = format!("<td>{:.1} MiB</td>", tree as f64 / (1 << 20) as f64);
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
