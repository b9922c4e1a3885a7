//! Seed disk labels: `Label::decode` on the input; a label that parses re-encodes to one that
//! parses back equal, and its MAC check under the fixed key does not panic.
#![no_main]

use ferry_seed::Label;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(label) = Label::decode(data) {
        let _ = label.verify(&ferry_fuzz::disk_key());
        assert_eq!(Label::decode(&label.encode()).as_ref(), Ok(&label));
    }
});
