//! Seed device seals: `Seal::decode` on the input as a seal file (even modes), or on a seal
//! file sealed with the right key around the input (odd modes), which reaches the postcard
//! decoding and the entry checks behind the encryption. The mode also picks the device number
//! (0..=11, so numbers beyond the count are tried). A seal that opens re-seals to one that
//! opens equal.
#![no_main]

use ferry_seed::device::seal_body;
use ferry_seed::Seal;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = ferry_fuzz::disk_key();
    let set_id = ferry_fuzz::SET_ID;
    let (mode, rest) = ferry_fuzz::mode(data);
    let number = u32::from(mode / 2 % 12);
    let sealed;
    let bytes = if mode % 2 == 0 {
        rest
    } else {
        sealed = seal_body(&key, &set_id, number, rest);
        &sealed[..]
    };
    if let Ok(s) = Seal::decode(bytes, &key, &set_id, number) {
        let _ = s.digest();
        assert_eq!(Seal::decode(&s.encode(&key, number), &key, &set_id, number).as_ref(), Ok(&s));
    }
});
