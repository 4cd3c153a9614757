//! Files mapped read-only into memory, and the objects (the executable and
//! its shared libraries) loaded now, with their paths: what the symbolizer
//! reads debug information from without copying it onto the heap.

use std::ffi::CStr;
use std::ops::{Deref, Range};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A whole file mapped read-only and private (`mmap`), unmapped on drop.
///
/// Its pages are read from the file when first touched and are clean: the
/// kernel can drop them under memory pressure. They count in the process's
/// RSS while resident, never on the heap.
///
/// The one thing this process cannot rule out: as with any mapped file
/// (and as the `backtrace` crate's symbolizer maps them too), a file
/// truncated by another process while mapped makes a later read of the lost
/// pages fault (`SIGBUS`). Executables and libraries in use are not
/// rewritten in place by package managers or linkers (they write a new file
/// and rename it over the old one, which leaves this mapping the old file's);
/// separate debug files could be, by hand. docs/tracing.md says so, and
/// [`release_symbols`](crate::release_symbols) unmaps them all.
#[derive(Debug)]
pub(crate) struct MappedFile {
    ptr: *const u8,
    len: usize,
    /// The file's device and inode, when it was opened.
    id: (u64, u64),
}

// SAFETY: the mapping is read-only and owned by this value alone; reading it
// from several threads at once is sound, and unmapping it (on drop) needs
// `&mut`/ownership.
unsafe impl Send for MappedFile {}
// SAFETY: as above: shared access only reads.
unsafe impl Sync for MappedFile {}

impl MappedFile {
    /// Maps the regular file at `path`; `None` if it cannot be opened, is
    /// empty, or cannot be mapped.
    pub(crate) fn open(path: &Path) -> Option<MappedFile> {
        use std::os::unix::fs::MetadataExt;
        use std::os::unix::io::AsRawFd;
        let file = super::open_regular(path, u64::MAX).ok()?;
        let meta = file.metadata().ok()?;
        let id = (meta.dev(), meta.ino());
        let len = usize::try_from(meta.len()).ok()?;
        if len == 0 {
            return None;
        }
        // SAFETY: a fresh mapping chosen by the kernel (null hint), of `len`
        // bytes of an open file, read-only and private: it aliases no Rust
        // memory. The descriptor may be closed afterwards (the mapping keeps
        // the file). Reads of it stay valid while the file keeps its length
        // and contents: the precondition on the file stated on the type.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return None;
        }
        Some(MappedFile {
            ptr: ptr as *const u8,
            len,
            id,
        })
    }

    /// The file's device and inode, when it was opened.
    pub(crate) fn id(&self) -> (u64, u64) {
        self.id
    }

    /// The file's bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` is a live read-only mapping of `len` bytes, unmapped
        // only when `self` is dropped, which the borrow prevents. The bytes
        // are the file's as long as nobody truncates or rewrites it in
        // place (the precondition stated on the type, outside this
        // process's control).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// Unmaps the pages read so far from this process (`MADV_DONTNEED`),
    /// leaving the mapping: the next read of a page maps it again from the
    /// file. After a pass over the whole file (finding every unit's code
    /// range), this keeps only the pages read afterwards in the RSS.
    pub(crate) fn drop_pages(&self) {
        // SAFETY: `ptr` and `len` are this live mapping. It is read-only and
        // private, so it holds no page of its own: dropping the pages only
        // makes later reads map the file's again, with the same contents;
        // borrows of its bytes stay valid.
        unsafe { libc::madvise(self.ptr as *mut libc::c_void, self.len, libc::MADV_DONTNEED) };
    }

    /// Its start address, as `/proc/self/smaps` names the mapping.
    fn start(&self) -> usize {
        self.ptr as usize
    }
}

/// How many bytes of `files`' mappings this process has resident now (the
/// `Rss` of each in `/proc/self/smaps`: the pages it mapped, not those of
/// the file that are merely in the page cache); 0 if that cannot be read.
pub(crate) fn resident(files: &[&MappedFile]) -> usize {
    if files.is_empty() {
        return 0;
    }
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return 0;
    };
    let mut total = 0;
    let mut current = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((start, _)) = first.split_once('-') {
            // A mapping's first line: `start-end perms offset dev inode path`.
            if let Ok(start) = usize::from_str_radix(start, 16) {
                current = files.iter().any(|f| f.start() == start);
                continue;
            }
        }
        if current {
            if let Some(kib) = line.strip_prefix("Rss:") {
                let kib = kib.trim().trim_end_matches("kB").trim();
                total += kib.parse::<usize>().unwrap_or(0) * 1024;
                current = false;
            }
        }
    }
    total
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `len` are the mapping made in `open`, unmapped
        // only here; no borrow of it outlives `self`.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

