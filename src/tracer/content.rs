//! Fingerprints of what live blocks hold, for telling the same thing held
//! twice from many things of one shape (`Snapshot::duplicate_instances`).
//!
//! A block is read through the kernel (`sys::read_own_memory`), never
//! through a pointer: other threads may be writing it, or freeing it, while
//! a snapshot is taken. The whole block up to [`WHOLE`] bytes; beyond,
//! [`WINDOWS`] windows of [`WINDOW`] bytes spread evenly, the first at the
//! block's start and the last at its end: at most 4 KiB and one system call
//! per block. Blocks that hold pointers (a table of strings, a hash map)
//! differ between copies, each pointing to its own: they are not copies by
//! content (see `Snapshot::duplicate_instances` for how they are counted).

use crate::sys::read_own_memory;

/// Blocks up to this size are read whole.
const WHOLE: usize = 4096;
/// Windows read in a larger block, and their size.
const WINDOWS: usize = 64;
const WINDOW: usize = 64;

/// What a block was found to hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fingerprint {
    /// Not read (or not all of it could be).
    Unread,
    /// Every 8-byte word read was the same (zeros, one value repeated).
    Uniform,
    /// A hash of the bytes read and the block's size.
    Hash(u64),
}

/// The windows of a block of `size` bytes at `addr` that are read.
fn windows(addr: usize, size: usize, out: &mut [(usize, usize); WINDOWS]) -> usize {
    if size <= WHOLE {
        out[0] = (addr, size);
        return 1;
    }
    let span = size - WINDOW;
    for (i, w) in out.iter_mut().enumerate() {
        // Evenly spread, 8-byte aligned within the block, the last as near
        // its end as that allows.
        let off = if i == WINDOWS - 1 {
            span & !7
        } else {
            (span / (WINDOWS - 1) * i) & !7
        };
        *w = (addr + off, WINDOW);
    }
    WINDOWS
}

/// A fingerprint of the block of `size` bytes at `addr`, read into `buf`
/// (at least 4 KiB).
pub(crate) fn fingerprint(addr: usize, size: usize, buf: &mut [u8]) -> Fingerprint {
    let mut w = [(0usize, 0usize); WINDOWS];
    let n = windows(addr, size, &mut w);
    let want: usize = w[..n].iter().map(|w| w.1).sum();
    if size == 0 || buf.len() < want || read_own_memory(&w[..n], buf) != want {
        return Fingerprint::Unread;
    }
    of_bytes(&buf[..want], size)
}

/// The fingerprint of `bytes`, read from a block of `size` bytes.
pub(crate) fn of_bytes(bytes: &[u8], size: usize) -> Fingerprint {
    let words = bytes.chunks_exact(8);
    let tail = words.remainder();
    let word = |c: &[u8]| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
    let first = bytes.get(..8).map(word);
    let mut uniform = first.is_some();
    // FNV-1a over 8-byte words, then a final mix: not cryptographic, but
    // every bit of the input moves every bit of the result.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ (size as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for c in words {
        let v = word(c);
        uniform &= Some(v) == first;
        h = (h ^ v).wrapping_mul(0x0000_0100_0000_01b3);
        h ^= h >> 29;
    }
    let pattern = first.unwrap_or(0).to_le_bytes();
    for (i, &b) in tail.iter().enumerate() {
        uniform &= b == pattern[i];
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    if uniform {
        return Fingerprint::Uniform;
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    // 0 and 1 are kept for "none" and "uniform" where fingerprints are
    // written as numbers (snapshot files).
    Fingerprint::Hash(h.max(2))
}

/// The buffer [`fingerprint`] reads into.
pub(crate) const BUF: usize = if WHOLE > WINDOWS * WINDOW {
    WHOLE
} else {
    WINDOWS * WINDOW
};

#[cfg(test)]
mod tests {
    use super::*;

    fn print_of(v: &[u8]) -> Fingerprint {
        let mut buf = vec![0u8; BUF];
        fingerprint(v.as_ptr() as usize, v.len(), &mut buf)
    }

    #[test]
    fn equal_blocks_print_alike_and_different_ones_do_not() {
        let a: Vec<u8> = (0..1 << 20)
            .map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let b = a.clone();
        let mut c = a.clone();
        c[0] ^= 1;
        let pa = print_of(&a);
        if cfg!(any(target_os = "linux", target_os = "android")) {
            assert!(matches!(pa, Fingerprint::Hash(_)), "{pa:?}");
        }
        assert_eq!(pa, print_of(&b));
        if pa != Fingerprint::Unread {
            assert_ne!(pa, print_of(&c));
            // The last bytes are read too.
            let mut d = a.clone();
            *d.last_mut().unwrap() ^= 1;
            assert_ne!(pa, print_of(&d));
        }
    }

    #[test]
    fn zeros_and_one_repeated_value_are_uniform() {
        for v in [vec![0u8; 8192], vec![0u8; 1 << 20]] {
            let p = print_of(&v);
            assert!(
                matches!(p, Fingerprint::Uniform | Fingerprint::Unread),
                "{p:?}"
            );
        }
        let ones: Vec<u8> = std::iter::repeat_n(1f32.to_le_bytes(), 4096)
            .flatten()
            .collect();
        assert!(matches!(
            print_of(&ones),
            Fingerprint::Uniform | Fingerprint::Unread
        ));
        assert_eq!(of_bytes(&[0; 16], 16), Fingerprint::Uniform);
        assert!(matches!(
            of_bytes(&[0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0], 16),
            Fingerprint::Hash(_)
        ));
    }

    #[test]
    fn a_block_that_is_not_mapped_is_unread() {
        let mut buf = vec![0u8; BUF];
        // The first page is never mapped.
        assert_eq!(fingerprint(8, 4096, &mut buf), Fingerprint::Unread);
    }
}
