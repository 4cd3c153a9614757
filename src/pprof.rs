//! pprof: whole-run profiles and snapshots as a gzipped
//! `perftools.profiles.Profile` protobuf, the file `go tool pprof`,
//! Pyroscope, Parca and Grafana read (feature `pprof`).
//!
//! The file is laid out as Go's heap profiles (`runtime/pprof`'s
//! `writeHeapProto`), so the viewers treat it as one:
//!
//! ```text
//! sample_type      alloc_objects/count, alloc_space/bytes,
//!                  inuse_objects/count, inuse_space/bytes
//! default          inuse_space
//! period_type      space/bytes; period: the sampling mean in bytes (1
//!                  when every block is traced, as Go's MemProfileRate=1)
//! sample           one per call site: [allocs, bytes_allocated,
//!                  live_blocks, live_bytes], locations leaf first, a
//!                  numeric label `bytes` = the average block size
//! location         one per code address, its inlined frames as lines
//!                  (innermost first); one per frame where the address is
//!                  unknown; address = return address - 1 (in the call).
//!                  A recursive call made twice in a row from one address
//!                  is one location of two lines too (shown alike)
//! function         name (demangled, as in statistics), file; no
//!                  system_name (the mangled symbol is not kept)
//! mapping          mapping[0] the executable, then the objects the
//!                  addresses fall in; has_functions/filenames/line_numbers
//!                  set, so pprof does not try to symbolize
//! time, duration   RunInfo::started, RunInfo::duration
//! comment          the command line, and the session's options
//! ```
//!
//! The protobuf messages below follow `proto/profile.proto` of
//! github.com/google/pprof field for field (tags and types), with prost's
//! derive; no code generation step.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use flate2::write::GzEncoder;
use flate2::Compression;
use prost::Message as _;

use crate::dump::Error;
use crate::frame::Frame;
use crate::profile::{Profile, RunInfo, Site};
use crate::scope::untraced;
use crate::snapshot::Snapshot;

/// The messages of pprof's `profile.proto` (package `perftools.profiles`),
/// tags and types as there.
pub(crate) mod proto {
    /// `perftools.profiles.Profile`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Profile {
        #[prost(message, repeated, tag = "1")]
        pub(crate) sample_type: Vec<ValueType>,
        #[prost(message, repeated, tag = "2")]
        pub(crate) sample: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub(crate) mapping: Vec<Mapping>,
        #[prost(message, repeated, tag = "4")]
        pub(crate) location: Vec<Location>,
        #[prost(message, repeated, tag = "5")]
        pub(crate) function: Vec<Function>,
        #[prost(string, repeated, tag = "6")]
        pub(crate) string_table: Vec<String>,
        #[prost(int64, tag = "7")]
        pub(crate) drop_frames: i64,
        #[prost(int64, tag = "8")]
        pub(crate) keep_frames: i64,
        #[prost(int64, tag = "9")]
        pub(crate) time_nanos: i64,
        #[prost(int64, tag = "10")]
        pub(crate) duration_nanos: i64,
        #[prost(message, optional, tag = "11")]
        pub(crate) period_type: Option<ValueType>,
        #[prost(int64, tag = "12")]
        pub(crate) period: i64,
        #[prost(int64, repeated, tag = "13")]
        pub(crate) comment: Vec<i64>,
        #[prost(int64, tag = "14")]
        pub(crate) default_sample_type: i64,
    }

    /// `perftools.profiles.ValueType`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct ValueType {
        #[prost(int64, tag = "1")]
        pub(crate) r#type: i64,
        #[prost(int64, tag = "2")]
        pub(crate) unit: i64,
    }

    /// `perftools.profiles.Sample`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Sample {
        #[prost(uint64, repeated, tag = "1")]
        pub(crate) location_id: Vec<u64>,
        #[prost(int64, repeated, tag = "2")]
        pub(crate) value: Vec<i64>,
        #[prost(message, repeated, tag = "3")]
        pub(crate) label: Vec<Label>,
    }

    /// `perftools.profiles.Label`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Label {
        #[prost(int64, tag = "1")]
        pub(crate) key: i64,
        #[prost(int64, tag = "2")]
        pub(crate) str: i64,
        #[prost(int64, tag = "3")]
        pub(crate) num: i64,
        #[prost(int64, tag = "4")]
        pub(crate) num_unit: i64,
    }

    /// `perftools.profiles.Mapping`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Mapping {
        #[prost(uint64, tag = "1")]
        pub(crate) id: u64,
        #[prost(uint64, tag = "2")]
        pub(crate) memory_start: u64,
        #[prost(uint64, tag = "3")]
        pub(crate) memory_limit: u64,
        #[prost(uint64, tag = "4")]
        pub(crate) file_offset: u64,
        #[prost(int64, tag = "5")]
        pub(crate) filename: i64,
        #[prost(int64, tag = "6")]
        pub(crate) build_id: i64,
        #[prost(bool, tag = "7")]
        pub(crate) has_functions: bool,
        #[prost(bool, tag = "8")]
        pub(crate) has_filenames: bool,
        #[prost(bool, tag = "9")]
        pub(crate) has_line_numbers: bool,
        #[prost(bool, tag = "10")]
        pub(crate) has_inline_frames: bool,
    }

    /// `perftools.profiles.Location`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Location {
        #[prost(uint64, tag = "1")]
        pub(crate) id: u64,
        #[prost(uint64, tag = "2")]
        pub(crate) mapping_id: u64,
        #[prost(uint64, tag = "3")]
        pub(crate) address: u64,
        #[prost(message, repeated, tag = "4")]
        pub(crate) line: Vec<Line>,
        #[prost(bool, tag = "5")]
        pub(crate) is_folded: bool,
    }

    /// `perftools.profiles.Line`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Line {
        #[prost(uint64, tag = "1")]
        pub(crate) function_id: u64,
        #[prost(int64, tag = "2")]
        pub(crate) line: i64,
        #[prost(int64, tag = "3")]
        pub(crate) column: i64,
    }

    /// `perftools.profiles.Function`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Function {
        #[prost(uint64, tag = "1")]
        pub(crate) id: u64,
        #[prost(int64, tag = "2")]
        pub(crate) name: i64,
        #[prost(int64, tag = "3")]
        pub(crate) system_name: i64,
        #[prost(int64, tag = "4")]
        pub(crate) filename: i64,
        #[prost(int64, tag = "5")]
        pub(crate) start_line: i64,
    }
}

