//! `/v1/devices/...` and `/v1/audit`: seed device jobs (docs/protocol.md "Seed devices").
//!
//! Who may do what:
//! - owners and contributors order devices, prepare them, read the unlock credential (which
//!   they give to the machine's owner apart from the device) and record logistics;
//! - import operators prepare devices, record logistics, read the device key to import and
//!   erase them (the import and ingest themselves are `/v1/import-jobs/...`);
//! - the job's machine marks its devices in use and reports the seal; it never reads the
//!   device key from the vault (it has it only through the credential its owner gives it);
//! - readers and backup operators read device jobs and the audit log, nothing else.

use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use ferry_api::{
    AuditEntry, DeviceErased, DeviceJob, DeviceKeyReply, DeviceOrderRequest, DeviceStatus, DiskSetReport, ImportJob, JobState,
    OrderedDevice, PreparedDevice, Unlock, UNLOCK_MAGIC,
};
use serde_json::json;

use super::{principal, ApiError, ApiResult, St};
use crate::db::Principal;
use crate::devices::{capacity_of, unlock_valid_s};
use crate::imports::Refusal;
use crate::{Role, State};

fn forbidden(what: &str) -> ApiError {
    ApiError(StatusCode::FORBIDDEN, format!("this token may not {what}"))
}

fn is_user(p: &Principal, roles: &[Role]) -> bool {
    matches!(p, Principal::User { role, .. } if roles.contains(role))
}

/// `user NAME` or `machine NAME`, for the audit log.
pub(super) async fn actor(state: &State, p: &Principal) -> String {
    match p {
        Principal::User { name, .. } => format!("user {name}"),
        Principal::Machine { id } => {
            let name = state.db.machines().await.ok().and_then(|ms| ms.into_iter().find(|(i, _, _)| i == id).map(|(_, n, _)| n));
            format!("machine {}", name.unwrap_or_else(|| id.clone()))
        }
    }
}

/// The device job and the caller; a machine sees only its own jobs.
async fn access(state: &State, headers: &HeaderMap, name: &str) -> ApiResult<(ImportJob, Principal)> {
    let p = principal(state, headers).await?;
    let j = state.db.device_job(name).await??;
    if let Principal::Machine { id } = &p {
        if *id != j.machine {
            return Err(Refusal::NoSuchJob(name.into()).into());
        }
    }
    Ok((j, p))
}

pub(super) async fn order(AxState(state): St, headers: HeaderMap, Json(b): Json<DeviceOrderRequest>) -> ApiResult<Json<OrderedDevice>> {
    let p = principal(&state, &headers).await?;
    if !is_user(&p, &[Role::Owner, Role::Contributor]) {
        return Err(forbidden("order seed devices"));
    }
    let Some(default) = capacity_of(&b.device_type) else {
        return Err(ApiError(StatusCode::BAD_REQUEST, format!("device type {:?}: use disk (7.2 TB) or box (80 TB)", b.device_type)));
    };
    let capacity = b.capacity.unwrap_or(default);
    if !(1 << 20..=crate::devices::BOX_CAPACITY).contains(&capacity) {
        return Err(ApiError(StatusCode::BAD_REQUEST, "a device's capacity is between 1 MiB and 80 TB".into()));
    }
    let machine = state
        .db
        .machines()
        .await?
        .into_iter()
        .find(|(_, n, _)| *n == b.machine)
        .map(|(id, _, _)| id)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no machine named {:?} (see `ferry vault machines`)", b.machine)))?;
    let name = format!("device-{}", hex::encode(ferry_crypto::random_bytes::<4>()));
    let container =
        state.import_containers.container_for(b.container.as_deref(), &name).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    let key = zeroize::Zeroizing::new(ferry_crypto::random_bytes::<32>());
    let sealed = state.secrets.seal_disk_key(&name, &key);
    let now = chrono::Utc::now().timestamp();
    let j = state.db.order_device_job(&name, &machine, &container, &sealed, &b.device_type, capacity, now).await??;
    let who = actor(&state, &p).await;
    state.db.audit(&who, "device-ordered", &name, &json!({"machine": b.machine, "type": b.device_type, "capacity": capacity})).await?;
    Ok(Json(OrderedDevice { job: j, device_job: name }))
}

pub(super) async fn list(AxState(state): St, headers: HeaderMap) -> ApiResult<Json<Vec<ImportJob>>> {
    let jobs = match principal(&state, &headers).await? {
        Principal::Machine { id } => state.db.device_jobs(Some(&id)).await?,
        Principal::User { .. } => state.db.device_jobs(None).await?,
    };
    Ok(Json(jobs))
}

