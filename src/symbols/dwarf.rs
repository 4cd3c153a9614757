//! Return addresses -> frames on Linux x86_64: `addr2line` over the DWARF of
//! the object that holds the address (the executable or a shared library),
//! on the same `gimli` as the unwinder, giving what the `backtrace` crate
//! gave (its tests check that, address by address).
//!
//! What is kept, per object, once an address in it is resolved, until
//! [`Symbolizer`] is dropped (`release_symbols`):
//!
//! ```text
//! Symbolizer
//!   files      the objects loaded (path, load bias, segments), re-read when
//!              the dynamic linker's load/unload count changes
//!   loaded     per object, on first use:
//!     mapped     the object's file (or its separate debug file, found by
//!                build id or .gnu_debuglink) mapped read-only: RSS, not heap
//!     sections   readers over the mapped DWARF sections; compressed ones
//!                decompressed on the heap
//!     units      each compilation unit's code ranges (one pass over the
//!                units, whose pages are then dropped from the RSS), and an
//!                addr2line context per unit asked for: its line table and
//!                functions parsed only then
//!     whole      addr2line's context over the whole file, only for units
//!                that refer to other units' entries (DW_FORM_ref_addr)
//!     symtab     the symbol table's sorted index, built the first time an
//!                address has no DWARF function name
//!   heap       the heap bytes all this took (tracer memory), as measured
//! ```
//!
//! addr2line's own context over a whole file reads every unit's header,
//! abbreviations and line-program header when it is made and keeps them
//! (about 22 MiB for the C library's 4126 units when its debug file is
//! installed); a context per unit keeps only the units asked for.
//!
//! Runs under the reentrancy guard, behind the symbol cache's lock: what it
//! allocates is tracer memory.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object::elf;
use object::read::elf::{FileHeader, SectionHeader, SectionTable, Sym};
use object::LittleEndian as LE;

use crate::sys::map::{self, MappedFile, SharedBytes};

type Reader = gimli::EndianReader<gimli::LittleEndian, SharedBytes>;
type Elf = elf::FileHeader64<LE>;

/// One resolved frame: file, line (0 if unknown), raw (mangled) function
/// name.
pub(super) type RawFrame = (Option<String>, u32, Option<String>);

/// Where separate debug files live.
const DEBUG_PATH: &str = "/usr/lib/debug";

/// The symbolizer's state; see the module's docs.
#[derive(Default)]
pub(super) struct Symbolizer {
    files: Vec<Object>,
    /// `objects_changes()` when `files` was read; `None` before.
    changes: Option<u64>,
    /// Heap bytes taken by parsing and kept, as measured.
    heap: i64,
    /// Whether the C runtime's DWARF is read too (see [`is_c_runtime`]):
    /// only the tests that compare with the `backtrace` crate ask for it.
    c_runtime_lines: bool,
}

