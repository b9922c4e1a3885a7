//! The one place Ferry uses `unsafe`: tuning glibc's allocator at start-up.
//!
//! Measured need (kernel tree backup, 2 cores): with glibc's default *dynamic* mmap threshold,
//! freed 16 MiB pack buffers raise the threshold, later large buffers come from per-thread
//! arenas and stay resident: peak RSS was 145-170 MB. A fixed 256 KiB threshold returns every
//! large buffer (packs, big chunks) to the system when freed; pack buffers are also reused.
//! (mimalloc was tried instead and retained more: 300 MB.)
#![allow(unsafe_code)]

/// Fixes the mmap threshold (which also turns off its dynamic growth).
pub fn tune() {
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some() {
        return; // the user's own setting wins
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called once at start-up before
    // any other thread exists, and M_MMAP_THRESHOLD with a value below the 32 MiB maximum is valid.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}
