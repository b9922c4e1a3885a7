//! `/v1/import-jobs/...`: the import jobs of offline seeding (docs/protocol.md "Import jobs").
//!
//! Who may do what: the machine of a job, owners and contributors create, prepare (read the disk
//! key while the disks are being prepared), ship and cancel it; import operators and owners read
//! the disk key once the disks travel, record the import and start the ingest; every user reads
//! jobs (the disk key never appears in a job).

use std::sync::Arc;

use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use ferry_api::{
    Cleanup, DiskKeyReply, DiskRecord, DiskSetReport, ImportJob, JobState, NewImportJob, Receipt, ReceivedDisks, Shipment, SiteImportJob,
    TransferReport, DISK_STATES,
};

use super::{principal, ApiError, ApiResult, St};
use crate::db::Principal;
use crate::imports::Refusal;
use crate::{Role, State};

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        let status = match r {
            Refusal::NoSuchJob(_) | Refusal::NoSuchExportJob(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::CONFLICT,
        };
        ApiError(status, r.to_string())
    }
}

/// Who is asking, in the terms of import jobs.
enum Who {
    /// The machine the job belongs to, an owner or a contributor: prepares and ships.
    Preparer,
    /// An import operator or an owner: imports.
    Importer,
    /// Anyone else allowed to read.
    Reader,
}

pub(super) fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric()
}

async fn job(state: &State, name: &str) -> ApiResult<ImportJob> {
    state.db.import_job(name).await?.ok_or_else(|| Refusal::NoSuchJob(name.into()).into())
}

/// The job and what the caller is to it; a machine sees only its own jobs.
async fn access(state: &State, headers: &HeaderMap, name: &str) -> ApiResult<(ImportJob, Who, Principal)> {
    let p = principal(state, headers).await?;
    let j = job(state, name).await?;
    let who = match &p {
        Principal::Machine { id } if *id == j.machine => Who::Preparer,
        Principal::Machine { .. } => return Err(Refusal::NoSuchJob(name.into()).into()),
        Principal::User { role: Role::Owner | Role::Contributor, .. } => Who::Preparer,
        Principal::User { role: Role::ImportOperator, .. } => Who::Importer,
        Principal::User { .. } => Who::Reader,
    };
    Ok((j, who, p))
}

pub(super) fn forbidden(what: &str) -> ApiError {
    ApiError(StatusCode::FORBIDDEN, format!("this token may not {what}"))
}

fn is_owner(p: &Principal) -> bool {
    matches!(p, Principal::User { role: Role::Owner, .. })
}

fn with_site(state: &State, j: &ImportJob) -> SiteImportJob {
    SiteImportJob { job: j.clone(), shipping_address: state.shipping_address.clone() }
}

pub(super) async fn create(AxState(state): St, headers: HeaderMap, Json(b): Json<NewImportJob>) -> ApiResult<Json<SiteImportJob>> {
    let machine = match principal(&state, &headers).await? {
        Principal::Machine { id } => id,
        Principal::User { role: Role::Owner | Role::Contributor, .. } => {
            let name = b.machine.as_deref().ok_or_else(|| ApiError(StatusCode::BAD_REQUEST, "give the job's machine".into()))?;
            let machines = state.db.machines().await?;
            machines
                .into_iter()
                .find(|(_, n, _)| n == name)
                .map(|(id, _, _)| id)
                .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no machine named {name:?}")))?
        }
        Principal::User { .. } => return Err(forbidden("create import jobs")),
    };
    if !valid_name(&b.name) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("import job name {:?}: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", b.name),
        ));
    }
    let container =
        state.import_containers.container_for(b.container.as_deref(), &b.name).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    let key = zeroize::Zeroizing::new(ferry_crypto::random_bytes::<32>());
    let sealed = state.secrets.seal_disk_key(&b.name, &key);
    let now = chrono::Utc::now().timestamp();
    let j = state.db.create_import_job(&b.name, &machine, &container, &sealed, now).await??;
    Ok(Json(with_site(&state, &j)))
}

