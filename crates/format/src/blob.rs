//! Blob encoding inside a pack. Blobs are stored in units of one blob, or of several small
//! blobs of the same kind (a bundle):
//!
//! ```text
//! stored_unit := nonce(12) || AES-256-GCM(pack_key, nonce, aad = kind(1) || aad_id(32), payload) || tag(16)
//! payload     := zstd(plaintext) if `compressed` else plaintext
//! plaintext   := the blob's plaintext, or the concatenated plaintexts of a bundle's blobs
//! aad_id      := the blob's ID for a unit of one blob; 32 zero bytes for a bundle
//! ```
//! `nonce` is the unit's sequence number in its pack (little-endian, zero-padded to 12 bytes);
//! it is unique because every pack has its own key. Each blob's plaintext is checked against
//! its ID after decryption, also inside a bundle.

use ferry_crypto::{AeadKey, NONCE_LEN, TAG_LEN};

use crate::{BlobId, BlobKind, FormatError};

/// The ID a bundle's associated data binds (its members are checked one by one).
pub const BUNDLE_AAD_ID: BlobId = BlobId::from_bytes([0; 32]);

/// Bytes a stored unit adds to its payload.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Largest plaintext blob accepted when reading (a tree of a huge directory can exceed the
/// chunker's maximum; 256 MiB bounds what a hostile index can make us allocate).
pub const MAX_BLOB_LEN: u32 = 256 * 1024 * 1024;

fn aad(kind: BlobKind, id: &BlobId) -> [u8; 33] {
    let mut a = [0u8; 33];
    a[0] = kind.as_byte();
    a[1..].copy_from_slice(id.as_bytes());
    a
}

/// Chunks at least this long are probed before being compressed whole.
const PROBE_FROM: usize = 256 * 1024;
/// The probe compresses this many samples of this length.
const PROBE_LEN: usize = 8 * 1024;
const PROBE_SAMPLES: usize = 8;

/// zstd's hash log (log2 of the match table's entries) at level 1.
const FAST_HASH_LOG: u32 = 13;

/// Compression contexts kept per thread (one per level in use).
const MAX_CONTEXTS: usize = 3;

thread_local! {
    // One compression context per thread and level, reused across blobs (creating one per
    // blob costs an allocation and a table reset each time). A backup's threads use two levels
    // (bundles of small files, single blobs), so a context per level is kept: switching one
    // context between levels made a new one, a megabyte of fresh pages, at each switch.
    static COMPRESSORS: std::cell::RefCell<Vec<(i32, zstd::bulk::Compressor<'static>)>> = const { std::cell::RefCell::new(Vec::new()) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
}

/// Compresses `plain` with zstd at `level` when that saves at least 1/16 of it; returns the
/// payload and whether it is compressed.
pub fn compress(plain: &[u8], level: i32) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    if compress_into(plain, level, &mut out) {
        (out, true)
    } else {
        (plain.to_vec(), false)
    }
}

/// Like [`compress`], into a caller's buffer (reused from unit to unit, so that a backup does
/// not allocate, and fault in, a fresh output buffer for each). Returns true when `out` holds
/// the compressed payload; false when `plain` is to be stored as it is (`out` is then
/// unspecified).
/// Empties `out` and makes room for `n` bytes: a buffer too small is replaced, not grown, as
/// growing would copy its old (discarded) content.
fn make_room(out: &mut Vec<u8>, n: usize) {
    out.clear();
    if out.capacity() < n {
        *out = Vec::with_capacity(n);
    }
}

