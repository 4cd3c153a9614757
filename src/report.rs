//! Formatting shared by the reports: sizes as `tracemalloc` writes them.

/// A size in bytes as `tracemalloc._format_size` writes it: B, KiB, MiB, GiB,
/// TiB (dividing by 1024); in a unit above B, one decimal below 100; no
/// decimal below 10240 or in TiB; `sign` adds `+` to non-negative values.
/// Rounding is half-to-even, as Python's `%` formatting does on the binary
/// value.
pub(crate) fn format_size(size: f64, sign: bool) -> String {
    let mut size = size;
    for unit in ["B", "KiB", "MiB", "GiB", "TiB"] {
        if size.abs() < 100.0 && unit != "B" {
            return if sign {
                format!("{size:+.1} {unit}")
            } else {
                format!("{size:.1} {unit}")
            };
        }
        if size.abs() < 10.0 * 1024.0 || unit == "TiB" {
            return if sign {
                format!("{size:+.0} {unit}")
            } else {
                format!("{size:.0} {unit}")
            };
        }
        size /= 1024.0;
    }
    unreachable!("the TiB branch returns")
}

#[cfg(test)]
mod tests {
    use super::format_size;

    /// Expected strings from Python 3.11's `tracemalloc._format_size`.
    #[test]
    fn sizes_as_tracemalloc_writes_them() {
        let cases: &[(f64, bool, &str)] = &[
            (0.0, false, "0 B"),
            (0.0, true, "+0 B"),
            (1.0, false, "1 B"),
            (-1.0, true, "-1 B"),
            (10239.0, false, "10239 B"),
            (10240.0, false, "10.0 KiB"),
            (102399.0, false, "100.0 KiB"),
            (102400.0, false, "100 KiB"),
            (10485759.0, false, "10240 KiB"),
            (10485760.0, false, "10.0 MiB"),
            (5242880.0, true, "+5120 KiB"),
            (-5242880.0, true, "-5120 KiB"),
            (2.5, false, "2 B"),
            (3.5, false, "4 B"),
            (341.3333, false, "341 B"),
            ((1u64 << 40) as f64, false, "1024 GiB"),
        ];
        for &(size, sign, want) in cases {
            assert_eq!(format_size(size, sign), want, "{size} {sign}");
        }
        assert_eq!(format_size((100u64 << 40) as f64, false), "100 TiB");
        assert_eq!(format_size((20u64 << 40) as f64, false), "20.0 TiB");
    }
}