pub(super) async fn list(AxState(state): St, headers: HeaderMap) -> ApiResult<Json<Vec<ImportJob>>> {
    let jobs = match principal(&state, &headers).await? {
        Principal::Machine { id } => state.db.import_jobs(Some(&id)).await?,
        Principal::User { .. } => state.db.import_jobs(None).await?,
    };
    Ok(Json(jobs))
}

pub(super) async fn show(AxState(state): St, headers: HeaderMap, Path(name): Path<String>) -> ApiResult<Json<SiteImportJob>> {
    let (j, _, _) = access(&state, &headers, &name).await?;
    Ok(Json(with_site(&state, &j)))
}

/// The disk key (hex): to the preparers while the disks are prepared, to the importers once the
/// disks travel; to nobody after the import or once the job expired or was cancelled.
pub(super) async fn disk_key(AxState(state): St, headers: HeaderMap, Path(name): Path<String>) -> ApiResult<Json<DiskKeyReply>> {
    let (j, who, p) = access(&state, &headers, &name).await?;
    let preparing = JobState::EXPIRING.contains(&j.state);
    let importing = matches!(
        j.state,
        JobState::Shipping | JobState::Received | JobState::Transferring | JobState::CompletedWithErrors | JobState::Failed
    );
    let ok = match who {
        Who::Preparer => preparing,
        Who::Importer => importing,
        Who::Reader => false,
    } || (is_owner(&p) && (preparing || importing));
    if !ok {
        let state_name = j.state.as_str();
        return Err(match who {
            Who::Reader => forbidden("read disk keys"),
            // The import operator is early: the disks are not recorded as shipped.
            Who::Importer if preparing => ApiError(
                StatusCode::CONFLICT,
                format!(
                    "import job {name} is {state_name}: its disks are not recorded as shipped yet; record the shipment first \
                     with `ferry import-job ship {name} --carrier CARRIER --tracking NUMBER` (the machine or an owner), then import"
                ),
            ),
            Who::Importer => ApiError(
                StatusCode::CONFLICT,
                format!("import job {name} is {state_name}: its disks were imported already (see `ferry import-job show {name}`)"),
            ),
            _ => ApiError(
                StatusCode::CONFLICT,
                format!(
                    "import job {name} is {state_name}: its disks left for the vault's site, so the disk key is no longer given to the machine \
                     (see `ferry import-job show {name}`)"
                ),
            ),
        });
    }
    let sealed = state.db.import_job_key(&name).await?.ok_or_else(|| ApiError::from(Refusal::NoSuchJob(name.clone())))?;
    let key = state.secrets.open_disk_key(&name, &sealed)?;
    Ok(Json(DiskKeyReply { disk_key: hex::encode(key.as_slice()) }))
}

pub(super) async fn disks(
    AxState(state): St,
    headers: HeaderMap,
    Path(name): Path<String>,
    Json(set): Json<DiskSetReport>,
) -> ApiResult<Json<SiteImportJob>> {
    let (_, who, _) = access(&state, &headers, &name).await?;
    if !matches!(who, Who::Preparer) {
        return Err(forbidden("record prepared disks"));
    }
    if set.disks.is_empty() || set.set_id.len() != 32 || !set.set_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError(StatusCode::BAD_REQUEST, "a disk set has a 32-hex-digit set ID and at least one disk".into()));
    }
    if set.complete && set.manifest_digest.as_deref().is_none_or(|d| d.len() != 64) {
        return Err(ApiError(StatusCode::BAD_REQUEST, "a complete disk set has its manifest's digest (64 hex digits)".into()));
    }
    let j = state.db.set_import_disks(&name, &set).await??;
    Ok(Json(with_site(&state, &j)))
}

