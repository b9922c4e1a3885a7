//! The Azure Blob backend: `object_store`'s `MicrosoftAzure`, plus creating the container.

use std::sync::Arc;

use bytes::Bytes;
use object_store::azure::{AzureAuthorizer, AzureConfigKey, MicrosoftAzure, MicrosoftAzureBuilder};
use object_store::client::{HttpRequest, HttpRequestBody};
use object_store::prefix::PrefixStore;
use object_store::{ClientConfigKey, ObjectStore};

use crate::backend::{block_on, ObjectStoreBackend};
use crate::cloud::{self, container_exists, error_code, send};
use crate::error::{kind_for_status, Result, StoreError};
use crate::retry::RetryPolicy;

/// The well-known Azurite / storage emulator account.
const EMULATOR_ACCOUNT: &str = "devstoreaccount1";
const EMULATOR_URL: &str = "http://127.0.0.1:10000";

/// Open `az://CONTAINER[/PREFIX]` with the configuration object_store reads from `AZURE_*`
/// variables (and `AZURITE_BLOB_STORAGE_URL` with `AZURE_STORAGE_USE_EMULATOR=true`), creating
/// the container if it does not exist.
pub(crate) fn open(container: &str, prefix: Option<&str>) -> Result<ObjectStoreBackend> {
    let shown = match prefix {
        Some(p) => format!("az://{container}/{p}"),
        None => format!("az://{container}"),
    };
    let mut builder = MicrosoftAzureBuilder::from_env().with_container_name(container).with_retry(cloud::retry_config());
    if !cloud::env_is_set("AZURE_TIMEOUT") {
        builder = builder.with_config(AzureConfigKey::Client(ClientConfigKey::Timeout), cloud::REQUEST_TIMEOUT);
    }
    let target = Target::from_builder(&builder, container);
    let azure = builder.build().map_err(|e| StoreError::from_object_store("open", &shown, e))?;

    RetryPolicy::default().run(|| block_on(ensure_container(&azure, &target, &shown))?)?;

    let description = format!(
        "Azure container {container} (account {}){}",
        target.account,
        prefix.map(|p| format!(" at prefix {p}")).unwrap_or_default()
    );
    let inner: Arc<dyn ObjectStore> = match prefix {
        Some(p) => Arc::new(PrefixStore::new(azure, p)),
        None => Arc::new(azure),
    };
    Ok(ObjectStoreBackend::new(inner, description))
}

/// Where the container lives, computed as object_store computes it.
struct Target {
    account: String,
    /// `https://ACCOUNT.blob.core.windows.net/CONTAINER`, or
    /// `AZURITE_BLOB_STORAGE_URL/ACCOUNT/CONTAINER` for the emulator.
    container_url: String,
}

impl Target {
    fn from_builder(builder: &MicrosoftAzureBuilder, container: &str) -> Target {
        let emulator = builder.get_config_value(&AzureConfigKey::UseEmulator).is_some_and(|v| cloud::truthy(&v));
        let account = builder.get_config_value(&AzureConfigKey::AccountName);
        let (account, base) = if emulator {
            let account = account.unwrap_or_else(|| EMULATOR_ACCOUNT.to_string());
            let url = std::env::var("AZURITE_BLOB_STORAGE_URL").unwrap_or_else(|_| EMULATOR_URL.to_string());
            let base = format!("{}/{account}", url.trim_end_matches('/'));
            (account, base)
        } else {
            let account = account.unwrap_or_default();
            let base =
                builder.get_config_value(&AzureConfigKey::Endpoint).unwrap_or_else(|| format!("https://{account}.blob.core.windows.net"));
            (account, base)
        };
        let container_url = format!("{}/{container}", base.trim_end_matches('/'));
        Target { account, container_url }
    }
}

/// Create the container unless it exists. Racing creators are fine: "already exists" is
/// success.
async fn ensure_container(azure: &MicrosoftAzure, target: &Target, shown: &str) -> Result<()> {
    if container_exists(azure, shown).await? {
        return Ok(());
    }
    tracing::info!(container = shown, "creating Azure container");
    // https://learn.microsoft.com/rest/api/storageservices/create-container
    let url = format!("{}?restype=container", target.container_url);
    let mut request: HttpRequest = http::Request::builder()
        .method(http::Method::PUT)
        .uri(url.as_str())
        .header(http::header::CONTENT_LENGTH, "0")
        .body(HttpRequestBody::from(Bytes::new()))
        .map_err(|e| StoreError::permanent("create container", shown, e.to_string()))?;
    let credential = azure.credentials().get_credential().await.map_err(|e| StoreError::from_object_store("create container", shown, e))?;
    AzureAuthorizer::new(&credential, &target.account)
        .try_authorize(&mut request)
        .map_err(|e| StoreError::from_object_store("create container", shown, e))?;
    let client = cloud::http_client(shown)?;
    let (status, body) = send(&client, request, Bytes::new(), "create container", shown).await?;
    match status {
        200..=299 => Ok(()),
        409 if error_code(&body) == Some("ContainerAlreadyExists") => Ok(()),
        409 if error_code(&body) == Some("ContainerBeingDeleted") => {
            Err(StoreError::transient("create container", shown, "the container is being deleted; try again later"))
        }
        _ => Err(StoreError::new(kind_for_status(status), "create container", shown, format!("HTTP {status}: {body}"))),
    }
}
