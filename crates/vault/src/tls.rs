//! The vault's certificate: made on first start (self-signed), or given by the operator.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// SHA-256 of a certificate's DER bytes, hex: what a vault credentials file pins.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert.as_ref()))
}

/// Makes a self-signed certificate for `names` (host names or IP addresses) and writes it and its
/// key (mode 0600) as PEM files.
pub fn make_self_signed(cert_path: &Path, key_path: &Path, names: Vec<String>) -> Result<()> {
    let key = rcgen::KeyPair::generate().context("generate the certificate's key")?;
    let params = rcgen::CertificateParams::new(names).context("certificate names")?;
    let cert = params.self_signed(&key).context("self-sign the certificate")?;
    write_private(key_path, key.serialize_pem().as_bytes())?;
    std::fs::write(cert_path, cert.pem()).with_context(|| format!("write {}", cert_path.display()))?;
    Ok(())
}

/// Writes `bytes` to a new file readable only by its owner (replacing what was there).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).with_context(|| format!("write {}", path.display()))
}

/// Reads the first certificate of a PEM file.
pub fn load_cert(path: &Path) -> Result<CertificateDer<'static>> {
    let mut certs = CertificateDer::pem_file_iter(path).with_context(|| format!("read certificate {}", path.display()))?;
    match certs.next() {
        Some(c) => c.with_context(|| format!("certificate {} is not valid PEM", path.display())),
        None => bail!("{} holds no certificate", path.display()),
    }
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
