//! The vault's web dashboard (issue #6, docs/design/dashboard.md): server-rendered pages from
//! templates compiled into the binary (`crates/vault/templates`, askama: escaped by default),
//! one embedded stylesheet, charts as inline SVG drawn here. No JavaScript.
//!
//! Login: a user's token, as `Authorization: Bearer` or through the login form, which trades
//! it for a session cookie (random 256-bit ID, stored hashed with its expiry; `HttpOnly`,
//! `Secure`, `SameSite=Strict`). Machines' tokens do not open the dashboard. Every page is
//! read-only; logout is a form with the session's CSRF token. Pages never show tokens, keys or
//! internal error texts (those go to the log).

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Form, Path, State as AxState};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use ferry_api::ImportJob;
use serde::Deserialize;

use crate::alerts::{self, ago, span, unix, Alert, DEADLINE_WARN_S};
use crate::db::jobs::{jobs_of, JobInfo, Jobs};
use crate::db::{Db, Principal};
use crate::imports::rfc3339;
use crate::samples::Sample;
use crate::{Role, State};

type St = AxState<Arc<State>>;

/// The session cookie's name.
const COOKIE: &str = "ferry_session";
/// How long a login lasts.
const SESSION_S: i64 = 12 * 3600;
/// Recovery points per page.
const PAGE: usize = 50;

const CSS: &str = include_str!("../../static/ferry.css");

/// A logged-in user.
struct Viewer {
    name: String,
    role: Role,
    /// The session's CSRF token (empty for `Bearer` requests, which have no forms).
    csrf: String,
}

/// Why a page is not shown: not logged in (to the login page), or an error (logged; the page
/// says only that).
pub(crate) enum PageError {
    Login,
    Internal(anyhow::Error),
}

impl From<anyhow::Error> for PageError {
    fn from(e: anyhow::Error) -> Self {
        PageError::Internal(e)
    }
}

impl From<crate::Error> for PageError {
    fn from(e: crate::Error) -> Self {
        PageError::Internal(e.into())
    }
}

impl From<askama::Error> for PageError {
    fn from(e: askama::Error) -> Self {
        PageError::Internal(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::Login => Redirect::to("/login").into_response(),
            PageError::Internal(e) => {
                tracing::error!("dashboard: {e:#}");
                let page = ErrorPage { message: "The vault could not show this page; its log says why." };
                (StatusCode::INTERNAL_SERVER_ERROR, Html(page.render().unwrap_or_default())).into_response()
            }
        }
    }
}

pub(crate) type PageResult = Result<Response, PageError>;

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

/// Argon2id for dashboard passwords: 19 MiB, 2 passes (OWASP's minimum), so a login costs tens
/// of milliseconds and a stolen database resists guessing.
fn password_hash(password: &str, salt: &[u8; 16]) -> anyhow::Result<[u8; 32]> {
    let params = argon2::Params::new(19 * 1024, 2, 1, Some(32)).map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    let mut out = [0u8; 32];
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_into(password.as_bytes(), salt, &mut out)
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    Ok(out)
}

impl Db {
    /// Sets user `name`'s dashboard password. `false`: no such user.
    pub async fn set_password(&self, name: &str, password: &str) -> crate::Result<bool> {
        if !self.user_exists(name).await? {
            return Ok(false);
        }
        let salt: [u8; 16] = ferry_crypto::random_bytes();
        let (pw, salt_c) = (password.to_string(), salt);
        let hash = tokio::task::spawn_blocking(move || password_hash(&pw, &salt_c)).await??;
        self.store_password(name, &hex::encode(salt), &hex::encode(hash)).await?;
        Ok(true)
    }

    /// Does `password` open user `name`'s dashboard? (A user without a password never matches.)
    async fn check_password(&self, name: &str, password: &str) -> anyhow::Result<bool> {
        let Some((salt_hex, hash_hex)) = self.stored_password(name).await? else { return Ok(false) };
        let (mut salt, mut want) = ([0u8; 16], [0u8; 32]);
        if hex::decode_to_slice(salt_hex, &mut salt).is_err() || hex::decode_to_slice(hash_hex, &mut want).is_err() {
            return Ok(false);
        }
        let pw = password.to_string();
        let got = tokio::task::spawn_blocking(move || password_hash(&pw, &salt)).await??;
        Ok(subtle_eq(&got, &want))
    }

    async fn create_session(&self, user: &str, now: i64) -> anyhow::Result<(String, String)> {
        let id = crate::db::new_token();
        let csrf = hex::encode(ferry_crypto::random_bytes::<16>());
        self.add_session(&id, user, now, now + SESSION_S, &csrf).await?;
        Ok((id, csrf))
    }
}

