//! `/v1/export-jobs/...`: export jobs, a recovery point travelling to its machine on disks
//! (docs/protocol.md "Export jobs", docs/design/export-jobs.md).
//!
//! Who may do what:
//! - owners, contributors and import operators create, ship and cancel export jobs (a machine
//!   creates them for itself only); readers and backup operators read them;
//! - import operators and owners write the disks at the vault's site (`ferry export run`): they
//!   read the disk key and the job's objects (only those: an import operator reads no other
//!   object of any machine) while the job is being prepared;
//! - the disk-unlock file goes to whoever may read the machine's backups (the machine, owners,
//!   contributors, backup operators, readers), never to import operators, who handle the disks.

use axum::body::Bytes;
use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use ferry_api::{
    export_label_job, DiskKeyReply, DiskSetReport, ExportFailure, ExportJob, ExportUnlock, JobState, NewExportJob, ObjectEntry, ObjectSize,
    Shipment, EXPORT_UNLOCK_MAGIC,
};
use ferry_format::RecoveryPointId;
use serde_json::json;

use super::devices::actor;
use super::imports::{forbidden, valid_name};
use super::{allowed, blocking, principal, read_object, store_key, ApiError, ApiResult, Op, St};
use crate::db::export_jobs::NewExport;
use crate::db::Principal;
use crate::imports::{ship_within_s, Refusal};
use crate::{Role, State};

fn bad(msg: String) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg)
}

async fn job(state: &State, name: &str) -> ApiResult<ExportJob> {
    state.db.export_job(name).await?.ok_or_else(|| Refusal::NoSuchExportJob(name.into()).into())
}

/// The job, if the caller may see it (a machine sees only its own), and who is asking.
async fn access(state: &State, headers: &HeaderMap, name: &str) -> ApiResult<(ExportJob, Principal)> {
    let p = principal(state, headers).await?;
    let j = job(state, name).await?;
    if matches!(&p, Principal::Machine { id } if *id != j.machine) {
        return Err(Refusal::NoSuchExportJob(name.into()).into());
    }
    Ok((j, p))
}

/// Owners, contributors, import operators, and a machine for itself: create, ship, cancel.
fn manager(p: &Principal) -> bool {
    matches!(p, Principal::Machine { .. } | Principal::User { role: Role::Owner | Role::Contributor | Role::ImportOperator, .. })
}

/// Import operators and owners write the disks.
fn exporter(p: &Principal, j: &ExportJob, what: &str) -> ApiResult<()> {
    if !matches!(p, Principal::User { role: Role::Owner | Role::ImportOperator, .. }) {
        return Err(forbidden(what));
    }
    if j.state != JobState::Preparing {
        let name = &j.name;
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "export job {name} is {}: its disks are written only while it is being prepared (`ferry export run`)",
                j.state.as_str()
            ),
        ));
    }
    Ok(())
}

pub(super) async fn create(AxState(state): St, headers: HeaderMap, Json(b): Json<NewExportJob>) -> ApiResult<Json<ExportJob>> {
    let p = principal(&state, &headers).await?;
    if !manager(&p) {
        return Err(forbidden("create export jobs"));
    }
    if !valid_name(&b.name) {
        return Err(bad(format!(
            "export job name {:?}: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            b.name
        )));
    }
    let field_ok = |s: &str| !s.trim().is_empty() && s.len() <= 4096 && !s.chars().any(char::is_control);
    if b.paths.len() > 1000 || !b.paths.iter().all(|p| field_ok(p)) || b.return_address.as_deref().is_some_and(|a| !field_ok(a)) {
        return Err(bad("paths and the return address: one line each, at most 1000 paths".into()));
    }
    let Some((machine, _)) = state.db.machine_named(&b.machine).await? else {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no machine named {:?} (`ferry vault machines` lists them)", b.machine)));
    };
    if matches!(&p, Principal::Machine { id } if *id != machine) {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            format!("this token may not read machine {}: an export job is created by the machine itself or a vault user", b.machine),
        ));
    }
    let (store, m, wanted) = (state.store.clone(), machine.clone(), b.recovery_point.clone());
    let rp = tokio::task::spawn_blocking(move || crate::exports::resolve_point(store, &m, &wanted))
        .await
        .map_err(anyhow::Error::from)?
        .map_err(|e| ApiError(StatusCode::NOT_FOUND, e.to_string()))?;
    // The objects must be known now, not at the vault's site days later.
    let (store, m) = (state.store.clone(), machine.clone());
    tokio::task::spawn_blocking(move || crate::exports::export_objects(store, &m, &rp))
        .await
        .map_err(anyhow::Error::from)?
        .map_err(|e| ApiError(StatusCode::CONFLICT, e.to_string()))?;
    let key = zeroize::Zeroizing::new(ferry_crypto::random_bytes::<32>());
    let sealed = state.secrets.seal_disk_key(&export_label_job(&b.name), &key);
    let new = NewExport {
        name: &b.name,
        machine: &machine,
        recovery_point: &rp.to_hex(),
        paths: &b.paths,
        return_address: b.return_address.as_deref().map(str::trim),
        deadline: chrono::Utc::now().timestamp() + ship_within_s(),
        sealed_key: &sealed,
    };
    let j = state.db.create_export_job(&new).await??;
    let who = actor(&state, &p).await;
    state
        .db
        .audit(&who, "export-created", &j.name, &json!({"machine": b.machine, "recovery_point": j.recovery_point, "paths": j.paths}))
        .await?;
    Ok(Json(j))
}

