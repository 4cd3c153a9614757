//! Allocations while a thread exits: in a Rust thread-local destructor (the
//! thread still owns its counter slot) and in a POSIX thread-specific-data
//! destructor (which may run after the slot was handed back). Both must work
//! and be counted; `measure` itself works there.

use std::cell::RefCell;
use std::hint::black_box;
use std::sync::Mutex;

use tracealloc::{measure, Delta, TraceAlloc};

#[global_allocator]
static GLOBAL: TraceAlloc = TraceAlloc::system();

/// Measures one allocation of `size` bytes and one of `2 * size`, freeing the
/// first; returns the delta.
fn late_work(size: usize) -> Delta {
    let (v, d) = measure(|| {
        let a = black_box(vec![3u8; size]);
        let b = black_box(vec![4u8; 2 * size]);
        drop(a);
        b
    });
    assert!(v.iter().all(|&x| x == 4));
    d
}

fn expected(size: usize) -> Delta {
    let ((), mut d) = measure(|| ());
    d.allocs = 2;
    d.frees = 1;
    d.bytes_allocated = 3 * size as u64;
    d.bytes_freed = size as u64;
    d.peak_bytes = 3 * size as u64;
    d
}

static FROM_TLS_DTOR: Mutex<Vec<Delta>> = Mutex::new(Vec::new());

struct OnExit(usize);

impl Drop for OnExit {
    fn drop(&mut self) {
        let d = late_work(self.0);
        FROM_TLS_DTOR.lock().unwrap().push(d);
    }
}

thread_local! {
    static ON_EXIT: RefCell<Option<OnExit>> = const { RefCell::new(None) };
}

#[test]
fn allocations_in_thread_local_destructors_are_counted() {
    let threads: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                ON_EXIT.with(|e| *e.borrow_mut() = Some(OnExit(1000 + i)));
                black_box(vec![0u8; 100]);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut seen = FROM_TLS_DTOR.lock().unwrap().clone();
    seen.sort_by_key(|d| d.bytes_freed);
    let want: Vec<Delta> = (0..4).map(|i| expected(1000 + i)).collect();
    assert_eq!(seen, want);
}

#[cfg(unix)]
mod posix_key {
    use super::*;
    use std::sync::OnceLock;

    static FROM_KEY_DTOR: Mutex<Vec<Delta>> = Mutex::new(Vec::new());
    static KEY: OnceLock<libc::pthread_key_t> = OnceLock::new();

    extern "C" fn key_dtor(value: *mut libc::c_void) {
        let d = late_work(value as usize);
        FROM_KEY_DTOR.lock().unwrap().push(d);
    }

    #[test]
    fn allocations_in_pthread_key_destructors_are_counted() {
        let key = *KEY.get_or_init(|| {
            let mut key = 0;
            // SAFETY: `key` is a valid place to write; `key_dtor` lives for
            // the whole program.
            assert_eq!(
                unsafe { libc::pthread_key_create(&mut key, Some(key_dtor)) },
                0
            );
            key
        });
        let threads: Vec<_> = (0..4usize)
            .map(|i| {
                std::thread::spawn(move || {
                    black_box(vec![0u8; 100]);
                    // SAFETY: `key` is live; the value is only used as a number.
                    unsafe { libc::pthread_setspecific(key, (5000 + i) as *const libc::c_void) };
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut seen = FROM_KEY_DTOR.lock().unwrap().clone();
        seen.sort_by_key(|d| d.bytes_freed);
        let want: Vec<Delta> = (0..4).map(|i| expected(5000 + i)).collect();
        assert_eq!(seen, want);
    }
}
