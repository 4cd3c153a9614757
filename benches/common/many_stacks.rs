//! Live blocks allocated over many distinct stacks, for the snapshot
//! measurements: each block is allocated 12 calls down a path of two
//! functions chosen by the bits of its index (`i % 4096`: 4096 stacks).
//! Shared by `benches/alloc_tracing.rs` and `tests/tracing.rs`.

use std::hint::black_box;

/// The live blocks: boxes, one allocation each.
pub type Blocks = Vec<Box<u64>>;

/// Allocates `n` blocks over 4096 stacks.
pub fn allocate(n: usize) -> Blocks {
    let mut blocks: Blocks = Vec::with_capacity(n);
    for i in 0..n {
        descend((i % 4096) as u32, 12, &mut blocks);
    }
    blocks
}

#[inline(never)]
fn path_a(bits: u32, level: u32, out: &mut Blocks) {
    black_box(1u8);
    descend(bits, level, out);
}

#[inline(never)]
fn path_b(bits: u32, level: u32, out: &mut Blocks) {
    black_box(2u16);
    descend(bits, level, out);
}

fn descend(bits: u32, level: u32, out: &mut Blocks) {
    match level {
        0 => out.push(black_box(Box::new(bits as u64))),
        _ if (bits >> (level - 1)) & 1 == 1 => path_a(bits, level - 1, out),
        _ => path_b(bits, level - 1, out),
    }
}
