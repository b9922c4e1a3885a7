//! Ferry's object-store layer: byte objects under string keys, in a local folder, an Azure Blob
//! container or an S3 bucket, behind one synchronous trait with a written contract.
//!
//! It knows nothing of packs, indexes, keys or encryption: the repository layer above decides
//! what the objects are (`data/3f/3fa2…`, `index/…`, `keys/…`, `config`).
//!
//! # The contract, in short
//! (Written out on [`Store`] and on each of its methods.)
//! - Keys are `/`-separated relative paths of a small ASCII alphabet ([`validate_key`]).
//! - [`Store::put_if_absent`] never overwrites: it is an atomic conditional create on every
//!   backend (local hard link, `If-None-Match: *` on Azure and S3). [`Store::put`] replaces, for
//!   the few mutable objects.
//! - A write that returned `Ok` is durable and visible to `get`, `head` and `list`; a failed
//!   write never leaves a partial object at the key.
//! - `list` order is unspecified; deleting a missing object is `Ok`.
//! - Errors are [`StoreError`]s of kind `NotFound`, `AlreadyExists`, `Transient` (retrying may
//!   help) or `Permanent`, with messages that never contain secrets.
//! - The API blocks and may be used from many OS threads at once. Network backends run on a
//!   private tokio runtime: **never call a store from inside a tokio runtime** (use
//!   `spawn_blocking`), or tokio panics.
//!
//! # Opening a location
//! [`open`] takes a folder path or `file://PATH`, `az://CONTAINER[/PREFIX]` or
//! `s3://BUCKET[/PREFIX]`; credentials and endpoints come from the environment variables the
//! `object_store` crate reads (`AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`,
//! `AZURE_STORAGE_USE_EMULATOR` with `AZURITE_BLOB_STORAGE_URL`; `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`/`AWS_DEFAULT_REGION`,
//! `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, ...). A missing folder, container or bucket is created.
//!
//! # Backends
//! All three are `object_store` stores behind [`ObjectStoreBackend`], which adds key checks,
//! the error mapping, range checks (object_store silently shortens a range that reaches past
//! the end) and the blocking API.
//! - **Local folder** (`LocalFileSystem::new_with_prefix`, fsync on): an object is a plain file
//!   at its key. A write goes to a staging file `KEY#N`, is fsynced, then published atomically:
//!   `put` renames it over the key, `put_if_absent` hard-links it (failing if the key exists),
//!   and the parent folder is fsynced. A crash can leave a stray `KEY#N` (never listed), never
//!   a half-written object at `KEY`. New objects of 1 MiB or more (packs) are staged with
//!   `O_DIRECT`, bypassing the page cache, and ranges can be read into a caller's buffer
//!   (`local.rs`).
//! - **Azure Blob**: `put_if_absent` is `Put Blob` with `If-None-Match: *` (Azure answers 412,
//!   Azurite 409). A missing container is created with `Create Container`.
//! - **S3**: `put_if_absent` is `PutObject` with `If-None-Match: *` (AWS, moto, MinIO and R2
//!   answer 412). A missing bucket is created with `CreateBucket` (with a location constraint
//!   outside us-east-1).
//!
//! `object_store` has no call to create a container or bucket, so [`open`] sends that one
//! request itself (reqwest, the same TLS stack), after a one-page `list` found the container
//! missing. It signs with the store's own credential provider and `object_store`'s public
//! `AzureAuthorizer` / `AwsAuthorizer` (SharedKey or SAS or bearer token; SigV4 with session
//! tokens), rather than a second hand-written signer, so creation works with whatever
//! credentials the store itself works with.
//!
//! A `put_if_absent` that answers "already exists" is confirmed with a `head`: servers also
//! answer 409 to a write that lost a race with a delete, and that is reported `Transient`.
//!
//! # Wrappers
//! Cross-cutting behaviour wraps a store, and [`open`] composes the stack in one place:
//!
//! ```text
//! RetryStore            retries Transient errors (5 tries, 100 ms .. 3 s, jitter)
//!   FaultStore          only with FERRY_FAULT_INJECT=RATE[:SEED]: injected Transient failures
//!     ObjectStoreBackend  local folder | Azure Blob | S3, via the object_store crate
//! ```
//!
//! [`MemoryStore`] is an in-memory store for other crates' unit tests. The `conformance`
//! feature adds the module `ferry_store::conformance`, the suite every store must pass.
//!
//! # Example
//! ```no_run
//! use bytes::Bytes;
//!
//! ferry_store::init_tls();
//! let store = ferry_store::open("/tmp/ferry-example")?;
//! assert!(store.put_if_absent("config", Bytes::from_static(b"v1"))?);
//! assert_eq!(store.get("config")?, "v1");
//! for object in store.list("data/")? {
//!     println!("{} {}", object.key, object.size);
//! }
//! # Ok::<(), ferry_store::StoreError>(())
//! ```

#![forbid(unsafe_code)]

mod azure;
mod backend;
mod cloud;
mod credentials;
pub mod direct;
mod error;
mod fault;
mod local;
mod location;
mod memory;
mod retry;
mod s3;
mod store;
mod vault;
mod vault_api;

