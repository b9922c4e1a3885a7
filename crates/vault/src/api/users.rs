//! `/v1/users/...` and `/v1/machines/{m}/revoke`: who holds a token, for how long, and taking
//! it back. Only owners manage users and revoke tokens; a user sets its own dashboard password.
//! Tokens are stored as hashes only; a revoked or expired token is refused at once by every
//! route, and a revoked user's dashboard sessions end with it.

use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use ferry_api::{NewPassword, NewUser, UserAdded, UserView};

use super::{principal, ApiError, ApiResult, St};
use crate::db::Principal;
use crate::{Role, State};

/// Refused unless the caller is an owner.
async fn owner(state: &State, headers: &HeaderMap, what: &str) -> ApiResult<String> {
    match principal(state, headers).await? {
        Principal::User { role: Role::Owner, name } => Ok(name),
        _ => Err(ApiError(StatusCode::FORBIDDEN, format!("only an owner {what}"))),
    }
}

pub(super) async fn add(AxState(state): St, headers: HeaderMap, Json(b): Json<NewUser>) -> ApiResult<Json<UserAdded>> {
    let by = owner(&state, &headers, "adds users").await?;
    let role = Role::parse(&b.role).ok_or_else(|| ApiError(StatusCode::BAD_REQUEST, format!("unknown role {:?}", b.role)))?;
    if b.name.is_empty() || b.name.len() > 64 || !b.name.bytes().all(|c| c.is_ascii_alphanumeric() || b"-_.@".contains(&c)) {
        return Err(ApiError(StatusCode::BAD_REQUEST, "a user name is 1 to 64 letters, digits, '-', '_', '.' or '@'".into()));
    }
    // At most about 100 years: the expiry is stored as Unix seconds.
    let expires = match b.expires_in_s {
        Some(s) if s > 100 * 366 * 86_400 => return Err(ApiError(StatusCode::BAD_REQUEST, "a token expires within 100 years".into())),
        Some(s) => Some(chrono::Utc::now().timestamp() + s as i64),
        None => None,
    };
    let token = state
        .db
        .add_user(&b.name, role, expires)
        .await
        .map_err(|_| ApiError(StatusCode::CONFLICT, format!("a user named {:?} exists already", b.name)))?;
    tracing::info!("{by} added user {} as {}", b.name, role.as_str());
    state.db.audit(&format!("user {by}"), "user-added", &b.name, &serde_json::json!({"role": role.as_str(), "expires": expires})).await?;
    Ok(Json(UserAdded { name: b.name, role: role.as_str().into(), token, expires: expires.map(crate::db::rfc3339) }))
}

pub(super) async fn list(AxState(state): St, headers: HeaderMap) -> ApiResult<Json<Vec<UserView>>> {
    owner(&state, &headers, "lists users").await?;
    Ok(Json(state.db.users().await?))
}

/// What a revoke or a remove of user `name` answers when it changed nothing: 404 for no such
/// user, 409 for the last working owner.
fn done(name: &str, outcome: Result<bool, String>) -> ApiResult<()> {
    match outcome {
        Ok(true) => Ok(()),
        Ok(false) => Err(ApiError(StatusCode::NOT_FOUND, format!("no user named {name:?} (see `ferry vault user list`)"))),
        Err(refused) => Err(ApiError(StatusCode::CONFLICT, refused)),
    }
}

pub(super) async fn revoke(AxState(state): St, headers: HeaderMap, Path(name): Path<String>) -> ApiResult<StatusCode> {
    let by = owner(&state, &headers, "revokes tokens").await?;
    done(&name, state.db.revoke_user(&name, chrono::Utc::now().timestamp()).await?)?;
    tracing::info!("{by} revoked the token of user {name}");
    state.db.audit(&format!("user {by}"), "user-revoked", &name, &serde_json::json!({})).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn remove(AxState(state): St, headers: HeaderMap, Path(name): Path<String>) -> ApiResult<StatusCode> {
    let by = owner(&state, &headers, "removes users").await?;
    done(&name, state.db.remove_user(&name, chrono::Utc::now().timestamp()).await?)?;
    tracing::info!("{by} removed user {name}");
    state.db.audit(&format!("user {by}"), "user-removed", &name, &serde_json::json!({})).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes machine `m`'s token: it registers again to go on; its repository stays.
pub(super) async fn revoke_machine(AxState(state): St, headers: HeaderMap, Path(m): Path<String>) -> ApiResult<StatusCode> {
    let by = owner(&state, &headers, "revokes machine tokens").await?;
    if !state.db.revoke_machine(&m, chrono::Utc::now().timestamp()).await? {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no machine {m}")));
    }
    tracing::info!("{by} revoked the token of machine {m}");
    state.db.audit(&format!("user {by}"), "machine-revoked", &m, &serde_json::json!({})).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets a user's dashboard password: owners for anyone, a user for itself.
pub(super) async fn set_password(
    AxState(state): St,
    headers: HeaderMap,
    Path(name): Path<String>,
    Json(b): Json<NewPassword>,
) -> ApiResult<StatusCode> {
    match principal(&state, &headers).await? {
        Principal::User { role: Role::Owner, .. } => {}
        Principal::User { name: me, .. } if me == name => {}
        _ => return Err(ApiError(StatusCode::FORBIDDEN, "only an owner sets another user's password".into())),
    }
    if b.password.chars().count() < 16 || b.password.len() > 1024 {
        return Err(ApiError(StatusCode::BAD_REQUEST, "a dashboard password has 16 to 1024 characters".into()));
    }
    if !state.db.set_password(&name, &b.password).await? {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no user named {name:?}")));
    }
    tracing::info!("set the dashboard password of {name}");
    Ok(StatusCode::NO_CONTENT)
}
