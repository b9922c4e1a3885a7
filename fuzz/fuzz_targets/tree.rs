//! Trees: `Tree::decode` on the input (mode 0), or on a valid header followed by the input
//! (mode 1) so the postcard decoding and the entry-name checks are reached at once. A tree
//! that decodes must hold only names that cannot escape a restore target.
#![no_main]

use ferry_format::tree::Tree;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (mode, rest) = ferry_fuzz::mode(data);
    let framed;
    let bytes = if mode % 2 == 0 {
        rest
    } else {
        framed = [&b"FRYTRE\x01\x00"[..], rest].concat();
        &framed[..]
    };
    if let Ok(t) = Tree::decode(bytes) {
        for n in &t.nodes {
            assert!(!n.name.is_empty() && n.name != b"." && n.name != b"..", "unsafe name decoded");
            assert!(!n.name.contains(&b'/') && !n.name.contains(&0), "unsafe name decoded");
        }
    }
});
