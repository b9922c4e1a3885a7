//! The vault's API (docs/protocol.md) as typed calls of [`VaultClient`]: one method per
//! endpoint the command line uses, taking and returning the `ferry_api` types, so no caller
//! handles the vault's JSON itself. Errors are [`StoreError`]s, the vault's own message in
//! their text (`vault: ...`).

use ferry_api::{
    BackupPolicy, Cleanup, Credentials, DeviceErased, DeviceJob, DeviceKeyReply, DeviceOrderRequest, DeviceStatus, DiskKeyReply,
    DiskSetReport, ExportFailure, ExportJob, ExportUnlock, Health, ImportJob, JobOpened, JobUpdate, JobView, MachineView, NewExportJob,
    NewImportJob, NewJob, NewPassword, NewUser, OrderedDevice, PreparedDevice, Receipt, ReceivedDisks, RegisterRequest, Registered,
    RetentionReport, Shipment, SiteImportJob, SoftDeletedPoint, TransferReport, Unlock, UserAdded, UserUnlocked, UserView,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Result, StoreError};
use crate::vault::VaultClient;

/// The body of a call that needs none: `{}`.
#[derive(Serialize)]
struct Empty {}

const EMPTY: Empty = Empty {};

/// A request body as JSON (through a `Value`, so its fields go out in name order, as they
/// always have).
fn body<B: Serialize>(op: &'static str, path: &str, b: &B) -> Result<serde_json::Value> {
    serde_json::to_value(b).map_err(|e| StoreError::permanent(op, path, format!("request body: {e}")))
}

fn answer<T: DeserializeOwned>(op: &'static str, path: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::permanent(op, path, format!("vault answer is not what this client expects: {e}")))
}

/// A control-plane call's error as users see it: the vault's sentence, without the API path
/// (the path stays in the log at debug level).
fn plain(e: StoreError) -> StoreError {
    tracing::debug!("vault call {} {}: {}", e.op, e.key, e.message);
    StoreError { op: "", key: String::new(), ..e }
}

