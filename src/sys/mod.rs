//! The crate's calls into the operating system, each wrapped in a safe
//! function: part of the unsafe bottom layer, with `alloc.rs` and the stack
//! walk in `tracer/capture.rs`.
//!
//! - [`on_thread_exit`]: a POSIX thread-specific key whose destructor runs
//!   when a thread exits, after its Rust (and C++) thread-local destructors,
//!   so allocations made in those are still counted in the thread's own slot.
//!   Thread-locals of this crate have no destructors (they must stay readable
//!   while threads exit), so this is how a thread hands its resources back.
//! - [`on_fork`]: `pthread_atfork` handlers.
//! - [`on_exit`], [`getenv_into`], [`write_stderr`]: C's `atexit`, and the
//!   environment and the standard error without std's locks or an
//!   allocation (for `TRACEALLOC`, read on the allocation path).
//! - [`stack_bounds`] and [`page_size`].
//! - [`prefetch`]: a cache hint for an address that may not be mapped.
//! - [`read_own_memory`]: copies of the process's own memory through the
//!   kernel, for content fingerprints of live blocks.
//! - `trace_uncached`: the platform's unwinder (`unwind.rs` on Linux
//!   x86_64, the `backtrace` crate elsewhere).
//! - [`map`]: files mapped read-only, and the objects loaded with their
//!   paths, for the symbolizer (Linux x86_64).

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub(crate) mod map;
mod stack;
#[cfg(all(target_os = "linux", target_arch = "x86_64", not(miri)))]
mod unwind;
#[cfg(all(target_os = "linux", target_arch = "x86_64", not(miri)))]
pub(crate) use unwind::trace_uncached;

/// Under Miri, no unwinder to call: no frames.
#[cfg(all(target_os = "linux", target_arch = "x86_64", miri))]
pub(crate) fn trace_uncached(_buf: &mut [usize]) -> usize {
    0
}
pub(crate) use stack::Stack;

#[cfg(all(target_arch = "aarch64", not(miri)))]
mod aarch64;
#[cfg(all(target_arch = "x86_64", not(miri)))]
mod x86_64;
#[cfg(all(target_arch = "aarch64", not(miri)))]
pub(crate) use aarch64::frame_pointer;
#[cfg(all(target_arch = "x86_64", not(miri)))]
pub(crate) use x86_64::{frame_pointer, registers, ticks};

/// A monotonic clock in nanoseconds since its first reading, where no
/// cheaper counter is read.
#[cfg(not(all(target_arch = "x86_64", not(miri))))]
pub(crate) fn ticks() -> u64 {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    BASE.get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
}

/// No frame pointer to read on this target.
#[cfg(not(all(any(target_arch = "x86_64", target_arch = "aarch64"), not(miri))))]
#[inline(always)]
pub(crate) fn frame_pointer() -> usize {
    0
}

/// Fills `buf` with the return addresses of the calling thread's stack,
/// most recent first, with `backtrace::trace_unsynchronized` (the platform's
/// unwinder, which needs no preparation); returns how many. On Linux x86_64,
/// `unwind.rs` calls the platform's unwinder itself.
#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
#[inline(never)]
pub(crate) fn trace_uncached(buf: &mut [usize]) -> usize {
    let mut n = 0;
    // SAFETY: `trace_unsynchronized` must not run concurrently with another
    // unsynchronized trace *if the platform's unwinder is not thread-safe*;
    // on the platforms where it is used here (glibc's and LLVM's
    // `_Unwind_Backtrace`, and DbgHelp-free targets) it is. The closure does
    // not allocate or unwind.
    unsafe {
        backtrace::trace_unsynchronized(|frame| {
            if n < buf.len() {
                buf[n] = frame.ip() as usize;
                n += 1;
            }
            n < buf.len()
        })
    };
    n
}

#[cfg(unix)]
mod imp {
    use std::ffi::c_void;
    use std::sync::atomic::{AtomicUsize, Ordering::*};
    use std::sync::OnceLock;

    /// The thread-exit key + 1; 0 while not yet created, `FAILED` if creation
    /// failed.
    static KEY: AtomicUsize = AtomicUsize::new(0);
    const FAILED: usize = usize::MAX;
    /// The function [`on_thread_exit`] arms.
    static EXIT_HOOK: OnceLock<fn()> = OnceLock::new();

