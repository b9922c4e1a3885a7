//! What the clients and servers of a vault keep on disk about trust: the pin of the vault's
//! certificate (the SHA-256 of its DER bytes, read from a PEM file or taken from a handshake),
//! and files only their owner may read (tokens, registration and credentials files, keys).

use std::io;
use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// SHA-256 of a certificate's DER bytes, hex: what a vault credentials file pins.
pub fn cert_fingerprint(cert: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert))
}

/// The [`cert_fingerprint`] of the first certificate of a PEM file.
pub fn cert_file_fingerprint(path: &Path) -> io::Result<String> {
    let shown = path.display();
    let mut certs = CertificateDer::pem_file_iter(path).map_err(|e| io::Error::other(format!("read certificate {shown}: {e}")))?;
    match certs.next() {
        Some(Ok(c)) => Ok(cert_fingerprint(c.as_ref())),
        Some(Err(e)) => Err(io::Error::other(format!("certificate {shown} is not valid PEM: {e}"))),
        None => Err(io::Error::other(format!("{shown} holds no certificate"))),
    }
}

/// Writes `bytes` to a new file readable only by its owner (mode 0600, replacing what was
/// there), fsynced.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io::Error::other(format!("create {}: {e}", path.display())))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| io::Error::other(format!("write {}: {e}", path.display())))
}

/// Makes `path` (and its missing parents) a folder only its owner can enter (mode 0700,
/// whatever the umask). A folder that was there with looser permissions is tightened; its mode
/// before is returned then, so the caller can say so once.
pub fn private_dir(path: &Path) -> io::Result<Option<u32>> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let fail = |what: &str, e: io::Error| io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()));
    match std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path) {
        Ok(()) => {}
        Err(e) => return Err(fail("create", e)),
    }
    let mode = std::fs::metadata(path).map_err(|e| fail("read the permissions of", e))?.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(None);
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700 | 0o700)).map_err(|e| fail("restrict", e))?;
    Ok(Some(mode))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_dirs_are_made_or_tightened() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a/b");
        assert_eq!(private_dir(&p).unwrap(), None, "made 0700");
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(private_dir(&p).unwrap(), Some(0o755), "tightened, and said");
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(private_dir(&p).unwrap(), None, "once");
    }

    #[test]
    fn private_files_are_owner_only_and_replaced() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("token");
        write_private(&p, b"one").unwrap();
        write_private(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_pem_file_is_pinned_by_its_first_certificate() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("cert.pem");
        // "AAEC" is base64 of the bytes 0, 1, 2: the pin is over the DER bytes, whatever they are.
        std::fs::write(&p, "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n").unwrap();
        assert_eq!(cert_file_fingerprint(&p).unwrap(), cert_fingerprint(&[0, 1, 2]));
        std::fs::write(&p, "no certificate here\n").unwrap();
        assert!(cert_file_fingerprint(&p).unwrap_err().to_string().contains("holds no certificate"));
        let missing = cert_file_fingerprint(&d.path().join("missing.pem")).unwrap_err().to_string();
        assert!(missing.starts_with("read certificate "), "{missing}");
    }
}
