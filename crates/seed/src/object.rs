//! Object files `FERRY-SEED/objects/<file id>`: one staging object each, sealed in 1 MiB frames.
//!
//! ```text
//! file   := header(30) || frame(0) || ... || frame(n-1)
//! header := "FERRYSEEDOBJ" || u16le(1) || file_id(8) || u64le(plaintext size)
//! frame(i) := AES-256-GCM(object key, nonce(i), aad = set_id || header, plaintext[i MiB .. (i+1) MiB])
//! nonce(i) := file_id(8) || u32be(i | 0x8000_0000 if i = n-1)
//! n := max(1, ceil(size / 1 MiB))
//! ```

use std::io::{self, Read, Write};

use ferry_crypto::{AeadKey, NONCE_LEN, TAG_LEN};

use crate::error::DiskFormatError;
use crate::header::{Header, BINARY_HEADER_LEN};
use crate::{DiskKey, MAX_DISK_BYTES};

/// The first bytes of every object file.
pub const OBJECT_MAGIC: &[u8; 12] = b"FERRYSEEDOBJ";
/// The object-file version this build writes and the newest it reads.
pub const OBJECT_VERSION: u16 = 1;
const HEADER: Header = Header { magic: OBJECT_MAGIC, version: OBJECT_VERSION as u32, what: "a seed object file", short: "object file" };
/// Length of the header.
pub const HEADER_LEN: usize = 30;
/// Plaintext bytes per frame (all but the last frame are full).
pub const FRAME_LEN: usize = 1 << 20;
const LAST_FRAME: u32 = 1 << 31;

/// An object file's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectHeader {
    /// The random 64-bit file id, also the file's name (16 hex digits) and the nonce prefix.
    pub file_id: [u8; 8],
    /// The plaintext size.
    pub size: u64,
}

impl ObjectHeader {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..BINARY_HEADER_LEN].copy_from_slice(&HEADER.binary());
        h[14..22].copy_from_slice(&self.file_id);
        h[22..30].copy_from_slice(&self.size.to_le_bytes());
        h
    }

    pub fn decode(bytes: &[u8]) -> Result<ObjectHeader, DiskFormatError> {
        let h: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| DiskFormatError::malformed("truncated: shorter than an object header"))?;
        HEADER.check_binary(h)?;
        let mut file_id = [0u8; 8];
        file_id.copy_from_slice(&h[14..22]);
        let size = u64::from_le_bytes(h[22..30].try_into().map_err(|_| DiskFormatError::malformed("size"))?);
        if size > MAX_DISK_BYTES {
            return Err(DiskFormatError::malformed(format!("implausible object size {size}")));
        }
        Ok(ObjectHeader { file_id, size })
    }
}

/// Number of frames of an object of `size` bytes (an empty object has one empty frame).
pub fn frame_count(size: u64) -> u64 {
    size.div_ceil(FRAME_LEN as u64).max(1)
}

/// Size of the object file holding `size` plaintext bytes.
pub fn stored_size(size: u64) -> u64 {
    (HEADER_LEN as u64).saturating_add(size).saturating_add(TAG_LEN as u64 * frame_count(size))
}

/// Plaintext length of frame `index` of an object of `size` bytes.
fn frame_len(size: u64, index: u64) -> usize {
    let start = index * FRAME_LEN as u64;
    (size.saturating_sub(start)).min(FRAME_LEN as u64) as usize
}

fn nonce(file_id: &[u8; 8], index: u64, last: bool) -> [u8; NONCE_LEN] {
    // Objects are at most MAX_DISK_BYTES (checked by the header decoder and by prepare), so
    // the index stays far below 2^31.
    let mut word = index as u32;
    if last {
        word |= LAST_FRAME;
    }
    let mut n = [0u8; NONCE_LEN];
    n[..8].copy_from_slice(file_id);
    n[8..].copy_from_slice(&word.to_be_bytes());
    n
}

/// A file id as the file's name: 16 lowercase hex digits.
pub fn file_name(file_id: &[u8; 8]) -> String {
    hex::encode(file_id)
}

/// The file id of an object file name, if it is one (16 lowercase hex digits).
pub fn parse_file_name(name: &str) -> Option<[u8; 8]> {
    crate::label::parse_hex(name)
}

fn aad(set_id: &[u8; 16], header: &[u8; HEADER_LEN]) -> [u8; 16 + HEADER_LEN] {
    let mut a = [0u8; 16 + HEADER_LEN];
    a[..16].copy_from_slice(set_id);
    a[16..].copy_from_slice(header);
    a
}

