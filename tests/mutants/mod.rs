//! Seeded mutation of valid files, shared by the tests that feed the
//! loaders hostile input (tests/hostile_dumps.rs, tests/cli.rs, and
//! src/profile_dump.rs's unit tests).
#![allow(dead_code)] // (each user takes what it needs)

/// xorshift64*: a seeded generator, so that a failing mutant is found again.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Replaces the first number at or after `at` by one of `hostile`.
pub fn replace_number(m: &mut Vec<u8>, at: usize, rng: &mut Rng, hostile: &[&str]) {
    if let Some(start) = (at..m.len()).find(|&i| m[i].is_ascii_digit()) {
        let end = (start..m.len())
            .find(|&i| !m[i].is_ascii_digit())
            .unwrap_or(m.len());
        let h = hostile[rng.below(hostile.len())].as_bytes();
        m.splice(start..end, h.iter().copied());
    }
}

/// One to four mutations of `good`: a byte changed, a run deleted, a run
/// repeated, a number replaced by one of `hostile`, or the file cut short.
pub fn mutate(good: &[u8], rng: &mut Rng, hostile: &[&str]) -> Vec<u8> {
    let mut m = good.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(m.len());
        match rng.below(6) {
            0 => m[at] = rng.next() as u8,
            1 => {
                let end = (at + 1 + rng.below(40)).min(m.len());
                m.drain(at..end);
            }
            2 => {
                let end = (at + 1 + rng.below(200)).min(m.len());
                let copy = m[at..end].to_vec();
                m.splice(at..at, copy);
            }
            3 | 4 => replace_number(&mut m, at, rng, hostile),
            _ => m.truncate(at),
        }
    }
    m
}