/// Where a [`SharedBytes`] keeps its bytes.
#[derive(Clone, Debug)]
enum Owner {
    Empty,
    Mapped(Arc<MappedFile>),
    Heap(Arc<Vec<u8>>),
}

/// A range of bytes of a mapped file, or of a buffer on the heap (a
/// decompressed section), shared and cheap to clone: the storage of the
/// symbolizer's DWARF readers (`gimli::EndianReader`), which keep it alive.
/// One pointer wide, as addr2line keeps many readers per unit.
#[derive(Clone, Debug)]
pub(crate) struct SharedBytes(Arc<Section>);

#[derive(Debug)]
struct Section {
    owner: Owner,
    range: Range<usize>,
}

impl SharedBytes {
    /// No bytes.
    pub(crate) fn empty() -> SharedBytes {
        SharedBytes(Arc::new(Section {
            owner: Owner::Empty,
            range: 0..0,
        }))
    }

    /// `range` of the mapped file (clamped to it).
    pub(crate) fn mapped(file: &Arc<MappedFile>, range: Range<usize>) -> SharedBytes {
        let end = range.end.min(file.len);
        SharedBytes(Arc::new(Section {
            owner: Owner::Mapped(file.clone()),
            range: range.start.min(end)..end,
        }))
    }

    /// All of `bytes`, moved to the heap's shared buffer.
    pub(crate) fn heap(bytes: Vec<u8>) -> SharedBytes {
        let len = bytes.len();
        SharedBytes(Arc::new(Section {
            owner: Owner::Heap(Arc::new(bytes)),
            range: 0..len,
        }))
    }
}

impl Deref for SharedBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        let section = &*self.0;
        match &section.owner {
            Owner::Empty => &[],
            Owner::Mapped(m) => &m.bytes()[section.range.clone()],
            Owner::Heap(v) => &v[section.range.clone()],
        }
    }
}

// SAFETY: the slice `deref` returns lives in the mapping or in the `Vec`
// behind an `Arc`, neither of which moves, changes or is freed while any
// clone of this value (which holds the `Arc`) exists: moving the
// `SharedBytes` does not move its bytes.
unsafe impl stable_deref_trait::StableDeref for SharedBytes {}
// SAFETY: a clone holds the same `Arc` and range, so it derefs to the same
// address.
unsafe impl stable_deref_trait::CloneStableDeref for SharedBytes {}

/// An object mapped into the process now: the executable or a shared
/// library.
#[derive(Debug)]
pub(crate) struct LoadedFile {
    /// Its file's path: the executable's is `/proc/self/exe`'s target.
    pub(crate) path: PathBuf,
    /// The path to map it from: `path`, or for the executable
    /// `/proc/self/exe`, which opens the running file even once it is
    /// deleted or replaced.
    pub(crate) open_path: PathBuf,
    /// The device and inode of the file mapped at its first segment, from
    /// `/proc/self/maps`: a file at `path` that is not this one (replaced
    /// since it was loaded) is not read for it.
    pub(crate) id: Option<(u64, u64)>,
    /// Load bias: the object's addresses (SVMAs) + `base` = process
    /// addresses.
    pub(crate) base: u64,
    /// The SVMA ranges of its loaded segments (`PT_LOAD`).
    pub(crate) segments: Vec<Range<u64>>,
}