/// Whether the object at `path` is the C runtime (the C library, the
/// dynamic linker, libgcc's unwinder and glibc's former satellite
/// libraries), whose DWARF is not read, only its symbol tables: Rust code
/// never allocates through them, so their frames in a traced stack are the
/// process's or a thread's entry below `main` (trimmed) or, rarely, a C
/// function calling back into Rust (`qsort`): named, without a line. Their
/// DWARF is large and compressed where installed (Debian's `libc6-dbg`:
/// 40 ms and 8 MiB to inflate the C library's at the first snapshot).
fn is_c_runtime(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    [
        "libc.so",
        "ld-linux",
        "ld64.so",
        "libgcc_s.so",
        "libpthread.so",
        "libdl.so",
        "librt.so",
        "libm.so",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

struct Object {
    file: map::LoadedFile,
    state: State,
}

enum State {
    NotLoaded,
    /// Nothing readable: the file is gone or not ELF.
    Failed,
    Loaded(Box<Loaded>),
}

struct Loaded {
    /// The DWARF sections; `None` if the file has none (stripped): symbol
    /// table only.
    sections: Option<Sections>,
    /// Where each unit's code is, and the units read so far; built on
    /// first use.
    units: Option<Units>,
    /// addr2line's context over the whole file, for the units that cannot
    /// be read alone (they refer to other units' entries): built only when
    /// one of them is asked for. `Some(None)` if it failed.
    whole: Option<Option<addr2line::Context<Reader>>>,
    symtab: Symtab,
    /// The mapped files (the object's or its debug file, and a
    /// supplementary file), to report their resident size.
    mapped: Vec<Arc<MappedFile>>,
}

/// The readers of a file's DWARF sections (and of its supplementary
/// file's), to build a `gimli::Dwarf` over all of them or over one unit.
struct Sections {
    own: Vec<(gimli::SectionId, Reader)>,
    sup: Option<Vec<(gimli::SectionId, Reader)>>,
}

impl Sections {
    fn get(list: &[(gimli::SectionId, Reader)], id: gimli::SectionId) -> Reader {
        list.iter()
            .find(|(i, _)| *i == id)
            .map_or_else(|| reader(SharedBytes::empty()), |(_, r)| r.clone())
    }

    fn dwarf(&self) -> Option<gimli::Dwarf<Reader>> {
        let mut dwarf =
            gimli::Dwarf::load(|id| -> Result<Reader, ()> { Ok(Sections::get(&self.own, id)) })
                .ok()?;
        if let Some(sup) = &self.sup {
            dwarf
                .load_sup(|id| -> Result<Reader, ()> { Ok(Sections::get(sup, id)) })
                .ok()?;
        }
        Some(dwarf)
    }

    /// The sections with `.debug_info` cut down to the unit at `range`
    /// (offsets in it are then from the unit's start: only for a unit
    /// whose references stay inside it), without `.debug_aranges` (whose
    /// offsets are the whole section's).
    fn unit_dwarf(&self, range: Range<usize>) -> Option<gimli::Dwarf<Reader>> {
        let mut info = Sections::get(&self.own, gimli::SectionId::DebugInfo);
        gimli::Reader::skip(&mut info, range.start).ok()?;
        gimli::Reader::truncate(&mut info, range.end - range.start).ok()?;
        gimli::Dwarf::load(|id| -> Result<Reader, ()> {
            Ok(match id {
                gimli::SectionId::DebugInfo => info.clone(),
                gimli::SectionId::DebugAranges => reader(SharedBytes::empty()),
                _ => Sections::get(&self.own, id),
            })
        })
        .ok()
    }
}

/// The units of a file's DWARF and where their code is, found as addr2line
/// finds them (`DW_AT_ranges`, then `.debug_aranges`, then
/// `DW_AT_low_pc`/`DW_AT_high_pc`, then the line program's sequences), but
/// keeping only the ranges: each unit is read when an address in it is
/// asked for, into a context of its own.
struct Units {
    /// `(range, unit, lowest begin from here on)`, by range end then unit:
    /// addr2line's order, so that overlapping units are tried in the same
    /// order.
    ranges: Vec<(gimli::Range, u32, u64)>,
    /// Each unit's range of `.debug_info`, and whether it can be read
    /// alone.
    units: Vec<(Range<usize>, bool)>,
    /// The contexts of the units read so far (`None`: it failed).
    contexts: std::collections::HashMap<u32, Option<addr2line::Context<Reader>>>,
}

impl Units {
    fn build(sections: &Sections) -> Option<Units> {
        let dwarf = sections.dwarf()?;
        let alone_possible = sections.sup.is_none();
        let mut aranges = Vec::new();
        let mut headers = dwarf.debug_aranges.headers();
        while let Some(header) = headers.next().ok()? {
            aranges.push((header.debug_info_offset(), header.offset()));
        }
        aranges.sort_unstable_by_key(|i| i.0);
        let mut ranges = Vec::new();
        let mut units = Vec::new();
        let mut iter = dwarf.units();
        while let Some(header) = iter.next().ok()? {
            let Some(offset) = header.debug_info_offset() else {
                continue;
            };
            let mut need_range = match header.type_() {
                gimli::UnitType::Type { .. } | gimli::UnitType::SplitType { .. } => continue,
                gimli::UnitType::Partial => false,
                _ => true,
            };
            let len = header.length_including_self();
            let alone = alone_possible
                && matches!(header.type_(), gimli::UnitType::Compilation)
                && !refers_outside(&dwarf, header.debug_abbrev_offset());
            let Ok(unit) = dwarf.unit(header) else {
                continue;
            };
            let id = units.len() as u32;
            units.push((offset.0..offset.0 + len, alone));
            if need_range {
                let unit_ref = gimli::UnitRef::new(&dwarf, &unit);
                let mut entries = unit_ref.entries_raw(None).ok()?;
                let Some(abbrev) = entries.read_abbreviation().ok()? else {
                    continue;
                };
                let (mut low, mut high, mut size, mut list) = (None, None, None, None);
                for spec in abbrev.attributes() {
                    let attr = entries.read_attribute(*spec).ok()?;
                    match (attr.name(), attr.value()) {
                        (gimli::DW_AT_low_pc, gimli::AttributeValue::Addr(v)) => low = Some(v),
                        (gimli::DW_AT_low_pc, gimli::AttributeValue::DebugAddrIndex(i)) => {
                            low = Some(unit_ref.address(i).ok()?);
                        }
                        (gimli::DW_AT_high_pc, gimli::AttributeValue::Addr(v)) => high = Some(v),
                        (gimli::DW_AT_high_pc, gimli::AttributeValue::DebugAddrIndex(i)) => {
                            high = Some(unit_ref.address(i).ok()?);
                        }
                        (gimli::DW_AT_high_pc, gimli::AttributeValue::Udata(v)) => size = Some(v),
                        (gimli::DW_AT_ranges, v) => {
                            list = unit_ref.attr_ranges_offset(v).ok()?;
                        }
                        _ => {}
                    }
                }
                let add = |ranges: &mut Vec<(gimli::Range, u32, u64)>, range: gimli::Range| {
                    let ok = range.begin < range.end;
                    if ok {
                        ranges.push((range, id, 0));
                    }
                    ok
                };
                if let Some(list) = list {
                    let mut iter = unit_ref.ranges(list).ok()?;
                    while let Some(range) = iter.next().ok()? {
                        if add(&mut ranges, range) {
                            need_range = false;
                        }
                    }
                } else {
                    let i = aranges.binary_search_by_key(&offset, |x| x.0).ok();
                    if let Some(mut i) = i {
                        while i > 0 && aranges[i - 1].0 == offset {
                            i -= 1;
                        }
                        for (_, at) in aranges[i..].iter().take_while(|x| x.0 == offset) {
                            let header = dwarf.debug_aranges.header(*at).ok()?;
                            let mut entries = header.entries();
                            while let Some(entry) = entries.next().transpose() {
                                if let Ok(entry) = entry {
                                    if entry.length() != 0 {
                                        ranges.push((entry.range(), id, 0));
                                        need_range = false;
                                    }
                                }
                            }
                        }
                    }
                    if need_range {
                        match (low, high, size) {
                            (Some(begin), Some(end), _) => {
                                need_range = !add(&mut ranges, gimli::Range { begin, end });
                            }
                            (Some(begin), None, Some(size)) => {
                                let end = begin.wrapping_add(size);
                                need_range = !add(&mut ranges, gimli::Range { begin, end });
                            }
                            _ => {}
                        }
                    }
                }
                if need_range {
                    // No ranges declared: the line program's sequences.
                    if let Some(program) = unit.line_program.clone() {
                        if let Ok((_, sequences)) = program.sequences() {
                            for s in sequences {
                                if s.start < s.end {
                                    ranges.push((
                                        gimli::Range {
                                            begin: s.start,
                                            end: s.end,
                                        },
                                        id,
                                        0,
                                    ));
                                }
                            }
                        }
                    }
                }
            }
        }
        ranges.sort_unstable_by_key(|r| (r.0.end, r.1));
        let mut min = u64::MAX;
        for r in ranges.iter_mut().rev() {
            min = min.min(r.0.begin);
            r.2 = min;
        }
        ranges.shrink_to_fit();
        units.shrink_to_fit();
        Some(Units {
            ranges,
            units,
            contexts: std::collections::HashMap::new(),
        })
    }

    /// The units whose ranges hold `probe`, in addr2line's order.
    fn find(&self, probe: u64) -> Vec<u32> {
        let pos = match self.ranges.binary_search_by_key(&probe, |r| r.0.end) {
            Ok(i) => i + 1,
            Err(i) => i,
        };
        self.ranges[pos..]
            .iter()
            .take_while(|r| probe.wrapping_add(1) > r.2)
            .filter(|r| r.0.begin <= probe && probe < r.0.end)
            .map(|r| r.1)
            .collect()
    }
}

/// Whether the abbreviations at `offset` allow a reference out of the unit
/// (`DW_FORM_ref_addr`, or a form given in the entry): such a unit cannot be
/// read alone. Unreadable abbreviations count as such.
fn refers_outside(dwarf: &gimli::Dwarf<Reader>, offset: gimli::DebugAbbrevOffset) -> bool {
    use gimli::Reader as _;
    let scan = || -> gimli::Result<bool> {
        let mut r = gimli::Section::reader(&dwarf.debug_abbrev).clone();
        r.skip(offset.0)?;
        loop {
            if r.read_uleb128()? == 0 {
                return Ok(false);
            }
            r.read_uleb128()?; // tag
            r.read_u8()?; // children
            loop {
                let name = r.read_uleb128()?;
                let form = gimli::DwForm(r.read_uleb128_u16()?);
                if name == 0 && form.0 == 0 {
                    break;
                }
                if form == gimli::DW_FORM_implicit_const {
                    r.read_sleb128()?;
                }
                if form == gimli::DW_FORM_ref_addr || form == gimli::DW_FORM_indirect {
                    return Ok(true);
                }
            }
        }
    };
    scan().unwrap_or(true)
}

impl Loaded {
    /// Maps the object at `path`, or the separate debug file it names, as
    /// the GNU tools find them: by build id under `/usr/lib/debug/.build-id`,
    /// then by `.gnu_debuglink` next to it, in its `.debug` folder, or under
    /// `/usr/lib/debug`.
    ///
    /// `open_path` is mapped (for the executable, `/proc/self/exe`); `path`
    /// names it, for the debug link's folders. A file that is not `id` (the
    /// one loaded, when known: a library replaced on disk since) is not read.
    ///
    /// Without `lines`, only the symbol tables are read (the debug file's,
    /// which has the local functions' names too), not the DWARF.
    fn open(path: &Path, open_path: &Path, id: Option<(u64, u64)>, lines: bool) -> Option<Loaded> {
        let file = Arc::new(MappedFile::open(open_path)?);
        if id.is_some_and(|id| id != file.id()) {
            return None;
        }
        let (build_id, debuglink) = {
            let data = file.bytes();
            let header = Elf::parse(data).ok()?;
            let sections = header.sections(LE, data).ok()?;
            (build_id(&sections, data), debuglink(&sections, data))
        };
        let debug = build_id
            .and_then(|id| locate_build_id(&id))
            .into_iter()
            .chain(debuglink.and_then(|name| locate_debuglink(path, &name)))
            .find_map(|p| {
                let m = Arc::new(MappedFile::open(&p)?);
                Loaded::from_file(m, Some(&p), lines)
            });
        debug.or_else(|| Loaded::from_file(file, None, lines))
    }

    /// The DWARF and symbols of mapped ELF file `file` (a debug file at
    /// `debug_path`, whose supplementary file is then looked for too).
    fn from_file(file: Arc<MappedFile>, debug_path: Option<&Path>, lines: bool) -> Option<Loaded> {
        let data = file.bytes();
        let header = Elf::parse(data).ok()?;
        let table = header.sections(LE, data).ok()?;
        let mut mapped = vec![file.clone()];
        let load = |file: &Arc<MappedFile>, table: &SectionTable<'_, Elf>| {
            let mut list = Vec::new();
            // Only to learn the section ids gimli asks for.
            let _ = gimli::Dwarf::load(|id| -> Result<Reader, ()> {
                let bytes = section(file, table, id.name());
                let r = reader(bytes);
                if !gimli::Reader::is_empty(&r) {
                    list.push((id, r.clone()));
                }
                Ok(r)
            });
            list
        };
        if !lines {
            return Some(Loaded::with(None, file, mapped));
        }
        let own = load(&file, &table);
        let has_dwarf = own.iter().any(|(id, _)| *id == gimli::SectionId::DebugInfo);
        if !has_dwarf && debug_path.is_some() {
            // A debug file without DWARF is no better than the object.
            return None;
        }
        let mut sup = None;
        if let Some(sup_file) = debug_path.and_then(|p| supplementary(&table, data, p)) {
            let sup_data = sup_file.bytes();
            if let Some(sup_table) = Elf::parse(sup_data)
                .ok()
                .and_then(|h| h.sections(LE, sup_data).ok())
            {
                sup = Some(load(&sup_file, &sup_table));
                mapped.push(sup_file.clone());
            }
        }
        let mut own = own;
        own.shrink_to_fit();
        Some(Loaded::with(
            has_dwarf.then_some(Sections { own, sup }),
            file,
            mapped,
        ))
    }

    /// A loaded object of these sections (`None`: symbol tables only), its
    /// symbols read from `file`, holding `mapped`; nothing parsed yet.
    fn with(
        sections: Option<Sections>,
        file: Arc<MappedFile>,
        mapped: Vec<Arc<MappedFile>>,
    ) -> Loaded {
        Loaded {
            sections,
            units: None,
            whole: None,
            symtab: Symtab {
                file: Some(file),
                index: None,
            },
            mapped,
        }
    }

    /// Parses the unit (lines, functions) and symbols that `svma` needs.
    fn parse_for(&mut self, svma: u64) {
        drop(self.frames(svma));
    }

    /// The frames at `svma`, as the `backtrace` crate gives them from
    /// addr2line: DWARF's (a frame without a function name takes the symbol
    /// table's), else the symbol table's name alone.
    fn frames(&mut self, svma: u64) -> Vec<RawFrame> {
        let mut out = Vec::new();
        let mut unnamed = false;
        self.dwarf_frames(svma, |function, location| {
            unnamed |= function.is_none();
            let (file, line) = match location {
                Some(l) => (l.file.map(str::to_string), l.line.unwrap_or(0)),
                None => (None, 0),
            };
            out.push((file, line, function));
        });
        if unnamed {
            for frame in &mut out {
                if frame.2.is_none() {
                    frame.2 = self.symtab.lookup(svma);
                }
            }
        }
        if out.is_empty() {
            if let Some(name) = self.symtab.lookup(svma) {
                out.push((None, 0, Some(name)));
            }
        }
        out
    }

    /// Calls `f` with each DWARF frame at `svma` (raw function name and
    /// location), innermost first, as addr2line's whole-file context would
    /// give them: the units that hold `svma` tried in its order, until one
    /// has a function or a line there.
    fn dwarf_frames(
        &mut self,
        svma: u64,
        mut f: impl FnMut(Option<String>, Option<addr2line::Location<'_>>),
    ) {
        let Some(sections) = &self.sections else {
            return;
        };
        if self.units.is_none() {
            self.units = Some(Units::build(sections).unwrap_or(Units {
                // Unreadable as units: every address goes to the whole
                // file's context, which fails alike or knows better.
                ranges: vec![(
                    gimli::Range {
                        begin: 0,
                        end: u64::MAX,
                    },
                    0,
                    0,
                )],
                units: vec![(0..0, false)],
                contexts: std::collections::HashMap::new(),
            }));
            // The pass over every unit touched pages all over the file: only
            // those read from now on need to stay in the RSS.
            for file in &self.mapped {
                file.drop_pages();
            }
        }
        let units = self.units.as_mut().expect("tracealloc: units just built");
        for id in units.find(svma) {
            let (range, alone) = units.units[id as usize].clone();
            let context = if alone {
                units
                    .contexts
                    .entry(id)
                    .or_insert_with(|| {
                        addr2line::Context::from_dwarf(sections.unit_dwarf(range)?).ok()
                    })
                    .as_ref()
            } else {
                // The whole file's context tries every unit itself.
                let whole = self
                    .whole
                    .get_or_insert_with(|| addr2line::Context::from_dwarf(sections.dwarf()?).ok());
                if let Some(context) = whole {
                    each_frame(context, svma, &mut f);
                }
                return;
            };
            let Some(context) = context else {
                continue;
            };
            match each_frame(context, svma, &mut f) {
                Some(true) => return,
                Some(false) => {}
                // An error stops addr2line's search too.
                None => return,
            }
        }
    }
}

/// Calls `f` with each frame `context` has at `probe`; whether there was
/// one, `None` on an error.
fn each_frame(
    context: &addr2line::Context<Reader>,
    probe: u64,
    f: &mut impl FnMut(Option<String>, Option<addr2line::Location<'_>>),
) -> Option<bool> {
    let mut frames = context.find_frames(probe).skip_all_loads().ok()?;
    let mut any = false;
    while let Ok(Some(frame)) = frames.next() {
        any = true;
        let name = frame
            .function
            .as_ref()
            .and_then(|n| n.raw_name().ok().map(|n| n.into_owned()));
        f(name, frame.location);
    }
    Some(any)
}

/// A symbol table (`.symtab`, or `.dynsym` when there is none), read from
/// its mapped file.
struct Symtab {
    file: Option<Arc<MappedFile>>,
    /// `(address, size, name offset)` of each function and object symbol,
    /// by address: built on first use.
    index: Option<Vec<(u64, u64, u32)>>,
}

impl Symbolizer {
    /// The frames at process address `addr` (inside a call), innermost
    /// first, with raw function names; empty if no object holds it or
    /// nothing is known of it.
    pub(super) fn resolve(&mut self, addr: usize) -> Vec<RawFrame> {
        let before = crate::counters::tracer_heap_bytes() as i64;
        let found = self.prepare(addr as u64);
        self.heap += crate::counters::tracer_heap_bytes() as i64 - before;
        let Some((i, svma)) = found else {
            return Vec::new();
        };
        let State::Loaded(loaded) = &mut self.files[i].state else {
            return Vec::new();
        };
        loaded.frames(svma)
    }

    /// Finds the object that holds `addr`, loads it and parses what
    /// resolving `addr` needs (so that what stays is measured apart from the
    /// frames returned); its index and the address in the object.
    fn prepare(&mut self, addr: u64) -> Option<(usize, u64)> {
        let changes = crate::sys::objects_changes();
        if self.changes != Some(changes) || self.find(addr).is_none() {
            self.refresh(changes);
        }
        let (i, svma) = self.find(addr)?;
        let object = &mut self.files[i];
        if let State::NotLoaded = object.state {
            object.state = match Loaded::open(
                &object.file.path,
                &object.file.open_path,
                object.file.id,
                self.c_runtime_lines || !is_c_runtime(&object.file.path),
            ) {
                Some(l) => State::Loaded(Box::new(l)),
                None => State::Failed,
            };
        }
        if let State::Loaded(loaded) = &mut object.state {
            loaded.parse_for(svma);
        }
        Some((i, svma))
    }

    fn find(&self, addr: u64) -> Option<(usize, u64)> {
        self.files.iter().enumerate().find_map(|(i, o)| {
            let svma = addr.wrapping_sub(o.file.base);
            o.file
                .segments
                .iter()
                .any(|s| s.contains(&svma))
                .then_some((i, svma))
        })
    }

    /// Re-reads the loaded objects, keeping what was loaded of those still
    /// there (same file at the same address).
    fn refresh(&mut self, changes: u64) {
        let mut old = std::mem::take(&mut self.files);
        for file in map::loaded_files() {
            let kept = old
                .iter()
                .position(|o| {
                    o.file.path == file.path && o.file.base == file.base && o.file.id == file.id
                })
                .map(|k| old.swap_remove(k).state);
            self.files.push(Object {
                file,
                state: kept.unwrap_or(State::NotLoaded),
            });
        }
        self.changes = Some(changes);
    }

    /// Heap bytes held (part of the tracer's memory).
    pub(super) fn heap_bytes(&self) -> usize {
        usize::try_from(self.heap).unwrap_or(0)
    }

    /// Bytes of the mapped files resident in this process now.
    pub(super) fn mapped_resident(&self) -> usize {
        let files: Vec<&MappedFile> = self
            .files
            .iter()
            .filter_map(|o| match &o.state {
                State::Loaded(l) => Some(l.mapped.iter().map(|m| &**m)),
                _ => None,
            })
            .flatten()
            .collect();
        map::resident(&files)
    }
}

impl Symtab {
    /// Sorts the function and object symbols of `.symtab` (or `.dynsym`).
    fn build(&mut self) {
        if self.index.is_some() {
            return;
        }
        let Some(file) = &self.file else {
            self.index = Some(Vec::new());
            return;
        };
        let data = file.bytes();
        let mut index = Vec::new();
        if let Some(sections) = Elf::parse(data)
            .ok()
            .and_then(|h| h.sections(LE, data).ok())
        {
            if let Some(table) = symbols(&sections, data) {
                index = table
                    .iter()
                    .filter(|s| matches!(s.st_type(), elf::STT_FUNC | elf::STT_OBJECT))
                    .filter(|s| s.st_shndx(LE) != elf::SHN_UNDEF)
                    .map(|s| (s.st_value(LE), s.st_size(LE), s.st_name(LE)))
                    .collect();
                index.sort_unstable_by_key(|s| s.0);
            }
        }
        index.shrink_to_fit();
        self.index = Some(index);
    }

    /// The raw name of the symbol that holds `svma`.
    fn lookup(&mut self, svma: u64) -> Option<String> {
        self.build();
        let index = self.index.as_ref()?;
        let i = match index.binary_search_by_key(&svma, |s| s.0) {
            Ok(i) => i,
            Err(i) => i.checked_sub(1)?,
        };
        let &(address, size, name) = index.get(i)?;
        if !(address <= svma && svma <= address.saturating_add(size)) {
            return None;
        }
        let data = self.file.as_ref()?.bytes();
        let sections = Elf::parse(data).ok()?.sections(LE, data).ok()?;
        let name = symbols(&sections, data)?.strings().get(name).ok()?;
        Some(String::from_utf8_lossy(name).into_owned())
    }
}

fn symbols<'d>(
    sections: &SectionTable<'d, Elf>,
    data: &'d [u8],
) -> Option<object::read::elf::SymbolTable<'d, Elf>> {
    let table = sections.symbols(LE, data, elf::SHT_SYMTAB).ok()?;
    if !table.is_empty() {
        return Some(table);
    }
    sections.symbols(LE, data, elf::SHT_DYNSYM).ok()
}

fn reader(bytes: SharedBytes) -> Reader {
    gimli::EndianReader::new(bytes, gimli::LittleEndian)
}

/// Sections addr2line never reads (locations, macros, type units, names):
/// left empty rather than decompressed.
const UNUSED: [&str; 8] = [
    ".debug_loc",
    ".debug_loclists",
    ".debug_macinfo",
    ".debug_macro",
    ".debug_pubnames",
    ".debug_pubtypes",
    ".debug_types",
    ".debug_frame",
];

/// Section `name` of mapped ELF file `file`: its bytes in the mapping, or
/// decompressed on the heap (`SHF_COMPRESSED` with zlib, or the older
/// `.zdebug_*`); empty if absent or unreadable.
fn section(file: &Arc<MappedFile>, sections: &SectionTable<'_, Elf>, name: &str) -> SharedBytes {
    if UNUSED.contains(&name) {
        return SharedBytes::empty();
    }
    let data = file.bytes();
    if let Some((_, header)) = sections.section_by_name(LE, name.as_bytes()) {
        let Ok(bytes) = header.data(LE, data) else {
            return SharedBytes::empty();
        };
        if header.sh_flags(LE) & u64::from(elf::SHF_COMPRESSED) == 0 {
            // Where the bytes lie in the file, from the header (a NOBITS
            // section has none: its `data` is an empty slice elsewhere).
            return match header.file_range(LE) {
                Some((offset, size)) if size > 0 => {
                    match (usize::try_from(offset), usize::try_from(size)) {
                        (Ok(start), Ok(len))
                            if start.checked_add(len).is_some_and(|end| end <= data.len()) =>
                        {
                            SharedBytes::mapped(file, start..start + len)
                        }
                        _ => SharedBytes::empty(),
                    }
                }
                _ => SharedBytes::empty(),
            };
        }
        let mut input = object::Bytes(bytes);
        let Ok(ch) = input.read::<elf::CompressionHeader64<LE>>() else {
            return SharedBytes::empty();
        };
        if ch.ch_type.get(LE) != elf::ELFCOMPRESS_ZLIB {
            return SharedBytes::empty();
        }
        return inflate(input.0, ch.ch_size.get(LE));
    }
    let Some(rest) = name.strip_prefix(".debug_") else {
        return SharedBytes::empty();
    };
    let zname = format!(".zdebug_{rest}");
    let Some((_, header)) = sections.section_by_name(LE, zname.as_bytes()) else {
        return SharedBytes::empty();
    };
    let Ok(bytes) = header.data(LE, data) else {
        return SharedBytes::empty();
    };
    match bytes.split_at_checked(12) {
        Some((head, body)) if head.starts_with(b"ZLIB\0\0\0\0") => {
            let size = u32::from_be_bytes([head[8], head[9], head[10], head[11]]);
            inflate(body, u64::from(size))
        }
        _ => SharedBytes::empty(),
    }
}

/// Deflate's highest ratio of output to input (a run of one byte): a
/// section claiming more than this from its compressed size is refused
/// before any memory is taken for it.
const MAX_INFLATE_RATIO: u64 = 1032;

/// `input` (a zlib stream) inflated into `size` bytes on the heap; empty if
/// it is not exactly that, if `size` is more than deflate can make of
/// `input`, or if the memory is refused.
fn inflate(input: &[u8], size: u64) -> SharedBytes {
    if size > (input.len() as u64).saturating_mul(MAX_INFLATE_RATIO) {
        return SharedBytes::empty();
    }
    use miniz_oxide::inflate::core::inflate_flags::{
        TINFL_FLAG_PARSE_ZLIB_HEADER, TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF,
    };
    use miniz_oxide::inflate::core::{decompress, DecompressorOxide};
    use miniz_oxide::inflate::TINFLStatus;
    let Ok(size) = usize::try_from(size) else {
        return SharedBytes::empty();
    };
    let mut out = Vec::new();
    if out.try_reserve_exact(size).is_err() {
        return SharedBytes::empty();
    }
    out.resize(size, 0);
    let mut state = Box::<DecompressorOxide>::default();
    let (status, read, written) = decompress(
        &mut state,
        input,
        &mut out,
        0,
        TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF | TINFL_FLAG_PARSE_ZLIB_HEADER,
    );
    if status == TINFLStatus::Done && read == input.len() && written == size {
        SharedBytes::heap(out)
    } else {
        SharedBytes::empty()
    }
}

/// The GNU build id note's bytes.
fn build_id(sections: &SectionTable<'_, Elf>, data: &[u8]) -> Option<Vec<u8>> {
    for section in sections.iter() {
        if let Ok(Some(mut notes)) = section.notes(LE, data) {
            while let Ok(Some(note)) = notes.next() {
                if note.name() == elf::ELF_NOTE_GNU && note.n_type(LE) == elf::NT_GNU_BUILD_ID {
                    return Some(note.desc().to_vec());
                }
            }
        }
    }
    None
}

/// The file name in `.gnu_debuglink`.
fn debuglink(sections: &SectionTable<'_, Elf>, data: &[u8]) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let (_, header) = sections.section_by_name(LE, b".gnu_debuglink")?;
    let bytes = header.data(LE, data).ok()?;
    let len = bytes.iter().position(|&b| b == 0)?;
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(&bytes[..len])))
}

