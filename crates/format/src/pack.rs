//! Packs: many stored blobs in one object, self-describing through an encrypted header at the end.
//!
//! ```text
//! pack          := "FRYPAK" || version(u16 le) || salt(16) || stored_unit* || sealed_header || header_len(u32 le) || "FEND"
//! sealed_header := nonce(12) || AES-256-GCM(pack_key(salt), nonce, aad = "FRYPAK" || version, postcard(Vec<PackEntry>)) || tag(16)
//! ```
//! `pack_key(salt)` is derived from the master key and the pack's random salt, so every pack
//! has its own key and unit nonces can be sequence numbers. A pack is named by BLAKE3 of all of
//! its bytes, so `check`, `diskprep`, `import` and the vault can verify it without any key.
//!
//! A stored unit (see [`crate::blob`]) holds one blob, or a *bundle*: several small blobs
//! compressed and encrypted together, which compresses far better and faster than each alone.
//! Every blob has its own header entry; the entries of a bundle share its offset and length.

use ferry_crypto::{AeadKey, MasterKey, NONCE_LEN};
use serde::{Deserialize, Serialize};

use crate::{blob, BlobId, BlobKind, FormatError, PackId};

const MAGIC: &[u8; 6] = b"FRYPAK";
const END: &[u8; 4] = b"FEND";
/// The pack version this code writes.
pub const VERSION: u16 = 1;
/// Bytes before the first blob.
pub const PREAMBLE_LEN: usize = 6 + 2 + 16;
/// Bytes after the sealed header.
pub const TRAILER_LEN: usize = 4 + 4;
/// The header nonce: all ones, never a blob sequence number.
const HEADER_NONCE: [u8; NONCE_LEN] = [0xff; NONCE_LEN];
/// Upper bound for a sealed header read from outside (1 M entries).
pub const MAX_HEADER_LEN: u32 = 64 * 1024 * 1024;
const WHAT: &str = "pack";

/// One blob's place in a pack. Offsets are from the start of the pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackEntry {
    pub kind: BlobKind,
    pub id: BlobId,
    /// Where the stored unit holding the blob starts.
    pub offset: u32,
    /// The stored unit's length (nonce + ciphertext + tag).
    pub length: u32,
    /// The blob's plaintext length.
    pub raw_len: u32,
    /// Whether the unit's payload is zstd-compressed.
    pub compressed: bool,
    /// Where the blob starts in the unit's plaintext (0 for a unit of one blob).
    pub unit_start: u32,
    /// The unit's plaintext length (`raw_len` for a unit of one blob).
    pub unit_len: u32,
}

impl PackEntry {
    /// Whether the blob is alone in its unit (rather than one of a bundle).
    pub fn is_alone(&self) -> bool {
        self.unit_start == 0 && self.unit_len == self.raw_len
    }

    /// The ID the unit's associated data binds: the blob's own for a unit of one blob, all
    /// zeros for a bundle (each member is still checked against its ID after decryption).
    pub fn unit_aad_id(&self) -> BlobId {
        if self.is_alone() {
            self.id
        } else {
            blob::BUNDLE_AAD_ID
        }
    }
}

fn header_aad() -> [u8; 8] {
    let mut a = [0u8; 8];
    a[..6].copy_from_slice(MAGIC);
    a[6..].copy_from_slice(&VERSION.to_le_bytes());
    a
}

/// Builds one pack in memory.
pub struct PackWriter {
    key: AeadKey,
    salt: [u8; 16],
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
    /// Units sealed so far: the next unit's nonce.
    units: u32,
}

/// A finished pack, ready to store under [`PackId::object_key`].
#[derive(Debug)]
pub struct FinishedPack {
    pub id: PackId,
    pub salt: [u8; 16],
    pub bytes: Vec<u8>,
    pub entries: Vec<PackEntry>,
}

impl PackWriter {
    pub fn new(master: &MasterKey) -> Self {
        Self::with_capacity(master, 0)
    }

