//! Workloads the tracer was not designed around (issue: speed on workloads
//! the benchmarks did not choose), each in functions of their own, called
//! from the bench binary as a library's code would be.
//!
//! - `ring`: per iteration, one temporary 16–512 B `Vec<u8>` dropped at once,
//!   and one 16–512 B item (a `Vec<u8>`, a `String` or a `Box<[u64]>`,
//!   chosen at random: three call sites) stored in a 1024-slot ring,
//!   dropping the item stored 1024 iterations before.
//! - `shuffle`: 16–1024 B boxes from four call sites, kept, then freed in
//!   an order unrelated to their allocation (a shuffled index), in rounds.
//! - `deep`: allocations 32 calls down a recursion, so that a stack walk
//!   has 30+ frames to go through.

use std::hint::black_box;

use super::Rng;

/// One item of the ring, from one of three call sites.
pub enum Item {
    Bytes(Vec<u8>),
    Text(String),
    Words(Box<[u64]>),
}

impl Item {
    fn weight(&self) -> u64 {
        match self {
            Item::Bytes(v) => v.len() as u64 + v.last().copied().unwrap_or(0) as u64,
            Item::Text(s) => s.len() as u64,
            Item::Words(w) => w.len() as u64 + w.first().copied().unwrap_or(0),
        }
    }
}

#[inline(never)]
fn temporary(r: u64) -> u64 {
    let size = 16 + (r % 497) as usize;
    let mut v = vec![0u8; size];
    v[size - 1] = r as u8;
    black_box(&v)[size - 1] as u64
}

#[inline(never)]
fn bytes_item(size: usize, r: u64) -> Item {
    let mut v = vec![0u8; size];
    v[0] = r as u8;
    Item::Bytes(v)
}

#[inline(never)]
fn text_item(size: usize, r: u64) -> Item {
    let mut s = String::with_capacity(size);
    for _ in 0..size / 16 {
        s.push_str("0123456789abcdef");
    }
    s.push(char::from(b'a' + (r % 26) as u8));
    Item::Text(s)
}

#[inline(never)]
fn words_item(size: usize, r: u64) -> Item {
    let mut w = vec![0u64; size.div_ceil(8)].into_boxed_slice();
    w[0] = r;
    Item::Words(w)
}

/// `steps` iterations of the ring; a checksum.
#[inline(never)]
pub fn ring(seed: u64, steps: u64) -> u64 {
    let mut rng = Rng(seed | 1);
    let mut ring: Vec<Option<Item>> = (0..1024).map(|_| None).collect();
    let mut sum = 0u64;
    for i in 0..steps {
        let r = rng.next();
        sum = sum.wrapping_add(temporary(r));
        let size = 16 + ((r >> 16) % 497) as usize;
        let item = match (r >> 40) % 3 {
            0 => bytes_item(size, r),
            1 => text_item(size, r),
            _ => words_item(size, r),
        };
        let slot = (i % 1024) as usize;
        if let Some(old) = ring[slot].replace(black_box(item)) {
            sum = sum.wrapping_add(old.weight());
        }
    }
    sum
}

#[inline(never)]
fn site_a(size: usize) -> Box<[u8]> {
    vec![1u8; size].into_boxed_slice()
}

#[inline(never)]
fn site_b(size: usize) -> Box<[u8]> {
    vec![2u8; size].into_boxed_slice()
}

#[inline(never)]
fn site_c(size: usize) -> Box<[u8]> {
    vec![3u8; size].into_boxed_slice()
}

#[inline(never)]
fn site_d(size: usize) -> Box<[u8]> {
    vec![4u8; size].into_boxed_slice()
}

/// `rounds` rounds of `n` boxes allocated from four sites, then freed in a
/// shuffled order; a checksum.
#[inline(never)]
pub fn shuffle(n: usize, rounds: u64) -> u64 {
    let mut rng = Rng(0x5417);
    let mut sum = 0u64;
    for _ in 0..rounds {
        let mut v: Vec<Option<Box<[u8]>>> = (0..n)
            .map(|_| {
                let r = rng.next();
                let size = 16 + (r % 1009) as usize;
                Some(match (r >> 32) % 4 {
                    0 => site_a(size),
                    1 => site_b(size),
                    2 => site_c(size),
                    _ => site_d(size),
                })
            })
            .collect();
        let mut order: Vec<u32> = (0..n as u32).collect();
        for i in (1..n).rev() {
            order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
        }
        for &i in &order {
            if let Some(b) = v[i as usize].take() {
                sum = sum.wrapping_add(b[0] as u64 + b.len() as u64);
            }
        }
    }
    sum
}

/// Allocates and frees one small block at the bottom of a `depth`-call
/// recursion, `leaves` times per descent.
#[inline(never)]
fn descend(depth: u32, leaves: u64, r: &mut Rng) -> u64 {
    if depth == 0 {
        let mut sum = 0;
        for _ in 0..leaves {
            let size = 16 + (r.next() % 241) as usize;
            let v = black_box(vec![depth as u8; size]);
            sum += v.len() as u64;
        }
        return sum;
    }
    // Not a tail call: each level keeps its frame.
    black_box(descend(black_box(depth - 1), leaves, r)) + 1
}

/// `descents` descents of 32 calls, each allocating 64 blocks at the
/// bottom; a checksum.
#[inline(never)]
pub fn deep(descents: u64) -> u64 {
    let mut rng = Rng(0xdee9);
    (0..descents).fold(0u64, |s, _| s.wrapping_add(descend(32, 64, &mut rng)))
}