pub fn compress_into(plain: &[u8], level: i32, out: &mut Vec<u8>) -> bool {
    if plain.len() < 64 || level == 0 {
        return false;
    }
    let written = COMPRESSORS.with(|slot| {
        let mut contexts = slot.borrow_mut();
        let at = if let Some(at) = contexts.iter().position(|(l, _)| *l == level) {
            at
        } else {
            let mut c = zstd::bulk::Compressor::new(level).ok()?;
            // The frame checksum is redundant: the blob is authenticated
            // and its ID is checked after decompression.
            c.include_checksum(false).ok()?;
            c.include_dictid(false).ok()?;
            if level == 1 {
                // Level 1's match table is 64 KiB (hash log 14); at 32 KiB it stays in the
                // L1 data cache. Bundles of the Linux tree's small files: 5-8 % faster,
                // 3 % larger (docs/format.md "Compression").
                c.set_parameter(zstd::zstd_safe::CParameter::HashLog(FAST_HASH_LOG)).ok()?;
            }
            if contexts.len() >= MAX_CONTEXTS {
                contexts.remove(0);
            }
            contexts.push((level, c));
            contexts.len() - 1
        };
        let c = &mut contexts[at].1;
        // Large chunks: compress a sample first and skip chunks that will not shrink
        // (already compressed or encrypted data), which would cost a full pass for nothing.
        if plain.len() >= PROBE_FROM {
            // Samples spread over the chunk: mixed content (a disk image with text here and
            // encrypted data there) is compressed if any part of it shrinks.
            let step = (plain.len() - PROBE_LEN) / (PROBE_SAMPLES - 1);
            let shrinks = (0..PROBE_SAMPLES).any(|i| {
                make_room(out, zstd::zstd_safe::compress_bound(PROBE_LEN));
                let sample = &plain[i * step..i * step + PROBE_LEN];
                c.compress_to_buffer(sample, out).is_ok_and(|n| n <= PROBE_LEN - PROBE_LEN / 32)
            });
            if !shrinks {
                return None;
            }
        }
        make_room(out, zstd::zstd_safe::compress_bound(plain.len()));
        c.compress_to_buffer(plain, out).ok()
    });
    written.is_some_and(|n| n < plain.len() - plain.len() / 16)
}

/// Decompresses `payload` into `out` (replacing its content), which must end up `raw_len`
/// bytes long.
fn decompress_into(payload: &[u8], raw_len: usize, out: &mut Vec<u8>) -> std::io::Result<()> {
    DECOMPRESSOR.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.is_none() {
            let d = zstd::bulk::Decompressor::new()?;
            *slot = Some(d);
        }
        out.clear();
        out.reserve(raw_len);
        slot.as_mut().expect("just set").decompress_to_buffer(payload, out).map(|_| ())
    })
}

/// Encrypts a payload into a stored blob.
pub fn seal(key: &AeadKey, seq: u32, kind: BlobKind, id: &BlobId, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(OVERHEAD + payload.len());
    seal_into(key, seq, kind, id, payload, &mut out);
    out
}

/// Appends the stored blob to `out`, encrypting in place (no intermediate copies).
pub fn seal_into(key: &AeadKey, seq: u32, kind: BlobKind, id: &BlobId, payload: &[u8], out: &mut Vec<u8>) {
    let mut nonce = [0u8; NONCE_LEN];
    nonce[..4].copy_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&nonce);
    let start = out.len();
    out.extend_from_slice(payload);
    let tag = key.seal_in_place_separate_tag(&nonce, &aad(kind, id), &mut out[start..]);
    out.extend_from_slice(&tag);
}

/// Decrypts and decompresses a stored unit of one blob and checks that its plaintext hashes to `id`.
pub fn open(
    key: &AeadKey,
    id_key: &ferry_crypto::IdKey,
    kind: BlobKind,
    id: &BlobId,
    stored: &[u8],
    compressed: bool,
    raw_len: u32,
) -> Result<Vec<u8>, FormatError> {
    let plain = open_unit(key, kind, id, stored, compressed, raw_len)?;
    member(id_key, id, &plain, 0, raw_len)?;
    Ok(plain)
}

/// Decrypts and decompresses a stored unit whose associated data binds `aad_id` (see
/// [`crate::pack::PackEntry::unit_aad_id`]) and whose plaintext is `unit_len` bytes long. The
/// blobs in it are then taken out with [`member`], which checks them.
pub fn open_unit(
    key: &AeadKey,
    kind: BlobKind,
    aad_id: &BlobId,
    stored: &[u8],
    compressed: bool,
    unit_len: u32,
) -> Result<Vec<u8>, FormatError> {
    let (mut scratch, mut out) = (Vec::new(), Vec::new());
    open_unit_into(key, kind, aad_id, stored, compressed, unit_len, &mut scratch, &mut out)?;
    Ok(out)
}