pub(super) async fn list(AxState(state): St, headers: HeaderMap) -> ApiResult<Json<Vec<ExportJob>>> {
    let jobs = state.db.export_jobs().await?;
    Ok(Json(match principal(&state, &headers).await? {
        Principal::Machine { id } => jobs.into_iter().filter(|j| j.machine == id).collect(),
        Principal::User { .. } => jobs,
    }))
}

pub(super) async fn show(AxState(state): St, headers: HeaderMap, Path(name): Path<String>) -> ApiResult<Json<ExportJob>> {
    Ok(Json(access(&state, &headers, &name).await?.0))
}

/// `ferry export run` begins or resumes: the job is being prepared.
pub(super) async fn start(AxState(state): St, headers: HeaderMap, Path(name): Path<String>) -> ApiResult<Json<ExportJob>> {
    let (j, p) = access(&state, &headers, &name).await?;
    if !matches!(p, Principal::User { role: Role::Owner | Role::ImportOperator, .. }) {
        return Err(forbidden("write export disks (import operators and owners do, at the vault's site)"));
    }
    let j2 = state.db.start_export(&name).await??;
    if j.state != JobState::Preparing {
        state.db.audit(&actor(&state, &p).await, "export-started", &name, &json!({})).await?;
    }
    Ok(Json(j2))
}

pub(super) async fn disk_key(AxState(state): St, headers: HeaderMap, Path(name): Path<String>) -> ApiResult<Json<DiskKeyReply>> {
    let (j, p) = access(&state, &headers, &name).await?;
    exporter(&p, &j, "read disk keys")?;
    let key = open_key(&state, &name).await?;
    Ok(Json(DiskKeyReply { disk_key: hex::encode(key.as_slice()) }))
}

async fn open_key(state: &State, name: &str) -> ApiResult<zeroize::Zeroizing<[u8; 32]>> {
    let sealed = state.db.export_job_key(name).await?.ok_or_else(|| ApiError::from(Refusal::NoSuchExportJob(name.into())))?;
    Ok(state.secrets.open_disk_key(&export_label_job(name), &sealed)?)
}

fn point(j: &ExportJob) -> ApiResult<RecoveryPointId> {
    RecoveryPointId::from_hex(&j.recovery_point)
        .ok_or_else(|| anyhow::anyhow!("export job {}: bad recovery point in the database", j.name).into())
}

/// The objects the disks carry, with their sizes.
pub(super) async fn objects(AxState(state): St, headers: HeaderMap, Path(name): Path<String>) -> ApiResult<Json<Vec<ObjectEntry>>> {
    let (j, p) = access(&state, &headers, &name).await?;
    exporter(&p, &j, "read the objects of export jobs")?;
    let (store, rp) = (state.store.clone(), point(&j)?);
    let list = tokio::task::spawn_blocking(move || crate::exports::export_objects(store, &j.machine, &rp))
        .await
        .map_err(anyhow::Error::from)?
        .map_err(|e| ApiError(StatusCode::CONFLICT, e.to_string()))?;
    Ok(Json(list))
}

/// The job's object `key` (one the disks carry, nothing else), and its store key.
async fn job_object(state: &Arc<State>, headers: &HeaderMap, name: &str, key: &str) -> ApiResult<String> {
    let (j, p) = access(state, headers, name).await?;
    exporter(&p, &j, "read the objects of export jobs")?;
    let rp = point(&j)?;
    let k = store_key(&j.machine, key)?;
    let fixed = key == "config" || key.starts_with("keys/") || key.starts_with("index/") || key == rp.object_key();
    let listed = fixed || key == ferry_format::packlist::PackList::object_key(&rp) || {
        let (store, m, job) = (state.store.clone(), j.machine.clone(), j.name.clone());
        let cache = state.clone();
        tokio::task::spawn_blocking(move || cache.export_packs.packs(store, &job, &m, &rp))
            .await
            .map_err(anyhow::Error::from)??
            .contains(key)
    };
    if !listed {
        return Err(ApiError(StatusCode::FORBIDDEN, format!("{key} is not an object of export job {name}")));
    }
    Ok(k)
}