/// One executable mapping of an object file, from `/proc/self/maps`.
struct ObjectMap {
    start: u64,
    limit: u64,
    offset: u64,
    path: String,
}

/// The objects the profile's code addresses can lie in, and the
/// executable's path.
struct Objects {
    /// The executable (the first mapping written).
    exe: String,
    /// Where the executable's code is mapped, when known.
    exe_map: Option<(u64, u64, u64)>,
    /// Every executable file mapping but the executable's, by address.
    others: Vec<ObjectMap>,
}

impl Objects {
    /// What is known of the process that `info` describes: this process's
    /// executable and mappings when it is this process, its `argv[0]`
    /// otherwise (mappings are read only if an address needs them).
    fn of(info: &RunInfo, any_address: bool) -> Objects {
        let this = info.pid != 0 && info.pid == std::process::id();
        let exe = if this {
            std::env::current_exe()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            info.command.first().cloned().unwrap_or_default()
        };
        let mut objects = Objects {
            exe,
            exe_map: None,
            others: Vec::new(),
        };
        if this && any_address {
            let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
            for m in maps.lines().filter_map(parse_maps_line) {
                if m.path == objects.exe && objects.exe_map.is_none() {
                    objects.exe_map = Some((m.start, m.limit, m.offset));
                } else if m.path != objects.exe {
                    objects.others.push(m);
                }
            }
            objects.others.sort_by_key(|m| m.start);
        }
        objects
    }
}

/// An executable, file-backed (or `[vdso]`) line of `/proc/self/maps`:
/// `start-end perms offset dev inode path`.
fn parse_maps_line(line: &str) -> Option<ObjectMap> {
    let mut fields = line.split_ascii_whitespace();
    let range = fields.next()?;
    let perms = fields.next()?;
    let offset = fields.next()?;
    let _dev = fields.next()?;
    let _inode = fields.next()?;
    let path = fields.collect::<Vec<_>>().join(" ");
    if !perms.contains('x') || !(path.starts_with('/') || path == "[vdso]") {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    Some(ObjectMap {
        start: u64::from_str_radix(start, 16).ok()?,
        limit: u64::from_str_radix(end, 16).ok()?,
        offset: u64::from_str_radix(offset, 16).ok()?,
        path,
    })
}

/// A figure as a protobuf int64 (saturating).
fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Hashes code pointers (the addresses of shared frames, never input):
/// murmur3's finalizer, enough to spread aligned pointers over a table.
#[derive(Default)]
struct PtrHasher(u64);

impl std::hash::Hasher for PtrHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 ^= n as u64;
    }

    fn finish(&self) -> u64 {
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^ (x >> 33)
    }
}

/// The tables of a profile being built, each entry stored once.
struct Builder<'a> {
    strings: Vec<&'a str>,
    string_ids: HashMap<&'a str, i64>,
    /// Frame (by pointer: tracebacks share their frames) → frame id, so
    /// that a frame shared by many sites is hashed by its strings once.
    frame_by_ptr: HashMap<usize, u32, BuildHasherDefault<PtrHasher>>,
    /// Frame (by contents) → frame id.
    frame_ids: HashMap<&'a Frame, u32>,
    /// Per frame id: its function id and line.
    frame_lines: Vec<proto::Line>,
    functions: Vec<proto::Function>,
    function_ids: HashMap<(&'a str, &'a str), u64>,
    locations: Vec<proto::Location>,
    /// (address, frame id) → location id, for a location of one frame.
    location_ids: HashMap<(usize, u32), u64>,
    /// (address, frame ids) → location id, for inlined frames.
    group_ids: HashMap<(usize, Vec<u32>), u64>,
    mappings: Vec<proto::Mapping>,
    /// Mapping id of each of `Objects::others`, once used.
    other_ids: Vec<u64>,
}

