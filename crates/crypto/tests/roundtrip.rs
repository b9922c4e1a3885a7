//! Property tests for ferry-crypto's encode/decode pairs: key files (wrap/unwrap, JSON) and
//! AES-256-GCM sealing, plus "garbage never panics" for the key file parser and unwrapping.
//!
//! Key files use tiny Argon2 costs (64 KiB, one pass) so a case takes well under a millisecond.

use ferry_crypto::keyfile::{KdfParams, KeyFile};
use ferry_crypto::{AeadKey, CryptoError, MasterKey, MASTER_KEY_LEN, NONCE_LEN, TAG_LEN};
use proptest::collection::vec;
use proptest::prelude::*;

const FAST: KdfParams = KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 };

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig { cases: n, ..ProptestConfig::default() }
}

fn master() -> impl Strategy<Value = MasterKey> {
    any::<[u8; MASTER_KEY_LEN]>().prop_map(|b| MasterKey::from_bytes(&b))
}

fn wrap(m: &MasterKey, passphrase: &[u8]) -> KeyFile {
    KeyFile::wrap(m, passphrase, FAST, "2026-11-22T00:00:00Z".into(), "host".into(), "user".into()).unwrap()
}

/// Damages `bytes` at `at` (modulo the length): flips a bit, or truncates there.
fn damage(bytes: &[u8], at: usize, bit: u8, truncate: bool) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let i = at % out.len().max(1);
    if truncate {
        out.truncate(i);
    } else if !out.is_empty() {
        out[i] ^= 1 << (bit % 8);
    }
    out
}