pub(super) async fn ship(
    AxState(state): St,
    headers: HeaderMap,
    Path(name): Path<String>,
    Json(b): Json<Shipment>,
) -> ApiResult<Json<SiteImportJob>> {
    let (_, who, _) = access(&state, &headers, &name).await?;
    if !matches!(who, Who::Preparer) {
        return Err(forbidden("ship import jobs"));
    }
    let field_ok = |s: &str| !s.trim().is_empty() && s.len() <= 200 && !s.chars().any(char::is_control);
    if !field_ok(&b.carrier) || !field_ok(&b.tracking) || b.return_address.as_deref().is_some_and(|a| !field_ok(a)) {
        return Err(ApiError(StatusCode::BAD_REQUEST, "carrier, tracking number and return address: 1 to 200 characters, one line".into()));
    }
    let j = state.db.ship_import_job(&name, b.carrier.trim(), b.tracking.trim(), b.return_address.as_deref().map(str::trim)).await??;
    Ok(Json(with_site(&state, &j)))
}

pub(super) async fn cancel(AxState(state): St, headers: HeaderMap, Path(name): Path<String>) -> ApiResult<Json<SiteImportJob>> {
    let (_, who, _) = access(&state, &headers, &name).await?;
    if !matches!(who, Who::Preparer) {
        return Err(forbidden("cancel import jobs"));
    }
    Ok(Json(with_site(&state, &state.db.cancel_import_job(&name).await??)))
}

fn importer(who: &Who, p: &Principal, what: &str) -> ApiResult<()> {
    if matches!(who, Who::Importer) || is_owner(p) {
        Ok(())
    } else {
        Err(forbidden(what))
    }
}

fn check_disks(disks: &[DiskRecord]) -> ApiResult<()> {
    match disks.iter().find(|d| !DISK_STATES.contains(&d.state.as_str())) {
        Some(d) => Err(ApiError(StatusCode::BAD_REQUEST, format!("disk {}: unknown state {:?}", d.id, d.state))),
        None => Ok(()),
    }
}

pub(super) async fn receive(
    AxState(state): St,
    headers: HeaderMap,
    Path(name): Path<String>,
    Json(b): Json<ReceivedDisks>,
) -> ApiResult<Json<SiteImportJob>> {
    let (_, who, p) = access(&state, &headers, &name).await?;
    importer(&who, &p, "import disks")?;
    check_disks(&b.disks)?;
    Ok(Json(with_site(&state, &state.db.receive_import_job(&name, &b.disks).await??)))
}

pub(super) async fn transfer(
    AxState(state): St,
    headers: HeaderMap,
    Path(name): Path<String>,
    Json(b): Json<TransferReport>,
) -> ApiResult<Json<SiteImportJob>> {
    let (_, who, p) = access(&state, &headers, &name).await?;
    importer(&who, &p, "import disks")?;
    check_disks(&b.disks)?;
    if !matches!(b.state, JobState::Transferring | JobState::Completed | JobState::CompletedWithErrors | JobState::Failed) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("an import reports transferring, completed, completed-with-errors or failed, not {}", b.state.as_str()),
        ));
    }
    Ok(Json(with_site(&state, &state.db.update_import_transfer(&name, b.state, &b.disks, &b.errors).await??)))
}

/// Starts the ingest of a completed import (in the background; the job shows its progress:
/// ingesting, then ingested, or back to completed with the error).
pub(super) async fn ingest(AxState(state): St, headers: HeaderMap, Path(name): Path<String>) -> ApiResult<Json<SiteImportJob>> {
    let (j, who, p) = access(&state, &headers, &name).await?;
    importer(&who, &p, "ingest seeds")?;
    if !state.ingesting.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(name.clone()) {
        return Ok(Json(with_site(&state, &j)));
    }
    // From ingesting too: a server that died while ingesting left it so; ingest is idempotent.
    let claimed =
        state.db.set_import_ingest(&name, &[JobState::Completed, JobState::Ingesting], JobState::Ingesting, None, None, &[]).await?;
    let j = match claimed {
        Ok(j) => j,
        Err(r) => {
            state.ingesting.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&name);
            return Err(r.into());
        }
    };
    let bg = state.clone();
    let job = j.clone();
    tokio::spawn(async move {
        run_ingest(&bg, &job).await;
        bg.ingesting.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&job.name);
    });
    Ok(Json(with_site(&state, &j)))
}

