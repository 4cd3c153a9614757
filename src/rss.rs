//! [`rss`]: the process's resident set size.

/// The resident set size of this process in bytes (what `psutil`'s
/// `memory_info().rss` and `ps`'s `RSS` column report), or `None` where the
/// operating system does not tell.
///
/// On Linux (and Android) it reads `/proc/self/statm`: a few dozen bytes, no
/// walk over the mappings, cheap enough to call after every step of a
/// benchmark. Other systems return `None` for now.
///
/// Unlike [`stats`](crate::stats), RSS covers the whole process: memory-mapped
/// files that were touched, thread stacks, the allocator's own free lists and
/// anything allocated outside Rust's global allocator.
///
/// # Examples
///
/// ```
/// if let Some(bytes) = tracealloc::rss() {
///     println!("RSS: {:.1} MiB", bytes as f64 / (1 << 20) as f64);
/// }
/// ```
pub fn rss() -> Option<u64> {
    imp::rss()
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
    use crate::sys::page_size;

    pub(super) fn rss() -> Option<u64> {
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        resident_bytes(&statm, page_size()?)
    }

    /// `statm` is "size resident shared text lib data dt", in pages.
    pub(super) fn resident_bytes(statm: &str, page_size: usize) -> Option<u64> {
        let pages: u64 = statm.split_ascii_whitespace().nth(1)?.parse().ok()?;
        pages.checked_mul(page_size as u64)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn parses_the_resident_field() {
            assert_eq!(
                resident_bytes("1000 250 30 4 0 90 0\n", 4096),
                Some(250 * 4096)
            );
            assert_eq!(resident_bytes("1000", 4096), None);
            assert_eq!(resident_bytes("1000 x 3", 4096), None);
            assert_eq!(resident_bytes("1 18446744073709551615 0", 4096), None);
        }

        #[test]
        fn reads_this_process() {
            let page = page_size().expect("a page size");
            assert!(page.is_power_of_two());
            let rss = super::rss().expect("Linux reports RSS");
            assert!(rss > 0 && rss.is_multiple_of(page as u64));
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod imp {
    pub(super) fn rss() -> Option<u64> {
        None
    }
}