    extern "C" fn run_exit_hook(_value: *mut c_void) {
        if let Some(f) = EXIT_HOOK.get() {
            f();
        }
    }

    fn key() -> Option<libc::pthread_key_t> {
        let mut k = KEY.load(Acquire);
        if k == 0 {
            let mut key: libc::pthread_key_t = 0;
            // SAFETY: `key` is a valid place to write the new key;
            // `run_exit_hook` is an `extern "C" fn(*mut c_void)` that lives
            // for the whole program and does not unwind.
            let created = unsafe { libc::pthread_key_create(&mut key, Some(run_exit_hook)) } == 0;
            let mine = if created { key as usize + 1 } else { FAILED };
            k = match KEY.compare_exchange(0, mine, AcqRel, Acquire) {
                Ok(_) => mine,
                Err(winner) => {
                    if created {
                        // SAFETY: `key` was created just above, and no thread
                        // has been given it.
                        unsafe { libc::pthread_key_delete(key) };
                    }
                    winner
                }
            };
        }
        (k != FAILED).then(|| (k - 1) as libc::pthread_key_t)
    }

    /// Arranges for `hook` to run when the calling thread exits. One hook per
    /// process (the first one given). Without a key (the process ran out of
    /// them), nothing runs.
    pub(crate) fn on_thread_exit(hook: fn()) {
        let _ = EXIT_HOOK.set(hook);
        if let Some(key) = key() {
            // SAFETY: `key` is a live key made by `pthread_key_create`; any
            // non-null value arms the destructor, and it is never dereferenced.
            unsafe {
                libc::pthread_setspecific(key, std::ptr::NonNull::<u8>::dangling().as_ptr().cast())
            };
        }
    }

    static FORK_HOOKS: OnceLock<[fn(); 3]> = OnceLock::new();

    fn run_fork_hook(i: usize) {
        if let Some(hooks) = FORK_HOOKS.get() {
            hooks[i]();
        }
    }

    extern "C" fn fork_prepare() {
        run_fork_hook(0);
    }

    extern "C" fn fork_parent() {
        run_fork_hook(1);
    }

    extern "C" fn fork_child() {
        run_fork_hook(2);
    }