impl<'a> Builder<'a> {
    fn new(others: usize) -> Builder<'a> {
        Builder {
            strings: Vec::new(),
            string_ids: HashMap::new(),
            frame_by_ptr: HashMap::default(),
            frame_ids: HashMap::new(),
            frame_lines: Vec::new(),
            functions: Vec::new(),
            function_ids: HashMap::new(),
            locations: Vec::new(),
            location_ids: HashMap::new(),
            group_ids: HashMap::new(),
            mappings: Vec::new(),
            other_ids: vec![0; others],
        }
    }

    fn string(&mut self, s: &'a str) -> i64 {
        if let Some(&id) = self.string_ids.get(s) {
            return id;
        }
        let id = self.strings.len() as i64;
        self.strings.push(s);
        self.string_ids.insert(s, id);
        id
    }

    /// The id of frame `f`, its function stored.
    fn frame(&mut self, f: &'a Frame) -> u32 {
        let ptr = Arc::as_ptr(&f.0) as usize;
        if let Some(&id) = self.frame_by_ptr.get(&ptr) {
            return id;
        }
        let id = match self.frame_ids.get(f) {
            Some(&id) => id,
            None => {
                let id = self.frame_lines.len() as u32;
                let function_id = self.function(f);
                self.frame_lines.push(proto::Line {
                    function_id,
                    line: i64::from(f.lineno()),
                    column: 0,
                });
                self.frame_ids.insert(f, id);
                id
            }
        };
        self.frame_by_ptr.insert(ptr, id);
        id
    }

    fn function(&mut self, f: &'a Frame) -> u64 {
        let key = (f.function(), f.filename());
        if let Some(&id) = self.function_ids.get(&key) {
            return id;
        }
        let id = self.functions.len() as u64 + 1;
        let name = self.string(f.function());
        let filename = self.string(f.filename());
        // No system name: the linker's (mangled) symbol is not kept. pprof
        // takes a function whose system name equals its name for one still
        // to demangle, and cuts a Rust name such as
        // `<Vec<T> as Extend<T>>::extend` to `::extend`.
        self.functions.push(proto::Function {
            id,
            name,
            system_name: 0,
            filename,
            start_line: 0,
        });
        self.function_ids.insert(key, id);
        id
    }

    /// A mapping for `objects.others[i]`.
    fn other_mapping(&mut self, objects: &'a Objects, i: usize) -> u64 {
        if self.other_ids[i] == 0 {
            let m = &objects.others[i];
            let id = self.mappings.len() as u64 + 1;
            let filename = self.string(&m.path);
            self.mappings
                .push(mapping(id, m.start, m.limit, m.offset, filename));
            self.other_ids[i] = id;
        }
        self.other_ids[i]
    }

    /// The location of `frames` (the innermost first), all at code address
    /// `address` (0: unknown, and then `frames` is one frame).
    fn location(&mut self, objects: &'a Objects, address: usize, frames: &'a [Frame]) -> u64 {
        // One frame (the common case) is looked up by its id, inlined
        // frames by their ids together.
        let key = match frames {
            [one] => Ok((address, self.frame(one))),
            _ => Err((
                address,
                frames.iter().map(|f| self.frame(f)).collect::<Vec<_>>(),
            )),
        };
        let found = match &key {
            Ok(k) => self.location_ids.get(k),
            Err(k) => self.group_ids.get(k),
        };
        if let Some(&id) = found {
            return id;
        }
        let ids = match &key {
            Ok((_, f)) => std::slice::from_ref(f),
            Err((_, fs)) => fs.as_slice(),
        };
        let line = ids
            .iter()
            .map(|&f| self.frame_lines[f as usize].clone())
            .collect();
        // Within the call instruction, as Go writes return addresses.
        let address = (address as u64).saturating_sub(1);
        let mut mapping_id = 1;
        if address != 0
            && objects
                .exe_map
                .is_none_or(|(s, l, _)| !(s..l).contains(&address))
        {
            let i = objects.others.partition_point(|m| m.start <= address);
            if i > 0 && address < objects.others[i - 1].limit {
                mapping_id = self.other_mapping(objects, i - 1);
            }
        }
        let id = self.locations.len() as u64 + 1;
        self.locations.push(proto::Location {
            id,
            mapping_id,
            address,
            line,
            is_folded: false,
        });
        match key {
            Ok(k) => self.location_ids.insert(k, id),
            Err(k) => self.group_ids.insert(k, id),
        };
        id
    }
}

fn mapping(id: u64, start: u64, limit: u64, offset: u64, filename: i64) -> proto::Mapping {
    proto::Mapping {
        id,
        memory_start: start,
        memory_limit: limit,
        file_offset: offset,
        filename,
        build_id: 0,
        has_functions: true,
        has_filenames: true,
        has_line_numbers: true,
        has_inline_frames: true,
    }
}

/// The location ids of `site`'s stack, leaf first: frames that share a
/// known code address (inlined frames and their caller) are one location.
fn site_locations<'a>(b: &mut Builder<'a>, objects: &'a Objects, site: &'a Site) -> Vec<u64> {
    let frames = site.traceback.frames();
    let address = |i: usize| site.addresses().get(i).copied().unwrap_or(0);
    let mut ids = Vec::with_capacity(frames.len());
    let mut i = 0;
    while i < frames.len() {
        let a = address(i);
        let mut j = i + 1;
        if a != 0 {
            while j < frames.len() && address(j) == a {
                j += 1;
            }
        }
        ids.push(b.location(objects, a, &frames[i..j]));
        i = j;
    }
    ids
}

