//! The dashboard's login under attack (issue #24): password guessing and the memory it costs,
//! user names told apart by timing, and login CSRF. Each test runs a real vault on loopback and
//! acts as the attacker would: plain HTTPS requests (an attacker's own tool), and a browser that
//! visits an attacker's page.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::dashboard::{browse, texts};
use crate::seeding::{s, Site};
use crate::vault::Vault;

/// What the vault answered.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
    took: Duration,
}

/// HTTPS to the vault as an attacker's tool sends it: any certificate accepted, redirects not
/// followed, cookies not kept, from the local address `from`.
struct Web {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    base: String,
}

impl Web {
    fn new(vault: &Vault, from: &str) -> Web {
        ferry_store::init_tls();
        let http = reqwest::Client::builder()
            .tls_danger_accept_invalid_certs(true)
            .redirect(reqwest::redirect::Policy::none())
            .local_address(from.parse::<IpAddr>().unwrap())
            .build()
            .unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        Web { rt, http, base: vault.url.clone() }
    }

    /// POSTs the form `fields` to `path` with the extra `headers`.
    fn post(&self, path: &str, fields: &[(&str, &str)], headers: &[(&str, &str)]) -> Answer {
        self.rt.block_on(post(self.http.clone(), format!("{}{path}", self.base), form(fields), pairs(headers)))
    }

    /// A login with a user name and password, from the vault's own login page.
    fn login(&self, user: &str, password: &str) -> Answer {
        self.post("/login", &[("user", user), ("password", password)], &[("origin", &self.base)])
    }
}

fn pairs(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    headers.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()
}

