//! The HTTPS API (protocol v1, docs/protocol.md).

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Result;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ferry_api::{
    BackupPolicy, Credentials, ErrorReply, Health, JobOpened, JobUpdate, JobView, MachineView, NewJob, ObjectEntry, ObjectSize,
    ObjectWritten, RegisterRequest, Registered, RetentionReport, SoftDeletedPoint, Undeleted,
};

use crate::db::Principal;
use crate::verify::{self, Write};
use crate::{Role, State};

mod body;
mod conn;
mod devices;
mod exports;
mod imports;
mod logins;
mod users;

pub use conn::Limits;

type St = AxState<Arc<State>>;

/// An error answer: status and a message for the caller (never a secret).
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorReply { error: self.1 })).into_response()
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        tracing::error!("{e:#}");
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, "internal error; see the vault's log".into())
    }
}

/// Logged with its whole chain, as the `anyhow::Error` it was built as.
impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        anyhow::Error::from(e).into()
    }
}

fn store_error(e: ferry_store::StoreError) -> ApiError {
    use ferry_store::ErrorKind::{AlreadyExists, NotFound, Permanent, Transient};
    let status = match e.kind {
        NotFound => StatusCode::NOT_FOUND,
        AlreadyExists => StatusCode::CONFLICT,
        Transient => StatusCode::SERVICE_UNAVAILABLE,
        Permanent => StatusCode::BAD_REQUEST,
    };
    if status == StatusCode::SERVICE_UNAVAILABLE {
        tracing::warn!("store: {e}");
    }
    ApiError(status, e.to_string())
}

type ApiResult<T> = std::result::Result<T, ApiError>;

/// Serves the API on every TLS connection `listener` accepts, within the state's limits.
pub(crate) async fn run(listener: tokio::net::TcpListener, config: Arc<rustls::ServerConfig>, state: Arc<State>) -> Result<()> {
    let limits = state.limits.clone();
    conn::serve(listener, config, router(state), &limits).await
}

fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/credentials", post(credentials))
        .route("/v1/register", post(register))
        .route("/v1/machines", get(machines))
        .route("/v1/users", get(users::list).post(users::add))
        .route("/v1/users/{name}", axum::routing::delete(users::remove))
        .route("/v1/users/{name}/password", axum::routing::put(users::set_password))
        .route("/v1/users/{name}/revoke", post(users::revoke))
        .route("/v1/users/{name}/unlock", post(logins::unlock))
        .route("/v1/jobs", get(list_jobs))
        .route("/v1/machines/{m}/jobs", post(create_job))
        .route("/v1/machines/{m}/policy", get(get_policy).put(set_policy))
        .route("/v1/machines/{m}/jobs/{id}", post(update_job))
        .route("/v1/machines/{m}/objects/{*key}", get(get_object).put(put_object).delete(delete_object))
        .route("/v1/machines/{m}/head/{*key}", get(head_object))
        .route("/v1/machines/{m}/list", get(list_objects))
        .route("/v1/machines/{m}/retention", post(run_retention))
        .route("/v1/machines/{m}/revoke", post(users::revoke_machine))
        .route("/v1/machines/{m}/deleted", get(list_deleted))
        .route("/v1/machines/{m}/deleted/{rp}/undelete", post(undelete))
        .route("/v1/import-jobs", get(imports::list).post(imports::create))
        .route("/v1/import-jobs/{name}", get(imports::show))
        .route("/v1/import-jobs/{name}/disk-key", get(imports::disk_key))
        .route("/v1/import-jobs/{name}/disks", post(imports::disks))
        .route("/v1/import-jobs/{name}/ship", post(imports::ship))
        .route("/v1/import-jobs/{name}/cancel", post(imports::cancel))
        .route("/v1/import-jobs/{name}/receive", post(imports::receive))
        .route("/v1/import-jobs/{name}/transfer", post(imports::transfer))
        .route("/v1/import-jobs/{name}/ingest", post(imports::ingest))
        .route("/v1/import-jobs/{name}/receipt", get(imports::receipt))
        .route("/v1/import-jobs/{name}/cleanup", post(imports::cleanup))
        .route("/v1/export-jobs", get(exports::list).post(exports::create))
        .route("/v1/export-jobs/{name}", get(exports::show))
        .route("/v1/export-jobs/{name}/start", post(exports::start))
        .route("/v1/export-jobs/{name}/disk-key", get(exports::disk_key))
        .route("/v1/export-jobs/{name}/objects", get(exports::objects))
        .route("/v1/export-jobs/{name}/objects/{*key}", get(exports::get_object))
        .route("/v1/export-jobs/{name}/head/{*key}", get(exports::head_object))
        .route("/v1/export-jobs/{name}/disks", post(exports::disks))
        .route("/v1/export-jobs/{name}/fail", post(exports::fail))
        .route("/v1/export-jobs/{name}/ship", post(exports::ship))
        .route("/v1/export-jobs/{name}/cancel", post(exports::cancel))
        .route("/v1/export-jobs/{name}/unlock", get(exports::unlock))
        .route("/v1/devices", get(devices::list).post(devices::order))
        .route("/v1/devices/{name}", get(devices::show))
        .route("/v1/devices/{name}/prepare", post(devices::prepare))
        .route("/v1/devices/{name}/unlock", get(devices::unlock))
        .route("/v1/devices/{name}/key", get(devices::key))
        .route("/v1/devices/{name}/status", post(devices::status))
        .route("/v1/devices/{name}/in-use", post(devices::in_use))
        .route("/v1/devices/{name}/sealed", post(devices::sealed))
        .route("/v1/devices/{name}/erased", post(devices::erased))
        .route("/v1/audit", get(devices::audit))
        .route("/metrics", get(metrics))
        .route("/", get(crate::dashboard::overview))
        .route("/login", get(crate::dashboard::login_page).post(crate::dashboard::login))
        .route("/logout", post(crate::dashboard::logout))
        .route("/machines/{name}", get(crate::dashboard::machine))
        .route("/imports", get(crate::dashboard::imports))
        .route("/static/ferry.css", get(crate::dashboard::css))
        // Each call's body limit and minimum rate (body.rs) instead of axum's one limit for all.
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(state.clone(), body::guard))
        .with_state(state)
}