/// Seals an object's plaintext, fed in pieces of any size, into frames written to `out`.
pub struct Sealer<'k> {
    key: &'k AeadKey,
    header: ObjectHeader,
    aad: [u8; 16 + HEADER_LEN],
    index: u64,
    fed: u64,
    frame: Vec<u8>,
}

impl<'k> Sealer<'k> {
    /// Writes the header to `out` and returns the sealer of the frames.
    pub fn start<W: Write>(key: &'k AeadKey, set_id: &[u8; 16], header: ObjectHeader, out: &mut W) -> io::Result<Self> {
        if header.size > MAX_DISK_BYTES {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "object larger than a disk"));
        }
        let bytes = header.encode();
        out.write_all(&bytes)?;
        let first = frame_len(header.size, 0);
        Ok(Sealer { key, header, aad: aad(set_id, &bytes), index: 0, fed: 0, frame: Vec::with_capacity(first + TAG_LEN) })
    }

    /// Feeds the next plaintext bytes.
    pub fn push<W: Write>(&mut self, mut data: &[u8], out: &mut W) -> io::Result<()> {
        if data.len() as u64 > self.header.size - self.fed {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "more bytes than the object's size"));
        }
        self.fed += data.len() as u64;
        while !data.is_empty() {
            let want = frame_len(self.header.size, self.index) - self.frame.len();
            let (now, rest) = data.split_at(want.min(data.len()));
            self.frame.extend_from_slice(now);
            data = rest;
            if self.frame.len() == frame_len(self.header.size, self.index) {
                self.seal_frame(out)?;
            }
        }
        Ok(())
    }

    /// Seals what is left (the empty frame of an empty object). Fails if fewer bytes than the
    /// header's size were fed.
    pub fn finish<W: Write>(mut self, out: &mut W) -> io::Result<()> {
        if self.fed != self.header.size {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "fewer bytes than the object's size"));
        }
        if self.index < frame_count(self.header.size) {
            self.seal_frame(out)?;
        }
        Ok(())
    }

    fn seal_frame<W: Write>(&mut self, out: &mut W) -> io::Result<()> {
        let last = self.index + 1 == frame_count(self.header.size);
        let n = nonce(&self.header.file_id, self.index, last);
        self.key.seal_in_place(&n, &self.aad, &mut self.frame);
        out.write_all(&self.frame)?;
        self.frame.clear();
        self.index += 1;
        Ok(())
    }
}

/// Reads an object file from `r`: the header (which must match `expected`, if given: the file
/// id the manifest or journal names, and the size), then every frame, decrypted and
/// authenticated, each plaintext piece hashed and, if `out` is given, appended to it. Returns
/// the header and the BLAKE3 hash of the plaintext. Fails on anything after the last frame.
///
/// Allocates one frame (1 MiB) plus what `out` receives: callers bound the size first.
pub fn open_stream<R: Read>(
    key: &AeadKey,
    set_id: &[u8; 16],
    expected: Option<ObjectHeader>,
    r: &mut R,
    mut out: Option<&mut Vec<u8>>,
) -> Result<(ObjectHeader, [u8; 32]), DiskFormatError> {
    let mut hbytes = [0u8; HEADER_LEN];
    read_full(r, &mut hbytes, "truncated: shorter than an object header")?;
    let header = ObjectHeader::decode(&hbytes)?;
    if let Some(want) = expected {
        if header.file_id != want.file_id {
            return Err(DiskFormatError::malformed(format!(
                "the file holds object file {}, not {}: files were swapped or renamed",
                file_name(&header.file_id),
                file_name(&want.file_id)
            )));
        }
        if header.size != want.size {
            return Err(DiskFormatError::malformed(format!("wrong size: {} bytes, expected {}", header.size, want.size)));
        }
    }
    let aad = aad(set_id, &hbytes);
    let frames = frame_count(header.size);
    let mut hasher = blake3::Hasher::new();
    let mut frame = Vec::with_capacity(frame_len(header.size, 0) + TAG_LEN);
    for index in 0..frames {
        frame.resize(frame_len(header.size, index) + TAG_LEN, 0);
        read_full(r, &mut frame, &format!("truncated: ends in frame {index} of {frames}"))?;
        key.open_in_place(&nonce(&header.file_id, index, index + 1 == frames), &aad, &mut frame)
            .map_err(|_| DiskFormatError::Authentication)?;
        hasher.update(&frame);
        if let Some(out) = out.as_deref_mut() {
            out.extend_from_slice(&frame);
        }
    }
    let mut probe = [0u8; 1];
    loop {
        match r.read(&mut probe) {
            Ok(0) => break,
            Ok(_) => return Err(DiskFormatError::malformed("bytes after the last frame")),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(DiskFormatError::Read(e.to_string())),
        }
    }
    Ok((header, *hasher.finalize().as_bytes()))
}