impl VaultClient {
    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let bytes = self.send("get", path, self.request(reqwest::Method::GET, path)).map_err(plain)?;
        answer("get", path, &bytes).map_err(plain)
    }

    /// POSTs `b` and returns the vault's answer.
    fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, b: &B) -> Result<T> {
        let req = self.request(reqwest::Method::POST, path).json(&body("post", path, b).map_err(plain)?);
        answer("post", path, &self.send("post", path, req).map_err(plain)?).map_err(plain)
    }

    /// POSTs `b` to a call that answers without a body (or with nothing this client needs).
    fn post_only<B: Serialize>(&self, path: &str, b: &B) -> Result<()> {
        let req = self.request(reqwest::Method::POST, path).json(&body("post", path, b).map_err(plain)?);
        self.send("post", path, req).map(|_| ()).map_err(plain)
    }

    fn put<B: Serialize>(&self, path: &str, b: &B) -> Result<()> {
        let req = self.request(reqwest::Method::PUT, path).json(&body("put", path, b).map_err(plain)?);
        self.send("put", path, req).map(|_| ()).map_err(plain)
    }

    // The control plane.

    /// The protocol version and the key that signs receipts and unlock credentials.
    pub fn health(&self) -> Result<Health> {
        self.get("/v1/health")
    }

    /// A one-use registration secret (owners).
    pub fn credentials(&self) -> Result<Credentials> {
        self.post("/v1/credentials", &EMPTY)
    }

    /// Registers this machine (a client without a token).
    pub fn register(&self, r: &RegisterRequest) -> Result<Registered> {
        self.post("/v1/register", r)
    }

    pub fn add_user(&self, u: &NewUser) -> Result<UserAdded> {
        self.post("/v1/users", u)
    }

    /// The users and their tokens' dates (owners).
    pub fn users(&self) -> Result<Vec<UserView>> {
        self.get("/v1/users")
    }

    /// Revokes a user's token and ends its sessions (owners).
    pub fn revoke_user(&self, user: &str) -> Result<()> {
        self.post_only(&format!("/v1/users/{user}/revoke"), &EMPTY)
    }

    /// Removes a user (owners).
    pub fn remove_user(&self, user: &str) -> Result<()> {
        let path = format!("/v1/users/{user}");
        self.send("delete", &path, self.request(reqwest::Method::DELETE, &path)).map(|_| ()).map_err(plain)
    }

    /// Revokes machine `id`'s token (owners).
    pub fn revoke_machine(&self, id: &str) -> Result<()> {
        self.post_only(&format!("/v1/machines/{id}/revoke"), &EMPTY)
    }

    pub fn set_password(&self, user: &str, p: &NewPassword) -> Result<()> {
        self.put(&format!("/v1/users/{user}/password"), p)
    }

    /// Clears user `user`'s dashboard lockout and failed logins (owners).
    pub fn unlock_user(&self, user: &str) -> Result<UserUnlocked> {
        self.post(&format!("/v1/users/{user}/unlock"), &EMPTY)
    }

    pub fn machines(&self) -> Result<Vec<MachineView>> {
        self.get("/v1/machines")
    }

    /// The jobs of every machine, or of the machine named `machine`.
    pub fn jobs(&self, machine: Option<&str>) -> Result<Vec<JobView>> {
        match machine {
            Some(m) => self.get(&format!("/v1/jobs?machine={m}")),
            None => self.get("/v1/jobs"),
        }
    }

    /// The policy of the machine with ID `machine`.
    pub fn policy(&self, machine: &str) -> Result<BackupPolicy> {
        self.get(&format!("/v1/machines/{machine}/policy"))
    }

    pub fn set_policy(&self, machine: &str, p: &BackupPolicy) -> Result<()> {
        self.put(&format!("/v1/machines/{machine}/policy"), p)
    }

    /// Opens a job of `kind` for the machine with ID `machine` (the machine itself).
    pub fn open_job(&self, machine: &str, kind: &str) -> Result<JobOpened> {
        self.post(&format!("/v1/machines/{machine}/jobs"), &NewJob { kind: kind.into() })
    }

    /// A job's heartbeat or end (its errors as [`ferry_api::reported_errors`] keeps them).
    pub fn report_job(&self, machine: &str, job: i64, u: &JobUpdate) -> Result<()> {
        let u = JobUpdate { errors: ferry_api::reported_errors(&u.errors, 50), ..u.clone() };
        self.post_only(&format!("/v1/machines/{machine}/jobs/{job}"), &u)
    }

    /// Enforces the machine's retention now.
    pub fn run_retention(&self, machine: &str) -> Result<RetentionReport> {
        self.post(&format!("/v1/machines/{machine}/retention"), &EMPTY)
    }

    /// The machine's soft-deleted recovery points.
    pub fn soft_deleted(&self, machine: &str) -> Result<Vec<SoftDeletedPoint>> {
        self.get(&format!("/v1/machines/{machine}/deleted"))
    }

    /// Puts soft-deleted recovery point `rp` (hex) back.
    pub fn undelete(&self, machine: &str, rp: &str) -> Result<()> {
        self.post_only(&format!("/v1/machines/{machine}/deleted/{rp}/undelete"), &EMPTY)
    }

    // Import jobs.

    pub fn import_jobs(&self) -> Result<Vec<ImportJob>> {
        self.get("/v1/import-jobs")
    }

    pub fn import_job(&self, name: &str) -> Result<SiteImportJob> {
        self.get(&format!("/v1/import-jobs/{name}"))
    }

    /// Creates an import job (or finds again the one a killed offline backup created).
    pub fn create_import_job(&self, j: &NewImportJob) -> Result<SiteImportJob> {
        self.post("/v1/import-jobs", j)
    }

    /// The job's disk key (hex).
    pub fn disk_key(&self, name: &str) -> Result<String> {
        self.get::<DiskKeyReply>(&format!("/v1/import-jobs/{name}/disk-key")).map(|k| k.disk_key)
    }

    /// Records what diskprep wrote.
    pub fn record_disks(&self, name: &str, set: &DiskSetReport) -> Result<SiteImportJob> {
        self.post(&format!("/v1/import-jobs/{name}/disks"), set)
    }

    pub fn ship_import_job(&self, name: &str, s: &Shipment) -> Result<SiteImportJob> {
        self.post(&format!("/v1/import-jobs/{name}/ship"), s)
    }

    pub fn cancel_import_job(&self, name: &str) -> Result<SiteImportJob> {
        self.post(&format!("/v1/import-jobs/{name}/cancel"), &EMPTY)
    }

    /// Records the disks as the import operator received them.
    pub fn receive_disks(&self, name: &str, r: &ReceivedDisks) -> Result<SiteImportJob> {
        self.post(&format!("/v1/import-jobs/{name}/receive"), r)
    }

    /// Records the copy's progress or end (its errors, and each disk's, as
    /// [`ferry_api::reported_errors`] keeps them: the disks' error logs have them all).
    pub fn report_transfer(&self, name: &str, t: &TransferReport) -> Result<SiteImportJob> {
        let mut t = t.clone();
        t.errors = ferry_api::reported_errors(&t.errors, 20);
        for d in &mut t.disks {
            d.errors = ferry_api::reported_errors(&d.errors, 5);
        }
        self.post(&format!("/v1/import-jobs/{name}/transfer"), &t)
    }

    /// Starts the vault's ingest of a completed import.
    pub fn start_ingest(&self, name: &str) -> Result<SiteImportJob> {
        self.post(&format!("/v1/import-jobs/{name}/ingest"), &EMPTY)
    }

    /// The signed ingest receipt (not verified here: see [`Receipt::verify`]).
    pub fn receipt(&self, name: &str) -> Result<Receipt> {
        self.get(&format!("/v1/import-jobs/{name}/receipt"))
    }

    /// Removes the ingested seed from the job's container.
    pub fn clean_up_import_job(&self, name: &str) -> Result<Cleanup> {
        self.post(&format!("/v1/import-jobs/{name}/cleanup"), &EMPTY)
    }

    // Export jobs.

    pub fn export_jobs(&self) -> Result<Vec<ExportJob>> {
        self.get("/v1/export-jobs")
    }

    pub fn export_job(&self, name: &str) -> Result<ExportJob> {
        self.get(&format!("/v1/export-jobs/{name}"))
    }

    pub fn create_export_job(&self, j: &NewExportJob) -> Result<ExportJob> {
        self.post("/v1/export-jobs", j)
    }

    /// `ferry export run` begins or resumes: the job is being prepared.
    pub fn start_export(&self, name: &str) -> Result<ExportJob> {
        self.post(&format!("/v1/export-jobs/{name}/start"), &EMPTY)
    }

    /// The export job's disk key (hex), while its disks are written.
    pub fn export_disk_key(&self, name: &str) -> Result<String> {
        self.get::<DiskKeyReply>(&format!("/v1/export-jobs/{name}/disk-key")).map(|k| k.disk_key)
    }

    /// Records the export disks written.
    pub fn record_export_disks(&self, name: &str, set: &DiskSetReport) -> Result<ExportJob> {
        self.post(&format!("/v1/export-jobs/{name}/disks"), set)
    }

    /// Records why `ferry export run` stopped (the job is `failed` until run again).
    pub fn fail_export(&self, name: &str, f: &ExportFailure) -> Result<ExportJob> {
        self.post(&format!("/v1/export-jobs/{name}/fail"), f)
    }

    pub fn ship_export_job(&self, name: &str, s: &Shipment) -> Result<ExportJob> {
        self.post(&format!("/v1/export-jobs/{name}/ship"), s)
    }

    pub fn cancel_export_job(&self, name: &str) -> Result<ExportJob> {
        self.post(&format!("/v1/export-jobs/{name}/cancel"), &EMPTY)
    }

    /// The disk-unlock file's content (a secret: the disk key).
    pub fn export_unlock(&self, name: &str) -> Result<ExportUnlock> {
        self.get(&format!("/v1/export-jobs/{name}/unlock"))
    }

    // Seed devices.

    pub fn order_device(&self, o: &DeviceOrderRequest) -> Result<OrderedDevice> {
        self.post("/v1/devices", o)
    }

    pub fn device_jobs(&self) -> Result<Vec<ImportJob>> {
        self.get("/v1/devices")
    }

    /// A device job with its audit log.
    pub fn device_job(&self, name: &str) -> Result<DeviceJob> {
        self.get(&format!("/v1/devices/{name}"))
    }

    /// Adds the next device to the job.
    pub fn prepare_device(&self, name: &str) -> Result<PreparedDevice> {
        self.post(&format!("/v1/devices/{name}/prepare"), &EMPTY)
    }

    /// A fresh unlock credential for the job's devices.
    pub fn device_unlock(&self, name: &str) -> Result<Unlock> {
        self.get(&format!("/v1/devices/{name}/unlock"))
    }

    /// The job's device key (hex).
    pub fn device_key(&self, name: &str) -> Result<String> {
        self.get::<DeviceKeyReply>(&format!("/v1/devices/{name}/key")).map(|k| k.device_key)
    }

    /// Records a logistics move.
    pub fn set_device_status(&self, name: &str, s: &DeviceStatus) -> Result<ImportJob> {
        self.post(&format!("/v1/devices/{name}/status"), s)
    }

    /// The machine starts writing the job's devices.
    pub fn device_in_use(&self, name: &str) -> Result<ImportJob> {
        self.post(&format!("/v1/devices/{name}/in-use"), &EMPTY)
    }

    /// The machine sealed the job's devices.
    pub fn device_sealed(&self, name: &str, set: &DiskSetReport) -> Result<ImportJob> {
        self.post(&format!("/v1/devices/{name}/sealed"), set)
    }

    /// A device was erased.
    pub fn device_erased(&self, name: &str, e: &DeviceErased) -> Result<ImportJob> {
        self.post(&format!("/v1/devices/{name}/erased"), e)
    }
}
