//! The vault's own secret (`DATA/vault-secret.key`, 32 random bytes, mode 0600, made on first
//! start) and what is derived from it:
//!
//! - the **escrow key** (AES-256-GCM), under which import jobs' disk keys are kept in the
//!   database, so that the database alone does not open a shipped disk;
//! - the **receipt signing key** (Ed25519), with which the vault signs ingest receipts; its public
//!   half is served at `GET /v1/health`, which agents reach over the pinned TLS connection.
//!
//! Several servers on one PostgreSQL database must share this file, as they share the
//! certificate (docs/design/vault.md): `--secret-file` names it. The database records the
//! receipt key of the secret the first server started with, and a server whose secret gives
//! another key refuses to start ([`Secrets::for_vault`]), instead of failing requests later.

use std::path::Path;

use anyhow::Context;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use ferry_api::{Receipt, Unlock};
use ferry_crypto::AeadKey;
use zeroize::Zeroizing;

use crate::error::bail;
use crate::Result;

pub const SECRET_FILE: &str = "vault-secret.key";

/// The setting that records the receipt key of the vault's secret (db::settings).
const RECEIPT_KEY: &str = "receipt_key";

pub struct Secrets {
    escrow: AeadKey,
    signing: Ed25519KeyPair,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(..)")
    }
}

fn escrow_aad(job: &str) -> Vec<u8> {
    [b"ferry import job disk key\0".as_slice(), job.as_bytes()].concat()
}

impl Secrets {
    /// The secret of the vault whose database is `db`, from `path`: made there if neither the
    /// file nor a vault's record of one exists (the first start of the first server); refused
    /// if the file is missing while the database records a secret, or holds another one.
    pub(crate) async fn for_vault(path: &Path, db: &crate::Db) -> Result<Secrets> {
        const HOW: &str = "copy vault-secret.key from the vault's first server here (or name it with --secret-file FILE)";
        let recorded = db.setting(RECEIPT_KEY).await?;
        let secrets = if path.exists() {
            Secrets::load(path)?
        } else if recorded.is_some() {
            bail!("the vault secret {} does not exist, but this vault's servers share one already: {HOW}", path.display());
        } else {
            let secret = Zeroizing::new(hex::encode(ferry_crypto::random_bytes::<32>()));
            ferry_store::write_private(path, format!("{}\n", secret.as_str()).as_bytes())?;
            Secrets::load(path)?
        };
        let key = secrets.public_key();
        if db.record_setting(RECEIPT_KEY, &key).await? != key {
            bail!(
                "the vault secret {} is not the one this vault's other servers use (the database records another receipt key): {HOW}; \
                 with another secret this server could not open the disk keys they sealed",
                path.display()
            );
        }
        Ok(secrets)
    }

    /// Reads the secret file at `path`.
    fn load(path: &Path) -> Result<Secrets> {
        let text = Zeroizing::new(std::fs::read_to_string(path).with_context(|| format!("read the vault secret {}", path.display()))?);
        let mut secret = Zeroizing::new([0u8; 32]);
        if hex::decode_to_slice(text.trim(), secret.as_mut_slice()).is_err() {
            bail!("{} is not a vault secret (64 hex digits): restore it from a backup of the vault's folder", path.display());
        }
        Ok(Secrets::from_secret(&secret))
    }

    pub fn from_secret(secret: &[u8; 32]) -> Secrets {
        let escrow = Zeroizing::new(blake3::derive_key("ferry vault escrow v1", secret));
        let seed = Zeroizing::new(blake3::derive_key("ferry vault receipt signing v1", secret));
        let signing = Ed25519KeyPair::from_seed_unchecked(seed.as_slice()).expect("a 32-byte Ed25519 seed is valid");
        Secrets { escrow: AeadKey::new(&escrow), signing }
    }

    /// Seals an import job's disk key for the database (hex).
    pub fn seal_disk_key(&self, job: &str, key: &[u8; 32]) -> String {
        hex::encode(self.escrow.seal_random_nonce(&escrow_aad(job), key))
    }

    /// Opens what [`Secrets::seal_disk_key`] sealed for the same job.
    pub fn open_disk_key(&self, job: &str, sealed: &str) -> Result<Zeroizing<[u8; 32]>> {
        let bytes = hex::decode(sealed).context("the sealed disk key in the database is not hex")?;
        let plain = Zeroizing::new(self.escrow.open_random_nonce(&escrow_aad(job), &bytes).map_err(|_| {
            anyhow::anyhow!(
                "the disk key of import job {job} was sealed under another vault secret: this server's {SECRET_FILE} \
                 differs from the one of the server that created the job; copy that file here"
            )
        })?);
        let mut key = Zeroizing::new([0u8; 32]);
        if plain.len() != 32 {
            bail!("the disk key of import job {job} has {} bytes, not 32", plain.len());
        }
        key.copy_from_slice(&plain);
        Ok(key)
    }

