//! Seed disk journals: `journal::parse` on the input as a journal file (mode 0), or on a
//! journal whose records are sealed with the right key around pieces of the input (mode 1:
//! each piece is a length byte and that many bytes), which reaches the postcard decoding of
//! records behind the encryption; in mode 1 the input's last byte, if odd, tears the file.
#![no_main]

use ferry_seed::journal::{self, seal_record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = ferry_fuzz::disk_key();
    let set_id = ferry_fuzz::SET_ID;
    let (mode, rest) = ferry_fuzz::mode(data);
    if mode % 2 == 0 {
        let _ = journal::parse(&key, &set_id, 2, rest);
        return;
    }
    let mut file = journal::header().to_vec();
    let mut rest = rest;
    while let Some((&n, tail)) = rest.split_first() {
        let n = (n as usize).min(tail.len());
        file.extend_from_slice(&seal_record(&key, &set_id, 2, &tail[..n]));
        rest = &tail[n..];
    }
    if data.last().is_some_and(|b| b % 2 == 1) && file.len() > journal::JOURNAL_HEADER_LEN {
        file.pop();
    }
    if let Ok(j) = journal::parse(&key, &set_id, 2, &file) {
        assert!(j.valid_len <= file.len() as u64);
    }
});