/// The user behind the request: a `Bearer` user token or a session cookie.
async fn viewer(state: &State, headers: &HeaderMap) -> Result<Viewer, PageError> {
    if let Some(token) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")) {
        return match state.db.principal(token.trim()).await? {
            Some(Principal::User { name, role }) => Ok(Viewer { name, role, csrf: String::new() }),
            _ => Err(PageError::Login),
        };
    }
    let Some(id) = cookie_value(headers, COOKIE) else { return Err(PageError::Login) };
    match state.db.session(&id, chrono::Utc::now().timestamp()).await? {
        Some((name, role, csrf)) => Ok(Viewer { name, role, csrf }),
        None => Err(PageError::Login),
    }
}

fn html(t: &impl Template) -> PageResult {
    let mut r = Html(t.render()?).into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, "no-store".parse().expect("a valid header value"));
    h.insert("x-frame-options", "DENY".parse().expect("a valid header value"));
    h.insert(
        "content-security-policy",
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'".parse().expect("a valid header value"),
    );
    Ok(r)
}

// ---------------------------------------------------------------- login

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    error: &'a str,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    message: &'a str,
}

pub(crate) async fn login_page() -> PageResult {
    html(&LoginPage { error: "" })
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
}

pub(crate) async fn login(AxState(state): St, Form(f): Form<LoginForm>) -> PageResult {
    let refused = |error| -> PageResult {
        let mut r = html(&LoginPage { error })?;
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        Ok(r)
    };
    let token = f.token.trim();
    let user = if !token.is_empty() {
        if token.len() > 200 {
            return refused("This token is not valid for this vault.");
        }
        match state.db.principal(token).await? {
            Some(Principal::User { name, .. }) => name,
            Some(Principal::Machine { .. }) => return refused("A machine's token does not open the dashboard: use a user's token."),
            None => return refused("This token is not valid for this vault."),
        }
    } else if !f.user.is_empty() && !f.password.is_empty() && f.user.len() <= 64 && f.password.len() <= 1024 {
        if !state.db.check_password(f.user.trim(), &f.password).await? {
            tracing::warn!("dashboard: refused a password login as {:?}", f.user.trim());
            return refused("This user name and password do not match.");
        }
        f.user.trim().to_string()
    } else {
        return refused("Give your user name and password, or your vault token.");
    };
    let now = chrono::Utc::now().timestamp();
    let (id, _) = state.db.create_session(&user, now).await?;
    tracing::info!("dashboard: {user} logged in");
    let mut r = Redirect::to("/").into_response();
    let cookie = format!("{COOKIE}={id}; Path=/; Max-Age={SESSION_S}; HttpOnly; Secure; SameSite=Strict");
    r.headers_mut().insert(header::SET_COOKIE, cookie.parse().map_err(|e| anyhow::anyhow!("cookie: {e}"))?);
    Ok(r)
}

#[derive(Deserialize)]
pub(crate) struct LogoutForm {
    csrf: String,
}

pub(crate) async fn logout(AxState(state): St, headers: HeaderMap, Form(f): Form<LogoutForm>) -> PageResult {
    let v = viewer(&state, &headers).await?;
    if v.csrf.is_empty() || !subtle_eq(v.csrf.as_bytes(), f.csrf.as_bytes()) {
        return Err(PageError::Login);
    }
    if let Some(id) = cookie_value(&headers, COOKIE) {
        state.db.end_session(&id).await?;
    }
    let mut r = Redirect::to("/login").into_response();
    let cookie = format!("{COOKIE}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict");
    r.headers_mut().insert(header::SET_COOKIE, cookie.parse().map_err(|e| anyhow::anyhow!("cookie: {e}"))?);
    Ok(r)
}

/// Constant-time equality (for the CSRF token).
fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=3600")], CSS).into_response()
}

// ---------------------------------------------------------------- shared view data

/// A size as the dashboard shows it: one decimal ([`ferry_api::human_size`]).
fn size(n: u64) -> String {
    ferry_api::human_size(n, 1)
}

/// A machine as the overview shows it.
struct MachineRow {
    name: String,
    state: String,
    state_class: &'static str,
    last_backup: String,
    next_backup: String,
    protected: String,
    stored: String,
}