pub(super) async fn show(AxState(state): St, headers: HeaderMap, Path(name): Path<String>) -> ApiResult<Json<DeviceJob>> {
    let (j, _) = access(&state, &headers, &name).await?;
    let audit = state.db.audit_log(Some(&name)).await?;
    Ok(Json(DeviceJob { job: j, audit }))
}

/// A fresh unlock credential for the job, valid from now, and the new expiry recorded.
async fn unlock_for(state: &State, j: &ImportJob, set_id: &str) -> ApiResult<Unlock> {
    let sealed = state.db.import_job_key(&j.name).await?.ok_or_else(|| ApiError::from(Refusal::NoSuchJob(j.name.clone())))?;
    let key = state.secrets.open_disk_key(&j.name, &sealed)?;
    let now = chrono::Utc::now();
    let expires = now.timestamp() + unlock_valid_s();
    let fmt = |t: i64| crate::imports::rfc3339(t);
    let mut u = Unlock {
        magic: UNLOCK_MAGIC.into(),
        version: 1,
        job: j.name.clone(),
        machine: j.machine.clone(),
        machine_name: j.machine_name.clone(),
        set_id: set_id.to_string(),
        device_key: hex::encode(key.as_slice()),
        issued: fmt(now.timestamp()),
        expires: fmt(expires),
        public_key: String::new(),
        signature: String::new(),
    };
    state.secrets.sign_unlock(&mut u);
    state.db.set_unlock_expires(&j.name, expires).await?;
    Ok(u)
}

/// Adds the next device to the job: its number, the set, the device key (to MAC its header)
/// and the unlock credential.
pub(super) async fn prepare(AxState(state): St, headers: HeaderMap, Path(name): Path<String>) -> ApiResult<Json<PreparedDevice>> {
    let (_, p) = access(&state, &headers, &name).await?;
    if !is_user(&p, &[Role::Owner, Role::Contributor, Role::ImportOperator]) {
        return Err(forbidden("prepare seed devices"));
    }
    let fresh = hex::encode(ferry_crypto::random_bytes::<16>());
    let expires = chrono::Utc::now().timestamp() + unlock_valid_s();
    let (j, number, set_id) = state.db.add_device(&name, &fresh, expires).await??;
    let unlock = unlock_for(&state, &j, &set_id).await?;
    let who = actor(&state, &p).await;
    state.db.audit(&who, "device-prepared", &name, &json!({"device": number, "unlock_expires": unlock.expires})).await?;
    let order = j.device.clone().ok_or_else(|| anyhow::anyhow!("device job {name} lost its order"))?;
    Ok(Json(PreparedDevice {
        job: j,
        device_number: number,
        set_id,
        device_key: unlock.device_key.clone(),
        capacity: order.capacity,
        device_type: order.device_type,
        unlock,
    }))
}

/// The unlock credential again, with a new expiry: to owners and contributors, while the
/// devices are with the customer.
pub(super) async fn unlock(AxState(state): St, headers: HeaderMap, Path(name): Path<String>) -> ApiResult<Json<Unlock>> {
    let (j, p) = access(&state, &headers, &name).await?;
    if !is_user(&p, &[Role::Owner, Role::Contributor]) {
        return Err(forbidden("read unlock credentials"));
    }
    if !crate::devices::WRITABLE.contains(&j.state) {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("device job {name} is {}: its devices are not written any more; no credential is given out", j.state.as_str()),
        ));
    }
    let set_id = j.set_id.clone().unwrap_or_default();
    let u = unlock_for(&state, &j, &set_id).await?;
    let who = actor(&state, &p).await;
    state.db.audit(&who, "device-unlock-issued", &name, &json!({"unlock_expires": u.expires})).await?;
    Ok(Json(u))
}

/// The device key, to the import operators and owners: to import the devices once they are
/// back, and to erase them after the ingest (or the cancellation).
pub(super) async fn key(AxState(state): St, headers: HeaderMap, Path(name): Path<String>) -> ApiResult<Json<DeviceKeyReply>> {
    let (j, p) = access(&state, &headers, &name).await?;
    if !is_user(&p, &[Role::Owner, Role::ImportOperator]) {
        return Err(forbidden("read device keys"));
    }
    use JobState::{
        Cancelled, Completed, CompletedWithErrors, Erased, Failed, InUse, Ingested, Ingesting, Received, Returning, Transferring,
    };
    if !matches!(
        j.state,
        InUse | Returning | Received | Transferring | Completed | CompletedWithErrors | Failed | Ingesting | Ingested | Erased | Cancelled
    ) {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("device job {name} is {}: its device key is given out for import and erasure only", j.state.as_str()),
        ));
    }
    let sealed = state.db.import_job_key(&name).await?.ok_or_else(|| ApiError::from(Refusal::NoSuchJob(name.clone())))?;
    let key = state.secrets.open_disk_key(&name, &sealed)?;
    Ok(Json(DeviceKeyReply { device_key: hex::encode(key.as_slice()) }))
}

