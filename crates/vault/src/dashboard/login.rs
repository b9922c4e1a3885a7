//! Logging in and out of the dashboard: the login form (a user's token, or its name and
//! dashboard password), sessions, password hashes, and the limits on guessing.
//!
//! Guessing is limited twice: failed password logins are counted per user name (known or not)
//! and per client address in the database (db::logins, shared by every server of the vault), and
//! too many within the window lock that name or address out for a while (429 with
//! `Retry-After`, audit-logged; an owner clears a user's lockout with `ferry vault user unlock`).
//! And a password hash (Argon2id, 19 MiB) runs only with one of as many slots as there are
//! cores; further logins queue for a slot, so memory stays bounded however many arrive at once.
//! A login checks the lockout once its slot is free, so guesses sent all at once queue behind
//! the failures that lock them out instead of being tried.

use std::net::SocketAddr;
use std::sync::LazyLock;

use askama::Template;
use axum::extract::{ConnectInfo, Form, State as AxState};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect};
use serde::Deserialize;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::{cookie_value, html, same_origin, subtle_eq, viewer, PageError, PageResult, St, COOKIE};
use crate::db::logins::{Limit, Scope};
use crate::db::{rfc3339, Db, Principal};

/// How long a login lasts.
const SESSION_S: i64 = 12 * 3600;

/// Hashed in place of a password when the user does not exist or has none, so that such a
/// login costs the same time as a wrong password (the time tells nothing about which names
/// exist).
const DUMMY_SALT: [u8; 16] = *b"ferry-no-such-us";

/// The slots password hashes run in: one per core.
static HASH_SLOTS: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(std::thread::available_parallelism().map_or(1, usize::from)));

/// The right to run one password hash now.
struct Slot {
    _permit: SemaphorePermit<'static>,
}

/// Waits for a free hash slot.
async fn hash_slot() -> anyhow::Result<Slot> {
    Ok(Slot { _permit: HASH_SLOTS.acquire().await? })
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

/// Hashes `password` off the async threads in `slot`, and gives the slot back. The hash holds
/// the slot until it ends, even when the request that asked is gone.
async fn hash(slot: Slot, password: &str, salt: [u8; 16]) -> anyhow::Result<([u8; 32], Slot)> {
    let pw = zeroize::Zeroizing::new(password.to_string());
    tokio::task::spawn_blocking(move || password_hash(&pw, &salt).map(|h| (h, slot))).await?
}

impl Db {
    /// Sets user `name`'s dashboard password. `false`: no such user.
    pub async fn set_password(&self, name: &str, password: &str) -> crate::Result<bool> {
        if !self.user_exists(name).await? {
            return Ok(false);
        }
        let salt: [u8; 16] = ferry_crypto::random_bytes();
        let (hash, _slot) = hash(hash_slot().await?, password, salt).await?;
        self.store_password(name, &hex::encode(salt), &hex::encode(hash)).await?;
        Ok(true)
    }

    /// Does `password` open user `name`'s dashboard? (A user without a password never matches.)
    /// Unknown users cost the same hash as known ones.
    async fn check_password(&self, slot: Slot, name: &str, password: &str) -> anyhow::Result<(bool, Slot)> {
        let stored = self.stored_password(name).await?.and_then(|(salt_hex, hash_hex)| {
            let (mut salt, mut want) = ([0u8; 16], [0u8; 32]);
            hex::decode_to_slice(salt_hex, &mut salt).ok()?;
            hex::decode_to_slice(hash_hex, &mut want).ok()?;
            Some((salt, want))
        });
        let salt = stored.map_or(DUMMY_SALT, |(salt, _)| salt);
        let (got, slot) = hash(slot, password, salt).await?;
        Ok((stored.is_some_and(|(_, want)| subtle_eq(&got, &want)), slot))
    }

    async fn create_session(&self, user: &str, now: i64) -> anyhow::Result<(String, String)> {
        let id = crate::db::new_token();
        let csrf = hex::encode(ferry_crypto::random_bytes::<16>());
        self.add_session(&id, user, now, now + SESSION_S, &csrf).await?;
        Ok((id, csrf))
    }
}

/// The lockout rule for `scope`: 5 failures per user name, 20 per client address, within 15
/// minutes, lock for 15 minutes (`FERRY_VAULT_LOGIN_USER_FAILURES`,
/// `FERRY_VAULT_LOGIN_ADDRESS_FAILURES`, `FERRY_VAULT_LOGIN_WINDOW_S`, `FERRY_VAULT_LOGIN_LOCK_S`
/// change them).
fn limit(scope: Scope) -> Limit {
    let env = |name: &str, default: i64| std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|v| *v > 0).unwrap_or(default);
    let failures = match scope {
        Scope::User => env("FERRY_VAULT_LOGIN_USER_FAILURES", 5),
        Scope::Address => env("FERRY_VAULT_LOGIN_ADDRESS_FAILURES", 20),
    };
    Limit { failures, window_s: env("FERRY_VAULT_LOGIN_WINDOW_S", 900), lock_s: env("FERRY_VAULT_LOGIN_LOCK_S", 900) }
}