/// `application/x-www-form-urlencoded`.
fn form(fields: &[(&str, &str)]) -> String {
    let enc = |v: &str| {
        v.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect::<String>()
    };
    fields.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

async fn post(http: reqwest::Client, url: String, body: String, headers: Vec<(String, String)>) -> Answer {
    let mut req = http.post(url).header("content-type", "application/x-www-form-urlencoded").body(body);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let start = Instant::now();
    let resp = req.send().await.unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    let body = resp.text().await.unwrap();
    Answer { status, headers, body, took: start.elapsed() }
}

/// A vault site with user `alice` (a reader) whose dashboard password is `PASSWORD`.
fn site_with_alice(env: &[(&str, &str)]) -> Site {
    let site = Site::start(env);
    site.vault.admin(&site.admin, &["vault", "user", "add", "alice", "--role", "reader"]);
    let pw = site.admin.path("alice.pw");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    site.vault.admin(&site.admin, &["vault", "user", "password", "alice", "--password-file", s(&pw)]);
    site
}

const PASSWORD: &str = "correct horse battery staple";

/// Failed-login limits too high to be reached, for the tests that measure logins.
const NO_LOCKOUT: [(&str, &str); 2] = [("FERRY_VAULT_LOGIN_USER_FAILURES", "100000"), ("FERRY_VAULT_LOGIN_ADDRESS_FAILURES", "100000")];

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// 64 password logins at once: each hash takes 19 MiB, but only one per core runs at a time, so
/// the vault's peak memory grows by a few hashes' worth, not 64 (1.2 GB before).
#[test]
fn a_burst_of_password_logins_keeps_the_vault_s_memory_bounded() {
    let site = site_with_alice(&NO_LOCKOUT);
    let web = Web::new(&site.vault, "127.0.0.1");
    assert_eq!(web.login("alice", PASSWORD).status, 303, "the first login (the allocator warms up)");
    let before = site.vault.peak_rss_kb();
    let start = Instant::now();
    let answers: Vec<Answer> = web.rt.block_on(async {
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let body = form(&[("user", "alice"), ("password", &format!("guess number {i}"))]);
                let headers = vec![("origin".to_string(), web.base.clone())];
                tokio::spawn(post(web.http.clone(), format!("{}/login", web.base), body, headers))
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let took = start.elapsed();
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert!(statuses.iter().all(|s| *s == 401), "every guess is refused: {statuses:?}");
    let after = site.vault.peak_rss_kb();
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as u64;
    let allowed = (cores + 2) * 19 * 1024 + 64 * 1024;
    eprintln!("peak RSS {before} KiB before 64 logins at once, {after} KiB after ({took:?}; {cores} cores)");
    assert!(
        after.saturating_sub(before) <= allowed,
        "64 logins at once took the vault's peak memory from {before} KiB to {after} KiB (at most {allowed} KiB more expected)"
    );
}

/// Failed logins lock the user name (5 in 15 minutes) and the client address (20): 429 with
/// Retry-After, even for the right password; the lockout is in the audit log; an owner clears
/// a user's lockout with `ferry vault user unlock`; another address is not locked out.
#[test]
fn failed_logins_lock_out_the_user_and_the_address_until_an_owner_clears_it() {
    let site = site_with_alice(&[]);
    let web = Web::new(&site.vault, "127.0.0.1");
    for i in 0..5 {
        assert_eq!(web.login("alice", &format!("wrong {i}")).status, 401, "failure {i}");
    }
    let locked = web.login("alice", PASSWORD);
    assert_eq!(locked.status, 429, "the right password, after 5 failures: {}", locked.body);
    let retry: u64 = locked.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((850..=900).contains(&retry), "Retry-After {retry}");
    assert!(locked.body.contains("Too many failed logins") && locked.body.contains("ferry vault user unlock"), "{}", locked.body);
    // An unknown name locks the same way (a lockout does not tell which names exist).
    for i in 0..5 {
        assert_eq!(web.login("nobody", &format!("wrong {i}")).status, 401);
    }
    assert_eq!(web.login("nobody", "anything at all, really").status, 429);
    let owner = std::fs::read_to_string(site.vault.data("owner.token")).unwrap().trim().to_string();
    let c = ferry_store::VaultClient::new(&site.vault.url, &site.vault.fingerprint(), &owner).unwrap();
    let audit = c.get_json("/v1/audit").unwrap();
    let locks: Vec<&serde_json::Value> = audit.as_array().unwrap().iter().filter(|a| a["action"] == "login-locked").collect();
    let targets: Vec<&str> = locks.iter().map(|a| a["target"].as_str().unwrap()).collect();
    assert_eq!(targets, ["user alice", "user nobody"], "{audit}");
    assert!(locks[0]["detail"].as_str().unwrap().contains("\"failures\":5"), "{audit}");

    // Only an owner clears a lockout.
    let reader = site.vault.admin(&site.admin, &["vault", "user", "add", "rita", "--role", "reader"]);
    let reader_file = site.admin.path("rita.token");
    std::fs::write(&reader_file, reader.trim()).unwrap();
    let cert = site.vault.data("vault-cert.pem");
    let o = site.admin.run(&[
        "vault",
        "user",
        "unlock",
        "alice",
        "--vault",
        &site.vault.url,
        "--vault-cert",
        &cert,
        "--token-file",
        s(&reader_file),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("only an owner"), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(web.login("alice", PASSWORD).status, 429, "still locked");
    let o = site.vault.admin_run(&site.admin, &["vault", "user", "unlock", "alice"]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("alice was locked out"), "{}", String::from_utf8_lossy(&o.stderr));
    let ok = web.login("alice", PASSWORD);
    assert_eq!(ok.status, 303, "unlocked: {}", ok.body);
    assert!(ok.headers["set-cookie"].to_str().unwrap().starts_with("ferry_session="));
    let audit = c.get_json("/v1/audit").unwrap();
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "login-unlocked" && a["actor"] == "user owner" && a["target"] == "user alice"),
        "{audit}"
    );

    // The address: 10 failures so far; 10 more, each for another name, lock it out.
    for i in 0..10 {
        assert_eq!(web.login(&format!("guess{i}"), "wrong").status, 401, "address failure {}", 11 + i);
    }
    let locked = web.login("alice", PASSWORD);
    assert_eq!(locked.status, 429, "the address is locked out: {}", locked.body);
    let audit = c.get_json("/v1/audit").unwrap();
    assert!(audit.as_array().unwrap().iter().any(|a| a["action"] == "login-locked" && a["target"] == "address 127.0.0.1"), "{audit}");
    // From another address, alice logs in; a token still opens the dashboard from this one.
    let elsewhere = Web::new(&site.vault, "127.0.0.2");
    assert_eq!(elsewhere.login("alice", PASSWORD).status, 303);
    assert_eq!(web.post("/login", &[("token", &owner)], &[("origin", &web.base)]).status, 303);
}

/// A login for a user that does not exist takes as long as one for a user that does, with a
/// wrong password (4 ms against 60 ms before): the time does not tell which names exist.
#[test]
fn unknown_and_known_user_names_take_the_same_time_to_refuse() {
    let site = site_with_alice(&NO_LOCKOUT);
    let web = Web::new(&site.vault, "127.0.0.1");
    // Warm up the connection and the allocator.
    web.login("alice", "wrong at first");
    web.login("mallory", "wrong at first");
    let (mut unknown, mut known) = (Vec::new(), Vec::new());
    for i in 0..15 {
        let u = web.login(&format!("no-such-user-{i}"), "a wrong password");
        let k = web.login("alice", "a wrong password");
        assert_eq!((u.status, k.status), (401, 401));
        assert_eq!(u.body, k.body, "the same answer");
        unknown.push(u.took);
        known.push(k.took);
    }
    let (u, k) = (median(unknown), median(known));
    eprintln!("median refusal: unknown user {u:?}, known user with a wrong password {k:?}");
    assert!(u.as_secs_f64() >= 0.5 * k.as_secs_f64(), "an unknown user is refused in {u:?}, a known one in {k:?}");
}

/// A page on another site that posts the login form with the attacker's token (login CSRF):
/// the browser that visits it is not logged in as the attacker; the same POST from an attacker's
/// tool with a foreign Origin, or with none, is refused, and so is a cross-site logout.
#[test]
fn another_site_cannot_log_a_browser_in_or_out() {
    let site = Site::start(&[]);
    let mallory = site.vault.admin(&site.admin, &["vault", "user", "add", "mallory", "--role", "reader"]).trim().to_string();
    let web = Web::new(&site.vault, "127.0.0.1");
    for (origin, referer) in
        [(Some("https://evil.example"), None), (Some("null"), None), (None, Some("https://evil.example/x")), (None, None)]
    {
        let mut headers = Vec::new();
        headers.extend(origin.map(|o| ("origin", o)));
        headers.extend(referer.map(|r| ("referer", r)));
        let a = web.post("/login", &[("token", &mallory)], &headers);
        assert_eq!(a.status, 403, "Origin {origin:?}, Referer {referer:?}: {}", a.body);
        assert!(a.headers.get("set-cookie").is_none(), "no session for Origin {origin:?}");
        assert!(a.body.contains("another site"), "{}", a.body);
    }
    // From the vault's own page (Origin, or Referer alone) the same login works.
    let own = web.post("/login", &[("token", &mallory)], &[("origin", &web.base)]);
    assert_eq!(own.status, 303, "{}", own.body);
    let referer = format!("{}/login", web.base);
    assert_eq!(web.post("/login", &[("token", &mallory)], &[("referer", &referer)]).status, 303);
    // A cross-site logout with the session's cookie and CSRF token is refused too.
    let cookie = own.headers["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let csrf = web.rt.block_on(async {
        let page = web.http.get(format!("{}/", web.base)).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
        page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string()
    });
    let out = web.post("/logout", &[("csrf", &csrf)], &[("cookie", &cookie), ("origin", "https://evil.example")]);
    assert_eq!(out.status, 403);
    assert_eq!(web.post("/logout", &[("csrf", &csrf)], &[("cookie", &cookie), ("origin", &web.base)]).status, 303);

    // In a browser: the attacker's page auto-submits the vault's login form with mallory's token.
    let Some(_) = std::env::var_os("FERRY_TEST_BROWSER") else {
        eprintln!("skipped the browser half: FERRY_TEST_BROWSER not set (run scripts/test.sh)");
        return;
    };
    let page = format!(
        "<!doctype html><html><body><form id=\"f\" method=\"post\" action=\"{}/login\">\
         <input type=\"hidden\" name=\"token\" value=\"{mallory}\"></form>\
         <script>document.getElementById('f').submit();</script></body></html>",
        site.vault.url
    );
    let attacker = attacker_site(page);
    let v = browse(&site, "-", &[&format!("{attacker}/=login-csrf"), "/"]).unwrap();
    let p = &v["pages"][0];
    assert_eq!(p["status"], 403, "the vault's answer to the cross-site login: {v}");
    assert!(texts(&v)[0].contains("another site"), "{v}");
    assert_eq!(v["pages"][1]["final"], "/login", "the browser is not logged in as mallory: {v}");
    assert!(!texts(&v)[1].contains("mallory"), "{v}");
}

/// An attacker's web site on loopback (plain HTTP, another origin than the vault's) that
/// answers every request with `page`.
fn attacker_site(page: String) -> String {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let mut r = BufReader::new(conn);
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let head = format!("HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", page.len());
            let _ = r.get_mut().write_all(head.as_bytes());
            let _ = r.get_mut().write_all(page.as_bytes());
        }
    });
    url
}
