//! Key files: `KeyFile::from_json` on the input, then `unwrap` with a passphrase when the file
//! asks for small Argon2 costs (a hostile file may ask for up to 4 GiB and 100 passes, which is
//! allowed, but would only measure Argon2 here).
#![no_main]

use ferry_crypto::keyfile::KeyFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(kf) = KeyFile::from_json(data) {
        if kf.params.memory_kib <= 1024 && kf.params.iterations <= 2 && kf.params.parallelism <= 8 {
            let _ = kf.unwrap(b"fuzz passphrase");
        }
    }
});