/// An SVG line chart of stored and protected bytes over time (numbers only: no text from
/// users goes into it).
fn chart(samples: &[Sample]) -> String {
    const W: f64 = 640.0;
    const H: f64 = 160.0;
    if samples.len() < 2 {
        return String::new();
    }
    let t0 = samples.first().map_or(0, |s| s.time) as f64;
    let t1 = samples.last().map_or(1, |s| s.time) as f64;
    let top = samples.iter().map(|s| s.stored_bytes.max(s.protected_bytes)).max().unwrap_or(1).max(1) as f64;
    let x = |t: i64| if t1 > t0 { (t as f64 - t0) / (t1 - t0) * (W - 20.0) + 10.0 } else { 10.0 };
    let y = |v: u64| H - 10.0 - v as f64 / top * (H - 30.0);
    // One point per pixel column at most (90 days of 15-minute samples are 8640): the last
    // sample of each column.
    let mut shown: Vec<&Sample> = Vec::new();
    for s in samples {
        match shown.last() {
            Some(prev) if x(prev.time).round() == x(s.time).round() => *shown.last_mut().expect("not empty") = s,
            _ => shown.push(s),
        }
    }
    let line = |f: fn(&Sample) -> u64| shown.iter().map(|s| format!("{:.1},{:.1}", x(s.time), y(f(s)))).collect::<Vec<_>>().join(" ");
    format!(
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"stored and protected size over time\">\
         <line x1=\"10\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" class=\"axis\"/>\
         <polyline class=\"protected\" points=\"{p}\"/><polyline class=\"stored\" points=\"{s}\"/>\
         <text x=\"12\" y=\"14\" class=\"label\">{top}</text></svg>",
        b = H - 10.0,
        r = W - 10.0,
        p = line(|s| s.protected_bytes),
        s = line(|s| s.stored_bytes),
        top = size(top as u64),
    )
}

// ---------------------------------------------------------------- overview

#[derive(Template)]
#[template(path = "overview.html")]
struct Overview {
    user: String,
    role: &'static str,
    csrf: String,
    alerts: Vec<Alert>,
    machines: Vec<MachineRow>,
    chart: String,
    stored: String,
    protected: String,
}

pub(crate) async fn overview(AxState(state): St, headers: HeaderMap) -> PageResult {
    let v = viewer(&state, &headers).await?;
    let now = chrono::Utc::now().timestamp();
    state.db.reap_jobs(now, crate::api::job_timeout_s()).await?;
    let db = &state.db;
    let latest = db.latest_samples().await?;
    let (machines, alerts) = alerts::status(db, now, state.alerts.storage_limit).await?;
    let mut rows = Vec::new();
    for m in machines {
        let s = latest.get(&m.id);
        rows.push(MachineRow {
            name: m.name,
            state: m.state,
            state_class: m.class,
            last_backup: m.last_ok.map_or("never".into(), |t| format!("{} ({})", rfc3339(t), ago(now, t))),
            next_backup: m.next.map_or("no policy".into(), |t| t.format("%Y-%m-%d %H:%M").to_string()),
            protected: s.map_or("-".into(), |s| size(s.protected_bytes)),
            stored: s.map_or("-".into(), |s| size(s.stored_bytes)),
        });
    }
    let total = db.vault_samples(now - 90 * 86_400).await?;
    let last = total.last();
    let page = Overview {
        user: v.name,
        role: v.role.as_str(),
        csrf: v.csrf,
        alerts,
        machines: rows,
        chart: chart(&total),
        stored: last.map_or("-".into(), |s| size(s.stored_bytes)),
        protected: last.map_or("-".into(), |s| size(s.protected_bytes)),
    };
    html(&page)
}

// ---------------------------------------------------------------- one machine

struct PointRow {
    id: String,
    time: String,
    size: String,
    files: String,
    tags: String,
}

struct JobRow {
    kind: String,
    state: String,
    start: String,
    errors: Vec<String>,
}

#[derive(Template)]
#[template(path = "machine.html")]
struct MachinePage {
    user: String,
    role: &'static str,
    csrf: String,
    name: String,
    chart: String,
    points: Vec<PointRow>,
    total_points: usize,
    jobs: Vec<JobRow>,
}

