//! Seed disk manifests: `Manifest::open` on the input as a manifest file (mode 0), or on a
//! manifest file sealed with the right key around the input (mode 1), which reaches the
//! postcard decoding and the entry checks behind the encryption. A manifest that opens
//! re-seals to one that opens equal.
#![no_main]

use ferry_seed::manifest::{seal_body, Manifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = ferry_fuzz::disk_key();
    let set_id = ferry_fuzz::SET_ID;
    let (mode, rest) = ferry_fuzz::mode(data);
    let sealed;
    let bytes = if mode % 2 == 0 {
        rest
    } else {
        sealed = seal_body(&key, &set_id, rest);
        &sealed[..]
    };
    if let Ok(m) = Manifest::open(&key, &set_id, bytes) {
        let _ = m.digest();
        assert_eq!(Manifest::open(&key, &set_id, &m.seal(&key)).as_ref(), Ok(&m));
    }
});
