//! Index files: `IndexFile::open` on the input, named by its hash so the name check passes
//! (mode 0), under a wrong name (mode 1), or sealed with the right key around the input so the
//! postcard decoding behind the encryption is reached (mode 2).
#![no_main]

use ferry_format::index::IndexFile;
use ferry_format::IndexId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let m = ferry_fuzz::master();
    let (mode, rest) = ferry_fuzz::mode(data);
    let sealed;
    let (bytes, id) = match mode % 3 {
        0 => (rest, IndexId::from_bytes(ferry_crypto::content_hash(rest))),
        1 => (rest, IndexId::from_bytes([0; 32])),
        _ => {
            sealed = ferry_fuzz::seal_envelope(&m, b"FRYIDX", rest);
            (&sealed[..], IndexId::from_bytes(ferry_crypto::content_hash(&sealed)))
        }
    };
    let _ = IndexFile::open(&m, &id, bytes);
});