async fn principal(state: &State, headers: &HeaderMap) -> ApiResult<Principal> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "no token: send Authorization: Bearer TOKEN".into()))?;
    state.db.principal(token).await?.ok_or_else(|| {
        ApiError(StatusCode::UNAUTHORIZED, "this token is unknown, expired or revoked: ask the vault's owner for a new one".into())
    })
}

/// What is done to a machine's objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Read,
    Write,
    Delete,
}

/// The access rule: a machine reaches only its own repository and deletes only its locks
/// (retention is the vault's job, so a compromised machine cannot erase its backups); users by
/// role (docs/protocol.md).
pub(crate) fn allowed(p: &Principal, machine: &str, op: Op, key: &str) -> bool {
    match p {
        Principal::Machine { id } => id == machine && (op != Op::Delete || key.starts_with("locks/")),
        Principal::User { role, .. } => match role {
            Role::Owner | Role::Contributor => true,
            Role::BackupOperator => op != Op::Delete || key.starts_with("locks/"),
            // Reading takes a lock (restore, check): readers may hold locks, nothing else.
            Role::Reader => op == Op::Read || key.starts_with("locks/"),
            Role::ImportOperator => false,
        },
    }
}

/// The caller may do `op` to `key` of `machine`, a registered machine; checked from the
/// request's head alone, before any of its body is read.
async fn check(state: &State, headers: &HeaderMap, machine: &str, op: Op, key: &str) -> ApiResult<()> {
    let p = principal(state, headers).await?;
    if !allowed(&p, machine, op, key) {
        return Err(ApiError(StatusCode::FORBIDDEN, format!("this token may not {op:?} objects of machine {machine}").to_lowercase()));
    }
    // A machine's token names a registered machine; a user may name any.
    if matches!(p, Principal::User { .. }) {
        registered(state, machine).await?;
    }
    Ok(())
}

/// Machine `id` as messages name it, for callers allowed to know it: `NAME (ID)`.
async fn named(state: &State, id: &str) -> String {
    match state.db.machines().await {
        Ok(list) => list.into_iter().find(|(i, _, _)| i == id).map_or_else(|| id.to_string(), |(_, name, _)| format!("{name} ({id})")),
        Err(_) => id.to_string(),
    }
}