proptest! {
    #![proptest_config(cases(128))]

    #[test]
    fn key_file_round_trip(
        m in master(),
        passphrase in vec(any::<u8>(), 0..64),
        created in any::<String>(),
        host in any::<String>(),
        user in any::<String>(),
    ) {
        let kf = KeyFile::wrap(&m, &passphrase, FAST, created, host, user).unwrap();
        let parsed = KeyFile::from_json(&kf.to_json()).unwrap();
        prop_assert_eq!(&parsed, &kf);
        let back = parsed.unwrap(&passphrase).unwrap();
        prop_assert_eq!(&back.to_bytes()[..], &m.to_bytes()[..]);
        // The same master key opened by the same passphrase derives the same keys.
        prop_assert_eq!(back.id_key().hash(b"x"), m.id_key().hash(b"x"));
    }

    #[test]
    fn key_file_wrong_passphrase(m in master(), passphrase in vec(any::<u8>(), 0..32), other in vec(any::<u8>(), 0..32)) {
        prop_assume!(passphrase != other);
        let kf = wrap(&m, &passphrase);
        prop_assert_eq!(kf.unwrap(&other).unwrap_err(), CryptoError::WrongPassphrase);
    }

    #[test]
    fn key_file_unicode_passphrase(m in master(), passphrase in any::<String>()) {
        let kf = KeyFile::from_json(&wrap(&m, passphrase.as_bytes()).to_json()).unwrap();
        prop_assert_eq!(&kf.unwrap(passphrase.as_bytes()).unwrap().to_bytes()[..], &m.to_bytes()[..]);
    }

    #[test]
    fn aead_round_trip(key in any::<[u8; 32]>(), nonce in any::<[u8; NONCE_LEN]>(), aad in vec(any::<u8>(), 0..64), plain in vec(any::<u8>(), 0..4096)) {
        let k = AeadKey::new(&key);
        let sealed = k.seal(&nonce, &aad, &plain);
        prop_assert_eq!(sealed.len(), plain.len() + TAG_LEN);
        prop_assert_eq!(&k.open(&nonce, &aad, &sealed).unwrap(), &plain);
        // In place, and with the tag kept apart: the same bytes.
        let mut buf = plain.clone();
        let tag = k.seal_in_place_separate_tag(&nonce, &aad, &mut buf);
        buf.extend_from_slice(&tag);
        prop_assert_eq!(&buf, &sealed);
        k.open_in_place(&nonce, &aad, &mut buf).unwrap();
        prop_assert_eq!(&buf, &plain);
        // Random nonces.
        let self_contained = k.seal_random_nonce(&aad, &plain);
        prop_assert_eq!(self_contained.len(), NONCE_LEN + plain.len() + TAG_LEN);
        prop_assert_eq!(&k.open_random_nonce(&aad, &self_contained).unwrap(), &plain);
    }

    #[test]
    fn aead_tampering_is_detected(
        key in any::<[u8; 32]>(),
        nonce in any::<[u8; NONCE_LEN]>(),
        aad in vec(any::<u8>(), 0..32),
        plain in vec(any::<u8>(), 0..512),
        at in any::<usize>(),
        bit in any::<u8>(),
        truncate in any::<bool>(),
    ) {
        let k = AeadKey::new(&key);
        let sealed = k.seal(&nonce, &aad, &plain);
        let bad = damage(&sealed, at, bit, truncate);
        prop_assert!(k.open(&nonce, &aad, &bad).is_err());
        // Another nonce, other associated data or another key: all refused.
        let mut other_nonce = nonce;
        other_nonce[at % NONCE_LEN] ^= 1 << (bit % 8);
        prop_assert_eq!(k.open(&other_nonce, &aad, &sealed), Err(CryptoError::Authentication));
        let other_aad = [&aad[..], b"x"].concat();
        prop_assert_eq!(k.open(&nonce, &other_aad, &sealed), Err(CryptoError::Authentication));
        let mut other_key = key;
        other_key[at % 32] ^= 1 << (bit % 8);
        prop_assert_eq!(AeadKey::new(&other_key).open(&nonce, &aad, &sealed), Err(CryptoError::Authentication));
    }
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn aead_garbage_never_panics(
        key in any::<[u8; 32]>(),
        nonce in any::<[u8; NONCE_LEN]>(),
        aad in vec(any::<u8>(), 0..16),
        bytes in vec(any::<u8>(), 0..128),
    ) {
        let k = AeadKey::new(&key);
        prop_assert!(k.open(&nonce, &aad, &bytes).is_err());
        prop_assert!(k.open_random_nonce(&aad, &bytes).is_err());
        let mut buf = bytes.clone();
        prop_assert!(k.open_in_place(&nonce, &aad, &mut buf).is_err());
    }

    #[test]
    fn key_file_json_garbage_never_panics(bytes in prop_oneof![
        vec(any::<u8>(), 0..400),
        any::<String>().prop_map(String::into_bytes),
    ]) {
        if let Ok(kf) = KeyFile::from_json(&bytes) {
            // Whatever parses must still fail cleanly on unwrap with tiny costs or refuse them.
            if kf.params.memory_kib <= 1024 && kf.params.iterations <= 2 {
                let _ = kf.unwrap(b"pw");
            }
        }
    }
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn key_file_damaged_json_never_panics(m in master(), at in any::<usize>(), bit in any::<u8>(), truncate in any::<bool>()) {
        let json = wrap(&m, b"passphrase").to_json();
        if let Ok(kf) = KeyFile::from_json(&damage(&json, at, bit, truncate)) {
            if kf.params.memory_kib <= 1024 && kf.params.iterations <= 2 {
                // A damaged file either still opens to the same key or fails; it never panics.
                if let Ok(back) = kf.unwrap(b"passphrase") {
                    prop_assert_eq!(&back.to_bytes()[..], &m.to_bytes()[..]);
                }
            }
        }
    }

    #[test]
    fn key_file_hostile_fields_never_panic(
        m in master(),
        salt in prop_oneof![any::<String>(), vec(any::<u8>(), 0..40).prop_map(|b| base64_encode(&b))],
        wrapped in prop_oneof![any::<String>(), vec(any::<u8>(), 0..120).prop_map(|b| base64_encode(&b))],
        memory_kib in 0u32..1024,
        iterations in 0u32..3,
        parallelism in 0u32..80,
        version in any::<u32>(),
        kdf in prop_oneof![Just("argon2id".to_string()), any::<String>()],
    ) {
        // Fields a hostile repository controls, with costs kept small so the test stays fast
        // (large costs are refused before allocating; the unit tests cover that).
        let mut kf = wrap(&m, b"pw");
        kf.salt = salt;
        kf.wrapped_key = wrapped;
        kf.params = KdfParams { memory_kib, iterations, parallelism };
        kf.version = version;
        kf.kdf = kdf;
        let _ = KeyFile::from_json(&kf.to_json()).and_then(|k| k.unwrap(b"pw"));
        let _ = kf.unwrap(b"pw");
    }
}

/// Standard base64 with padding, as key files hold it.
fn base64_encode(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}
