//! A machine's repository in a Ferry vault, reached over HTTPS (protocol v1, docs/protocol.md).
//!
//! The vault's certificate is pinned by its SHA-256 fingerprint (from the vault credentials
//! file), so a self-signed vault needs no certificate authority and nothing else can pose as it.

use std::ops::Range;
use std::sync::Arc;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_api::{ObjectEntry, ObjectSize, ObjectWritten};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::backend::block_on;
use crate::credentials::cert_fingerprint;
use crate::error::{ErrorKind, Result, StoreError};
use crate::store::{ObjectInfo, Store};

/// Accepts exactly one certificate, named by its fingerprint; handshake signatures are still
/// verified, so only the holder of that certificate's key gets through.
#[derive(Debug)]
struct Pinned {
    sha256: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        if cert_fingerprint(end_entity.as_ref()) == self.sha256 {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("the vault's certificate is not the one in the vault credentials (fingerprint differs)".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// An HTTPS client for one vault, with its certificate pinned and a bearer token.
#[derive(Clone)]
pub struct VaultClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for VaultClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultClient").field("base", &self.base).finish_non_exhaustive()
        // never the token
    }
}

impl VaultClient {
    /// A client for the vault at `url` (`https://host:port`) whose certificate has the SHA-256
    /// fingerprint `cert_sha256`, sending `token` (may be empty for registration).
    pub fn new(url: &str, cert_sha256: &str, token: &str) -> Result<VaultClient> {
        crate::init_tls();
        let base = url.trim_end_matches('/').to_string();
        if !base.starts_with("https://") {
            return Err(StoreError::permanent("connect", url, "a vault URL starts with https://"));
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = Arc::new(Pinned { sha256: cert_sha256.trim().to_ascii_lowercase(), provider: provider.clone() });
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::permanent("connect", url, format!("TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(std::time::Duration::from_secs(20))
            // Below the vault's 30 s wait for a next request on a kept-alive connection
            // (docs/protocol.md, limits): a connection the vault is closing is not reused.
            .pool_idle_timeout(std::time::Duration::from_secs(20))
            .timeout(std::time::Duration::from_mins(10))
            .build()
            .map_err(|e| StoreError::permanent("connect", url, format!("HTTP client: {e}")))?;
        Ok(VaultClient { base, token: token.trim().to_string(), http })
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    pub(crate) fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        if self.token.is_empty() {
            r
        } else {
            r.bearer_auth(&self.token)
        }
    }

    /// Sends a request and returns the body of a 2xx answer, or the vault's error.
    pub(crate) fn send(&self, op: &'static str, key: &str, req: reqwest::RequestBuilder) -> Result<Bytes> {
        block_on(async {
            let resp = req.send().await.map_err(|e| StoreError::transient(op, key, format!("vault unreachable: {}", without_url(e))))?;
            let status = resp.status();
            let body = resp.bytes().await.map_err(|e| StoreError::transient(op, key, format!("vault answer cut: {}", without_url(e))))?;
            if status.is_success() {
                return Ok(body);
            }
            let message = serde_json::from_slice::<ferry_api::ErrorReply>(&body).map_or_else(|_| format!("HTTP {status}"), |r| r.error);
            let kind = match status.as_u16() {
                404 => ErrorKind::NotFound,
                409 => ErrorKind::AlreadyExists,
                408 | 429 | 500..=599 => ErrorKind::Transient,
                _ => ErrorKind::Permanent,
            };
            Err(StoreError::new(kind, op, key, format!("vault: {message}")))
        })?
    }

    /// POSTs JSON and returns the JSON answer.
    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> Result<serde_json::Value> {
        let bytes = self.send("post", path, self.request(reqwest::Method::POST, path).json(body))?;
        // Some calls answer 204 without a body (a job report).
        if bytes.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| StoreError::permanent("post", path, format!("vault answer is not JSON: {e}")))
    }

    /// PUTs JSON (answers without a body).
    pub fn put_json(&self, path: &str, body: &serde_json::Value) -> Result<()> {
        self.send("put", path, self.request(reqwest::Method::PUT, path).json(body)).map(|_| ())
    }

    /// GETs text (`/metrics`).
    pub fn get_text(&self, path: &str) -> Result<String> {
        let bytes = self.send("get", path, self.request(reqwest::Method::GET, path))?;
        String::from_utf8(bytes.to_vec()).map_err(|_| StoreError::permanent("get", path, "vault answer is not UTF-8"))
    }

    /// GETs JSON.
    pub fn get_json(&self, path: &str) -> Result<serde_json::Value> {
        let bytes = self.send("get", path, self.request(reqwest::Method::GET, path))?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::permanent("get", path, format!("vault answer is not JSON: {e}")))
    }
}

/// reqwest errors name the URL; keep the message to what went wrong.
fn without_url(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut s = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// Bytes per second that transfers to and from vaults may use, 0 = no limit (process-wide: the
/// agent sets it from its policy before each backup).
static RATE_LIMIT: AtomicU64 = AtomicU64::new(0);
/// Object bytes this process has sent to vaults and they accepted (what crossed the network for
/// the repository, beside requests' headers and the control plane's small bodies).
static SENT: AtomicU64 = AtomicU64::new(0);
/// When the next transfer may start, for pacing.
static NEXT_FREE: Mutex<Option<Instant>> = Mutex::new(None);

/// Object bytes sent to vaults by this process so far (a backup's network cost is the
/// difference across it).
pub fn bytes_sent() -> u64 {
    SENT.load(Ordering::Relaxed)
}

/// Limits transfers to and from vaults to `bytes_per_sec` on average (0 = no limit).
pub fn set_rate_limit(bytes_per_sec: u64) {
    RATE_LIMIT.store(bytes_per_sec, Ordering::Relaxed);
}

/// Waits until `n` more bytes fit the rate limit (transfers are paced one after another, each
/// taking its share of time).
fn pace(n: usize) {
    let rate = RATE_LIMIT.load(Ordering::Relaxed);
    if rate == 0 || n == 0 {
        return;
    }
    let start = {
        let mut next = NEXT_FREE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let start = next.map_or(now, |t| t.max(now));
        *next = Some(start + Duration::from_secs_f64(n as f64 / rate as f64));
        start
    };
    let wait = start.saturating_duration_since(Instant::now());
    if !wait.is_zero() {
        std::thread::sleep(wait);
    }
}

/// One machine's repository in a vault; or, read-only, the objects of one export job
/// ([`VaultStore::for_export`]).
#[derive(Debug)]
pub struct VaultStore {
    client: VaultClient,
    /// `/v1/machines/ID` or `/v1/export-jobs/NAME`: the calls' common path.
    base: String,
    /// What [`Store::describe`] says.
    what: String,
}

impl VaultStore {
    pub fn new(client: VaultClient, machine: &str) -> VaultStore {
        let what = format!("vault {} (machine {machine})", client.url());
        VaultStore { client, base: format!("/v1/machines/{machine}"), what }
    }

    /// The objects export job `job` carries, as an import operator or an owner reads them
    /// while the job's disks are written (`ferry export run`); nothing else is readable, and
    /// nothing is writable.
    pub fn for_export(client: VaultClient, job: &str) -> VaultStore {
        let what = format!("vault {} (export job {job})", client.url());
        VaultStore { client, base: format!("/v1/export-jobs/{job}"), what }
    }

    fn is_export(&self) -> bool {
        self.base.starts_with("/v1/export-jobs/")
    }

    fn object(&self, key: &str) -> String {
        format!("{}/objects/{key}", self.base)
    }

    fn put_mode(&self, op: &'static str, key: &str, data: Bytes, mode: &str) -> Result<bool> {
        crate::validate_key(op, key)?;
        if self.is_export() {
            return Err(StoreError::permanent(op, key, "an export job's objects are read-only"));
        }
        pace(data.len());
        let len = data.len() as u64;
        let req = self.client.request(reqwest::Method::PUT, &self.object(key)).query(&[("mode", mode)]).body(data);
        let answer = self.client.send(op, key, req)?;
        SENT.fetch_add(len, Ordering::Relaxed);
        let written: ObjectWritten =
            serde_json::from_slice(&answer).map_err(|e| StoreError::permanent(op, key, format!("vault answer: {e}")))?;
        Ok(written.created)
    }
}

impl Store for VaultStore {
    fn put(&self, key: &str, data: Bytes) -> Result<()> {
        self.put_mode("put", key, data, "replace").map(|_| ())
    }

    fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool> {
        self.put_mode("put_if_absent", key, data, "create")
    }

    fn get(&self, key: &str) -> Result<Bytes> {
        crate::validate_key("get", key)?;
        let b = self.client.send("get", key, self.client.request(reqwest::Method::GET, &self.object(key)))?;
        pace(b.len());
        Ok(b)
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        crate::validate_key("get_range", key)?;
        let req =
            self.client.request(reqwest::Method::GET, &self.object(key)).query(&[("range", format!("{}-{}", range.start, range.end))]);
        let b = self.client.send("get_range", key, req)?;
        pace(b.len());
        Ok(b)
    }

    fn head(&self, key: &str) -> Result<Option<u64>> {
        crate::validate_key("head", key)?;
        let path = format!("{}/head/{key}", self.base);
        let bytes = self.client.send("get", &path, self.client.request(reqwest::Method::GET, &path))?;
        let answer: ObjectSize =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::permanent("get", &path, format!("vault answer is not JSON: {e}")))?;
        Ok(answer.size)
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        // An export job lists all its objects at once.
        let (path, req) = if self.is_export() {
            let path = format!("{}/objects", self.base);
            let req = self.client.request(reqwest::Method::GET, &path);
            (path, req)
        } else {
            let path = format!("{}/list", self.base);
            let req = self.client.request(reqwest::Method::GET, &path).query(&[("prefix", prefix)]);
            (path, req)
        };
        let bytes = self.client.send("list", prefix, req)?;
        let entries: Vec<ObjectEntry> =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::permanent("list", &path, format!("vault answer: {e}")))?;
        Ok(entries
            .into_iter()
            .filter(|o| o.key.starts_with(prefix))
            .map(|o| ObjectInfo { key: o.key, size: o.size, modified: o.modified })
            .collect())
    }

    fn delete(&self, key: &str) -> Result<()> {
        crate::validate_key("delete", key)?;
        if self.is_export() {
            return Err(StoreError::permanent("delete", key, "an export job's objects are read-only"));
        }
        self.client.send("delete", key, self.client.request(reqwest::Method::DELETE, &self.object(key))).map(|_| ())
    }

    fn describe(&self) -> String {
        self.what.clone()
    }
}