    /// The receipt signing key's public half (hex).
    pub fn public_key(&self) -> String {
        hex::encode(self.signing.public_key().as_ref())
    }

    /// Signs `receipt` (setting its key and signature).
    pub fn sign(&self, receipt: &mut Receipt) {
        receipt.public_key = self.public_key();
        receipt.signature = hex::encode(self.signing.sign(&receipt.signed_bytes()).as_ref());
    }

    /// Signs a device's unlock credential.
    pub fn sign_unlock(&self, unlock: &mut Unlock) {
        unlock.public_key = self.public_key();
        unlock.signature = hex::encode(self.signing.sign(&unlock.signed_bytes()).as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_api::UNLOCK_MAGIC;

    #[test]
    fn unlock_credentials_verify_only_unaltered() {
        let s = Secrets::from_secret(&[1u8; 32]);
        let mut u = Unlock {
            magic: UNLOCK_MAGIC.into(),
            version: 1,
            job: "device-1".into(),
            machine: "m1".into(),
            machine_name: "web".into(),
            set_id: "a".repeat(32),
            device_key: "b".repeat(64),
            issued: "2026-11-30T00:00:00Z".into(),
            expires: "2026-12-30T00:00:00Z".into(),
            public_key: String::new(),
            signature: String::new(),
        };
        s.sign_unlock(&mut u);
        u.verify(&s.public_key()).unwrap();
        assert_eq!(u.expires_unix(), 1_798_588_800);
        assert!(!format!("{u:?}").contains("bbbb"), "Debug shows no key");
        let other = Secrets::from_secret(&[2u8; 32]).public_key();
        assert!(u.verify(&other).unwrap_err().to_string().contains("not issued by"));
        let mut later = u.clone();
        later.expires = "2027-12-30T00:00:00Z".into();
        assert!(later.verify(&s.public_key()).unwrap_err().to_string().contains("altered"));
        let mut moved = u.clone();
        moved.machine = "m2".into();
        assert!(moved.verify(&s.public_key()).is_err());
    }

    #[test]
    fn disk_keys_are_sealed_per_job() {
        let s = Secrets::from_secret(&[1u8; 32]);
        let sealed = s.seal_disk_key("job-a", &[9u8; 32]);
        assert_eq!(*s.open_disk_key("job-a", &sealed).unwrap(), [9u8; 32]);
        assert!(s.open_disk_key("job-b", &sealed).is_err(), "bound to its job");
        let other = Secrets::from_secret(&[2u8; 32]);
        let e = other.open_disk_key("job-a", &sealed).unwrap_err().to_string();
        assert!(e.contains("another vault secret"), "{e}");
    }

    #[test]
    fn receipts_verify_and_detect_changes() {
        let s = Secrets::from_secret(&[1u8; 32]);
        let mut r = Receipt {
            job: "j".into(),
            machine: "m".into(),
            recovery_points: vec!["ab".into()],
            manifest_digest: "cd".into(),
            objects: 3,
            bytes: 10,
            ingested: "2026-11-30T00:00:00Z".into(),
            public_key: String::new(),
            signature: String::new(),
        };
        s.sign(&mut r);
        r.verify(&s.public_key()).unwrap();
        let mut bad = r.clone();
        bad.objects = 4;
        assert!(bad.verify(&s.public_key()).is_err());
        let mut bad = r.clone();
        bad.recovery_points = vec!["ac".into()];
        assert!(bad.verify(&s.public_key()).is_err());
        assert!(r.verify(&Secrets::from_secret(&[2u8; 32]).public_key()).is_err(), "another vault's key");
    }

    #[test]
    fn the_secret_is_made_once_and_one_per_vault() {
        let d = tempfile::tempdir().unwrap();
        crate::db::testing::block_on(async {
            let db = crate::Db::open_file(&d.path().join("vault.db")).await.unwrap();
            let path = d.path().join(SECRET_FILE);
            let a = Secrets::for_vault(&path, &db).await.unwrap();
            let b = Secrets::for_vault(&path, &db).await.unwrap();
            assert_eq!(a.public_key(), b.public_key());
            // A second server of the vault without the file, or with another secret: refused.
            let other = d.path().join("other.key");
            let e = Secrets::for_vault(&other, &db).await.unwrap_err().to_string();
            assert!(e.contains("does not exist") && e.contains("--secret-file") && !other.exists(), "{e}");
            std::fs::write(&other, format!("{}\n", "ab".repeat(32))).unwrap();
            let e = Secrets::for_vault(&other, &db).await.unwrap_err().to_string();
            assert!(e.contains("not the one this vault's other servers use"), "{e}");
            std::fs::write(&path, "nonsense").unwrap();
            assert!(Secrets::for_vault(&path, &db).await.unwrap_err().to_string().contains("not a vault secret"));
        });
    }
}