async fn run_ingest(state: &Arc<State>, j: &ImportJob) {
    let (store, container, machine, name) = (state.store.clone(), j.container.clone(), j.machine.clone(), j.name.clone());
    let digest = j.manifest_digest.clone().unwrap_or_default();
    let result = tokio::task::spawn_blocking(move || -> anyhow::Result<crate::ingest::Ingested> {
        let c = ferry_store::open(&container).map_err(|e| anyhow::anyhow!("open the container of import job {name}: {e}"))?;
        Ok(crate::ingest::ingest(c.as_ref(), &store, &machine, &name, &digest, ferry_api::manifest_digest)?)
    })
    .await
    .map_err(anyhow::Error::from)
    .and_then(|r| r);
    let outcome = match result {
        Ok(done) => {
            let mut receipt = ferry_api::Receipt {
                job: j.name.clone(),
                machine: j.machine.clone(),
                recovery_points: done.recovery_points.clone(),
                manifest_digest: j.manifest_digest.clone().unwrap_or_default(),
                objects: done.objects + done.present,
                bytes: done.bytes,
                ingested: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                public_key: String::new(),
                signature: String::new(),
            };
            state.secrets.sign(&mut receipt);
            let text = serde_json::to_string(&receipt).unwrap_or_default();
            tracing::info!(
                "import job {}: ingested {} objects ({} bytes, {} present already)",
                j.name,
                done.objects,
                done.bytes,
                done.present
            );
            let rp = done.recovery_points.join(",");
            state.db.set_import_ingest(&j.name, &[JobState::Ingesting], JobState::Ingested, Some(&rp), Some(&text), &[]).await
        }
        Err(e) => {
            tracing::warn!("import job {}: ingest failed: {e:#}", j.name);
            let errors = vec![format!("ingest failed: {e:#}")];
            state.db.set_import_ingest(&j.name, &[JobState::Ingesting], JobState::Completed, None, None, &errors).await
        }
    };
    if let Err(e) = outcome {
        tracing::warn!("import job {}: recording the ingest: {e:#}", j.name);
    }
}

/// The signed ingest receipt.
pub(super) async fn receipt(AxState(state): St, headers: HeaderMap, Path(name): Path<String>) -> ApiResult<Json<Receipt>> {
    let (j, _, _) = access(&state, &headers, &name).await?;
    match state.db.import_receipt(&name).await? {
        Some(r) => Ok(Json(serde_json::from_str(&r).map_err(anyhow::Error::from)?)),
        None => Err(ApiError(StatusCode::CONFLICT, format!("import job {name} is {}: it has no ingest receipt yet", j.state.as_str()))),
    }
}

/// Removes the container copy of an ingested seed.
pub(super) async fn cleanup(AxState(state): St, headers: HeaderMap, Path(name): Path<String>) -> ApiResult<Json<Cleanup>> {
    let (j, who, _) = access(&state, &headers, &name).await?;
    if !matches!(who, Who::Preparer) {
        return Err(forbidden("clean up import jobs"));
    }
    if j.state != JobState::Ingested {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("import job {name} is {}: cleanup waits until its seed is ingested and the receipt verified", j.state.as_str()),
        ));
    }
    let (container, job) = (j.container.clone(), name.clone());
    let removed =
        tokio::task::spawn_blocking(move || crate::containers::clean_up(&container, &job)).await.map_err(anyhow::Error::from)??;
    state.db.set_import_cleaned(&name).await?;
    Ok(Json(Cleanup { job: name, container_objects_removed: removed }))
}