    /// Runs `prepare` in the forking thread before `fork()`, and `parent` and
    /// `child` after it, in each process. Only the first call registers.
    pub(crate) fn on_fork(prepare: fn(), parent: fn(), child: fn()) {
        if FORK_HOOKS.set([prepare, parent, child]).is_err() {
            return;
        }
        // SAFETY: the three handlers are `extern "C" fn()`s that live for the
        // whole program.
        unsafe { libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child)) };
    }

    /// The function [`on_exit`] arms.
    static EXIT_FN: OnceLock<fn()> = OnceLock::new();

    extern "C" fn run_exit_fn() {
        if let Some(f) = EXIT_FN.get() {
            f();
        }
    }

    /// Arranges for `hook` to run when the process exits through the C
    /// library's `exit` (a return from `main`, `std::process::exit`, the end
    /// of a `main` that panicked), with C's `atexit`: after the exiting
    /// thread's thread-local destructors, before the C streams are closed.
    /// One hook per process (the first one given); false if `atexit`
    /// refused it. `hook` must not unwind.
    pub(crate) fn on_exit(hook: fn()) -> bool {
        if EXIT_FN.set(hook).is_err() {
            return false;
        }
        // SAFETY: `run_exit_fn` is an `extern "C" fn()` that lives for the
        // whole program and does not unwind (the hook it calls must not).
        unsafe { libc::atexit(run_exit_fn) == 0 }
    }

    /// The value of the environment variable `name`, copied into `buf`,
    /// through the C library's `getenv`: no allocation and no lock (std's
    /// `env::var_os` takes std's environment lock and allocates, neither
    /// of which the allocation path may do). `None` when unset;
    /// `Some(Ok(n))`, the value in `buf[..n]`; `Some(Err(n))` when the
    /// value's `n` bytes do not fit in `buf` (which then holds the first
    /// `buf.len()`).
    ///
    /// Without the lock, a thread that changes the environment at the same
    /// moment (`std::env::set_var`, `setenv`) races with the read, as with
    /// any C code that calls `getenv`: call it where no other thread does
    /// that (the crate reads it once, at the process's first allocation).
    pub(crate) fn getenv_into(
        name: &std::ffi::CStr,
        buf: &mut [u8],
    ) -> Option<Result<usize, usize>> {
        // SAFETY: `name` is NUL-terminated; `getenv` only reads the
        // environment (a concurrent change is the caller's to avoid, see
        // above).
        let value = unsafe { libc::getenv(name.as_ptr()) };
        if value.is_null() {
            return None;
        }
        // SAFETY: a non-null `getenv` result is a NUL-terminated string in
        // the environment, valid until the variable is changed; it is
        // copied at once.
        let value = unsafe { std::ffi::CStr::from_ptr(value) }.to_bytes();
        let n = value.len().min(buf.len());
        buf[..n].copy_from_slice(&value[..n]);
        Some(if n == value.len() {
            Ok(n)
        } else {
            Err(value.len())
        })
    }

    /// Writes `bytes` to the standard error (file descriptor 2) with
    /// `write(2)` calls: no allocation, no lock (std's `Stderr` takes a
    /// reentrant lock), safe on the allocation path and at exit. Errors are
    /// ignored (there is nowhere to report them).
    pub(crate) fn write_stderr(mut bytes: &[u8]) {
        while !bytes.is_empty() {
            // SAFETY: `bytes` is valid for reads of `bytes.len()` bytes.
            let n = unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
            match usize::try_from(n) {
                Ok(0) => return,
                Ok(n) => bytes = &bytes[n.min(bytes.len())..],
                Err(_)
                    if std::io::Error::last_os_error().kind()
                        == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }
}

#[cfg(not(unix))]
mod imp {
    /// Without POSIX thread-specific keys, nothing runs at thread exit.
    pub(crate) fn on_thread_exit(_hook: fn()) {}

    /// Without `fork()`, nothing to do.
    pub(crate) fn on_fork(_prepare: fn(), _parent: fn(), _child: fn()) {}

    /// Without C's `atexit` here, nothing runs at exit.
    pub(crate) fn on_exit(_hook: fn()) -> bool {
        false
    }

    /// Not read without a lock-free `getenv`: reported as unset.
    pub(crate) fn getenv_into(
        _name: &std::ffi::CStr,
        _buf: &mut [u8],
    ) -> Option<Result<usize, usize>> {
        None
    }

    /// Through std's unbuffered `Stderr`.
    pub(crate) fn write_stderr(bytes: &[u8]) {
        use std::io::Write;
        let _ = std::io::stderr().write_all(bytes);
    }
}

pub(crate) use imp::{getenv_into, on_exit, on_fork, on_thread_exit, write_stderr};

/// The calling thread's stack, as `(low, high)` addresses.
///
/// glibc may read `/proc/self/maps` and use its own `malloc` here (not Rust's
/// global allocator).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn stack_bounds() -> Option<(usize, usize)> {
    // SAFETY: `attr` is initialised by `pthread_getattr_np` before it is
    // read, and destroyed once; `addr` and `size` are valid places to write.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let ok = libc::pthread_attr_getstack(&attr, &mut addr, &mut size) == 0;
        libc::pthread_attr_destroy(&mut attr);
        let low = addr as usize;
        (ok && size > 0).then(|| (low, low.saturating_add(size)))
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn stack_bounds() -> Option<(usize, usize)> {
    None
}

/// The size of a memory page.
#[cfg(unix)]
pub(crate) fn page_size() -> Option<usize> {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);
    let cached = PAGE_SIZE.load(Relaxed);
    if cached != 0 {
        return Some(cached);
    }
    // SAFETY: `sysconf` only reads its integer argument; `_SC_PAGESIZE` is a
    // valid name on every Unix libc.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let size = usize::try_from(size).ok().filter(|&s| s > 0)?;
    PAGE_SIZE.store(size, Relaxed);
    Some(size)
}

#[cfg(not(unix))]
#[allow(dead_code)]
pub(crate) fn page_size() -> Option<usize> {
    None
}