pub(super) async fn get_object(
    AxState(state): St,
    headers: HeaderMap,
    Path((name, key)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Bytes> {
    let k = job_object(&state, &headers, &name, &key).await?;
    read_object(&state, k, &q).await
}

pub(super) async fn head_object(
    AxState(state): St,
    headers: HeaderMap,
    Path((name, key)): Path<(String, String)>,
) -> ApiResult<Json<ObjectSize>> {
    let k = job_object(&state, &headers, &name, &key).await?;
    let store = state.store.clone();
    Ok(Json(ObjectSize { size: blocking(move || store.head(&k)).await? }))
}

pub(super) async fn disks(
    AxState(state): St,
    headers: HeaderMap,
    Path(name): Path<String>,
    Json(set): Json<DiskSetReport>,
) -> ApiResult<Json<ExportJob>> {
    let (j, p) = access(&state, &headers, &name).await?;
    exporter(&p, &j, "record export disks")?;
    if set.disks.is_empty() || set.set_id.len() != 32 || !set.set_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("a disk set has a 32-hex-digit set ID and at least one disk".into()));
    }
    let j = state.db.set_export_disks(&name, &set).await??;
    let sizes: Vec<u64> = set.disks.iter().map(|d| d.bytes).collect();
    state.db.audit(&actor(&state, &p).await, "export-disks", &name, &json!({"complete": set.complete, "disks": sizes})).await?;
    Ok(Json(j))
}

/// `ferry export run` stopped on an error: the job is `failed`, with it, until run again.
pub(super) async fn fail(
    AxState(state): St,
    headers: HeaderMap,
    Path(name): Path<String>,
    Json(b): Json<ExportFailure>,
) -> ApiResult<Json<ExportJob>> {
    let (j, p) = access(&state, &headers, &name).await?;
    exporter(&p, &j, "record export failures")?;
    let error = ferry_api::reported_errors(std::slice::from_ref(&b.error), 1).join("");
    let j = state.db.fail_export(&name, &error).await??;
    state.db.audit(&actor(&state, &p).await, "export-failed", &name, &json!({"error": error})).await?;
    Ok(Json(j))
}

pub(super) async fn ship(
    AxState(state): St,
    headers: HeaderMap,
    Path(name): Path<String>,
    Json(b): Json<Shipment>,
) -> ApiResult<Json<ExportJob>> {
    let (_, p) = access(&state, &headers, &name).await?;
    if !manager(&p) {
        return Err(forbidden("ship export jobs"));
    }
    let field_ok = |s: &str| !s.trim().is_empty() && s.len() <= 200 && !s.chars().any(char::is_control);
    if !field_ok(&b.carrier) || !field_ok(&b.tracking) {
        return Err(bad("carrier and tracking number: 1 to 200 characters, one line".into()));
    }
    let j = match state.db.ship_export(&name, b.carrier.trim(), b.tracking.trim()).await {
        Err(e) if e.to_string().to_lowercase().contains("unique") => {
            return Err(ApiError(
                StatusCode::CONFLICT,
                format!("tracking number {:?} is already used by another export job: check the number", b.tracking),
            ))
        }
        r => r??,
    };
    state.db.audit(&actor(&state, &p).await, "export-shipped", &name, &json!({"carrier": j.carrier, "tracking": j.tracking})).await?;
    Ok(Json(j))
}

pub(super) async fn cancel(AxState(state): St, headers: HeaderMap, Path(name): Path<String>) -> ApiResult<Json<ExportJob>> {
    let (_, p) = access(&state, &headers, &name).await?;
    if !manager(&p) {
        return Err(forbidden("cancel export jobs"));
    }
    let j = state.db.cancel_export(&name).await??;
    state.db.audit(&actor(&state, &p).await, "export-cancelled", &name, &json!({})).await?;
    Ok(Json(j))
}

/// The disk-unlock file, to whoever may read the machine's backups. Asked for once the disks
/// travel, it marks them delivered.
pub(super) async fn unlock(AxState(state): St, headers: HeaderMap, Path(name): Path<String>) -> ApiResult<Json<ExportUnlock>> {
    let (j, p) = access(&state, &headers, &name).await?;
    if !allowed(&p, &j.machine, Op::Read, "recovery-points/") {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            format!("this token may not read machine {}: the disk-unlock file goes to those who may restore it", j.machine_name),
        ));
    }
    if matches!(j.state, JobState::Cancelled) {
        return Err(ApiError(StatusCode::CONFLICT, format!("export job {name} was cancelled: its disks must not be used")));
    }
    if j.state == JobState::Shipped {
        state.db.deliver_export(&name).await??;
    }
    let key = open_key(&state, &name).await?;
    state.db.audit(&actor(&state, &p).await, "export-unlock-issued", &name, &json!({"state": j.state.as_str()})).await?;
    Ok(Json(ExportUnlock {
        magic: EXPORT_UNLOCK_MAGIC.into(),
        version: 1,
        job: j.name,
        machine: j.machine,
        machine_name: j.machine_name,
        recovery_point: j.recovery_point,
        set_id: j.set_id,
        disk_key: hex::encode(key.as_slice()),
    }))
}
