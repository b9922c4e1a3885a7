//! Seed disk object files: `object::open` on the input as an object file (mode 0); or the
//! input sealed as an object and opened again, which must give it back (mode 1); or that sealed
//! file with one byte changed or cut short at a position taken from the input (mode 2), which
//! must fail or (only if nothing changed) give the input back.
#![no_main]

use ferry_seed::object;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = ferry_fuzz::disk_key();
    let set_id = ferry_fuzz::SET_ID;
    let (mode, rest) = ferry_fuzz::mode(data);
    match mode % 3 {
        0 => {
            let _ = object::open(&key, &set_id, rest);
        }
        1 => {
            let sealed = object::seal(&key, &set_id, [7; 8], rest);
            assert_eq!(sealed.len() as u64, object::stored_size(rest.len() as u64));
            assert_eq!(object::open(&key, &set_id, &sealed).as_deref(), Ok(rest));
        }
        _ => {
            if rest.len() < 4 {
                return;
            }
            let (pos, plain) = rest.split_at(4);
            let pos = u32::from_le_bytes([pos[0], pos[1], pos[2], pos[3]]);
            let mut sealed = object::seal(&key, &set_id, [7; 8], plain);
            let at = pos as usize % sealed.len();
            if pos & 1 == 0 {
                sealed[at] ^= 0x80;
            } else {
                sealed.truncate(at);
            }
            assert!(object::open(&key, &set_id, &sealed).is_err());
        }
    }
});