/// `m` is a registered machine (404 otherwise).
async fn registered(state: &State, m: &str) -> ApiResult<()> {
    if state.db.machine_exists(m).await? {
        Ok(())
    } else {
        Err(ApiError(StatusCode::NOT_FOUND, format!("no machine {m}")))
    }
}

/// The store key of a machine's object; refuses anything that is not a valid key.
fn store_key(machine: &str, key: &str) -> ApiResult<String> {
    if machine.len() != 32 || !machine.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no machine {machine:?}")));
    }
    ferry_store::validate_key("request", key).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.message))?;
    Ok(format!("machines/{machine}/{key}"))
}

/// Runs a blocking store call off the async threads (the store contract forbids calling it
/// from inside the runtime).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> ferry_store::Result<T> + Send + 'static) -> ApiResult<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(store_error),
        Err(e) => Err(ApiError::from(anyhow::anyhow!("store task: {e}"))),
    }
}

/// The protocol version, and the public key that signs ingest receipts (agents read it over the
/// pinned connection).
async fn health(AxState(state): St) -> Json<Health> {
    Json(Health { protocol: crate::PROTOCOL_VERSION, receipt_key: Some(state.secrets.public_key()) })
}

/// Prometheus metrics, for users' tokens (not machines').
async fn metrics(AxState(state): St, headers: HeaderMap) -> ApiResult<Response> {
    if matches!(principal(&state, &headers).await?, Principal::Machine { .. }) {
        return Err(ApiError(StatusCode::FORBIDDEN, "a machine's token does not read the vault's metrics".into()));
    }
    state.db.reap_jobs(chrono::Utc::now().timestamp(), job_timeout_s()).await?;
    let text = crate::metrics::render(&state.db).await?;
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response())
}

async fn credentials(AxState(state): St, headers: HeaderMap) -> ApiResult<Json<Credentials>> {
    match principal(&state, &headers).await? {
        Principal::User { role: Role::Owner, .. } => {}
        _ => return Err(ApiError(StatusCode::FORBIDDEN, "only an owner makes vault credentials".into())),
    }
    let expires = chrono::Utc::now().timestamp() + 10 * 24 * 3600;
    let secret = state.db.add_registration(expires).await?;
    Ok(Json(Credentials { secret, expires }))
}

/// Jobs whose agent has not reported for this long are marked failed
/// (`FERRY_VAULT_JOB_TIMEOUT_S` overrides it, for tests).
pub(crate) fn job_timeout_s() -> i64 {
    std::env::var("FERRY_VAULT_JOB_TIMEOUT_S").ok().and_then(|v| v.parse().ok()).unwrap_or(300)
}

/// The agent's own jobs: only the machine itself opens and reports them.
async fn machine_itself(state: &State, headers: &HeaderMap, m: &str) -> ApiResult<()> {
    match principal(state, headers).await? {
        Principal::Machine { id } if id == m => Ok(()),
        _ => Err(ApiError(StatusCode::FORBIDDEN, format!("only machine {m} reports its jobs"))),
    }
}

async fn create_job(AxState(state): St, headers: HeaderMap, Path(m): Path<String>, Json(b): Json<NewJob>) -> ApiResult<Json<JobOpened>> {
    machine_itself(&state, &headers, &m).await?;
    if !["backup", "offline-backup", "device-backup", "restore", "check", "retention", "gc"].contains(&b.kind.as_str()) {
        return Err(ApiError(StatusCode::BAD_REQUEST, format!("unknown job kind {:?}", b.kind)));
    }
    let id = state.db.create_job(&m, &b.kind, chrono::Utc::now().timestamp()).await?;
    Ok(Json(JobOpened { id }))
}

async fn update_job(
    AxState(state): St,
    headers: HeaderMap,
    Path((m, id)): Path<(String, i64)>,
    Json(u): Json<JobUpdate>,
) -> ApiResult<StatusCode> {
    machine_itself(&state, &headers, &m).await?;
    if !["running", "completed", "completed-with-errors", "failed"].contains(&u.state.as_str()) {
        return Err(ApiError(StatusCode::BAD_REQUEST, format!("unknown job state {:?}", u.state)));
    }
    if state.db.update_job(id, &m, &u, chrono::Utc::now().timestamp()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError(
            StatusCode::CONFLICT,
            format!("job {id} of machine {} is not running (it ended, or was marked failed)", named(&state, &m).await),
        ))
    }
}