#[cfg(feature = "conformance")]
pub mod conformance;

use std::sync::{Arc, Once};
use std::time::Duration;

pub use backend::ObjectStoreBackend;
pub use credentials::{cert_file_fingerprint, cert_fingerprint, private_dir, write_private};
pub use error::{ErrorKind, Result, StoreError};
pub use fault::{FaultStore, FAULT_INJECT_ENV};
pub use location::location_within;
pub use memory::MemoryStore;
pub use retry::{RetryPolicy, RetryStore};
pub use store::{validate_key, ObjectInfo, Store, MAX_KEY_LEN};
pub use vault::{bytes_sent, set_rate_limit, VaultClient, VaultStore};

/// A machine's repository in a vault, with the same fault injection and retries as [`open`].
pub fn open_vault(client: VaultClient, machine: &str) -> Result<Arc<dyn Store>> {
    patient(Arc::new(VaultStore::new(client, machine)), machine)
}

/// The objects an export job carries, read-only ([`VaultStore::for_export`]), with the same
/// fault injection and retries as [`open_vault`].
pub fn open_export(client: VaultClient, job: &str) -> Result<Arc<dyn Store>> {
    patient(Arc::new(VaultStore::for_export(client, job)), job)
}

/// A vault store wrapped for the network: fault injection (`FERRY_FAULT_INJECT`, its default
/// seed taken from `seed_of`), then retries.
fn patient(mut store: Arc<dyn Store>, seed_of: &str) -> Result<Arc<dyn Store>> {
    if let Some((rate, seed)) = fault_injection(seed_of)? {
        store = Arc::new(FaultStore::new(store, rate, seed));
    }
    // Across a network, a dropped connection or a vault restart takes seconds to mend, not
    // milliseconds: 8 tries over about 20 s before a backup gives up (and its next run resumes).
    let patient = RetryPolicy { max_tries: 8, min_delay: Duration::from_millis(250), max_delay: Duration::from_secs(10) };
    Ok(Arc::new(RetryStore::with_policy(store, patient)))
}

/// Open a location as a store: a folder path or `file://PATH` (created if missing),
/// `az://CONTAINER[/PREFIX]` or `s3://BUCKET[/PREFIX]` (container or bucket created if
/// missing; see the crate doc for the environment variables read).
///
/// The store is wrapped in [`RetryStore`], and, when `FERRY_FAULT_INJECT=RATE[:SEED]` is set,
/// in a [`FaultStore`] below it (a testing aid). For Azure and S3 this makes one or two
/// requests (does the container exist, create it), so it fails on bad credentials or an
/// unreachable endpoint.
pub fn open(location: &str) -> Result<Arc<dyn Store>> {
    init_tls();
    let mut store: Arc<dyn Store> = match location::parse(location)? {
        location::Location::Local(path) => Arc::new(local::open(&path)?),
        location::Location::Azure { container, prefix } => Arc::new(azure::open(&container, prefix.as_deref())?),
        location::Location::S3 { bucket, prefix } => Arc::new(s3::open(&bucket, prefix.as_deref())?),
    };
    if let Some((rate, seed)) = fault_injection(location)? {
        tracing::warn!(rate, seed, "{FAULT_INJECT_ENV} is set: injecting store faults");
        store = Arc::new(FaultStore::new(store, rate, seed));
    }
    Ok(Arc::new(RetryStore::new(store)))
}

/// The `FERRY_FAULT_INJECT` setting, if set and not empty.
fn fault_injection(location: &str) -> Result<Option<(f64, u64)>> {
    parse_fault_injection(location, std::env::var(FAULT_INJECT_ENV).ok())
}

fn parse_fault_injection(location: &str, spec: Option<String>) -> Result<Option<(f64, u64)>> {
    let Some(spec) = spec.filter(|s| !s.trim().is_empty()) else {
        return Ok(None);
    };
    match FaultStore::parse_spec(&spec) {
        Some(setting) => Ok(Some(setting)),
        None => Err(StoreError::permanent(
            "open",
            location,
            format!("{FAULT_INJECT_ENV}={spec:?}: expected RATE[:SEED] with RATE in 0..1, e.g. 0.05:42"),
        )),
    }
}

/// Checks that `location` names a store [`open`] understands, without opening it.
pub fn check_location(location: &str) -> Result<()> {
    location::parse(location).map(|_| ())
}

/// Install rustls' aws-lc-rs crypto provider as the process default, once. The binary calls
/// this at start-up; [`open`] calls it too. Harmless if a provider is already installed.
pub fn init_tls() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err only means another provider was installed first; keep that one.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_injection_setting() {
        let parse = |v: Option<&str>| parse_fault_injection("loc", v.map(String::from));
        assert_eq!(parse(None).unwrap(), None);
        assert_eq!(parse(Some(" ")).unwrap(), None);
        assert_eq!(parse(Some("0.05:42")).unwrap(), Some((0.05, 42)));
        let err = parse(Some("5%")).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Permanent);
        assert!(err.to_string().contains("FERRY_FAULT_INJECT"), "{err}");
    }
}
