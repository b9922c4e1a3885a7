//! `POST /v1/users/{name}/unlock`: an owner clears a user's dashboard lockout (too many failed
//! password logins, crate::dashboard) and forgets its failed logins; audit-logged.

use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use ferry_api::UserUnlocked;

use super::{principal, ApiError, ApiResult, St};
use crate::db::logins::Scope;
use crate::db::Principal;
use crate::Role;

pub(super) async fn unlock(AxState(state): St, headers: HeaderMap, Path(name): Path<String>) -> ApiResult<Json<UserUnlocked>> {
    let Principal::User { role: Role::Owner, name: owner } = principal(&state, &headers).await? else {
        return Err(ApiError(StatusCode::FORBIDDEN, "only an owner clears a user's dashboard lockout".into()));
    };
    if !state.db.user_exists(&name).await? {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no user named {name:?}")));
    }
    let was_locked = state.db.clear_login_failures(Scope::User, &name, chrono::Utc::now().timestamp()).await?;
    state
        .db
        .audit(&format!("user {owner}"), "login-unlocked", &format!("user {name}"), &serde_json::json!({"was_locked": was_locked}))
        .await?;
    tracing::info!("{owner} cleared the dashboard lockout of {name} (locked: {was_locked})");
    Ok(Json(UserUnlocked { name, was_locked }))
}