async fn list_jobs(AxState(state): St, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> ApiResult<Json<Vec<JobView>>> {
    state.db.reap_jobs(chrono::Utc::now().timestamp(), job_timeout_s()).await?;
    let wanted = match q.get("machine") {
        Some(name) => Some(
            state
                .db
                .machines()
                .await?
                .into_iter()
                .find(|(_, n, _)| n == name)
                .map(|(id, _, _)| id)
                .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no machine named {name:?}")))?,
        ),
        None => None,
    };
    let machine = match principal(&state, &headers).await? {
        Principal::User { role, .. } if role != Role::ImportOperator => wanted,
        Principal::Machine { id } if wanted.as_ref().is_none_or(|w| *w == id) => Some(id),
        _ => return Err(ApiError(StatusCode::FORBIDDEN, "this token may not list these jobs".into())),
    };
    Ok(Json(state.db.jobs(machine.as_deref()).await?))
}

async fn set_policy(AxState(state): St, headers: HeaderMap, Path(m): Path<String>, Json(p): Json<BackupPolicy>) -> ApiResult<StatusCode> {
    match principal(&state, &headers).await? {
        Principal::User { role: Role::Owner | Role::Contributor, .. } => {}
        _ => return Err(ApiError(StatusCode::FORBIDDEN, "only owners and contributors set policies".into())),
    }
    registered(&state, &m).await?;
    p.validate().map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    state.db.set_policy(&m, &p).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_policy(AxState(state): St, headers: HeaderMap, Path(m): Path<String>) -> ApiResult<Json<BackupPolicy>> {
    match principal(&state, &headers).await? {
        Principal::Machine { id } if id == m => {}
        Principal::User { role, .. } if role != Role::ImportOperator => {}
        _ => return Err(ApiError(StatusCode::FORBIDDEN, format!("this token may not read the policy of machine {m}"))),
    }
    match state.db.policy(&m).await? {
        Some(p) => Ok(Json(p)),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("machine {} has no policy yet (set one with `ferry vault policy set`)", named(&state, &m).await),
        )),
    }
}

async fn register(AxState(state): St, Json(b): Json<RegisterRequest>) -> ApiResult<Json<Registered>> {
    let name_ok = !b.name.is_empty() && b.name.len() <= 64 && b.name.bytes().all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c));
    if !name_ok {
        return Err(ApiError(StatusCode::BAD_REQUEST, "a machine name is 1 to 64 letters, digits, '-', '_' or '.'".into()));
    }
    // A machine whose token was revoked registers again under its own name.
    if matches!(state.db.machine_named(&b.name).await?, Some((_, false))) {
        return Err(ApiError(StatusCode::CONFLICT, format!("a machine named {:?} is already registered; choose another --name", b.name)));
    }
    match state.db.register(&b.secret, &b.name, chrono::Utc::now().timestamp()).await? {
        Some((machine, token)) => {
            tracing::info!("registered machine {} ({machine})", b.name);
            Ok(Json(Registered { machine, token }))
        }
        None => Err(ApiError(
            StatusCode::FORBIDDEN,
            "these vault credentials are unknown, expired or already used; make new ones with `ferry vault credentials`".into(),
        )),
    }
}