/// [`open_unit`] into buffers the caller keeps: `scratch` holds the decrypted payload, `out`
/// receives the plaintext. Reusing them matters: a bundle's megabyte decoded into a new buffer
/// is a fresh mapping whose every page faults in (a kernel-tree restore: 300,000 faults).
#[allow(clippy::too_many_arguments)]
pub fn open_unit_into(
    key: &AeadKey,
    kind: BlobKind,
    aad_id: &BlobId,
    stored: &[u8],
    compressed: bool,
    unit_len: u32,
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<(), FormatError> {
    const WHAT: &str = "blob";
    if stored.len() < OVERHEAD {
        return Err(FormatError::malformed(WHAT, "shorter than nonce and tag"));
    }
    if unit_len > MAX_BLOB_LEN {
        return Err(FormatError::malformed(WHAT, format!("length {unit_len} exceeds the limit")));
    }
    let (nonce, rest) = stored.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| FormatError::malformed(WHAT, "nonce"))?;
    // Uncompressed, the decrypted payload is the plaintext: decrypt straight into `out`.
    let payload = if compressed { &mut *scratch } else { &mut *out };
    payload.clear();
    payload.extend_from_slice(rest);
    key.open_in_place(&nonce, &aad(kind, aad_id), payload).map_err(|source| FormatError::Crypto { what: WHAT, source })?;
    if !compressed {
        if out.len() != unit_len as usize {
            return Err(FormatError::malformed(WHAT, "stored length differs from the index"));
        }
        return Ok(());
    }
    decompress_into(scratch, unit_len as usize, out).map_err(|e| FormatError::malformed(WHAT, format!("zstd: {e}")))?;
    if out.len() != unit_len as usize {
        return Err(FormatError::malformed(WHAT, "decompressed length differs from the index"));
    }
    Ok(())
}

/// The blob at `start..start + len` of a decrypted unit, checked against its ID.
pub fn member<'u>(id_key: &ferry_crypto::IdKey, id: &BlobId, unit: &'u [u8], start: u32, len: u32) -> Result<&'u [u8], FormatError> {
    const WHAT: &str = "blob";
    let plain = (start as usize)
        .checked_add(len as usize)
        .and_then(|end| unit.get(start as usize..end))
        .ok_or_else(|| FormatError::malformed(WHAT, format!("blob {} lies outside its unit", id.short())))?;
    let actual = BlobId::from_bytes(id_key.hash(plain));
    if actual != *id {
        return Err(FormatError::IdMismatch { what: WHAT, expected: id.to_hex(), actual: actual.to_hex() });
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_crypto::MasterKey;

    #[test]
    fn round_trip_compressed_and_raw() {
        let m = MasterKey::generate();
        let k = m.pack_key(&[5; 16]);
        let idk = m.id_key();
        for plain in [vec![0u8; 10_000], b"tiny".to_vec()] {
            let id = BlobId::from_bytes(idk.hash(&plain));
            let (payload, compressed) = compress(&plain, 3);
            assert_eq!(compressed, plain.len() > 64);
            let stored = seal(&k, 7, BlobKind::Data, &id, &payload);
            let back = open(&k, &idk, BlobKind::Data, &id, &stored, compressed, plain.len() as u32).unwrap();
            assert_eq!(back, plain);
            // Wrong kind in the associated data fails authentication.
            assert!(open(&k, &idk, BlobKind::Tree, &id, &stored, compressed, plain.len() as u32).is_err());
        }
    }

    proptest::proptest! {
        #[test]
        fn prop_round_trip(plain in proptest::collection::vec(0u8..4, 0..5000), seq in 0u32..1000) {
            let m = MasterKey::from_bytes(&[9; 64]);
            let k = m.pack_key(&[1; 16]);
            let idk = m.id_key();
            let id = BlobId::from_bytes(idk.hash(&plain));
            let (payload, c) = compress(&plain, 1);
            let stored = seal(&k, seq, BlobKind::Tree, &id, &payload);
            proptest::prop_assert_eq!(open(&k, &idk, BlobKind::Tree, &id, &stored, c, plain.len() as u32).unwrap(), plain);
        }

        #[test]
        fn prop_garbage_never_panics(stored in proptest::collection::vec(proptest::num::u8::ANY, 0..200), c: bool, raw in 0u32..1000) {
            let m = MasterKey::from_bytes(&[9; 64]);
            let _ = open(&m.pack_key(&[1; 16]), &m.id_key(), BlobKind::Data, &BlobId::from_bytes([0; 32]), &stored, c, raw);
        }
    }
}

#[cfg(test)]
mod probe_tests {
    use super::compress;
    use ferry_testkit::bytes;

    #[test]
    fn incompressible_large_chunks_are_stored_raw_and_compressible_ones_compressed() {
        assert!(!compress(&bytes(1 << 20, 1), 3).1);
        let text = b"all work and no play makes jack a dull boy\n".repeat(30_000);
        let (c, compressed) = compress(&text, 3);
        assert!(compressed && c.len() < text.len() / 10);
    }

    #[test]
    fn a_chunk_that_starts_random_but_ends_in_text_is_compressed() {
        let mut data = bytes(256 * 1024, 7);
        data.extend(b"the quick brown fox jumps over the lazy dog\n".repeat(20_000));
        let (c, compressed) = compress(&data, 3);
        assert!(compressed && c.len() < data.len() * 3 / 4, "{} of {}", c.len(), data.len());
    }
}