/// A logistics move, by the vault's staff.
pub(super) async fn status(
    AxState(state): St,
    headers: HeaderMap,
    Path(name): Path<String>,
    Json(b): Json<DeviceStatus>,
) -> ApiResult<Json<ImportJob>> {
    let (_, p) = access(&state, &headers, &name).await?;
    if !is_user(&p, &[Role::Owner, Role::Contributor, Role::ImportOperator]) {
        return Err(forbidden("update device logistics"));
    }
    let field_ok = |s: &str| !s.trim().is_empty() && s.len() <= 200 && !s.chars().any(char::is_control);
    if b.carrier.as_deref().is_some_and(|c| !field_ok(c)) || b.tracking.as_deref().is_some_and(|t| !field_ok(t)) {
        return Err(ApiError(StatusCode::BAD_REQUEST, "carrier and tracking number: 1 to 200 characters, one line".into()));
    }
    if matches!(b.state, JobState::ShippedToCustomer | JobState::Returning) && b.tracking.is_none() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("a device that is {} travels with a tracking number: give --tracking (and --carrier)", b.state.as_str()),
        ));
    }
    let (carrier, tracking) = (b.carrier.as_deref().map(str::trim), b.tracking.as_deref().map(str::trim));
    let j = state.db.device_logistics(&name, b.state, carrier, tracking).await??;
    let who = actor(&state, &p).await;
    state.db.audit(&who, "device-status", &name, &json!({"state": b.state, "carrier": carrier, "tracking": tracking})).await?;
    Ok(Json(j))
}

/// The machine starts writing its devices.
pub(super) async fn in_use(AxState(state): St, headers: HeaderMap, Path(name): Path<String>) -> ApiResult<Json<ImportJob>> {
    let (_, p) = access(&state, &headers, &name).await?;
    if !matches!(p, Principal::Machine { .. }) {
        return Err(forbidden("write seed devices (only the job's machine does)"));
    }
    let j = state.db.device_in_use(&name, chrono::Utc::now().timestamp()).await??;
    Ok(Json(j))
}

/// The machine sealed its devices: the set's digest and each device's size.
pub(super) async fn sealed(
    AxState(state): St,
    headers: HeaderMap,
    Path(name): Path<String>,
    Json(set): Json<DiskSetReport>,
) -> ApiResult<Json<ImportJob>> {
    let (_, p) = access(&state, &headers, &name).await?;
    if !matches!(p, Principal::Machine { .. }) {
        return Err(forbidden("seal seed devices (only the job's machine does)"));
    }
    if set.manifest_digest.as_deref().is_none_or(|d| d.len() != 64 || !d.bytes().all(|b| b.is_ascii_hexdigit())) {
        return Err(ApiError(StatusCode::BAD_REQUEST, "a sealed device set has its seal's digest (64 hex digits)".into()));
    }
    let j = state.db.device_sealed(&name, &set).await??;
    let who = actor(&state, &p).await;
    let sizes: Vec<_> = set.disks.iter().map(|d| json!({"device": d.id, "bytes": d.bytes, "objects": d.objects})).collect();
    state.db.audit(&who, "device-sealed", &name, &json!({"digest": set.manifest_digest, "devices": sizes})).await?;
    Ok(Json(j))
}

/// An import operator erased a device: recorded in the job and the audit log.
pub(super) async fn erased(
    AxState(state): St,
    headers: HeaderMap,
    Path(name): Path<String>,
    Json(b): Json<DeviceErased>,
) -> ApiResult<Json<ImportJob>> {
    let (_, p) = access(&state, &headers, &name).await?;
    if !is_user(&p, &[Role::Owner, Role::ImportOperator]) {
        return Err(forbidden("erase seed devices"));
    }
    let j = state.db.device_erased(&name, b.device).await??;
    let who = actor(&state, &p).await;
    let detail = json!({"device": b.device, "files": b.files, "bytes_overwritten": b.bytes, "verified": true});
    state.db.audit(&who, "device-erased", &name, &detail).await?;
    Ok(Json(j))
}

/// The audit log, to users (not machines).
pub(super) async fn audit(AxState(state): St, headers: HeaderMap) -> ApiResult<Json<Vec<AuditEntry>>> {
    if matches!(principal(&state, &headers).await?, Principal::Machine { .. }) {
        return Err(forbidden("read the audit log"));
    }
    Ok(Json(state.db.audit_log(None).await?))
}