fn debug_path_exists() -> bool {
    Path::new(DEBUG_PATH).is_dir()
}

/// `/usr/lib/debug/.build-id/ab/cdef….debug`, if it exists.
fn locate_build_id(id: &[u8]) -> Option<PathBuf> {
    if id.len() < 2 || !debug_path_exists() {
        return None;
    }
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let path = PathBuf::from(format!(
        "{DEBUG_PATH}/.build-id/{}/{}.debug",
        &hex[..2],
        &hex[2..]
    ));
    path.is_file().then_some(path)
}

/// The debug link's file beside the object, in its `.debug` folder, or
/// under `/usr/lib/debug` (never the object itself).
fn locate_debuglink(path: &Path, name: &Path) -> Option<PathBuf> {
    let path = std::fs::canonicalize(path).ok()?;
    let parent = path.parent()?;
    let beside = parent.join(name);
    if beside != path && beside.is_file() {
        return Some(beside);
    }
    let dot = parent.join(".debug").join(name);
    if dot.is_file() {
        return Some(dot);
    }
    if debug_path_exists() {
        let under = Path::new(DEBUG_PATH)
            .join(parent.strip_prefix("/").ok()?)
            .join(name);
        if under.is_file() {
            return Some(under);
        }
    }
    None
}

/// The supplementary debug file (`.gnu_debugaltlink`, as `dwz` makes)
/// of the debug file at `path`, mapped, if its build id matches.
fn supplementary(
    sections: &SectionTable<'_, Elf>,
    data: &[u8],
    path: &Path,
) -> Option<Arc<MappedFile>> {
    use std::os::unix::ffi::OsStrExt;
    let (_, header) = sections.section_by_name(LE, b".gnu_debugaltlink")?;
    let bytes = header.data(LE, data).ok()?;
    let len = bytes.iter().position(|&b| b == 0)?;
    let name = Path::new(std::ffi::OsStr::from_bytes(&bytes[..len]));
    let id = &bytes[len + 1..];
    let candidate = if name.is_absolute() {
        Some(name.to_path_buf()).filter(|p| p.is_file())
    } else {
        std::fs::canonicalize(path)
            .ok()
            .and_then(|p| Some(p.parent()?.join(name)))
            .filter(|p| p.is_file())
    };
    let found = candidate.or_else(|| locate_build_id(id))?;
    let file = Arc::new(MappedFile::open(&found)?);
    let data = file.bytes();
    let sections = Elf::parse(data).ok()?.sections(LE, data).ok()?;
    (build_id(&sections, data).as_deref() == Some(id)).then_some(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A section whose stated size deflate cannot make of its input is
    /// refused before any memory is taken (a 16 KB file claiming 6 GiB);
    /// a true one inflates.
    #[test]
    fn inflate_refuses_impossible_sizes() {
        let zeros = vec![0u8; 100_000];
        let packed = miniz_oxide::deflate::compress_to_vec_zlib(&zeros, 6);
        assert_eq!(&*inflate(&packed, zeros.len() as u64), &zeros[..]);
        assert!(inflate(&packed, 6 << 30).is_empty());
        assert!(inflate(&packed, zeros.len() as u64 + 1).is_empty());
    }

    /// What the `backtrace` crate gives at `addr`: (file, line, raw name)
    /// per frame. It takes a return address (and looks 1 byte before it).
    fn reference(addr: usize) -> Vec<RawFrame> {
        let mut out = Vec::new();
        backtrace::resolve((addr + 1) as *mut std::ffi::c_void, |sym| {
            let name = sym
                .name()
                .map(|n| String::from_utf8_lossy(n.as_bytes()).into_owned());
            let file = sym.filename().map(|p| p.to_string_lossy().into_owned());
            out.push((file, sym.lineno().unwrap_or(0), name));
        });
        out
    }

    /// The C library's code, as symbolized by default: a name from its
    /// symbol tables, no file or line, whether or not its DWARF is
    /// installed; and its DWARF never read.
    #[test]
    fn the_c_runtime_is_named_from_its_symbols() {
        let g = crate::guard::Guard::hold();
        let files = map::loaded_files();
        let libc = files
            .iter()
            .find(|f| f.path.to_string_lossy().contains("libc.so"))
            .expect("the C library is loaded");
        assert!(is_c_runtime(&libc.path));
        assert!(!is_c_runtime(&std::env::current_exe().unwrap()));
        let code = libc
            .segments
            .iter()
            .max_by_key(|s| s.end - s.start)
            .unwrap();
        let mut symbolizer = Symbolizer::default();
        let (mut checked, mut named) = (0, 0);
        let step = ((code.end - code.start) / 500).max(1);
        let mut svma = code.start + 7;
        while svma < code.end {
            let frames = symbolizer.resolve((libc.base + svma) as usize);
            assert!(frames.len() <= 1, "{frames:?}");
            for (file, line, _) in &frames {
                assert_eq!((file, line), (&None, &0), "{frames:?}");
            }
            named += usize::from(frames.iter().any(|f| f.2.is_some()));
            checked += 1;
            svma += step;
        }
        let loaded = symbolizer
            .files
            .iter()
            .find(|o| o.file.path == libc.path)
            .unwrap();
        let State::Loaded(loaded) = &loaded.state else {
            panic!("the C library's symbols were not read");
        };
        assert!(loaded.sections.is_none());
        // With its debug file (Debian's libc6-dbg), from its full symbol
        // table; without, from the exported symbols only.
        let with_debug_file = {
            let file = MappedFile::open(&libc.path).unwrap();
            let data = file.bytes();
            let sections = Elf::parse(data).unwrap().sections(LE, data).unwrap();
            build_id(&sections, data)
                .and_then(|id| locate_build_id(&id))
                .is_some()
        };
        drop(g);
        if with_debug_file {
            assert!(named > checked * 9 / 10, "{named} of {checked} named");
        } else {
            assert!(named > 0, "{named} of {checked} named");
        }
    }

    /// Addresses spread over the code of the test binary and of the C
    /// library, resolved here and by the `backtrace` crate: the same frames
    /// (the C library's DWARF read, as the crate reads it).
    #[test]
    fn resolves_as_the_backtrace_crate_does() {
        let g = crate::guard::Guard::hold();
        let files = map::loaded_files();
        let mut symbolizer = Symbolizer {
            c_runtime_lines: true,
            ..Symbolizer::default()
        };
        let mut checked = 0;
        let mut with_lines = 0;
        for file in files.iter().filter(|f| {
            f.path == std::env::current_exe().unwrap()
                || f.path.to_string_lossy().contains("libc.so")
        }) {
            let Some(code) = file.segments.iter().max_by_key(|s| s.end - s.start) else {
                continue;
            };
            let step = ((code.end - code.start) / 1500).max(1);
            let mut svma = code.start + 7;
            while svma < code.end {
                let addr = (file.base + svma) as usize;
                let ours = symbolizer.resolve(addr);
                let theirs = reference(addr);
                assert_eq!(
                    ours, theirs,
                    "at {addr:#x} (svma {svma:#x}) in {:?}",
                    file.path
                );
                checked += 1;
                with_lines += usize::from(ours.iter().any(|f| f.1 != 0));
                svma += step;
            }
        }
        drop(g);
        assert!(checked > 1000, "{checked} addresses");
        assert!(
            with_lines > checked / 4,
            "{with_lines} of {checked} with lines"
        );
    }
}
