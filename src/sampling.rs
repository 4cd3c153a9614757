//! The sampling formula shared by the tracer (which samples) and snapshots
//! (which weight each sampled block by the inverse): a block of `size` bytes
//! is traced with probability `1 - exp(-size / rate)`. A leaf.

/// The probability that a block of `size` bytes is traced at `rate`.
pub(crate) fn probability(size: usize, rate: u64) -> f64 {
    if rate == 0 {
        return 1.0;
    }
    -libm::expm1(-(size as f64) / rate as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probability_matches_the_formula() {
        assert_eq!(probability(0, 1024), 0.0);
        assert!((probability(1024, 1024) - (1.0 - (-1.0f64).exp())).abs() < 1e-12);
        assert!(probability(100 << 20, 512 << 10) > 0.999_999);
        assert_eq!(probability(5, 0), 1.0);
    }
}
