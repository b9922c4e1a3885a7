//! The vault's web dashboard (issue #6, docs/design/dashboard.md): server-rendered pages from
//! templates compiled into the binary (`crates/vault/templates`, askama: escaped by default),
//! one embedded stylesheet, charts as inline SVG drawn here. No JavaScript.
//!
//! Login (`login.rs`): a user's token, as `Authorization: Bearer` or through the login form,
//! which trades it (or a user name and password) for a session cookie (random 256-bit ID,
//! stored hashed with its expiry; `HttpOnly`, `Secure`, `SameSite=Strict`). Machines' tokens do
//! not open the dashboard. Failed password logins lock the user name and the client address
//! for a while; password hashes run at most one per core at once.
//!
//! Pages (`pages.rs`) follow the API's role rules: a page shows a machine's data only to users
//! who may read that machine's repository through the API. Every page is read-only; the forms
//! that change something (login, logout) are accepted only from the vault's own pages (their
//! `Origin`, or `Referer`, is the vault itself), and logout also carries the session's CSRF
//! token. Pages never show tokens, keys or internal error texts (those go to the log).

use std::sync::Arc;

use askama::Template;
use axum::extract::State as AxState;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};

use crate::api::{allowed, Op};
use crate::db::Principal;
use crate::{Role, State};

mod login;
mod pages;

pub(crate) use login::{login, login_page, logout};
pub(crate) use pages::{imports, machine, overview};

type St = AxState<Arc<State>>;

/// The session cookie's name.
const COOKIE: &str = "ferry_session";

const CSS: &str = include_str!("../../static/ferry.css");

/// A logged-in user.
struct Viewer {
    name: String,
    role: Role,
    /// The session's CSRF token (empty for `Bearer` requests, which have no forms).
    csrf: String,
}

impl Viewer {
    /// May this user see machine `machine`'s backups? The API's rule for reading the
    /// machine's repository (`crate::api::allowed`), so a page shows no more than the API
    /// would give the same user. (For users it does not depend on the machine: `""` asks
    /// about machines in general, before one is looked up.)
    fn may_read(&self, machine: &str) -> bool {
        allowed(&Principal::User { name: self.name.clone(), role: self.role }, machine, Op::Read, "recovery-points/")
    }
}

/// Why a page is not shown: not logged in (to the login page), not for this user or this
/// request (403, with the reason), or an error (logged; the page says only that).
pub(crate) enum PageError {
    Login,
    Forbidden(&'static str),
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
        let (status, message) = match self {
            PageError::Login => return Redirect::to("/login").into_response(),
            PageError::Forbidden(why) => (StatusCode::FORBIDDEN, why),
            PageError::Internal(e) => {
                tracing::error!("dashboard: {e:#}");
                (StatusCode::INTERNAL_SERVER_ERROR, "The vault could not show this page; its log says why.")
            }
        };
        match error_page(status, message) {
            Ok(r) => r,
            Err(_) => status.into_response(),
        }
    }
}

pub(crate) type PageResult = Result<Response, PageError>;

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    message: &'a str,
}

fn error_page(status: StatusCode, message: &str) -> PageResult {
    let mut r = html(&ErrorPage { message })?;
    *r.status_mut() = status;
    Ok(r)
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then(|| v.to_string())
    })
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

/// Refuses a form posted from anywhere but the vault's own pages: its `Origin` (or, from a
/// browser that sent none, its `Referer`) must be `https://` and the host the request was sent
/// to (`Host`). A request with neither is refused too: every browser sends `Origin` with a
/// form's POST, and only a browser carries a victim's cookies.
fn same_origin(headers: &HeaderMap) -> Result<(), PageError> {
    const REFUSED: &str = "This form was sent from another site, so the vault refused it. Log in from the vault's own login page.";
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    // Browsers leave the default port out of Origin.
    let host = |h: &str| h.strip_suffix(":443").unwrap_or(h).to_ascii_lowercase();
    let Some(own) = text(header::HOST).map(host) else { return Err(PageError::Forbidden(REFUSED)) };
    let from = match (text(header::ORIGIN), text(header::REFERER)) {
        (Some(origin), _) => origin.strip_prefix("https://").filter(|h| !h.contains('/')),
        (None, Some(referer)) => referer.strip_prefix("https://").map(|r| r.split(['/', '?', '#']).next().unwrap_or_default()),
        (None, None) => None,
    };
    match from.map(host) {
        Some(h) if h == own => Ok(()),
        _ => {
            tracing::warn!(
                "dashboard: refused a form from another site (Origin {:?}, Referer {:?}, Host {own:?})",
                text(header::ORIGIN),
                text(header::REFERER)
            );
            Err(PageError::Forbidden(REFUSED))
        }
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

/// Constant-time equality (for the CSRF token and password hashes).
fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=3600")], CSS).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_constant_time_equality() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; ferry_session=abc; b=2".parse().unwrap());
        assert_eq!(cookie_value(&h, COOKIE).as_deref(), Some("abc"));
        assert!(subtle_eq(b"x1", b"x1") && !subtle_eq(b"x1", b"x2") && !subtle_eq(b"x", b"xx"));
    }

    #[test]
    fn forms_come_from_the_vault_itself() {
        let check = |host: Option<&str>, origin: Option<&str>, referer: Option<&str>| {
            let mut h = HeaderMap::new();
            for (name, v) in [(header::HOST, host), (header::ORIGIN, origin), (header::REFERER, referer)] {
                if let Some(v) = v {
                    h.insert(name, v.parse().unwrap());
                }
            }
            same_origin(&h).is_ok()
        };
        let vault = Some("vault.example:8443");
        assert!(check(vault, Some("https://vault.example:8443"), None));
        assert!(check(vault, Some("https://VAULT.example:8443"), Some("https://evil.example/")), "Origin decides");
        assert!(check(Some("vault.example:443"), Some("https://vault.example"), None), "the default port");
        assert!(check(vault, None, Some("https://vault.example:8443/login?x=1")), "no Origin: the Referer");
        assert!(!check(vault, Some("https://evil.example"), None));
        assert!(!check(vault, Some("https://vault.example:8443.evil.example"), None));
        assert!(!check(vault, Some("http://vault.example:8443"), None), "not over HTTPS");
        assert!(!check(vault, Some("null"), Some("https://vault.example:8443/")), "an opaque origin");
        assert!(!check(vault, Some("https://vault.example:8443/x"), None));
        assert!(!check(vault, None, Some("https://vault.example:8443.evil.example/login")));
        assert!(!check(vault, None, None), "neither");
        assert!(!check(None, Some("https://vault.example:8443"), None), "no Host");
    }
}