/// The objects mapped now, the executable first, through
/// `dl_iterate_phdr`. Allocates (call it under the reentrancy guard).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn loaded_files() -> Vec<LoadedFile> {
    /// # Safety
    ///
    /// Called by `dl_iterate_phdr` only: `info` valid for the call, `data`
    /// the `Vec` passed with it.
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `dl_iterate_phdr` passes a valid `info` for the duration
        // of the call, and `data` is the `Vec` given below, borrowed by
        // nobody else while the iteration runs.
        let (info, out) = unsafe {
            (
                &*info,
                &mut *(data as *mut Vec<(Vec<u8>, u64, Vec<Range<u64>>)>),
            )
        };
        let name = if info.dlpi_name.is_null() {
            Vec::new()
        } else {
            // SAFETY: a non-null `dlpi_name` is a NUL-terminated string owned
            // by the dynamic linker, valid during the call (copied at once).
            unsafe { CStr::from_ptr(info.dlpi_name) }
                .to_bytes()
                .to_vec()
        };
        let phdrs: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
            &[]
        } else {
            // SAFETY: `dlpi_phdr` points to `dlpi_phnum` program headers.
            unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) }
        };
        let segments = phdrs
            .iter()
            .filter(|p| p.p_type == libc::PT_LOAD)
            .map(|p| p.p_vaddr..p.p_vaddr.saturating_add(p.p_memsz))
            .collect();
        out.push((name, info.dlpi_addr, segments));
        0
    }
    let mut raw: Vec<(Vec<u8>, u64, Vec<Range<u64>>)> = Vec::new();
    // SAFETY: `each` matches the callback type and only pushes to `raw`,
    // which outlives the call. A panic in it (out of memory) aborts: it
    // cannot unwind through C.
    unsafe {
        libc::dl_iterate_phdr(
            Some(each),
            (&mut raw as *mut Vec<(Vec<u8>, u64, Vec<Range<u64>>)>).cast(),
        )
    };
    let exe = std::env::current_exe().ok();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    raw.into_iter()
        .enumerate()
        .filter_map(|(i, (name, base, segments))| {
            let (path, open_path) = if name.is_empty() {
                // The executable has no name here.
                let exe = (i == 0).then(|| exe.clone()).flatten()?;
                (exe, PathBuf::from("/proc/self/exe"))
            } else if !name.contains(&b'/') {
                // Not a file's path (the vDSO's `linux-vdso.so.1`): opening
                // it would look in the working directory.
                return None;
            } else {
                let p = PathBuf::from(std::ffi::OsStr::from_bytes(&name));
                (p.clone(), p)
            };
            let first = segments.first().map(|r| base.wrapping_add(r.start));
            Some(LoadedFile {
                id: first.and_then(|a| mapped_file_id(&maps, a)),
                path,
                open_path,
                base,
                segments,
            })
        })
        .collect()
}

/// The device and inode of the file mapped at `addr`, from the text of
/// `/proc/self/maps` (`start-end perms offset major:minor inode path`).
fn mapped_file_id(maps: &str, addr: u64) -> Option<(u64, u64)> {
    maps.lines().find_map(|line| {
        let mut fields = line.split_ascii_whitespace();
        let (start, end) = fields.next()?.split_once('-')?;
        let (start, end) = (
            u64::from_str_radix(start, 16).ok()?,
            u64::from_str_radix(end, 16).ok()?,
        );
        if !(start..end).contains(&addr) {
            return None;
        }
        let (major, minor) = fields.nth(2)?.split_once(':')?;
        let inode: u64 = fields.next()?.parse().ok()?;
        let (major, minor) = (
            u32::from_str_radix(major, 16).ok()?,
            u32::from_str_radix(minor, 16).ok()?,
        );
        (inode != 0).then(|| (libc::makedev(major, minor), inode))
    })
}

/// Gives the C allocator's free memory at the top of its heaps back to the
/// system (`malloc_trim`), after the symbolizer freed what it held: without
/// it, glibc keeps the freed pages in the RSS. Does nothing where the C
/// library has no such call.
pub(crate) fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: `malloc_trim` only releases free memory of the C allocator;
    // it reads no Rust memory and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mapped_file_at_an_address() {
        let maps = "\
55d0c8a00000-55d0c8a21000 r--p 00000000 08:01 1835 /usr/bin/prog
55d0c8a21000-55d0c8b00000 r-xp 00021000 103:02 52 /usr/bin/prog
7ffd1c9f0000-7ffd1ca11000 rw-p 00000000 00:00 0 [stack]
";
        assert_eq!(
            mapped_file_id(maps, 0x55d0_c8a0_0010),
            Some((libc::makedev(8, 1), 1835))
        );
        assert_eq!(
            mapped_file_id(maps, 0x55d0_c8a2_1000),
            Some((libc::makedev(0x103, 2), 52))
        );
        // Anonymous memory has no file; an address in no mapping, none.
        assert_eq!(mapped_file_id(maps, 0x7ffd_1c9f_0008), None);
        assert_eq!(mapped_file_id(maps, 0x1000), None);
        assert_eq!(mapped_file_id("garbage\n1-2 x", 1), None);
    }

    /// The running executable's entry names the file `/proc/self/exe`
    /// opens, and it is mapped from there.
    #[test]
    fn the_executable_is_identified_and_opened() {
        let files = loaded_files();
        let exe = &files[0];
        assert_eq!(exe.open_path, Path::new("/proc/self/exe"));
        let mapped = MappedFile::open(&exe.open_path).expect("maps the executable");
        assert_eq!(exe.id, Some(mapped.id()));
        // No entry is a bare name (the vDSO's) that would be opened in the
        // working directory.
        assert!(files
            .iter()
            .all(|f| f.open_path.as_os_str().as_encoded_bytes().contains(&b'/')));
    }
}