async fn machines(AxState(state): St, headers: HeaderMap) -> ApiResult<Json<Vec<MachineView>>> {
    match principal(&state, &headers).await? {
        Principal::User { role, .. } if role != Role::ImportOperator => {}
        _ => return Err(ApiError(StatusCode::FORBIDDEN, "this token may not list machines".into())),
    }
    let traffic = state.db.traffic().await?;
    let samples = state.db.latest_samples().await?;
    let (statuses, _) = crate::alerts::status(&state.db, chrono::Utc::now().timestamp(), None).await?;
    let list: Vec<_> = state
        .db
        .machines()
        .await?
        .into_iter()
        .map(|(id, name, created)| {
            let [bytes_in, objects_in, bytes_out, objects_out] = traffic.get(&id).copied().unwrap_or_default();
            let s = samples.get(&id);
            let status = statuses.iter().find(|m| m.id == id);
            MachineView {
                state: status.map(|m| m.state.clone()),
                last_backup: status.and_then(|m| m.last_ok).map(crate::imports::rfc3339),
                id,
                name,
                created,
                bytes_received: bytes_in,
                objects_received: objects_in,
                bytes_sent: bytes_out,
                objects_sent: objects_out,
                stored_bytes: s.map(|s| s.stored_bytes),
                protected_bytes: s.map(|s| s.protected_bytes),
                sampled: s.map(|s| crate::imports::rfc3339(s.time)),
            }
        })
        .collect();
    Ok(Json(list))
}

async fn get_object(
    AxState(state): St,
    headers: HeaderMap,
    Path((m, key)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Bytes> {
    check(&state, &headers, &m, Op::Read, &key).await?;
    let data = read_object(&state, store_key(&m, &key)?, &q).await?;
    state.db.add_traffic(&m, 0, 0, data.len() as u64, 1).await?;
    Ok(data)
}

/// Reads store object `k`, or the `range=START-END` of it the query asks for.
async fn read_object(state: &State, k: String, q: &HashMap<String, String>) -> ApiResult<Bytes> {
    let store = state.store.clone();
    match q.get("range") {
        Some(r) => {
            let (a, b) = r
                .split_once('-')
                .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
                .ok_or_else(|| ApiError(StatusCode::BAD_REQUEST, format!("range {r:?}: expected START-END (END exclusive)")))?;
            blocking(move || store.get_range(&k, a..b)).await
        }
        None => blocking(move || store.get(&k)).await,
    }
}

async fn head_object(AxState(state): St, headers: HeaderMap, Path((m, key)): Path<(String, String)>) -> ApiResult<Json<ObjectSize>> {
    check(&state, &headers, &m, Op::Read, &key).await?;
    let k = store_key(&m, &key)?;
    let store = state.store.clone();
    let size = blocking(move || store.head(&k)).await?;
    Ok(Json(ObjectSize { size }))
}

/// Stores an upload. The caller and its right to the object are checked from the request's
/// head before the body is read (body.rs caps its size and rate); only an accepted object
/// counts in the machine's traffic.
async fn put_object(
    AxState(state): St,
    headers: HeaderMap,
    Path((m, key)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    body: Body,
) -> ApiResult<Json<ObjectWritten>> {
    check(&state, &headers, &m, Op::Write, &key).await?;
    let k = store_key(&m, &key)?;
    let body = body::read(body).await.map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("upload of {key} cut: {e}")))?;
    let how = verify::check_upload(&key, &body).map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("refused {key}: {e}")))?;
    let replace = q.get("mode").map(String::as_str) == Some("replace");
    if replace && how != Write::Replace {
        return Err(ApiError(StatusCode::BAD_REQUEST, format!("{key} is written once and never replaced")));
    }
    let (store, size) = (state.store.clone(), body.len() as u64);
    let created = if replace {
        blocking(move || store.put(&k, body).map(|()| true)).await?
    } else {
        blocking(move || store.put_if_absent(&k, body)).await?
    };
    state.db.add_traffic(&m, size, 1, 0, 0).await?;
    Ok(Json(ObjectWritten { created }))
}

