//! What the Azure and S3 backends share: `object_store` client settings, the "does the
//! container exist" probe, and sending the one request `object_store` cannot make for us.

use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::client::HttpRequest;
use object_store::path::Path;
use object_store::{BackoffConfig, ObjectStore, RetryConfig};

use crate::error::{redact, Result, StoreError};

/// `object_store`'s own retries, kept short: [`RetryStore`](crate::RetryStore) retries above.
pub(crate) fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig { init_backoff: Duration::from_millis(100), max_backoff: Duration::from_secs(2), base: 2.0 },
        max_retries: 3,
        retry_timeout: Duration::from_mins(1),
    }
}

/// Per-request timeout, unless `AWS_TIMEOUT` / `AZURE_TIMEOUT` say otherwise. object_store's
/// default of 30 s is too short to upload a pack of tens of MiB over a slow uplink.
pub(crate) const REQUEST_TIMEOUT: &str = "10m";

/// A boolean setting as object_store parses it.
pub(crate) fn truthy(value: &str) -> bool {
    matches!(value.to_ascii_lowercase().as_str(), "1" | "true" | "on" | "yes" | "y")
}

pub(crate) fn env_is_set(name: &str) -> bool {
    std::env::var_os(name).is_some()
}

/// Whether the container or bucket behind `store` exists: list one page of a prefix that is
/// almost surely empty. A missing container or bucket answers 404.
pub(crate) async fn container_exists(store: &dyn ObjectStore, shown: &str) -> Result<bool> {
    let probe = Path::from("ferry-probe");
    match store.list(Some(&probe)).try_next().await {
        Ok(_) => Ok(true),
        // List errors arrive as `Generic` wrapping the HTTP status, not as `NotFound`.
        Err(e) => match StoreError::from_object_store("open", shown, e) {
            e if e.is_not_found() => Ok(false),
            e => Err(e),
        },
    }
}

/// An HTTP client for the create call; the same TLS stack as object_store's (rustls on
/// aws-lc-rs, platform certificate verifier).
pub(crate) fn http_client(shown: &str) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_mins(1))
        .build()
        .map_err(|e| StoreError::permanent("open", shown, reqwest_message(&e)))
}

/// Send an already signed request; return the status and the (redacted) response body.
pub(crate) async fn send(
    client: &reqwest::Client,
    request: HttpRequest,
    body: Bytes,
    op: &'static str,
    shown: &str,
) -> Result<(u16, String)> {
    let (parts, _) = request.into_parts();
    let response = client.request(parts.method, parts.uri.to_string()).headers(parts.headers).body(body).send().await.map_err(|e| {
        let kind = if e.is_builder() { crate::ErrorKind::Permanent } else { crate::ErrorKind::Transient };
        StoreError::new(kind, op, shown, reqwest_message(&e))
    })?;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    Ok((status, redact(&text)))
}

/// A reqwest error and its causes, without the URL.
fn reqwest_message(e: &reqwest::Error) -> String {
    let mut message = String::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut first = true;
    while let Some(err) = current {
        let text = match err.downcast_ref::<reqwest::Error>() {
            Some(re) if first => {
                // Display of a reqwest error names the URL; drop it.
                let mut kind = String::from("request failed");
                if re.is_connect() {
                    kind = "could not connect".into();
                } else if re.is_timeout() {
                    kind = "timed out".into();
                }
                kind
            }
            _ => err.to_string(),
        };
        if !first {
            message.push_str(": ");
        }
        message.push_str(&text);
        first = false;
        current = err.source();
    }
    redact(&message)
}

/// The `Code` element of an S3 or Azure XML error body, if any.
pub(crate) fn error_code(body: &str) -> Option<&str> {
    let start = body.find("<Code>")? + "<Code>".len();
    let end = body[start..].find("</Code>")? + start;
    Some(&body[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_error_code() {
        let body = "<?xml version=\"1.0\"?><Error><Code>ContainerAlreadyExists</Code><Message>x</Message></Error>";
        assert_eq!(error_code(body), Some("ContainerAlreadyExists"));
        assert_eq!(error_code("<Error></Error>"), None);
        assert_eq!(error_code("<Code>unterminated"), None);
    }
}