/// The protobuf message of `p`.
pub(crate) fn encode(p: &Profile) -> proto::Profile {
    let info = p.info();
    let any_address = p
        .sites()
        .iter()
        .any(|s| s.addresses().iter().any(|&a| a != 0));
    let objects = Objects::of(info, any_address);
    let command = info.command.join(" ");
    let options = format!(
        "tracealloc {}: traceback limit {}, {}{}",
        env!("CARGO_PKG_VERSION"),
        info.traceback_limit,
        match info.sample_bytes {
            Some(n) => format!("blocks sampled every {n} bytes on average"),
            None => "every block traced".to_string(),
        },
        match info.capture_method {
            Some(m) => format!(", stacks captured by {m:?}"),
            None => String::new(),
        }
    );
    let mut b = Builder::new(objects.others.len());
    b.string("");
    let value_type = |b: &mut Builder<'_>, t: &'static str, u: &'static str| proto::ValueType {
        r#type: b.string(t),
        unit: b.string(u),
    };
    let sample_type = vec![
        value_type(&mut b, "alloc_objects", "count"),
        value_type(&mut b, "alloc_space", "bytes"),
        value_type(&mut b, "inuse_objects", "count"),
        value_type(&mut b, "inuse_space", "bytes"),
    ];
    let period_type = Some(value_type(&mut b, "space", "bytes"));
    let default_sample_type = b.string("inuse_space");
    let bytes_key = b.string("bytes");
    // The executable first, as pprof expects.
    let exe = b.string(&objects.exe);
    let (start, limit, offset) = objects.exe_map.unwrap_or((0, 0, 0));
    b.mappings.push(mapping(1, start, limit, offset, exe));

    let mut sample = Vec::with_capacity(p.sites().len());
    for site in p.sites() {
        let location_id = site_locations(&mut b, &objects, site);
        let block = site.bytes_allocated.checked_div(site.allocs).unwrap_or(0);
        let label = if block == 0 {
            Vec::new()
        } else {
            vec![proto::Label {
                key: bytes_key,
                str: 0,
                num: int(block),
                num_unit: 0,
            }]
        };
        sample.push(proto::Sample {
            location_id,
            value: vec![
                int(site.allocs),
                int(site.bytes_allocated),
                int(site.live_blocks),
                int(site.live_bytes),
            ],
            label,
        });
    }
    let mut comment = Vec::new();
    if !command.is_empty() {
        comment.push(b.string(&command));
    }
    comment.push(b.string(&options));
    let time_nanos = info
        .started
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(nanos)
        .unwrap_or(0);
    proto::Profile {
        sample_type,
        sample,
        mapping: b.mappings,
        location: b.locations,
        function: b.functions,
        string_table: b.strings.into_iter().map(str::to_owned).collect(),
        drop_frames: 0,
        keep_frames: 0,
        time_nanos,
        duration_nanos: nanos(info.duration),
        period_type,
        period: int(info.sample_bytes.unwrap_or(1)),
        comment,
        default_sample_type,
    }
}

/// Writes `message` gzipped (at gzip's fastest level, as Go does) to `w`.
fn gzip_to<W: Write>(message: &proto::Profile, w: W) -> std::io::Result<W> {
    let mut z = GzEncoder::new(w, Compression::fast());
    z.write_all(&message.encode_to_vec())?;
    z.finish()
}

/// pprof output (feature `pprof`).
impl Profile {
    /// The profile as a gzipped pprof protobuf (`perftools.profiles.Profile`),
    /// laid out as Go's heap profiles: the file `go tool pprof`, Pyroscope,
    /// Parca and Grafana read.
    ///
    /// Each site is one sample with the four values of Go's heap profiles:
    /// `alloc_objects` and `alloc_space` (blocks and bytes allocated over the
    /// run: [`Site::allocs`], [`Site::bytes_allocated`]), `inuse_objects`
    /// and `inuse_space` (live now: [`Site::live_blocks`],
    /// [`Site::live_bytes`]); viewers show `inuse_space` first (choose
    /// another with `go tool pprof -sample_index=alloc_space`). Frames that
    /// share a code address (inlined calls) are one location with a line
    /// each; functions carry names and files, so no viewer needs the binary
    /// to symbolize. The run's start and duration, its command line and the
    /// session's options (as comments: `go tool pprof -comments`) go with
    /// it; `period` is the sampling mean in bytes (1 when every block was
    /// traced).
    ///
    /// For a profile of this process with code addresses, the executable
    /// and library mappings are read from `/proc/self/maps` (on Linux).
    ///
    /// # Examples
    ///
    /// ```
    /// #[global_allocator]
    /// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
    ///
    /// fn main() {
    ///     tracealloc::start(8);
    ///     drop(std::hint::black_box(vec![0u8; 4096]));
    ///     let pprof = tracealloc::profile().pprof();
    ///     assert_eq!(pprof[..2], [0x1f, 0x8b]); // gzip
    ///     tracealloc::stop();
    ///     // Then: go tool pprof -sample_index=alloc_space -top heap.pb.gz
    ///     std::fs::write(std::env::temp_dir().join("heap.pb.gz"), pprof).unwrap();
    /// }
    /// ```
    pub fn pprof(&self) -> Vec<u8> {
        untraced(|| {
            let message = encode(self);
            gzip_to(&message, Vec::new()).expect("tracealloc: gzip into memory cannot fail")
        })
    }

