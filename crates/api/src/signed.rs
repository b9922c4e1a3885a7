//! What the vault signs with its receipt key (Ed25519; the public half is served at
//! `GET /v1/health`, which agents reach over the pinned connection): ingest [`Receipt`]s and
//! device [`Unlock`] credentials. Each has one line-per-field text that is signed
//! (`signed_bytes`, which the vault signs) and a `verify` the receiving side runs.

use aws_lc_rs::signature::{UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};

use crate::Invalid;

/// Checks an Ed25519 `signature` (hex) of `message` by the public key `public_key` (hex);
/// `what` names the signed thing in the messages, `altered` is the message when it does not
/// verify.
fn verify_ed25519(public_key: &str, message: &[u8], signature: &str, what: &str, altered: String) -> Result<(), Invalid> {
    let key = hex::decode(public_key).map_err(|e| Invalid(format!("the vault's public key is not hex: {e}")))?;
    let sig = hex::decode(signature).map_err(|e| Invalid(format!("the {what}'s signature is not hex: {e}")))?;
    UnparsedPublicKey::new(&ED25519, key).verify(message, &sig).map_err(|_| Invalid(altered))
}

/// The `magic` of an unlock credential file.
pub const UNLOCK_MAGIC: &str = "ferry-device-unlock";

/// A seed device's unlock credential (`ferry device prepare --unlock-out FILE`): the device key
/// of a device job, bound to the job, the machine and the device set, valid until `expires`,
/// signed by the vault. The vault gives it to the machine's owner, apart from the device; the
/// agent checks the signature with the vault's public key (over the pinned connection), the
/// machine, the expiry, and that the key opens the device's header.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unlock {
    pub magic: String,
    pub version: u32,
    pub job: String,
    /// The machine's ID and name.
    pub machine: String,
    pub machine_name: String,
    /// The device set's ID (hex).
    pub set_id: String,
    /// The device key (64 hex digits): the secret of this file.
    pub device_key: String,
    /// RFC 3339.
    pub issued: String,
    pub expires: String,
    /// Hex of the vault's Ed25519 public key and of the signature.
    pub public_key: String,
    pub signature: String,
}

impl std::fmt::Debug for Unlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unlock").field("job", &self.job).field("machine", &self.machine).field("expires", &self.expires).finish()
    }
}

impl Unlock {
    /// What is signed: a context line, then every field but the signature, one per line.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut s = String::from("ferry device unlock v1\n");
        for f in [
            &self.magic,
            &self.version.to_string(),
            &self.job,
            &self.machine,
            &self.machine_name,
            &self.set_id,
            &self.device_key,
            &self.issued,
            &self.expires,
            &self.public_key,
        ] {
            s.push_str(f);
            s.push('\n');
        }
        s.into_bytes()
    }

    /// Checks the form and the signature with the vault's public key `expected` (hex).
    pub fn verify(&self, expected: &str) -> Result<(), Invalid> {
        if self.magic != UNLOCK_MAGIC || self.version != 1 {
            return Err(Invalid(format!("not a Ferry device unlock credential (magic {:?}, version {})", self.magic, self.version)));
        }
        let fields = [&self.job, &self.machine, &self.machine_name, &self.set_id, &self.device_key, &self.issued, &self.expires];
        if fields.iter().any(|f| f.contains('\n')) {
            return Err(Invalid(format!("the unlock credential of device job {} is malformed", self.job)));
        }
        if self.public_key != expected {
            return Err(Invalid(format!("the unlock credential of device job {} was not issued by this machine's vault", self.job)));
        }
        let altered = format!("the unlock credential of device job {} does not verify: it was altered", self.job);
        verify_ed25519(expected, &self.signed_bytes(), &self.signature, "credential", altered)
    }

    /// The expiry as a Unix time (0 if unreadable: expired).
    pub fn expires_unix(&self) -> i64 {
        chrono::DateTime::parse_from_rfc3339(&self.expires).map_or(0, |t| t.timestamp())
    }
}

/// The vault's signed statement that a seed was ingested: which objects (by the digest of the
/// seed manifest: every object's key and BLAKE3 hash), into which machine's repository, giving
/// which recovery points. The agent checks it against its staging location before cleanup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub job: String,
    /// The machine's ID.
    pub machine: String,
    pub recovery_points: Vec<String>,
    /// Hex of the seed manifest's digest.
    pub manifest_digest: String,
    pub objects: u64,
    pub bytes: u64,
    /// RFC 3339.
    pub ingested: String,
    /// Hex of the vault's Ed25519 public key and of the signature.
    pub public_key: String,
    pub signature: String,
}