/// Opens `path` for reading only if it is a regular file of at most
/// `max_len` bytes: never a FIFO, a device or a directory, and without
/// blocking on one (opened non-blocking, checked on the open file, so a
/// path swapped in between is checked too).
pub(crate) fn open_regular(path: &std::path::Path, max_len: u64) -> std::io::Result<std::fs::File> {
    use std::io::{Error, ErrorKind};
    // Checked before opening (opening a device can do something, opening a
    // pipe can block), and again on the open file.
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        return Err(Error::new(ErrorKind::IsADirectory, "is a directory"));
    }
    if !meta.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    if meta.len() > max_len {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{} bytes, over the limit of {max_len}", meta.len()),
        ));
    }
    Ok(file)
}

/// Asks the CPU to start loading the cache line at `addr`, which need not be
/// mapped nor belong to anything: a prefetch never faults nor changes memory.
#[inline(always)]
pub(crate) fn prefetch(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint: it reads nothing into the program, writes
    // nothing, and is dropped (no fault) for an unmapped or invalid address.
    // SSE, which it needs, is part of the x86-64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(addr as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

/// Calls `f` with the load bias and the program headers of each object
/// mapped now (the executable first, then the shared libraries in load
/// order), through `dl_iterate_phdr`. `f` must not unwind.
#[cfg(all(
    any(target_os = "linux", target_os = "android"),
    target_pointer_width = "64"
))]
fn for_each_object(mut f: impl FnMut(u64, &[libc::Elf64_Phdr])) {
    type Each<'a> = &'a mut dyn FnMut(u64, &[libc::Elf64_Phdr]);
    /// # Safety
    ///
    /// Called by `dl_iterate_phdr` only: `info` valid for the call, `data`
    /// the `Each` passed with it.
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `dl_iterate_phdr` passes a valid `info` for the duration
        // of the call, and `data` is the `Each` given below, borrowed
        // mutably by nobody else while the iteration runs.
        let (info, f) = unsafe { (&*info, &mut *(data as *mut Each<'_>)) };
        if info.dlpi_phdr.is_null() {
            return 0;
        }
        // SAFETY: `dlpi_phdr` points to `dlpi_phnum` program headers.
        let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
        f(info.dlpi_addr, phdrs);
        0
    }
    let mut f: Each<'_> = &mut f;
    // SAFETY: `each` matches the callback type and only calls `f`, which
    // outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(each), (&mut f as *mut Each<'_>).cast()) };
}

/// Fills `out` with the executable segments of the objects mapped now (the
/// executable first, then the shared libraries in load order), as `(start,
/// end)` process addresses; returns how many. Objects beyond `out.len()` are
/// left out. Allocates nothing.
#[cfg(all(
    any(target_os = "linux", target_os = "android"),
    target_pointer_width = "64"
))]
pub(crate) fn code_ranges(out: &mut [(usize, usize)]) -> usize {
    let mut n = 0;
    for_each_object(|base, phdrs| {
        for p in phdrs {
            if p.p_type == libc::PT_LOAD && p.p_flags & libc::PF_X != 0 && n < out.len() {
                let start = (base as usize).wrapping_add(p.p_vaddr as usize);
                out[n] = (start, start.wrapping_add(p.p_memsz as usize));
                n += 1;
            }
        }
    });
    n
}

/// Without `dl_iterate_phdr`: no code segments known.
#[cfg(not(all(
    any(target_os = "linux", target_os = "android"),
    target_pointer_width = "64"
)))]
pub(crate) fn code_ranges(_out: &mut [(usize, usize)]) -> usize {
    0
}

/// One object (the executable or a shared library) mapped into the process,
/// with copies of its unwind tables, for the cached unwinder.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub(crate) struct LoadedObject {
    /// Load bias: the object's addresses (SVMAs) + `base` = process addresses.
    pub(crate) base: u64,
    /// SVMA range of the executable segment.
    pub(crate) text_svma: std::ops::Range<u64>,
    pub(crate) eh_frame_svma: std::ops::Range<u64>,
    pub(crate) eh_frame: Vec<u8>,
    pub(crate) eh_frame_hdr_svma: std::ops::Range<u64>,
    pub(crate) eh_frame_hdr: Vec<u8>,
    /// Whether the tables were copied (false for the objects the caller
    /// said it knows: `eh_frame` and `eh_frame_hdr` are then empty).
    pub(crate) copied: bool,
}