    /// Writes [`pprof`](Self::pprof) to `path` (name it `*.pb.gz`), through
    /// a temporary file beside it renamed over it once complete, as
    /// [`Snapshot::dump`] does.
    ///
    /// # Errors
    ///
    /// When the file cannot be written; the error names the path.
    ///
    /// # Examples
    ///
    /// ```
    /// #[global_allocator]
    /// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
    ///
    /// fn main() -> Result<(), tracealloc::Error> {
    ///     tracealloc::start(8);
    ///     drop(std::hint::black_box(vec![0u8; 4096]));
    ///     let path = std::env::temp_dir().join(format!("heap-{}.pb.gz", std::process::id()));
    ///     tracealloc::profile().write_pprof(&path)?;
    ///     tracealloc::stop();
    ///     # std::fs::remove_file(&path).unwrap();
    ///     Ok(())
    /// }
    /// ```
    pub fn write_pprof(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        untraced(|| {
            let message = encode(self);
            crate::dump::write_atomic(path.as_ref(), "write", "pprof profile", |w| {
                gzip_to(&message, w).map(drop)
            })
        })
    }
}

/// pprof output (feature `pprof`).
impl Snapshot {
    /// The snapshot's live blocks as a gzipped pprof protobuf, as
    /// [`Profile::pprof`] writes [`Profile::from_snapshot`]: one sample per
    /// traceback, whose blocks count as allocated and in use (`alloc_*`
    /// equal `inuse_*`), weighted as in [`statistics`](Self::statistics)
    /// when the snapshot is sampled.
    /// A snapshot knows no process, times or code addresses: the file has
    /// none (one location per frame, one unnamed mapping).
    ///
    /// # Examples
    ///
    /// ```
    /// use tracealloc::{Frame, Snapshot, Trace, Traceback};
    ///
    /// let at = Traceback::new(vec![Frame::new("src/model.rs", 42, "model::load")]);
    /// let snapshot = Snapshot::new(vec![Trace::new(4096, at)], 1);
    /// let pprof = snapshot.pprof();
    /// assert_eq!(pprof[..2], [0x1f, 0x8b]); // gzip
    /// ```
    pub fn pprof(&self) -> Vec<u8> {
        Profile::from_snapshot(self).pprof()
    }

    /// Writes [`pprof`](Self::pprof) to `path`, through a temporary file
    /// beside it renamed over it once complete, as [`dump`](Self::dump)
    /// does.
    ///
    /// # Errors
    ///
    /// When the file cannot be written; the error names the path.
    ///
    /// # Examples
    ///
    /// ```
    /// use tracealloc::{Frame, Snapshot, Trace, Traceback};
    ///
    /// let at = Traceback::new(vec![Frame::new("src/model.rs", 42, "model::load")]);
    /// let path = std::env::temp_dir().join(format!("snapshot-{}.pb.gz", std::process::id()));
    /// Snapshot::new(vec![Trace::new(4096, at)], 1).write_pprof(&path)?;
    /// # std::fs::remove_file(&path).unwrap();
    /// # Ok::<(), tracealloc::Error>(())
    /// ```
    pub fn write_pprof(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        Profile::from_snapshot(self).write_pprof(path)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::io::Read;

    use super::*;
    use crate::frame::Traceback;
    use crate::snapshot::{KeyType, Trace};

    /// Gunzips and decodes a file as any pprof reader does.
    fn decode(bytes: &[u8]) -> proto::Profile {
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut raw)
            .expect("a gzip stream");
        proto::Profile::decode(raw.as_slice()).expect("a perftools.profiles.Profile")
    }

