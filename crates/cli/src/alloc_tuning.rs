//! The one place Ferry uses `unsafe`: tuning glibc's allocator at start-up.
//!
//! Measured need (kernel tree backup, 2 cores): with glibc's default *dynamic* mmap threshold,
//! freed pack buffers raise the threshold, later large buffers come from per-thread arenas and
//! stay resident: peak RSS was 145-170 MB. A fixed 1 MiB threshold returns every large buffer
//! (packs, chunker windows) to the system when freed. A fixed 8 MiB trim threshold keeps the heap
//! from being shrunk and regrown (page faults) around every small file's buffer: minor page
//! faults of a kernel-tree backup fell from about 730,000 to 230,000. Peak RSS ends at 85-100 MB.
//! (mimalloc was tried instead and retained more: 300 MB.)
#![allow(unsafe_code)]

/// Fixes the mmap and trim thresholds (which also turns off their dynamic adjustment).
pub fn tune() {
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some() || std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_some() {
        return; // the user's own settings win
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called once at start-up before
    // any other thread exists, with values in the documented ranges (mmap threshold at most 32 MiB).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 * 1024 * 1024);
    }
}