    /// A writer whose buffer is reserved up front (no doubling as it grows).
    pub fn with_capacity(master: &MasterKey, capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity);
        let salt: [u8; 16] = ferry_crypto::random_bytes();
        buf.extend_from_slice(&header_aad());
        buf.extend_from_slice(&salt);
        PackWriter { key: master.pack_key(&salt), salt, buf, entries: Vec::new(), units: 0 }
    }

    /// Encrypts and appends one blob whose payload is already compressed (or not).
    pub fn add(&mut self, kind: BlobKind, id: BlobId, payload: &[u8], compressed: bool, raw_len: u32) {
        self.add_bundle(kind, &[(id, raw_len)], payload, compressed);
    }

    /// Encrypts and appends one unit holding `members` (ID and plaintext length each, in the
    /// order their plaintexts are concatenated), whose payload is already compressed (or not).
    /// A single member is stored as a unit of one blob; the members of a bundle MUST NOT be
    /// empty (an empty member could not be told from a unit of one blob by its entry).
    pub fn add_bundle(&mut self, kind: BlobKind, members: &[(BlobId, u32)], payload: &[u8], compressed: bool) {
        debug_assert!(members.len() == 1 || members.iter().all(|&(_, len)| len > 0));
        let seq = self.units;
        self.units += 1;
        let unit_len: u32 = members.iter().map(|(_, len)| len).sum();
        let aad_id = match members {
            [(id, _)] => *id,
            _ => blob::BUNDLE_AAD_ID,
        };
        let offset = self.buf.len();
        blob::seal_into(&self.key, seq, kind, &aad_id, payload, &mut self.buf);
        let length = (self.buf.len() - offset) as u32;
        let mut unit_start = 0;
        for &(id, raw_len) in members {
            self.entries.push(PackEntry { kind, id, offset: offset as u32, length, raw_len, compressed, unit_start, unit_len });
            unit_start += raw_len;
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn blob_count(&self) -> usize {
        self.entries.len()
    }

    /// Appends the sealed header and trailer and names the pack.
    pub fn finish(mut self) -> FinishedPack {
        let header = postcard::to_allocvec(&self.entries).expect("pack header serializes");
        let sealed = self.key.seal(&HEADER_NONCE, &header_aad(), &header);
        self.buf.extend_from_slice(&HEADER_NONCE);
        self.buf.extend_from_slice(&sealed);
        let header_len = (NONCE_LEN + sealed.len()) as u32;
        self.buf.extend_from_slice(&header_len.to_le_bytes());
        self.buf.extend_from_slice(END);
        let id = PackId::from_bytes(ferry_crypto::content_hash(&self.buf));
        FinishedPack { id, salt: self.salt, bytes: self.buf, entries: self.entries }
    }
}

/// Checks the preamble and returns the pack's salt.
pub fn parse_preamble(pre: &[u8]) -> Result<[u8; 16], FormatError> {
    if pre.len() < PREAMBLE_LEN {
        return Err(FormatError::malformed(WHAT, "shorter than its preamble"));
    }
    if &pre[..6] != MAGIC {
        return Err(FormatError::BadMagic { what: WHAT });
    }
    let version = u16::from_le_bytes([pre[6], pre[7]]);
    if version > VERSION {
        return Err(FormatError::NewerVersion { what: WHAT, found: version.into(), supported: VERSION.into() });
    }
    let mut salt = [0u8; 16];
    salt.copy_from_slice(&pre[8..24]);
    Ok(salt)
}

/// Reads the trailer (the last [`TRAILER_LEN`] bytes) and returns the sealed header's length.
pub fn parse_trailer(trailer: &[u8], pack_len: u64) -> Result<u32, FormatError> {
    if trailer.len() != TRAILER_LEN || &trailer[4..] != END {
        return Err(FormatError::malformed(WHAT, "missing end marker (truncated pack?)"));
    }
    let len = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    if len > MAX_HEADER_LEN || u64::from(len) + (PREAMBLE_LEN + TRAILER_LEN) as u64 > pack_len {
        return Err(FormatError::malformed(WHAT, format!("header length {len} does not fit the pack")));
    }
    Ok(len)
}

/// Decrypts the sealed header and checks every entry lies inside the blob area.
pub fn open_header(master: &MasterKey, salt: &[u8; 16], sealed: &[u8], pack_len: u64) -> Result<Vec<PackEntry>, FormatError> {
    if sealed.len() < NONCE_LEN {
        return Err(FormatError::malformed(WHAT, "header shorter than its nonce"));
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| FormatError::malformed(WHAT, "nonce"))?;
    let plain =
        master.pack_key(salt).open(&nonce, &header_aad(), ct).map_err(|source| FormatError::Crypto { what: "pack header", source })?;
    let entries: Vec<PackEntry> = postcard::from_bytes(&plain).map_err(|e| FormatError::malformed(WHAT, format!("header: {e}")))?;
    let blob_end = pack_len
        .checked_sub((sealed.len() + TRAILER_LEN) as u64)
        .ok_or_else(|| FormatError::malformed(WHAT, "header longer than the pack"))?;
    for e in &entries {
        let end = u64::from(e.offset) + u64::from(e.length);
        if (e.offset as usize) < PREAMBLE_LEN || end > blob_end || (e.length as usize) < blob::OVERHEAD {
            return Err(FormatError::malformed(WHAT, format!("entry for blob {} lies outside the pack", e.id.short())));
        }
        if u64::from(e.unit_start) + u64::from(e.raw_len) > u64::from(e.unit_len) || e.unit_len > blob::MAX_BLOB_LEN {
            return Err(FormatError::malformed(WHAT, format!("entry for blob {} lies outside its unit", e.id.short())));
        }
    }
    Ok(entries)
}

/// Parses a whole pack held in memory: verifies its name, returns salt and entries.
pub fn read_pack(master: &MasterKey, id: &PackId, bytes: &[u8]) -> Result<([u8; 16], Vec<PackEntry>), FormatError> {
    verify_id(id, bytes)?;
    let salt = parse_preamble(bytes)?;
    let n = bytes.len() as u64;
    if bytes.len() < PREAMBLE_LEN + TRAILER_LEN {
        return Err(FormatError::malformed(WHAT, "too short"));
    }
    let hlen = parse_trailer(&bytes[bytes.len() - TRAILER_LEN..], n)? as usize;
    let start = bytes.len() - TRAILER_LEN - hlen;
    let entries = open_header(master, &salt, &bytes[start..bytes.len() - TRAILER_LEN], n)?;
    Ok((salt, entries))
}

/// Checks that `bytes` hash to `id` (no key needed).
pub fn verify_id(id: &PackId, bytes: &[u8]) -> Result<(), FormatError> {
    let actual = PackId::from_bytes(ferry_crypto::content_hash(bytes));
    if actual != *id {
        return Err(FormatError::IdMismatch { what: WHAT, expected: id.to_hex(), actual: actual.to_hex() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_round_trip() {
        let m = MasterKey::generate();
        let idk = m.id_key();
        let mut w = PackWriter::new(&m);
        let blobs: Vec<Vec<u8>> = vec![b"one".to_vec(), vec![1u8; 5000], b"three".to_vec()];
        for b in &blobs {
            let (p, c) = blob::compress(b, 3);
            w.add(BlobKind::Data, BlobId::from_bytes(idk.hash(b)), &p, c, b.len() as u32);
        }
        let f = w.finish();
        let (salt, entries) = read_pack(&m, &f.id, &f.bytes).unwrap();
        assert_eq!(salt, f.salt);
        assert_eq!(entries, f.entries);
        let key = m.pack_key(&salt);
        for (e, b) in entries.iter().zip(&blobs) {
            let stored = &f.bytes[e.offset as usize..(e.offset + e.length) as usize];
            assert_eq!(&blob::open(&key, &idk, e.kind, &e.id, stored, e.compressed, e.raw_len).unwrap(), b);
        }
    }

    #[test]
    fn bundles_round_trip_and_members_are_checked() {
        let m = MasterKey::generate();
        let idk = m.id_key();
        let blobs: Vec<&[u8]> = vec![b"first small file\n", b"second small file\n", b"third"];
        let members: Vec<(BlobId, u32)> = blobs.iter().map(|b| (BlobId::from_bytes(idk.hash(b)), b.len() as u32)).collect();
        let (payload, compressed) = blob::compress(&blobs.concat(), 3);
        let mut w = PackWriter::new(&m);
        w.add(BlobKind::Data, BlobId::from_bytes(idk.hash(b"alone")), b"alone", false, 5);
        w.add_bundle(BlobKind::Data, &members, &payload, compressed);
        let f = w.finish();
        let (salt, entries) = read_pack(&m, &f.id, &f.bytes).unwrap();
        assert_eq!(entries.len(), 4);
        assert!(entries[0].is_alone() && !entries[1].is_alone());
        assert!(entries[1..].iter().all(|e| e.offset == entries[1].offset && e.unit_len == 40));
        let key = m.pack_key(&salt);
        let e = &entries[1];
        let stored = &f.bytes[e.offset as usize..(e.offset + e.length) as usize];
        let unit = blob::open_unit(&key, e.kind, &e.unit_aad_id(), stored, e.compressed, e.unit_len).unwrap();
        for (e, b) in entries[1..].iter().zip(&blobs) {
            assert_eq!(blob::member(&idk, &e.id, &unit, e.unit_start, e.raw_len).unwrap(), *b);
        }
        // A member asked for with another blob's range fails its ID check.
        assert!(blob::member(&idk, &entries[1].id, &unit, entries[2].unit_start, entries[2].raw_len).is_err());
        assert!(blob::member(&idk, &entries[1].id, &unit, 39, 5).is_err());
        // The bundle's associated data is not the first member's ID.
        assert!(blob::open_unit(&key, e.kind, &e.id, stored, e.compressed, e.unit_len).is_err());
    }

    #[test]
    fn fixed_entry_bytes() {
        let e = PackEntry {
            kind: BlobKind::Tree,
            id: BlobId::from_bytes([7; 32]),
            offset: 24,
            length: 300,
            raw_len: 5,
            compressed: true,
            unit_start: 2,
            unit_len: 128,
        };
        let mut expected = vec![1u8]; // kind: tree
        expected.extend([7u8; 32]);
        expected.extend([24, 0xac, 0x02, 5, 1, 2, 0x80, 0x01]); // varints and a bool
        assert_eq!(postcard::to_allocvec(&e).unwrap(), expected);
    }

    #[test]
    fn damaged_packs_are_errors() {
        let m = MasterKey::generate();
        let mut w = PackWriter::new(&m);
        w.add(BlobKind::Tree, BlobId::from_bytes([1; 32]), b"x", false, 1);
        let f = w.finish();
        let mut flipped = f.bytes.clone();
        flipped[30] ^= 1;
        assert!(matches!(read_pack(&m, &f.id, &flipped), Err(FormatError::IdMismatch { .. })));
        let truncated = &f.bytes[..f.bytes.len() - 3];
        let tid = PackId::from_bytes(ferry_crypto::content_hash(truncated));
        assert!(read_pack(&m, &tid, truncated).is_err());
        let other = MasterKey::generate();
        assert!(matches!(read_pack(&other, &f.id, &f.bytes), Err(FormatError::Crypto { .. })));
        let mut newer = f.bytes.clone();
        newer[6] = 2;
        let nid = PackId::from_bytes(ferry_crypto::content_hash(&newer));
        assert!(matches!(read_pack(&m, &nid, &newer), Err(FormatError::NewerVersion { .. })));
    }

    #[test]
    fn fixed_preamble_and_trailer_layout() {
        let m = MasterKey::from_bytes(&[2; 64]);
        let f = PackWriter::new(&m).finish();
        assert_eq!(&f.bytes[..8], b"FRYPAK\x01\x00");
        assert_eq!(&f.bytes[f.bytes.len() - 4..], b"FEND");
        // Empty header: postcard of an empty Vec is one byte; sealed = nonce + 1 + tag.
        assert_eq!(&f.bytes[f.bytes.len() - 8..f.bytes.len() - 4], &(12u32 + 1 + 16).to_le_bytes());
        assert_eq!(&f.bytes[24..36], &[0xff; 12]);
        assert_eq!(f.bytes.len(), 24 + 29 + 8);
    }

    proptest::proptest! {
        #[test]
        fn prop_garbage_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let m = MasterKey::from_bytes(&[2; 64]);
            let id = PackId::from_bytes(ferry_crypto::content_hash(&bytes));
            let _ = read_pack(&m, &id, &bytes);
        }
    }
}
