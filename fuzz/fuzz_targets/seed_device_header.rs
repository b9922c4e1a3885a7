//! Seed device headers: `DeviceHeader::decode` on the input; a header that parses re-encodes to
//! one that parses back equal, and its MAC check under the fixed key does not panic.
#![no_main]

use ferry_seed::DeviceHeader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = DeviceHeader::decode(data) {
        let _ = header.verify(&ferry_fuzz::disk_key());
        assert_eq!(DeviceHeader::decode(&header.encode()).as_ref(), Ok(&header));
    }
});
