//! The vault's certificate: made on first start (self-signed), or given by the operator.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::Result;

/// Makes a self-signed certificate for `names` (host names or IP addresses) and writes it and its
/// key (mode 0600) as PEM files.
pub fn make_self_signed(cert_path: &Path, key_path: &Path, names: Vec<String>) -> Result<()> {
    let key = rcgen::KeyPair::generate().context("generate the certificate's key")?;
    let params = rcgen::CertificateParams::new(names).context("certificate names")?;
    let cert = params.self_signed(&key).context("self-sign the certificate")?;
    ferry_store::write_private(key_path, key.serialize_pem().as_bytes())?;
    std::fs::write(cert_path, cert.pem()).with_context(|| format!("write {}", cert_path.display()))?;
    Ok(())
}

/// The TLS server configuration for a certificate chain and key in PEM files.
pub fn server_config(cert_path: &Path, key_path: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .with_context(|| format!("read certificate {}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("certificate {} is not valid PEM", cert_path.display()))?;
    let key = PrivateKeyDer::from_pem_file(key_path).with_context(|| format!("read private key {}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate and key do not go together")?;
    Ok(Arc::new(config))
}