impl Receipt {
    /// What is signed: a context line, then the fields but the signature, one per line.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut s = String::from("ferry ingest receipt v1\n");
        for f in [&self.job, &self.machine, &self.recovery_points.join(","), &self.manifest_digest] {
            // Fields never hold a newline (names and hex), so lines cannot be shifted.
            s.push_str(f);
            s.push('\n');
        }
        s.push_str(&format!("{}\n{}\n{}\n{}\n", self.objects, self.bytes, self.ingested, self.public_key));
        s.into_bytes()
    }

    /// Checks the signature with the vault's public key `expected` (hex, from the vault over
    /// the pinned connection); the receipt's own `public_key` must be that key.
    pub fn verify(&self, expected: &str) -> Result<(), Invalid> {
        if self.public_key != expected {
            return Err(Invalid(format!("the ingest receipt of import job {} is signed by another key than this vault's", self.job)));
        }
        if [&self.job, &self.machine, &self.manifest_digest, &self.ingested].iter().any(|f| f.contains('\n'))
            || self.recovery_points.iter().any(|r| r.contains('\n') || r.contains(','))
        {
            return Err(Invalid(format!("the ingest receipt of import job {} is malformed", self.job)));
        }
        let altered = format!("the ingest receipt of import job {} does not verify: it was altered", self.job);
        verify_ed25519(expected, &self.signed_bytes(), &self.signature, "receipt", altered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt() -> Receipt {
        Receipt {
            job: "j".into(),
            machine: "m".into(),
            recovery_points: vec!["ab".into(), "cd".into()],
            manifest_digest: "ef".into(),
            objects: 3,
            bytes: 10,
            ingested: "2026-11-30T00:00:00Z".into(),
            public_key: "01".into(),
            signature: "02".into(),
        }
    }

    #[test]
    fn fixed_json_and_signed_text() {
        let r = receipt();
        let text = r#"{"job":"j","machine":"m","recovery_points":["ab","cd"],"manifest_digest":"ef","objects":3,"bytes":10,"ingested":"2026-11-30T00:00:00Z","public_key":"01","signature":"02"}"#;
        assert_eq!(serde_json::to_string(&r).unwrap(), text);
        assert_eq!(serde_json::from_str::<Receipt>(text).unwrap(), r);
        assert_eq!(r.signed_bytes(), b"ferry ingest receipt v1\nj\nm\nab,cd\nef\n3\n10\n2026-11-30T00:00:00Z\n01\n");
        assert!(r.verify("03").unwrap_err().to_string().contains("another key"));
        assert!(r.verify("01").unwrap_err().to_string().contains("altered"));
    }

    #[test]
    fn unlock_fixed_json_and_signed_text() {
        let u = Unlock {
            magic: UNLOCK_MAGIC.into(),
            version: 1,
            job: "device-1".into(),
            machine: "m1".into(),
            machine_name: "web".into(),
            set_id: "aa".into(),
            device_key: "bb".into(),
            issued: "2026-11-30T00:00:00Z".into(),
            expires: "2026-12-30T00:00:00Z".into(),
            public_key: "01".into(),
            signature: "02".into(),
        };
        let text = r#"{"magic":"ferry-device-unlock","version":1,"job":"device-1","machine":"m1","machine_name":"web","set_id":"aa","device_key":"bb","issued":"2026-11-30T00:00:00Z","expires":"2026-12-30T00:00:00Z","public_key":"01","signature":"02"}"#;
        assert_eq!(serde_json::to_string(&u).unwrap(), text);
        assert_eq!(serde_json::from_str::<Unlock>(text).unwrap(), u);
        assert!(serde_json::from_str::<Unlock>(&text.replace("\"version\"", "\"extra\":1,\"version\"")).is_err(), "no unknown fields");
        assert_eq!(
            u.signed_bytes(),
            b"ferry device unlock v1\nferry-device-unlock\n1\ndevice-1\nm1\nweb\naa\nbb\n2026-11-30T00:00:00Z\n2026-12-30T00:00:00Z\n01\n"
        );
        assert_eq!(u.expires_unix(), 1_798_588_800);
        assert!(!format!("{u:?}").contains("bb"), "Debug shows no key");
    }
}