    /// What pprof's `CheckValid` and the format's comments require: ids
    /// unique and nonzero, every id referenced present, every string index
    /// inside the table, `string_table[0] == ""`, one value per sample
    /// type.
    fn check_valid(p: &proto::Profile) {
        assert_eq!(p.string_table.first().map(String::as_str), Some(""));
        let n = p.string_table.len() as i64;
        let string = |i: i64, what: &str| assert!((0..n).contains(&i), "{what}: string {i} of {n}");
        for t in p.sample_type.iter().chain(&p.period_type) {
            string(t.r#type, "value type");
            string(t.unit, "value unit");
        }
        string(p.default_sample_type, "default sample type");
        p.comment.iter().for_each(|&c| string(c, "comment"));
        let ids = |ids: Vec<u64>, what: &str| {
            assert!(ids.iter().all(|&id| id != 0), "{what}: id 0");
            let set: HashSet<u64> = ids.iter().copied().collect();
            assert_eq!(set.len(), ids.len(), "{what}: ids not unique");
            set
        };
        let mappings = ids(p.mapping.iter().map(|m| m.id).collect(), "mapping");
        let locations = ids(p.location.iter().map(|l| l.id).collect(), "location");
        let functions = ids(p.function.iter().map(|f| f.id).collect(), "function");
        assert!(!mappings.is_empty(), "at least the executable's mapping");
        for m in &p.mapping {
            string(m.filename, "mapping file");
            string(m.build_id, "build id");
            assert!(m.has_functions && m.has_filenames && m.has_line_numbers);
        }
        for f in &p.function {
            string(f.name, "function name");
            string(f.system_name, "system name");
            string(f.filename, "function file");
        }
        for l in &p.location {
            assert!(
                mappings.contains(&l.mapping_id),
                "location {} maps to {}",
                l.id,
                l.mapping_id
            );
            assert!(!l.line.is_empty(), "location {} has no line", l.id);
            for line in &l.line {
                assert!(
                    functions.contains(&line.function_id),
                    "line of function {}",
                    line.function_id
                );
            }
        }
        for s in &p.sample {
            assert_eq!(s.value.len(), p.sample_type.len());
            for id in &s.location_id {
                assert!(locations.contains(id), "sample refers to location {id}");
            }
            for l in &s.label {
                string(l.key, "label key");
                string(l.str, "label string");
                string(l.num_unit, "label unit");
            }
        }
    }

    fn text(p: &proto::Profile, i: i64) -> &str {
        &p.string_table[i as usize]
    }

    /// A sample's stack as `function:line` strings, leaf first, with `|`
    /// between locations.
    fn stack(p: &proto::Profile, s: &proto::Sample) -> String {
        let locations: HashMap<u64, &proto::Location> =
            p.location.iter().map(|l| (l.id, l)).collect();
        let functions: HashMap<u64, &proto::Function> =
            p.function.iter().map(|f| (f.id, f)).collect();
        s.location_id
            .iter()
            .map(|id| {
                locations[id]
                    .line
                    .iter()
                    .map(|l| format!("{}:{}", text(p, functions[&l.function_id].name), l.line))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect::<Vec<_>>()
            .join("|")
    }

    fn site(
        frames: &[(&str, u32, &str, usize)],
        allocs: u64,
        bytes: u64,
        live: (u64, u64),
    ) -> Site {
        Site {
            traceback: Traceback::new(
                frames
                    .iter()
                    .map(|&(file, line, function, _)| Frame::new(file, line, function))
                    .collect(),
            ),
            allocs,
            frees: allocs - live.0,
            bytes_allocated: bytes,
            live_blocks: live.0,
            live_bytes: live.1,
            max_live_bytes: bytes,
            max_live_blocks: allocs,
            peak_bytes: live.1,
            peak_blocks: live.0,
            total_lifetime: Duration::from_millis(allocs),
            addresses: frames.iter().map(|f| f.3).collect(),
        }
    }

    impl Site {
        fn with_frames(self, frames: Vec<Frame>, allocs: u64) -> Site {
            Site {
                traceback: Traceback::new(frames),
                allocs,
                bytes_allocated: 64 * allocs,
                ..self
            }
        }
    }

    fn info(pid: u32, sample_bytes: Option<u64>) -> RunInfo {
        RunInfo {
            pid,
            command: vec!["prog".into(), "--fast".into()],
            traceback_limit: 8,
            sample_bytes,
            capture_method: None,
            tracer_memory: 0,
            started: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            duration: Duration::from_millis(1500),
            peak_bytes: 0,
            peak_at: None,
        }
    }

    /// Two sites through one caller: one with `Vec::push` inlined into
    /// `model::load` (a shared address), one with unknown addresses.
    fn profile() -> Profile {
        Profile::new(
            vec![
                site(
                    &[
                        ("alloc/src/vec.rs", 2, "alloc::vec::Vec<T>::push", 0x5000),
                        ("src/model.rs", 42, "model::load", 0x5000),
                        ("src/main.rs", 7, "main", 0x4000),
                    ],
                    10,
                    40960,
                    (2, 8192),
                ),
                site(
                    &[
                        ("src/buf.rs", 3, "buf::fill", 0),
                        ("src/main.rs", 9, "main", 0),
                    ],
                    5,
                    100,
                    (0, 0),
                ),
                site(
                    &[
                        ("src/buf.rs", 3, "buf::fill", 0),
                        ("src/main.rs", 11, "main", 0),
                    ],
                    1,
                    20,
                    (1, 20),
                ),
            ],
            info(1, None),
        )
    }

    #[test]
    fn heap_profile_layout_as_go_writes_it() {
        let p = decode(&profile().pprof());
        check_valid(&p);
        let types: Vec<(&str, &str)> = p
            .sample_type
            .iter()
            .map(|t| (text(&p, t.r#type), text(&p, t.unit)))
            .collect();
        assert_eq!(
            types,
            [
                ("alloc_objects", "count"),
                ("alloc_space", "bytes"),
                ("inuse_objects", "count"),
                ("inuse_space", "bytes")
            ]
        );
        assert_eq!(text(&p, p.default_sample_type), "inuse_space");
        let period = p.period_type.as_ref().unwrap();
        assert_eq!(
            (text(&p, period.r#type), text(&p, period.unit)),
            ("space", "bytes")
        );
        assert_eq!(p.period, 1, "every block traced");
        assert_eq!(p.time_nanos, 1_700_000_000_000_000_000);
        assert_eq!(p.duration_nanos, 1_500_000_000);
        let comments: Vec<&str> = p.comment.iter().map(|&c| text(&p, c)).collect();
        assert_eq!(comments[0], "prog --fast");
        assert!(
            comments[1].contains("traceback limit 8, every block traced"),
            "{comments:?}"
        );
        let sampled = Profile::new(vec![], info(1, Some(524288)));
        assert_eq!(decode(&sampled.pprof()).period, 524288);
    }

    #[test]
    fn one_sample_per_site_with_its_figures_and_stack() {
        let profile = profile();
        let p = decode(&profile.pprof());
        assert_eq!(p.sample.len(), profile.sites().len());
        for (s, site) in p.sample.iter().zip(profile.sites()) {
            assert_eq!(
                s.value,
                [
                    site.allocs as i64,
                    site.bytes_allocated as i64,
                    site.live_blocks as i64,
                    site.live_bytes as i64
                ]
            );
            assert_eq!(s.label.len(), 1);
            assert_eq!(text(&p, s.label[0].key), "bytes");
            assert_eq!(s.label[0].num as u64, site.bytes_allocated / site.allocs);
        }
        let stacks: Vec<String> = p.sample.iter().map(|s| stack(&p, s)).collect();
        assert_eq!(
            stacks,
            [
                "alloc::vec::Vec<T>::push:2,model::load:42|main:7",
                "buf::fill:3|main:9",
                "buf::fill:3|main:11",
            ]
        );
        // Totals over the samples are the profile's.
        for (i, total) in [
            profile.sites().iter().map(|s| s.allocs).sum::<u64>(),
            profile.bytes_allocated(),
            profile.sites().iter().map(|s| s.live_blocks).sum(),
            profile.sites().iter().map(|s| s.live_bytes).sum(),
        ]
        .into_iter()
        .enumerate()
        {
            assert_eq!(
                p.sample.iter().map(|s| s.value[i]).sum::<i64>(),
                total as i64
            );
        }
    }

    #[test]
    fn inlined_frames_share_one_location_and_unknown_addresses_one_per_frame() {
        let p = decode(&profile().pprof());
        let first = &p.sample[0];
        assert_eq!(
            first.location_id.len(),
            2,
            "push inlined into load: one location"
        );
        let inlined = p
            .location
            .iter()
            .find(|l| l.id == first.location_id[0])
            .unwrap();
        assert_eq!(inlined.address, 0x4fff, "return address - 1");
        assert_eq!(inlined.line.len(), 2);
        let caller = p
            .location
            .iter()
            .find(|l| l.id == first.location_id[1])
            .unwrap();
        assert_eq!((caller.address, caller.line.len()), (0x3fff, 1));
        // buf::fill at line 3 is one location for both sites; the frames of
        // main at lines 9 and 11 are two.
        assert_eq!(p.sample[1].location_id[0], p.sample[2].location_id[0]);
        assert_ne!(p.sample[1].location_id[1], p.sample[2].location_id[1]);
        assert_eq!(p.location.len(), 5);
        // Functions are stored once: main is one function of two lines.
        let names: Vec<&str> = p.function.iter().map(|f| text(&p, f.name)).collect();
        assert_eq!(
            names,
            [
                "alloc::vec::Vec<T>::push",
                "model::load",
                "main",
                "buf::fill"
            ]
        );
        let files: Vec<&str> = p.function.iter().map(|f| text(&p, f.filename)).collect();
        assert_eq!(
            files,
            [
                "alloc/src/vec.rs",
                "src/model.rs",
                "src/main.rs",
                "src/buf.rs"
            ]
        );
        // No system name: pprof would take the name for a mangled one and
        // cut it (`<A as B>::f` to `::f`).
        assert!(p.function.iter().all(|f| f.system_name == 0));
        // Strings are stored once.
        let unique: HashSet<&String> = p.string_table.iter().collect();
        assert_eq!(unique.len(), p.string_table.len());
    }

    /// In this process, code addresses fall in the executable's mapping or
    /// a library's, read from /proc/self/maps.
    #[cfg(target_os = "linux")]
    #[test]
    fn addresses_of_this_process_map_to_their_objects() {
        let exe_code = decode as fn(&[u8]) -> proto::Profile as usize;
        let libc_code = libc::getpid as unsafe extern "C" fn() -> libc::pid_t as usize;
        let profile = Profile::new(
            vec![site(
                &[
                    ("src/a.rs", 1, "a", exe_code),
                    ("libc", 0, "getpid", libc_code),
                ],
                1,
                8,
                (1, 8),
            )],
            info(std::process::id(), None),
        );
        let p = decode(&profile.pprof());
        check_valid(&p);
        let exe = std::env::current_exe().unwrap();
        assert_eq!(text(&p, p.mapping[0].filename), exe.to_str().unwrap());
        let mapping_of = |id: u64| {
            let l = p.location.iter().find(|l| l.id == id).unwrap();
            let m = p.mapping.iter().find(|m| m.id == l.mapping_id).unwrap();
            assert!(
                (m.memory_start..m.memory_limit).contains(&l.address),
                "{m:?} {l:?}"
            );
            text(&p, m.filename)
        };
        assert_eq!(
            mapping_of(p.sample[0].location_id[0]),
            exe.to_str().unwrap()
        );
        let lib = mapping_of(p.sample[0].location_id[1]);
        assert!(lib.contains("libc"), "{lib}");
    }

    #[test]
    fn maps_lines() {
        let m = parse_maps_line(
            "7f0e4c028000-7f0e4c1bd000 r-xp 00028000 08:01 1316  /usr/lib/x86_64-linux-gnu/libc.so.6",
        )
        .unwrap();
        assert_eq!(
            (m.start, m.limit, m.offset),
            (0x7f0e4c028000, 0x7f0e4c1bd000, 0x28000)
        );
        assert_eq!(m.path, "/usr/lib/x86_64-linux-gnu/libc.so.6");
        assert!(parse_maps_line("7f0e4c028000-7f0e4c1bd000 rw-p 00028000 08:01 1316 /x").is_none());
        assert!(parse_maps_line("7ffd1000-7ffd2000 r-xp 00000000 00:00 0 [vsyscall]").is_none());
        assert!(parse_maps_line("7ffd1000-7ffd2000 r-xp 00000000 00:00 0").is_none());
        assert!(parse_maps_line("garbage").is_none());
    }

    #[test]
    fn snapshot_live_blocks_with_their_functions() {
        let at = |line, function| {
            Traceback::new(vec![
                Frame::new("src/a.rs", line, function),
                Frame::new("src/main.rs", 1, "main"),
            ])
        };
        // Two functions on one line are two sites (a statistic by
        // traceback would merge them).
        let s = Snapshot::new(
            vec![
                Trace::new(100, at(3, "a::f")),
                Trace::new(100, at(3, "a::f")),
                Trace::new(7, at(3, "a::{{closure}}")),
            ],
            2,
        );
        let p = decode(&s.pprof());
        check_valid(&p);
        let got: Vec<(String, Vec<i64>)> = p
            .sample
            .iter()
            .map(|x| (stack(&p, x), x.value.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("a::f:3|main:1".to_string(), vec![2, 200, 2, 200]),
                ("a::{{closure}}:3|main:1".to_string(), vec![1, 7, 1, 7]),
            ]
        );
        assert_eq!((p.time_nanos, p.duration_nanos), (0, 0));
        assert_eq!(p.mapping.len(), 1);
    }

    /// A sampled snapshot is weighted as its statistics are.
    #[test]
    fn sampled_snapshot_weighted_as_statistics() {
        let at = |line| Traceback::new(vec![Frame::new("src/a.rs", line, "a::f")]);
        let traces = (0..50)
            .map(|i| Trace::new(1000 + 37 * i, at(i as u32 % 3)))
            .collect();
        let s = Snapshot::from_parts(traces, 1, Some(4096));
        let p = decode(&s.pprof());
        assert_eq!(p.period, 4096);
        let stats = s.statistics(KeyType::Lineno, false);
        assert_eq!(p.sample.len(), stats.len());
        for (x, st) in p.sample.iter().zip(&stats) {
            assert_eq!(
                stack(&p, x),
                format!("a::f:{}", st.traceback.frames()[0].lineno())
            );
            assert_eq!((x.value[2], x.value[3]), (st.count as i64, st.size as i64));
            assert!(st.size > 3 * 1000 * 16, "weighted: {}", st.size);
        }
    }

    #[test]
    fn write_pprof_writes_the_file_or_names_it_in_the_error() {
        let dir = std::env::temp_dir().join(format!("tracealloc-pprof-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("heap.pb.gz");
        let profile = profile();
        profile.write_pprof(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), profile.pprof());
        let snapshot = Snapshot::new(vec![Trace::new(8, profile.sites()[0].traceback.clone())], 3);
        snapshot.write_pprof(&path).unwrap();
        assert_eq!(
            decode(&std::fs::read(&path).unwrap()).sample[0].value,
            [1, 8, 1, 8]
        );
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file left");
        std::fs::remove_dir_all(&dir).unwrap();

        let missing = dir.join("no-such-folder").join("heap.pb.gz");
        let e = profile.write_pprof(&missing).unwrap_err();
        assert_eq!(e.path(), missing);
        assert!(
            e.to_string()
                .starts_with("tracealloc: cannot write pprof profile "),
            "{e}"
        );
    }

    /// 100 000 sites of 8 frames (a leaf of its own each, callers from
    /// 1000 shared frames, as the symbol cache shares them), with code
    /// addresses: the issue's target is under a second in release.
    #[test]
    #[ignore = "timing: cargo test --release --features pprof --lib pprof -- --ignored"]
    fn pprof_of_100k_sites_in_under_a_second() {
        let pool: Vec<(Frame, usize)> = (0..1000u32)
            .map(|f| {
                let file = format!("src/m{}.rs", f % 100);
                let function = format!("m{}::f{f}", f % 100);
                (
                    Frame::new(&file, 10 + f, &function),
                    0x40_0000 + 64 * f as usize,
                )
            })
            .collect();
        let sites: Vec<Site> = (0..100_000u32)
            .map(|i| {
                let file = format!("src/m{}.rs", i % 100);
                let function = format!("m{}::leaf{}", i % 100, i % 5000);
                let mut frames = vec![Frame::new(&file, 1 + i, &function)];
                let mut addresses = vec![0x80_0000 + 16 * i as usize];
                for d in 1..8u32 {
                    let (f, a) = &pool[((i / (d * 7) + d * 131) % 1000) as usize];
                    frames.push(f.clone());
                    addresses.push(*a);
                }
                Site {
                    addresses,
                    ..site(&[], 0, 0, (0, 0))
                }
                .with_frames(frames, u64::from(i % 4096) + 1)
            })
            .collect();
        let profile = Profile::new(sites, info(1, None));
        // On-CPU time of this thread (Linux), beside the wall clock: the
        // machine may be shared.
        let cpu = || {
            std::fs::read_to_string("/proc/thread-self/schedstat")
                .ok()
                .and_then(|s| s.split(' ').next()?.parse::<u64>().ok())
                .map(Duration::from_nanos)
        };
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let (t, c) = (std::time::Instant::now(), cpu());
            let bytes = std::hint::black_box(profile.pprof());
            let (wall, c) = (t.elapsed(), cpu().zip(c).map(|(b, a)| b - a));
            best = best.min(wall);
            eprintln!(
                "100 000 sites: {} bytes in {wall:?} (on CPU {c:?})",
                bytes.len()
            );
        }
        let p = decode(&profile.pprof());
        assert_eq!(p.sample.len(), 100_000);
        assert!(best < Duration::from_secs(1), "{best:?}");
    }

    #[test]
    fn empty_profile_is_valid() {
        let p = decode(&Profile::new(vec![], info(0, None)).pprof());
        check_valid(&p);
        assert!(p.sample.is_empty() && p.location.is_empty());
    }
}
