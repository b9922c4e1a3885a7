use std::sync::atomic::{AtomicU64, Ordering};

/// Counters the engine updates while it works and a front end reads (for a progress bar).
#[derive(Debug, Default)]
pub struct Progress {
    /// Files and bytes already processed.
    pub files_done: AtomicU64,
    pub bytes_done: AtomicU64,
    /// Totals, as far as known (a background scan fills them in during backup).
    pub files_total: AtomicU64,
    pub bytes_total: AtomicU64,
    /// Set when the totals are complete.
    pub scan_finished: std::sync::atomic::AtomicBool,
}

impl Progress {
    pub fn add_done(&self, files: u64, bytes: u64) {
        self.files_done.fetch_add(files, Ordering::Relaxed);
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn add_total(&self, files: u64, bytes: u64) {
        self.files_total.fetch_add(files, Ordering::Relaxed);
        self.bytes_total.fetch_add(bytes, Ordering::Relaxed);
    }
}