async fn delete_object(AxState(state): St, headers: HeaderMap, Path((m, key)): Path<(String, String)>) -> ApiResult<StatusCode> {
    check(&state, &headers, &m, Op::Delete, &key).await?;
    let k = store_key(&m, &key)?;
    let store = state.store.clone();
    blocking(move || store.delete(&k)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_objects(
    AxState(state): St,
    headers: HeaderMap,
    Path(m): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Vec<ObjectEntry>>> {
    let prefix = q.get("prefix").cloned().unwrap_or_default();
    check(&state, &headers, &m, Op::Read, &prefix).await?;
    let base = store_key(&m, "x")?;
    let base = base[..base.len() - 1].to_string();
    let full = format!("{base}{prefix}");
    let store = state.store.clone();
    let found = blocking(move || store.list(&full)).await?;
    let list = found
        .into_iter()
        .filter_map(|o| o.key.strip_prefix(&base).map(|k| ObjectEntry { key: k.to_string(), size: o.size, modified: o.modified }))
        .collect();
    Ok(Json(list))
}

/// A user of one of `roles`, and `m` a registered machine.
async fn user_for_machine(state: &State, headers: &HeaderMap, m: &str, roles: &[Role], what: &str) -> ApiResult<()> {
    match principal(state, headers).await? {
        Principal::User { role, .. } if roles.contains(&role) => {}
        _ => return Err(ApiError(StatusCode::FORBIDDEN, format!("this token may not {what}"))),
    }
    registered(state, m).await
}

/// Enforces the machine's retention now (owners and contributors).
async fn run_retention(AxState(state): St, headers: HeaderMap, Path(m): Path<String>) -> ApiResult<Json<RetentionReport>> {
    user_for_machine(&state, &headers, &m, &[Role::Owner, Role::Contributor], "run retention").await?;
    match state.enforce_retention(&m).await? {
        Some(r) => Ok(Json(r)),
        None => Err(ApiError(
            StatusCode::CONFLICT,
            format!("retention of machine {} is running already; try again when it has finished", named(&state, &m).await),
        )),
    }
}

/// The machine's soft-deleted recovery points.
async fn list_deleted(AxState(state): St, headers: HeaderMap, Path(m): Path<String>) -> ApiResult<Json<Vec<SoftDeletedPoint>>> {
    let roles = [Role::Owner, Role::Contributor, Role::BackupOperator, Role::Reader];
    user_for_machine(&state, &headers, &m, &roles, "list soft-deleted recovery points").await?;
    let repo = crate::retention::MachineRepo::new(state.store.clone(), &m);
    let timing = crate::retention::Timing::from_env();
    let list = tokio::task::spawn_blocking(move || repo.soft_deleted(timing)).await.map_err(anyhow::Error::from)??;
    Ok(Json(list))
}

/// Puts a soft-deleted recovery point back (a restore-side operation: backup operators too).
async fn undelete(AxState(state): St, headers: HeaderMap, Path((m, rp)): Path<(String, String)>) -> ApiResult<Json<Undeleted>> {
    let roles = [Role::Owner, Role::Contributor, Role::BackupOperator];
    user_for_machine(&state, &headers, &m, &roles, "undelete recovery points").await?;
    let id = ferry_format::RecoveryPointId::from_hex(&rp)
        .ok_or_else(|| ApiError(StatusCode::BAD_REQUEST, format!("{rp:?} is not a recovery point ID (64 hex digits)")))?;
    let repo = crate::retention::MachineRepo::new(state.store.clone(), &m);
    if !tokio::task::spawn_blocking(move || repo.undelete(&id)).await.map_err(anyhow::Error::from)?? {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "machine {} has no soft-deleted recovery point {rp} (purged, or never deleted; `ferry vault deleted NAME` lists them)",
                named(&state, &m).await
            ),
        ));
    }
    Ok(Json(Undeleted { undeleted: rp }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_rules() {
        let a = "0".repeat(32);
        let b = "1".repeat(32);
        let machine = Principal::Machine { id: a.clone() };
        assert!(allowed(&machine, &a, Op::Read, "config"));
        assert!(allowed(&machine, &a, Op::Write, "data/00/x"));
        assert!(allowed(&machine, &a, Op::Delete, "locks/x"));
        assert!(!allowed(&machine, &a, Op::Delete, "data/00/x"), "retention is the vault's job");
        assert!(!allowed(&machine, &b, Op::Read, "config"), "another machine's repository");
        let user = |role| Principal::User { name: "u".into(), role };
        assert!(allowed(&user(Role::Owner), &b, Op::Delete, "data/00/x"));
        assert!(!allowed(&user(Role::BackupOperator), &b, Op::Delete, "data/00/x"));
        assert!(allowed(&user(Role::BackupOperator), &b, Op::Write, "data/00/x"));
        assert!(!allowed(&user(Role::Reader), &b, Op::Write, "data/00/x"));
        assert!(allowed(&user(Role::Reader), &b, Op::Write, "locks/x"));
        assert!(!allowed(&user(Role::ImportOperator), &b, Op::Read, "config"));
    }
}
