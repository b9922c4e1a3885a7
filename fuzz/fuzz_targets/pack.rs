//! Packs: `pack::read_pack` on the input (mode 0: named by its hash so the name check passes;
//! mode 1: a wrong name), the trailer and header parsers on the input's pieces (mode 2), and
//! a header sealed with the right key around the input (mode 3), which reaches the decoding
//! and bounds checks of the pack's entries.
#![no_main]

use ferry_format::{pack, PackId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let m = ferry_fuzz::master();
    let (mode, rest) = ferry_fuzz::mode(data);
    match mode % 4 {
        0 => {
            let id = PackId::from_bytes(ferry_crypto::content_hash(rest));
            let _ = pack::read_pack(&m, &id, rest);
        }
        1 => {
            let _ = pack::read_pack(&m, &PackId::from_bytes([0; 32]), rest);
        }
        2 => {
            let _ = pack::parse_preamble(rest);
            let split = rest.len().min(pack::TRAILER_LEN);
            let (trailer, sealed) = rest.split_at(split);
            let pack_len = (sealed.len() + pack::PREAMBLE_LEN + pack::TRAILER_LEN) as u64;
            let _ = pack::parse_trailer(trailer, pack_len);
            let _ = pack::open_header(&m, &[0; 16], sealed, pack_len);
        }
        _ => {
            // First byte: length of a blob area of zeros; the rest is the header plaintext.
            let (area, header) = ferry_fuzz::mode(rest);
            let bytes = ferry_fuzz::pack_with_header(&m, [9; 16], &vec![0u8; area as usize * 16], header);
            let id = PackId::from_bytes(ferry_crypto::content_hash(&bytes));
            let _ = pack::read_pack(&m, &id, &bytes);
        }
    }
});