fn read_full<R: Read>(r: &mut R, buf: &mut [u8], short: &str) -> Result<(), DiskFormatError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => DiskFormatError::malformed(short),
        _ => DiskFormatError::Read(e.to_string()),
    })
}

/// A whole object file in memory, for tests and fuzzing: `seal` and [`open`] are inverses.
pub fn seal(key: &DiskKey, set_id: &[u8; 16], file_id: [u8; 8], plaintext: &[u8]) -> Vec<u8> {
    let aead = key.object_key(set_id);
    let header = ObjectHeader { file_id, size: plaintext.len() as u64 };
    let mut out = Vec::with_capacity(stored_size(header.size) as usize);
    let mut sealer = Sealer::start(&aead, set_id, header, &mut out).expect("writing to memory");
    sealer.push(plaintext, &mut out).expect("writing to memory");
    sealer.finish(&mut out).expect("writing to memory");
    out
}

/// Opens an object file held in memory (untrusted bytes); see [`open_stream`].
pub fn open(key: &DiskKey, set_id: &[u8; 16], bytes: &[u8]) -> Result<Vec<u8>, DiskFormatError> {
    let mut out = Vec::new();
    let mut r = bytes;
    open_stream(&key.object_key(set_id), set_id, None, &mut r, Some(&mut out))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SET: [u8; 16] = [0x5e; 16];
    const ID: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

    fn key() -> DiskKey {
        DiskKey::from_bytes([9; 32])
    }

    #[test]
    fn fixed_bytes() {
        let sealed = seal(&key(), &SET, ID, b"hello");
        let header = "4645525259534545444f424a010001020304050607080500000000000000";
        assert_eq!(hex::encode(&sealed[..HEADER_LEN]), header);
        // One last frame: AES-256-GCM under BLAKE3-derive("ferry seed object v1", key || set_id),
        // nonce = id || 80 00 00 00, aad = set_id || header.
        let mut material = [9u8; 48];
        material[32..].copy_from_slice(&SET);
        let k = AeadKey::new(&blake3::derive_key("ferry seed object v1", &material));
        let mut n = [0u8; 12];
        n[..8].copy_from_slice(&ID);
        n[8] = 0x80;
        let mut a = SET.to_vec();
        a.extend_from_slice(&sealed[..HEADER_LEN]);
        assert_eq!(&sealed[HEADER_LEN..], &k.seal(&n, &a, b"hello")[..]);
        assert_eq!(hex::encode(&sealed[HEADER_LEN..]), "7e485694622d63032741fb9b01325eddc68767a5f1");
        assert_eq!(sealed.len() as u64, stored_size(5));
    }

    #[test]
    fn frame_layout() {
        assert_eq!(frame_count(0), 1);
        assert_eq!(frame_count(1), 1);
        assert_eq!(frame_count(FRAME_LEN as u64), 1);
        assert_eq!(frame_count(FRAME_LEN as u64 + 1), 2);
        assert_eq!(stored_size(0), 30 + 16);
        assert_eq!(stored_size(FRAME_LEN as u64 + 1), 30 + FRAME_LEN as u64 + 1 + 32);
        assert_eq!(nonce(&ID, 3, false)[8..], [0, 0, 0, 3]);
        assert_eq!(nonce(&ID, 3, true)[8..], [0x80, 0, 0, 3]);
        assert_eq!(parse_file_name("0102030405060708"), Some(ID));
        assert_eq!(file_name(&ID), "0102030405060708");
        for bad in ["010203040506070", "01020304050607080", "010203040506070G", "010203040506070A", "../../etc/passw"] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn tampering_fails() {
        let data: Vec<u8> = (0..(2 * FRAME_LEN + 10)).map(|i| i as u8).collect();
        let sealed = seal(&key(), &SET, ID, &data);
        assert_eq!(open(&key(), &SET, &sealed).unwrap(), data);
        // A flipped byte in each frame, in the header.
        for at in [HEADER_LEN + 5, HEADER_LEN + FRAME_LEN + 20, sealed.len() - 1, 20] {
            let mut bad = sealed.clone();
            bad[at] ^= 1;
            assert!(open(&key(), &SET, &bad).is_err(), "{at}");
        }
        // Truncated at a frame boundary (the last-frame flag is missing), or mid-frame.
        let cut = HEADER_LEN + FRAME_LEN + TAG_LEN;
        assert!(matches!(open(&key(), &SET, &sealed[..cut]), Err(DiskFormatError::Malformed(_))));
        assert!(matches!(open(&key(), &SET, &sealed[..cut + 100]), Err(DiskFormatError::Malformed(_))));
        // Truncated and the size in the header shortened to match: authentication fails.
        let mut short = sealed[..cut].to_vec();
        short[22..30].copy_from_slice(&(FRAME_LEN as u64).to_le_bytes());
        assert_eq!(open(&key(), &SET, &short), Err(DiskFormatError::Authentication));
        // Frames swapped.
        let mut swapped = sealed.clone();
        let f = FRAME_LEN + TAG_LEN;
        let (a, b) = (sealed[HEADER_LEN..HEADER_LEN + f].to_vec(), sealed[HEADER_LEN + f..HEADER_LEN + 2 * f].to_vec());
        swapped[HEADER_LEN..HEADER_LEN + f].copy_from_slice(&b);
        swapped[HEADER_LEN + f..HEADER_LEN + 2 * f].copy_from_slice(&a);
        assert_eq!(open(&key(), &SET, &swapped), Err(DiskFormatError::Authentication));
        // Trailing bytes, other set, other key, another file's id in the header.
        let mut longer = sealed.clone();
        longer.push(0);
        assert!(matches!(open(&key(), &SET, &longer), Err(DiskFormatError::Malformed(_))));
        assert_eq!(open(&key(), &[0; 16], &sealed), Err(DiskFormatError::Authentication));
        assert_eq!(open(&DiskKey::from_bytes([8; 32]), &SET, &sealed), Err(DiskFormatError::Authentication));
        let mut renamed = sealed.clone();
        renamed[14] ^= 1;
        assert_eq!(open(&key(), &SET, &renamed), Err(DiskFormatError::Authentication));
        // The expected header: a swapped file is named as such.
        let aead = key().object_key(&SET);
        let other = ObjectHeader { file_id: [0; 8], size: data.len() as u64 };
        let e = open_stream(&aead, &SET, Some(other), &mut &sealed[..], None).unwrap_err();
        assert!(e.to_string().contains("swapped"), "{e}");
        let wrong_size = ObjectHeader { file_id: ID, size: 1 };
        let e = open_stream(&aead, &SET, Some(wrong_size), &mut &sealed[..], None).unwrap_err();
        assert!(e.to_string().contains("wrong size"), "{e}");
    }

    #[test]
    fn sealer_rejects_wrong_lengths() {
        let aead = key().object_key(&SET);
        let mut out = Vec::new();
        let mut s = Sealer::start(&aead, &SET, ObjectHeader { file_id: ID, size: 3 }, &mut out).unwrap();
        assert!(s.push(b"abcd", &mut out).is_err());
        s.push(b"ab", &mut out).unwrap();
        assert!(s.finish(&mut out).is_err());
    }

    #[test]
    fn boundary_sizes() {
        for size in [0, 1, FRAME_LEN - 1, FRAME_LEN, FRAME_LEN + 1, 3 * FRAME_LEN] {
            let data: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
            let sealed = seal(&key(), &SET, ID, &data);
            assert_eq!(sealed.len() as u64, stored_size(size as u64));
            assert_eq!(open(&key(), &SET, &sealed).unwrap(), data, "{size}");
            // The same bytes fed in uneven pieces seal identically.
            let aead = key().object_key(&SET);
            let mut out = Vec::new();
            let mut s = Sealer::start(&aead, &SET, ObjectHeader { file_id: ID, size: size as u64 }, &mut out).unwrap();
            for piece in data.chunks(333_333) {
                s.push(piece, &mut out).unwrap();
            }
            s.finish(&mut out).unwrap();
            assert_eq!(out, sealed);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn prop_round_trip(size in prop_oneof![0usize..64, (FRAME_LEN - 2)..(FRAME_LEN + 3), (2 * FRAME_LEN - 1)..(2 * FRAME_LEN + 2)], seed in any::<u8>(), id in any::<[u8; 8]>(), piece in 1usize..(3 * FRAME_LEN)) {
            let data: Vec<u8> = (0..size).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
            let aead = key().object_key(&SET);
            let mut out = Vec::new();
            let header = ObjectHeader { file_id: id, size: size as u64 };
            let mut s = Sealer::start(&aead, &SET, header, &mut out).unwrap();
            for p in data.chunks(piece) {
                s.push(p, &mut out).unwrap();
            }
            s.finish(&mut out).unwrap();
            prop_assert_eq!(out.len() as u64, stored_size(size as u64));
            let mut back = Vec::new();
            let (h, hash) = open_stream(&aead, &SET, Some(header), &mut &out[..], Some(&mut back)).unwrap();
            prop_assert_eq!(h, header);
            prop_assert_eq!(hash, ferry_crypto::content_hash(&data));
            prop_assert_eq!(back, data);
        }

        #[test]
        fn prop_open_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = open(&key(), &SET, &bytes);
        }
    }
}