/// The objects mapped now that have an `.eh_frame_hdr` (`PT_GNU_EH_FRAME`)
/// with the usual pc-relative pointer to `.eh_frame`; the tables of those
/// whose code range (start, end) `known` accepts are not copied. `None`
/// if the memory for the list is refused; an object whose copies are
/// refused is left out.
/// `.eh_frame` has no program header of its own: it is copied up to the end
/// of the segment that holds it.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub(crate) fn loaded_objects(known: impl Fn(u64, u64) -> bool) -> Option<Vec<LoadedObject>> {
    let mut out = Vec::new();
    let mut refused = false;
    for_each_object(|base, phdrs| {
        if let Some(o) = loaded_object(base, phdrs, &known) {
            refused |= out.try_reserve(1).is_err();
            if !refused {
                out.push(o);
            }
        }
    });
    (!refused).then_some(out)
}

/// The object that holds code address `addr` (its path) and the nearest
/// exported symbol at or below it (its raw name), from the dynamic linker
/// (`dladdr`): it knows objects loaded at any time.
pub(crate) fn object_at(addr: usize) -> Option<(String, Option<Vec<u8>>)> {
    #[cfg(all(unix, not(miri)))]
    {
        // SAFETY: `Dl_info` is plain data (pointers and integers): all zeros
        // is a valid value.
        let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
        // SAFETY: `dladdr` only reads the address's value and writes `info`.
        if unsafe { libc::dladdr(addr as *const libc::c_void, &mut info) } == 0
            || info.dli_fname.is_null()
        {
            return None;
        }
        // SAFETY: non-null `dli_fname` and `dli_sname` are NUL-terminated
        // strings owned by the dynamic linker, valid while the object stays
        // loaded (they are copied at once).
        let file = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) }
            .to_string_lossy()
            .into_owned();
        let symbol = (!info.dli_sname.is_null()).then(|| {
            // SAFETY: as above, for the symbol's name.
            unsafe { std::ffi::CStr::from_ptr(info.dli_sname) }
                .to_bytes()
                .to_vec()
        });
        Some((file, symbol))
    }
    #[cfg(not(all(unix, not(miri))))]
    {
        let _ = addr;
        None
    }
}

/// How many times objects were loaded or unloaded since the process started
/// (`dlpi_adds + dlpi_subs`): changes when `dlopen` maps a new object or
/// `dlclose` unmaps one. 0 where unknown.
pub(crate) fn objects_changes() -> u64 {
    #[cfg(all(
        any(target_os = "linux", target_os = "android"),
        target_pointer_width = "64"
    ))]
    {
        /// # Safety
        ///
        /// Called by `dl_iterate_phdr` only: `info` valid for the call and
        /// `size` bytes long, `data` the `u64` passed with it.
        unsafe extern "C" fn first(
            info: *mut libc::dl_phdr_info,
            size: libc::size_t,
            data: *mut libc::c_void,
        ) -> libc::c_int {
            let needed = std::mem::offset_of!(libc::dl_phdr_info, dlpi_subs)
                + std::mem::size_of::<libc::c_ulonglong>();
            if size >= needed {
                // SAFETY: `info` is valid for the call and, as `size` says,
                // holds the counters; `data` is the `u64` given below.
                unsafe {
                    *(data as *mut u64) = (*info).dlpi_adds.wrapping_add((*info).dlpi_subs);
                }
            }
            1 // the first object is enough: the counters are global
        }
        let mut changes = 0u64;
        // SAFETY: `first` matches the callback type and writes only the
        // `u64` it is given, which outlives the call.
        unsafe { libc::dl_iterate_phdr(Some(first), (&mut changes as *mut u64).cast()) };
        changes
    }
    #[cfg(not(all(
        any(target_os = "linux", target_os = "android"),
        target_pointer_width = "64"
    )))]
    0
}

