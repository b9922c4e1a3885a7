//! Stored blobs: `blob::open` on the input as a stored blob (mode 0), or on a blob sealed with
//! the right key around the input (mode 1), which reaches zstd decompression and the ID check.
//! Bytes after the mode: flags (bit 0 compressed, bit 1 tree), raw length (u32 le), data.
#![no_main]

use ferry_format::{blob, BlobId, BlobKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let m = ferry_fuzz::master();
    let (mode, rest) = ferry_fuzz::mode(data);
    let (flags, rest) = ferry_fuzz::mode(rest);
    if rest.len() < 4 {
        return;
    }
    let (len, rest) = rest.split_at(4);
    // Keep raw lengths below 16 MiB: larger ones are legal (up to blob::MAX_BLOB_LEN) but only
    // make zstd reserve more memory.
    let raw_len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) % (16 << 20);
    let compressed = flags & 1 != 0;
    let kind = if flags & 2 != 0 { BlobKind::Tree } else { BlobKind::Data };
    let key = m.pack_key(&[1; 16]);
    let idk = m.id_key();
    let sealed;
    let (stored, id) = if mode % 2 == 0 {
        (rest, BlobId::from_bytes([0; 32]))
    } else {
        // Name the blob after its payload, so an uncompressed one passes the ID check too.
        let id = BlobId::from_bytes(idk.hash(rest));
        sealed = blob::seal(&key, u32::from(flags), kind, &id, rest);
        (&sealed[..], id)
    };
    if let Ok(plain) = blob::open(&key, &idk, kind, &id, stored, compressed, raw_len) {
        assert_eq!(BlobId::from_bytes(idk.hash(&plain)), id);
    }
});
