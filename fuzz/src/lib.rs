//! Helpers shared by the fuzz targets: a fixed master key (and seed disk key), and objects
//! sealed around fuzzer input so that the decoders *behind* the name check and the
//! authenticated encryption get exercised (random bytes never pass AES-GCM, so without these the fuzzer would only ever
//! reach the first few checks).

use ferry_crypto::MasterKey;

/// The fixed master key every target decrypts with.
pub fn master() -> MasterKey {
    MasterKey::from_bytes(&[0x42; 64])
}

/// The fixed disk key the seed-disk targets use.
pub fn disk_key() -> ferry_seed::DiskKey {
    ferry_seed::DiskKey::from_bytes([0x24; 32])
}

/// The fixed set id the seed-disk targets use.
pub const SET_ID: [u8; 16] = [0x5e; 16];

/// A sealed metadata object (`magic || version || nonce || AES-GCM(meta_key, body) || tag`)
/// around `body`, with a fixed nonce so runs are reproducible.
pub fn seal_envelope(m: &MasterKey, magic: &[u8; 6], body: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 8];
    header[..6].copy_from_slice(magic);
    header[6..].copy_from_slice(&1u16.to_le_bytes());
    let nonce = [7u8; ferry_crypto::NONCE_LEN];
    let mut out = header.to_vec();
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&m.meta_key().seal(&nonce, &header, body));
    out
}

/// A pack whose header holds `header` (sealed with the right key) after `blob_area`.
pub fn pack_with_header(m: &MasterKey, salt: [u8; 16], blob_area: &[u8], header: &[u8]) -> Vec<u8> {
    const HEADER_AAD: &[u8; 8] = b"FRYPAK\x01\x00";
    let nonce = [0xff; ferry_crypto::NONCE_LEN];
    let sealed = m.pack_key(&salt).seal(&nonce, HEADER_AAD, header);
    let mut out = HEADER_AAD.to_vec();
    out.extend_from_slice(&salt);
    out.extend_from_slice(blob_area);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out.extend_from_slice(&((nonce.len() + sealed.len()) as u32).to_le_bytes());
    out.extend_from_slice(b"FEND");
    out
}

/// Splits off the first byte as a mode selector.
pub fn mode(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((m, rest)) => (*m, rest),
        None => (0, data),
    }
}
