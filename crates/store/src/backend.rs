//! [`ObjectStoreBackend`]: the [`Store`] contract on top of any `object_store::ObjectStore`
//! (local folder, Azure Blob, S3), made synchronous with a shared tokio runtime.

use std::future::Future;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{GetOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::error::{Result, StoreError};
use crate::store::{check_range, validate_key, validate_prefix, ObjectInfo, Store};

/// Worker threads of the shared runtime. Futures are driven by `block_on` on the calling
/// thread, so the workers only run I/O drivers, timers and `object_store`'s blocking file
/// work; two are plenty.
const RUNTIME_WORKERS: usize = 2;

/// The process-wide runtime of all network/file stores. It is never dropped, so a store can be
/// dropped anywhere (dropping a tokio runtime inside async code panics).
fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(RUNTIME_WORKERS)
                .thread_name("ferry-store")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| StoreError::permanent("start", "runtime", e.clone()))
}

/// Run `future` to completion on the store runtime, blocking this thread.
///
/// Panics (in tokio) when called from inside a runtime: see the [`Store`] thread rules.
pub(crate) fn block_on<F: Future>(future: F) -> Result<F::Output> {
    Ok(runtime()?.block_on(future))
}

/// A [`Store`] over an `object_store` implementation.
pub struct ObjectStoreBackend {
    inner: Arc<dyn ObjectStore>,
    description: String,
}

impl std::fmt::Debug for ObjectStoreBackend {
    // Not derived: the inner store's Debug can print credentials (Azure access keys).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStoreBackend").field("location", &self.description).finish()
    }
}

fn path(op: &'static str, key: &str) -> Result<Path> {
    validate_key(op, key)?;
    Path::parse(key).map_err(|e| StoreError::permanent(op, key, format!("invalid key: {e}")))
}

impl ObjectStoreBackend {
    /// Wrap `inner`; `description` must hold no secrets.
    pub fn new(inner: Arc<dyn ObjectStore>, description: String) -> Self {
        ObjectStoreBackend { inner, description }
    }

    async fn get_range_async(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let op = "get_range";
        let location = path(op, key)?;
        let map = |e| StoreError::from_object_store(op, key, e);
        if range.start >= range.end {
            // object_store rejects empty ranges; answer from the size.
            let meta = self.inner.head(&location).await.map_err(map)?;
            check_range(key, &range, meta.size)?;
            return Ok(Bytes::new());
        }
        let options = GetOptions::new().with_range(Some(range.clone()));
        let result = match self.inner.get_opts(&location, options).await {
            Ok(result) => result,
            Err(e) => {
                let err = map(e);
                // A start past the end is a 416 / invalid range: say so plainly.
                if err.kind == crate::ErrorKind::Permanent {
                    if let Ok(meta) = self.inner.head(&location).await {
                        check_range(key, &range, meta.size)?;
                    }
                }
                return Err(err);
            }
        };
        // object_store silently shortens a range that reaches past the end.
        check_range(key, &range, result.meta.size)?;
        let data = result.bytes().await.map_err(map)?;
        expect_len(op, key, &data, range.end - range.start)?;
        Ok(data)
    }
}

/// A body shorter or longer than promised is a broken transfer: worth another try.
fn expect_len(op: &'static str, key: &str, data: &Bytes, want: u64) -> Result<()> {
    if data.len() as u64 != want {
        return Err(StoreError::transient(op, key, format!("received {} bytes, expected {want}", data.len())));
    }
    Ok(())
}

impl Store for ObjectStoreBackend {
    fn put(&self, key: &str, data: Bytes) -> Result<()> {
        let location = path("put", key)?;
        let opts = PutOptions { mode: PutMode::Overwrite, ..Default::default() };
        block_on(self.inner.put_opts(&location, PutPayload::from_bytes(data), opts))?
            .map(|_| ())
            .map_err(|e| StoreError::from_object_store("put", key, e))
    }

    fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool> {
        let op = "put_if_absent";
        let location = path(op, key)?;
        let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
        block_on(async {
            match self.inner.put_opts(&location, PutPayload::from_bytes(data), opts).await {
                Ok(_) => Ok(true),
                Err(e) => {
                    let err = StoreError::from_object_store(op, key, e);
                    if err.kind != crate::ErrorKind::AlreadyExists {
                        return Err(err);
                    }
                    // Backends also answer 409 Conflict for a concurrent write that lost a race
                    // with a delete, or is still in flight: only report "exists" when it does.
                    match self.inner.head(&location).await {
                        Ok(_) => Ok(false),
                        Err(e) => match StoreError::from_object_store(op, key, e) {
                            e if e.is_not_found() => {
                                Err(StoreError::transient(op, key, "conflicting concurrent write, object not there yet"))
                            }
                            e => Err(e),
                        },
                    }
                }
            }
        })?
    }

    fn get(&self, key: &str) -> Result<Bytes> {
        let location = path("get", key)?;
        let map = |e| StoreError::from_object_store("get", key, e);
        block_on(async {
            let result = self.inner.get(&location).await.map_err(map)?;
            let size = result.meta.size;
            let data = result.bytes().await.map_err(map)?;
            expect_len("get", key, &data, size)?;
            Ok(data)
        })?
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        block_on(self.get_range_async(key, range))?
    }

