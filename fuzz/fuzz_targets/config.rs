//! The repository config: `Config::from_json` on the input. A config that parses must give a
//! chunker that works (its limits were validated).
#![no_main]

use ferry_format::chunker::Chunker;
use ferry_format::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = Config::from_json(data) {
        assert!(c.chunker.validate().is_ok());
        let chunker = Chunker::new(c.chunker, 0);
        let _ = chunker.cut(&[0u8; 4096]);
    }
});
