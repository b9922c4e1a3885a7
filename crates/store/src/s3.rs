//! The S3 backend: `object_store`'s `AmazonS3`, plus creating the bucket.

use std::sync::Arc;

use bytes::Bytes;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, AwsAuthorizer};
use object_store::client::{HttpRequest, HttpRequestBody};
use object_store::prefix::PrefixStore;
use object_store::{ClientConfigKey, ObjectStore};

use crate::backend::{block_on, ObjectStoreBackend};
use crate::cloud::{self, container_exists, error_code, send};
use crate::error::{kind_for_status, Result, StoreError};
use crate::retry::RetryPolicy;

const DEFAULT_REGION: &str = "us-east-1";

/// Open `s3://BUCKET[/PREFIX]` with the configuration object_store reads from `AWS_*`
/// variables, creating the bucket if it does not exist.
///
/// `put_if_absent` uses `If-None-Match: *` (object_store's default `S3ConditionalPut::ETagMatch`),
/// which AWS S3, moto, MinIO and R2 honour.
pub(crate) fn open(bucket: &str, prefix: Option<&str>) -> Result<ObjectStoreBackend> {
    let shown = match prefix {
        Some(p) => format!("s3://{bucket}/{p}"),
        None => format!("s3://{bucket}"),
    };
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket).with_retry(cloud::retry_config());
    if !cloud::env_is_set("AWS_TIMEOUT") {
        builder = builder.with_config(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), cloud::REQUEST_TIMEOUT);
    }
    let target = Target::from_builder(&builder, bucket);
    let s3 = builder.build().map_err(|e| StoreError::from_object_store("open", &shown, e))?;

    RetryPolicy::default().run(|| block_on(ensure_bucket(&s3, &target, &shown))?)?;

    let description =
        format!("S3 bucket {bucket} ({}){}", target.endpoint_shown, prefix.map(|p| format!(" at prefix {p}")).unwrap_or_default());
    let inner: Arc<dyn ObjectStore> = match prefix {
        Some(p) => Arc::new(PrefixStore::new(s3, p)),
        None => Arc::new(s3),
    };
    Ok(ObjectStoreBackend::new(inner, description))
}

/// Where the bucket lives, computed as object_store computes it.
struct Target {
    region: String,
    /// The URL of the bucket: `ENDPOINT/BUCKET` (path style), `ENDPOINT` (virtual-hosted style,
    /// where the endpoint names the bucket), or `https://s3.REGION.amazonaws.com/BUCKET`.
    bucket_url: String,
    /// Region or endpoint, for messages.
    endpoint_shown: String,
}

impl Target {
    fn from_builder(builder: &AmazonS3Builder, bucket: &str) -> Target {
        let region = builder.get_config_value(&AmazonS3ConfigKey::Region).unwrap_or_else(|| DEFAULT_REGION.to_string());
        let endpoint =
            builder.get_config_value(&AmazonS3ConfigKey::S3Endpoint).or_else(|| builder.get_config_value(&AmazonS3ConfigKey::Endpoint));
        let virtual_hosted = builder.get_config_value(&AmazonS3ConfigKey::VirtualHostedStyleRequest).is_some_and(|v| cloud::truthy(&v));
        let (bucket_url, endpoint_shown) = match endpoint {
            Some(e) if virtual_hosted => (e.clone(), e),
            Some(e) => (format!("{}/{bucket}", e.trim_end_matches('/')), e),
            None => (format!("https://s3.{region}.amazonaws.com/{bucket}"), format!("region {region}")),
        };
        Target { region, bucket_url, endpoint_shown }
    }

    /// The CreateBucket body: none in us-east-1, a location constraint elsewhere.
    fn create_body(&self) -> Bytes {
        if self.region == DEFAULT_REGION {
            return Bytes::new();
        }
        Bytes::from(format!(
            "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
            self.region
        ))
    }
}

/// Create the bucket unless it exists. Racing creators are fine: "already owned by you" is
/// success.
async fn ensure_bucket(s3: &AmazonS3, target: &Target, shown: &str) -> Result<()> {
    if container_exists(s3, shown).await? {
        return Ok(());
    }
    tracing::info!(bucket = shown, "creating S3 bucket");
    // https://docs.aws.amazon.com/AmazonS3/latest/API/API_CreateBucket.html
    let body = target.create_body();
    let mut request: HttpRequest = http::Request::builder()
        .method(http::Method::PUT)
        .uri(target.bucket_url.as_str())
        .body(HttpRequestBody::from(body.clone()))
        .map_err(|e| StoreError::permanent("create bucket", shown, e.to_string()))?;
    let credential = s3.credentials().get_credential().await.map_err(|e| StoreError::from_object_store("create bucket", shown, e))?;
    AwsAuthorizer::new(&credential, "s3", &target.region)
        .try_authorize(&mut request, None)
        .map_err(|e| StoreError::from_object_store("create bucket", shown, e))?;
    let client = cloud::http_client(shown)?;
    let (status, text) = send(&client, request, body, "create bucket", shown).await?;
    match status {
        200..=299 => Ok(()),
        409 if error_code(&text) == Some("BucketAlreadyOwnedByYou") => Ok(()),
        409 if error_code(&text) == Some("OperationAborted") => {
            Err(StoreError::transient("create bucket", shown, "a conflicting operation on the bucket is in progress; try again"))
        }
        409 if error_code(&text) == Some("BucketAlreadyExists") => {
            // Some servers (moto, MinIO) say this about a bucket created by a racing caller.
            if let Ok(true) = container_exists(s3, shown).await {
                Ok(())
            } else {
                Err(StoreError::permanent("create bucket", shown, "the bucket name is taken by another account; choose another name"))
            }
        }
        _ => Err(StoreError::new(kind_for_status(status), "create bucket", shown, format!("HTTP {status}: {text}"))),
    }
}