pub(crate) async fn machine(AxState(state): St, headers: HeaderMap, Path(name): Path<String>) -> PageResult {
    let v = viewer(&state, &headers).await?;
    let db = &state.db;
    let Some((id, name, _)) = db.machines().await?.into_iter().find(|(_, n, _)| *n == name) else {
        let page = ErrorPage { message: "No such machine." };
        let mut r = html(&page)?;
        *r.status_mut() = StatusCode::NOT_FOUND;
        return Ok(r);
    };
    let now = chrono::Utc::now().timestamp();
    // The recovery points in the store (the truth: retention removes some), with what their
    // backups reported.
    let (store, prefix) = (state.store.clone(), format!("machines/{id}/recovery-points/"));
    let listed =
        tokio::task::spawn_blocking(move || store.list(&prefix)).await.map_err(anyhow::Error::from)?.map_err(anyhow::Error::from)?;
    // The backups that reported a recovery point (retention may have removed some since).
    let jobs = jobs_of(db, Some(&id), Jobs::WithRecoveryPoint, 1_000_000).await?;
    let reported: HashMap<&str, &JobInfo> = jobs.iter().filter_map(|(_, j)| j.recovery_point.as_deref().map(|rp| (rp, j))).collect();
    let mut points: Vec<(i64, PointRow)> = listed
        .iter()
        .map(|o| {
            let rp = o.key.rsplit('/').next().unwrap_or_default().to_string();
            let job = reported.get(rp.as_str());
            let time = job.and_then(|j| j.end.as_deref()).and_then(unix).or(o.modified).unwrap_or(0);
            let row = PointRow {
                id: rp.chars().take(16).collect(),
                time: rfc3339(time),
                size: job.and_then(|j| j.total_bytes).map_or("-".into(), |b| size(b.max(0) as u64)),
                files: job.map_or("-".into(), |j| j.files.to_string()),
                tags: job.map_or(String::new(), |j| j.tags.join(", ")),
            };
            (time, row)
        })
        .collect();
    points.sort_by_key(|(t, _)| std::cmp::Reverse(*t));
    let total_points = points.len();
    let jobs_with_errors = jobs_of(db, Some(&id), Jobs::WithErrors, PAGE as i64)
        .await?
        .iter()
        .map(|(_, j)| JobRow { kind: j.kind.clone(), state: j.state.clone(), start: j.start.clone(), errors: j.errors.clone() })
        .collect();
    let page = MachinePage {
        user: v.name,
        role: v.role.as_str(),
        csrf: v.csrf,
        name,
        chart: chart(&db.samples(&id, now - 90 * 86_400).await?),
        points: points.into_iter().take(PAGE).map(|(_, r)| r).collect(),
        total_points,
        jobs: jobs_with_errors,
    };
    html(&page)
}

// ---------------------------------------------------------------- import jobs and devices

struct ImportRow {
    name: String,
    kind: String,
    machine: String,
    state: String,
    disks: String,
    shipping: String,
    deadline: String,
    deadline_class: &'static str,
}

#[derive(Template)]
#[template(path = "imports.html")]
struct ImportsPage {
    user: String,
    role: &'static str,
    csrf: String,
    jobs: Vec<ImportRow>,
}

fn import_row(j: &ImportJob, now: i64) -> ImportRow {
    let disks =
        j.disks.iter().map(|d| format!("{} {}: {}", if j.kind == "device" { "device" } else { "disk" }, d.id, d.state)).collect::<Vec<_>>();
    let (deadline, class) = match j.deadline.as_deref().and_then(unix) {
        Some(d) if d <= now => (format!("{} (passed)", rfc3339(d)), "bad"),
        Some(d) if d - now < DEADLINE_WARN_S => (format!("{} ({} left)", rfc3339(d), span(d - now)), "warn"),
        Some(d) => (format!("{} ({} left)", rfc3339(d), span(d - now)), ""),
        None => ("-".into(), ""),
    };
    ImportRow {
        name: j.name.clone(),
        kind: j.kind.clone(),
        machine: j.machine_name.clone(),
        state: j.state.as_str().into(),
        disks: disks.join(", "),
        shipping: match (&j.carrier, &j.tracking) {
            (Some(c), Some(t)) => format!("{c} {t}"),
            (None, Some(t)) => t.clone(),
            _ => "-".into(),
        },
        deadline,
        deadline_class: class,
    }
}

pub(crate) async fn imports(AxState(state): St, headers: HeaderMap) -> PageResult {
    let v = viewer(&state, &headers).await?;
    let now = chrono::Utc::now().timestamp();
    let jobs = state.db.import_jobs(None).await?.iter().map(|j| import_row(j, now)).collect();
    html(&ImportsPage { user: v.name, role: v.role.as_str(), csrf: v.csrf, jobs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_spans_and_cookies() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; ferry_session=abc; b=2".parse().unwrap());
        assert_eq!(cookie_value(&h, COOKIE).as_deref(), Some("abc"));
        assert!(subtle_eq(b"x1", b"x1") && !subtle_eq(b"x1", b"x2") && !subtle_eq(b"x", b"xx"));
    }

    #[test]
    fn charts_are_numbers_only() {
        let s = |time, stored_bytes| Sample { time, stored_bytes, stored_objects: 1, protected_bytes: stored_bytes * 2 };
        assert_eq!(chart(&[s(0, 1)]), "", "one point is no line");
        let svg = chart(&[s(0, 100), s(60, 300)]);
        assert!(svg.starts_with("<svg") && svg.contains("polyline"), "{svg}");
        // 90 days of 15-minute samples: at most one point per pixel column.
        let many: Vec<Sample> = (0..8640).map(|i| s(i * 900, i as u64)).collect();
        let svg = chart(&many);
        let points = svg.split("points=\"").nth(2).unwrap().split('"').next().unwrap().split(' ').count();
        assert!((600..=621).contains(&points), "{points} points");
    }
}