    fn head(&self, key: &str) -> Result<Option<u64>> {
        let location = path("head", key)?;
        match block_on(self.inner.head(&location))? {
            Ok(meta) => Ok(Some(meta.size)),
            Err(e) => match StoreError::from_object_store("head", key, e) {
                e if e.is_not_found() => Ok(None),
                e => Err(e),
            },
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        validate_prefix(prefix)?;
        // object_store lists whole path segments: list the folder holding `prefix`, then keep
        // the keys that start with it.
        let folder = match prefix.rfind('/') {
            Some(at) => Some(path("list", &prefix[..at])?),
            None => None,
        };
        let metas: Vec<_> = block_on(self.inner.list(folder.as_ref()).try_collect())?
            .map_err(|e: object_store::Error| StoreError::from_object_store("list", prefix, e))?;
        Ok(metas
            .into_iter()
            .map(|m| ObjectInfo { key: m.location.as_ref().to_string(), size: m.size, modified: Some(m.last_modified.timestamp()) })
            .filter(|info| info.key.starts_with(prefix))
            .collect())
    }

    fn delete(&self, key: &str) -> Result<()> {
        let location = path("delete", key)?;
        match block_on(self.inner.delete(&location))? {
            Ok(()) => Ok(()),
            Err(e) => match StoreError::from_object_store("delete", key, e) {
                e if e.is_not_found() => Ok(()),
                e => Err(e),
            },
        }
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

#[cfg(test)]
mod tests {
    //! Error mapping of real `object_store` errors, against a scripted HTTP server.

    use super::*;
    use crate::ErrorKind;
    use object_store::aws::AmazonS3Builder;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    /// Serve `responses` (status, body) in order, one per connection; return the endpoint.
    /// A body containing `{auth}` gets the request's Authorization header pasted in, the way
    /// Azure echoes what it was sent.
    fn scripted_server(responses: Vec<(u16, &'static str)>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            for (status, body) in responses {
                let Ok((stream, _)) = listener.accept() else {
                    return;
                };
                let mut reader = BufReader::new(stream);
                let (mut length, mut auth) = (0usize, String::new());
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if lower.starts_with("authorization:") {
                        auth = line.trim().to_string();
                    }
                }
                let mut request_body = vec![0; length];
                let _ = reader.read_exact(&mut request_body);
                let body = body.replace("{auth}", &auth);
                let response = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                let _ = reader.get_mut().write_all(response.as_bytes());
            }
        });
        format!("http://{addr}")
    }

    fn s3_at(endpoint: &str) -> ObjectStoreBackend {
        let s3 = AmazonS3Builder::new()
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .with_bucket_name("bucket")
            .with_region("us-east-1")
            .with_access_key_id("AKIDEXAMPLE")
            .with_secret_access_key("wJalrXUtnFEMI-secret-key")
            .with_retry(object_store::RetryConfig { max_retries: 0, ..Default::default() })
            .build()
            .expect("build");
        ObjectStoreBackend::new(Arc::new(s3), "test".into())
    }

    fn kind_of<T: std::fmt::Debug>(r: Result<T>) -> ErrorKind {
        r.expect_err("expected an error").kind
    }

    #[test]
    fn http_statuses_map_to_kinds() {
        let store = s3_at(&scripted_server(vec![
            (503, "<Error><Code>SlowDown</Code></Error>"),
            (500, "<Error><Code>InternalError</Code></Error>"),
            (429, ""),
            (403, "<Error><Code>AccessDenied</Code></Error>"),
            (400, "<Error><Code>InvalidRequest</Code></Error>"),
            (404, "<Error><Code>NoSuchKey</Code></Error>"),
            (404, ""),
        ]));
        assert_eq!(kind_of(store.get("a")), ErrorKind::Transient, "503");
        assert_eq!(kind_of(store.put("a", Bytes::new())), ErrorKind::Transient, "500");
        assert_eq!(kind_of(store.get("a")), ErrorKind::Transient, "429");
        assert_eq!(kind_of(store.get("a")), ErrorKind::Permanent, "403");
        assert_eq!(kind_of(store.get("a")), ErrorKind::Permanent, "400");
        assert_eq!(kind_of(store.get("a")), ErrorKind::NotFound, "404");
        assert_eq!(store.head("a").expect("head"), None, "404 on head");
    }

    #[test]
    fn conflict_without_object_is_transient() {
        // 409 on the conditional PUT, then the HEAD finds nothing: not "already exists".
        let store = s3_at(&scripted_server(vec![(409, ""), (404, "")]));
        assert_eq!(kind_of(store.put_if_absent("a", Bytes::from_static(b"x"))), ErrorKind::Transient);
    }

    #[test]
    fn unreachable_is_transient() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        drop(listener);
        let err = s3_at(&endpoint).get("a").expect_err("refused");
        assert!(err.is_transient(), "{err}");
        assert!(err.message.contains("refused"), "{err}");
    }

    #[test]
    fn messages_hold_no_secrets() {
        let store = s3_at(&scripted_server(vec![(403, "<Error><Code>SignatureDoesNotMatch</Code><Message>{auth}</Message></Error>")]));
        let err = store.get("a").expect_err("403");
        let text = err.to_string();
        assert!(text.contains("SignatureDoesNotMatch"), "{text}");
        assert!(!text.contains("wJalrXUtnFEMI"), "{text}");
        let signature = text.find("Signature=").map(|at| &text[at + 10..]);
        assert_eq!(signature.map(|s| s.starts_with("[redacted]")), Some(true), "{text}");
    }
}
