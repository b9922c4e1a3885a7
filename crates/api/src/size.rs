//! Sizes as both ends show them to a person: the command line's messages (two decimals) and the
//! vault's dashboard (one decimal), in binary units.
//!
//! Written here rather than taken from `humansize`: it picks the decimal places by whether the
//! value is whole (`decimal_zeroes`) or not (`decimal_places`), the same for bytes and for
//! larger units, so it gives `512 B` with `1 KiB`, or `512.00 B` with `1.00 KiB`, never today's
//! `512 B` with `1.00 KiB`; and it goes on to EiB where these stop at PiB. The text is kept:
//! the command line's messages and the dashboard's pages are pinned by tests.

/// `n` bytes in B, KiB, ... PiB: whole bytes below 1 KiB, else `decimals` places (`1.50 KiB`).
pub fn human_size(n: u64, decimals: usize) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.decimals$} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn bytes_whole_larger_units_with_the_places_asked() {
        assert_eq!(human_size(512, 2), "512 B");
        assert_eq!(human_size(1536, 2), "1.50 KiB");
        assert_eq!(human_size(1536, 1), "1.5 KiB");
        assert_eq!(human_size(1024, 1), "1.0 KiB");
        assert_eq!(human_size(3 << 40, 2), "3.00 TiB");
        assert_eq!(human_size(u64::MAX, 1), "16384.0 PiB");
    }
}