/// The object at load bias `base` with program headers `phdrs`, if it has
/// the unwind tables the cached unwinder needs.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn loaded_object(
    base: u64,
    phdrs: &[libc::Elf64_Phdr],
    known: impl Fn(u64, u64) -> bool,
) -> Option<LoadedObject> {
    let load = |p: &&libc::Elf64_Phdr| p.p_type == libc::PT_LOAD;
    let text = phdrs
        .iter()
        .filter(load)
        .find(|p| p.p_flags & libc::PF_X != 0)?;

    let hdr = phdrs.iter().find(|p| p.p_type == libc::PT_GNU_EH_FRAME)?;
    // SAFETY: the segment `hdr` describes is mapped (the object is
    // loaded while `dl_iterate_phdr` reports it) and `p_memsz` long.
    let hdr_data = unsafe {
        std::slice::from_raw_parts((base + hdr.p_vaddr) as *const u8, hdr.p_memsz as usize)
    };
    // version 1, eh_frame_ptr encoded DW_EH_PE_pcrel | DW_EH_PE_sdata4.
    if hdr_data.len() < 8 || hdr_data[0] != 1 || hdr_data[1] != 0x1b {
        return None;
    }
    let rel = i32::from_le_bytes([hdr_data[4], hdr_data[5], hdr_data[6], hdr_data[7]]) as i64;
    let eh_svma = (hdr.p_vaddr as i64 + 4 + rel) as u64;
    let seg = phdrs
        .iter()
        .filter(load)
        .find(|p| (p.p_vaddr..p.p_vaddr + p.p_memsz).contains(&eh_svma))?;
    let eh_len = (seg.p_vaddr + seg.p_memsz - eh_svma) as usize;
    // SAFETY: `eh_svma..eh_svma + eh_len` lies within the mapped segment
    // `seg`.
    let eh_data = unsafe { std::slice::from_raw_parts((base + eh_svma) as *const u8, eh_len) };
    let copied = !known(base + text.p_vaddr, base + text.p_vaddr + text.p_memsz);
    // Copies that the allocator refuses leave the object out (the unwinder
    // then does not know it, as if it were not loaded).
    let copy = |data: &[u8]| -> Option<Vec<u8>> {
        let mut v = Vec::new();
        if copied {
            v.try_reserve_exact(data.len()).ok()?;
            v.extend_from_slice(data);
        }
        Some(v)
    };
    Some(LoadedObject {
        base,
        text_svma: text.p_vaddr..text.p_vaddr + text.p_memsz,
        eh_frame_svma: eh_svma..eh_svma + eh_len as u64,
        eh_frame: copy(eh_data)?,
        eh_frame_hdr_svma: hdr.p_vaddr..hdr.p_vaddr + hdr.p_memsz,
        eh_frame_hdr: copy(hdr_data)?,
        copied,
    })
}

/// Copies the bytes of this process's memory at each `(address, length)`
/// window into `out`, one after another, through the kernel
/// (`process_vm_readv` on our own pid): no access by this program to memory
/// other threads may be writing, so no data race, and a window that is not
/// mapped (a block freed and its pages returned meanwhile) is an error, not
/// a fault. Returns how many bytes were copied from the start: fewer than
/// asked when a window could not be read (0 where the call is refused, or
/// on systems without it). Only the first 64 windows are read.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn read_own_memory(windows: &[(usize, usize)], out: &mut [u8]) -> usize {
    const MAX_WINDOWS: usize = 64;
    let windows = &windows[..windows.len().min(MAX_WINDOWS)];
    let want: usize = windows.iter().map(|w| w.1).sum();
    let want = want.min(out.len());
    let mut remote = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_WINDOWS];
    let mut left = want;
    let mut n = 0;
    for &(addr, len) in windows {
        if left == 0 {
            break;
        }
        let len = len.min(left);
        remote[n] = libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: len,
        };
        n += 1;
        left -= len;
    }
    let local = libc::iovec {
        iov_base: out.as_mut_ptr().cast(),
        iov_len: want,
    };
    // SAFETY: `local` describes `want` writable bytes of `out`, which the
    // kernel writes and nothing else touches during the call; the remote
    // windows are only read, by the kernel, which checks each one and fails
    // (EFAULT) or stops short on an address that is not mapped: this
    // process's memory is never accessed through a Rust reference or
    // pointer here. `n` ≤ 64, under IOV_MAX (1024).
    let got =
        unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, remote.as_ptr(), n as _, 0) };
    usize::try_from(got).unwrap_or(0)
}

/// Without `process_vm_readv` (a target this is not written for yet):
/// nothing is read, and contents stay unknown.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn read_own_memory(_windows: &[(usize, usize)], _out: &mut [u8]) -> usize {
    0
}