/// What a password login came to.
enum Verdict {
    Accepted,
    Wrong,
    /// Locked out until then (Unix seconds).
    Locked(i64),
}

/// A password login as `name` from `address`, within the limits (see the module's comment).
async fn password_login(db: &Db, name: &str, password: &str, address: &str) -> anyhow::Result<Verdict> {
    let slot = hash_slot().await?;
    let now = chrono::Utc::now().timestamp();
    if let Some(until) = db.login_locked_until(name, address, now).await? {
        return Ok(Verdict::Locked(until));
    }
    let (ok, _slot) = db.check_password(slot, name, password).await?;
    if ok {
        db.clear_login_failures(Scope::User, name, now).await?;
        return Ok(Verdict::Accepted);
    }
    // Counted while the slot is held, so the next login in line sees this failure.
    for (scope, key) in [(Scope::User, name), (Scope::Address, address)] {
        let l = limit(scope);
        let (failures, locked) = db.login_failed(scope, key, now, l).await?;
        if let Some(until) = locked {
            let target = format!("{} {key}", scope.as_str());
            tracing::warn!("dashboard: {failures} failed logins for {target} within {} s: locked until {}", l.window_s, rfc3339(until));
            let detail = serde_json::json!({"failures": failures, "window_s": l.window_s, "until": rfc3339(until)});
            db.audit("vault", "login-locked", &target, &detail).await?;
        }
    }
    Ok(Verdict::Wrong)
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    error: &'a str,
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

/// The login page again, with `error`, answered with `status`.
fn refused(status: StatusCode, error: &str) -> PageResult {
    let mut r = html(&LoginPage { error })?;
    *r.status_mut() = status;
    Ok(r)
}

pub(crate) async fn login(
    AxState(state): St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> PageResult {
    same_origin(&headers)?;
    let token = f.token.trim();
    let user = if !token.is_empty() {
        if token.len() > 200 {
            return refused(StatusCode::UNAUTHORIZED, "This token is not valid for this vault.");
        }
        match state.db.principal(token).await? {
            Some(Principal::User { name, .. }) => name,
            Some(Principal::Machine { .. }) => {
                return refused(StatusCode::UNAUTHORIZED, "A machine's token does not open the dashboard: use a user's token.")
            }
            None => return refused(StatusCode::UNAUTHORIZED, "This token is not valid for this vault."),
        }
    } else if !f.user.is_empty() && !f.password.is_empty() && f.user.len() <= 64 && f.password.len() <= 1024 {
        let name = f.user.trim();
        match password_login(&state.db, name, &f.password, &peer.ip().to_string()).await? {
            Verdict::Accepted => name.to_string(),
            Verdict::Wrong => {
                tracing::warn!("dashboard: refused a password login as {name:?} from {}", peer.ip());
                return refused(StatusCode::UNAUTHORIZED, "This user name and password do not match.");
            }
            Verdict::Locked(until) => {
                let wait = (until - chrono::Utc::now().timestamp()).max(1);
                let error = format!(
                    "Too many failed logins for this user or from this address: try again in {} min, \
                     or ask an owner to clear it (ferry vault user unlock NAME).",
                    (wait + 59) / 60
                );
                let mut r = refused(StatusCode::TOO_MANY_REQUESTS, &error)?;
                r.headers_mut().insert(header::RETRY_AFTER, wait.into());
                return Ok(r);
            }
        }
    } else {
        return refused(StatusCode::UNAUTHORIZED, "Give your user name and password, or your vault token.");
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
    same_origin(&headers)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_run_one_per_core_at_most() {
        crate::db::testing::block_on(async {
            let cores = std::thread::available_parallelism().map_or(1, usize::from);
            let mut held = Vec::new();
            for _ in 0..cores {
                held.push(hash_slot().await.unwrap());
            }
            assert_eq!(HASH_SLOTS.available_permits(), 0);
            let waiting = tokio::time::timeout(std::time::Duration::from_millis(100), hash_slot()).await;
            assert!(waiting.is_err(), "a further hash waits for a slot");
            drop(held);
            assert_eq!(HASH_SLOTS.available_permits(), cores);
            let (h, _slot) = hash(hash_slot().await.unwrap(), "pw", DUMMY_SALT).await.unwrap();
            assert_eq!(h, password_hash("pw", &DUMMY_SALT).unwrap());
        });
    }
}
