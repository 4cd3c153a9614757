//! Duplicated instances: the same thing held more than once, told from
//! many things of one shape by what the blocks hold.
//!
//! Shapes cannot tell: a transformer's query, key and value weights are
//! three blocks of one size allocated by sibling calls, and a model's
//! tensors come in dozens of equal shapes; two loads of one model look no
//! different. Content can: each block of at least
//! [`CONTENT_MIN_SIZE`](crate::CONTENT_MIN_SIZE) bytes carries a
//! fingerprint of its bytes ([`Trace::content`], read by
//! [`take_snapshot`](crate::take_snapshot)). Blocks of one size and one
//! fingerprint are copies of one content; each copy is named by where it
//! was loaded: in the frames of the user's own code in its stack
//! ([`Traceback::user_frames`](crate::Traceback::user_frames), found
//! however deep; the kept frames where there are none), the first at which
//! the copies' stacks part — the two lines that called one helper, not the
//! helper's line that both went through. Contents copied by the
//! same loaders (each load's line, once per copy) are one instance: a model
//! loaded at `src/main.rs:196` and `:200` is one instance of two copies, of
//! as many blocks as it has tensors.
//!
//! An instance found by content also counts the blocks its copies hold
//! alike without the same bytes: at each copy's line, as many blocks of one
//! size from the same calls (a `HashMap`, laid out by a seed of its own in
//! each copy; a table of strings, each copy pointing to its own). Alone,
//! such blocks are not taken for copies: two documents of one shape parsed
//! into tables of pointers look the same by shape and differ only in what
//! the pointers lead to, which is not compared.
//!
//! What it cannot tell: blocks whose every word is one value (all zeros: a
//! buffer not yet written, or a tensor of zeros) hold nothing to compare,
//! and are reported apart, not as copies; blocks whose fingerprints were
//! not read (under the size, or a snapshot built or loaded without them)
//! are not compared. Two blocks that differ only between the bytes a
//! fingerprint samples (see [`Content`]) are taken for copies.

use std::collections::HashMap;
use std::fmt;

use crate::frame::{Frame, Traceback};
use crate::scope::untraced;
use crate::snapshot::{format_size, Content, Snapshot, Trace, CONTENT_MIN_SIZE};

/// One thing held more than once: where each copy was loaded, and what
/// each copy holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DuplicateInstance {
    callers: Vec<Frame>,
    path: Vec<Frame>,
    sites: Vec<Frame>,
    blocks: usize,
    bytes: usize,
    alike_blocks: usize,
    alike_bytes: usize,
}

impl DuplicateInstance {
    /// Where each copy was loaded: the line of the user's own code at which
    /// the copies' stacks part (see the module's notes), one frame per
    /// copy, in line order (a line that loaded several, in a loop, once per
    /// copy: then the first line of the user's in the stack).
    pub fn callers(&self) -> &[Frame] {
        &self.callers
    }

    /// The call path the copies share at the outer end of their kept
    /// tracebacks, outermost first (empty when the tracebacks, cut at the
    /// limit, share none).
    pub fn path(&self) -> &[Frame] {
        &self.path
    }

    /// The lines that allocated the copies' blocks (frame 0 of their
    /// tracebacks: a library's, for a load through one), distinct, in line
    /// order.
    pub fn allocated_at(&self) -> &[Frame] {
        &self.sites
    }

    /// How many copies are held.
    pub fn copies(&self) -> usize {
        self.callers.len()
    }

    /// Blocks in each copy whose content is the same in every copy.
    pub fn blocks(&self) -> usize {
        self.blocks
    }

    /// Bytes in each copy, in blocks whose content is the same in every
    /// copy.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Blocks in each copy held alike but not with the same bytes: for
    /// each copy's line, as many blocks of one size from the same calls
    /// (hash tables, laid out by a seed of their own; tables of pointers).
    pub fn alike_blocks(&self) -> usize {
        self.alike_blocks
    }

    /// Bytes in those blocks, in each copy.
    pub fn alike_bytes(&self) -> usize {
        self.alike_bytes
    }

    /// What sharing one copy would save: all copies but one, of both kinds
    /// of blocks.
    pub fn saved_bytes(&self) -> usize {
        self.bytes
            .saturating_add(self.alike_bytes)
            .saturating_mul(self.copies().saturating_sub(1))
    }
}

/// The duplicated instances of a snapshot (see
/// [`Snapshot::duplicate_instances`]), biggest saving first, and the blocks
/// whose content could not tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DuplicateInstances {
    instances: Vec<DuplicateInstance>,
    min_size: usize,
    uniform: (usize, usize),
    unread: (usize, usize),
}

impl DuplicateInstances {
    /// The instances, biggest saving first.
    pub fn instances(&self) -> &[DuplicateInstance] {
        &self.instances
    }

    /// What sharing would save over all instances.
    pub fn saved_bytes(&self) -> usize {
        self.instances
            .iter()
            .fold(0usize, |s, i| s.saturating_add(i.saved_bytes()))
    }

    /// The blocks (of the size compared) whose every word read was one
    /// value ([`Content::Uniform`]): `(blocks, bytes)`. Copies or not, the
    /// content cannot say; they are not in any instance.
    pub fn undecidable(&self) -> (usize, usize) {
        self.uniform
    }

    /// The blocks (of the size compared) whose content was not read
    /// ([`Content::Unread`]): `(blocks, bytes)`, not compared.
    pub fn unread(&self) -> (usize, usize) {
        self.unread
    }
}

fn blocks_word(n: usize) -> &'static str {
    if n == 1 {
        "block"
    } else {
        "blocks"
    }
}

impl fmt::Display for DuplicateInstances {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let min = format_size(self.min_size.max(CONTENT_MIN_SIZE) as f64, false);
        if self.instances.is_empty() {
            writeln!(
                f,
                "No duplicated instances: no content is held twice (blocks >= {min}, compared by content)"
            )?;
        } else {
            writeln!(
                f,
                "Duplicated instances: the same content held more than once (blocks >= {min}, compared by content)"
            )?;
        }
        for i in &self.instances {
            writeln!(
                f,
                "  {} copies of {} {}, {} each; sharing one would save {}",
                i.copies(),
                i.blocks,
                blocks_word(i.blocks),
                format_size(i.bytes as f64, false),
                format_size(i.saved_bytes() as f64, false)
            )?;
            if i.alike_blocks > 0 {
                writeln!(
                    f,
                    "    and {} {} of {} each held alike (same sizes from the same calls, bytes that differ: hash tables, pointers)",
                    i.alike_blocks,
                    blocks_word(i.alike_blocks),
                    format_size(i.alike_bytes as f64, false)
                )?;
            }
            for c in &i.callers {
                writeln!(f, "    loaded at {c} ({})", c.function())?;
            }
            let shown = 3;
            for s in i.sites.iter().take(shown) {
                writeln!(f, "    allocated at {s} ({})", s.function())?;
            }
            if i.sites.len() > shown {
                writeln!(f, "    and at {} other lines", i.sites.len() - shown)?;
            }
        }
        if !self.instances.is_empty() {
            writeln!(
                f,
                "Sharing would save {} in all",
                format_size(self.saved_bytes() as f64, false)
            )?;
        }
        let (n, bytes) = self.uniform;
        if n > 0 {
            writeln!(
                f,
                "Undecidable: {n} {} ({}) hold one value repeated (zeros, or a fill): \
                 their content cannot tell copies from buffers not yet written",
                blocks_word(n),
                format_size(bytes as f64, false)
            )?;
        }
        let (n, bytes) = self.unread;
        if n > 0 {
            writeln!(
                f,
                "Not compared: {n} {} ({}) whose content was not read \
                 (a snapshot built or loaded without contents, or blocks freed while it was taken)",
                blocks_word(n),
                format_size(bytes as f64, false)
            )?;
        }
        Ok(())
    }
}

/// The frames that tell where a copy in `t` was loaded, most recent
/// first: the user's frames, or the kept frames where there are none.
fn loader_frames(t: &Traceback) -> &[Frame] {
    if t.user_frames().is_empty() {
        t.frames()
    } else {
        t.user_frames()
    }
}

/// Where each of `traces` (copies of one content) was loaded: past the
/// frames all their stacks begin with (the library's call and the user's
/// helper that every copy went through), the first frame where they part —
/// the lines that called the same helper from two places, on one thread or
/// on two; for copies whose frames are all the same (loaded by one line, in
/// a loop), their first frame.
fn loaders(traces: &[&Trace]) -> Vec<Frame> {
    let lists: Vec<&[Frame]> = traces.iter().map(|t| loader_frames(&t.traceback)).collect();
    let shared = (0..)
        .take_while(|&k| {
            let first = lists[0].get(k);
            first.is_some() && lists.iter().all(|l| l.get(k) == first)
        })
        .count();
    lists
        .iter()
        .map(|l| {
            l.get(shared)
                .or(l.first())
                .cloned()
                .unwrap_or_else(|| Frame::new("<unknown>", 0, "<unknown>"))
        })
        .collect()
}

/// Adds to instance `i` the blocks of `singles` (blocks whose content no
/// other block holds) that its copies hold alike: for each caller of `i`,
/// the same number of blocks of one size from the same frames, the caller
/// aside. Hash tables (laid out by a seed of their own) are such blocks:
/// copies all the same, in bytes that differ. Only instances loaded at
/// distinct lines are extended.
fn add_alike(i: &mut DuplicateInstance, singles: &[&Trace]) {
    let mut callers = i.callers.clone();
    callers.dedup();
    if callers.len() != i.callers.len() {
        return;
    }
    type Key = (usize, Vec<Option<Frame>>, Vec<Option<Frame>>);
    let mut counts: HashMap<Key, HashMap<Frame, usize>> = HashMap::new();
    for t in singles {
        let user = loader_frames(&t.traceback);
        let Some(c) = user.iter().rev().find(|f| callers.contains(f)) else {
            continue;
        };
        let masked = |fs: &[Frame]| -> Vec<Option<Frame>> {
            fs.iter().map(|f| (f != c).then(|| f.clone())).collect()
        };
        let key = (t.size, masked(t.traceback.frames()), masked(user));
        *counts.entry(key).or_default().entry(c.clone()).or_default() += 1;
    }
    for ((size, _, _), per) in counts {
        let mut n = per.values();
        let k = n.next().copied().unwrap_or(0);
        if per.len() == callers.len() && n.all(|&m| m == k) {
            i.alike_blocks += k;
            i.alike_bytes = i.alike_bytes.saturating_add(size.saturating_mul(k));
        }
    }
}

/// The frames of `path` (outermost first) that traceback frames `frames`
/// (innermost first) begin with at their outer end.
fn common_outer(mut path: Vec<Frame>, frames: &[Frame]) -> Vec<Frame> {
    let n = path
        .iter()
        .zip(frames.iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    path.truncate(n);
    path
}

impl Snapshot {
    /// The things this snapshot holds more than once: blocks of at least
    /// `min_size` bytes (and [`CONTENT_MIN_SIZE`], under which contents are
    /// not read) of equal size and content, grouped into instances by where
    /// each copy was loaded (see the module's notes). Many blocks of one
    /// shape with different contents (a model's tensors) are no duplicate;
    /// two loads of one model are one instance of two copies.
    ///
    /// # Examples
    ///
    /// ```
    /// use tracealloc::{Content, Frame, Snapshot, Trace, Traceback};
    ///
    /// // Two tensors of one shape, loaded at lines 10 and 11 of main.
    /// let at = |line: u32| {
    ///     Traceback::new(vec![Frame::new("lib-1.0.0/src/load.rs", 42, "load")])
    ///         .with_user_frames(vec![Frame::new("src/main.rs", line, "main")])
    /// };
    /// let mut traces = Vec::new();
    /// for caller in [10, 11] {
    ///     traces.push(Trace::new(4 << 20, at(caller)).with_content(Content::Hash(10)));
    ///     traces.push(Trace::new(4 << 20, at(caller)).with_content(Content::Hash(20)));
    /// }
    /// let d = Snapshot::new(traces, 1).duplicate_instances(1 << 20);
    /// assert_eq!(d.instances().len(), 1);
    /// assert_eq!(d.instances()[0].copies(), 2);
    /// assert_eq!(d.instances()[0].callers()[0].to_string(), "src/main.rs:10");
    /// assert_eq!(d.saved_bytes(), 8 << 20);
    /// ```
    pub fn duplicate_instances(&self, min_size: usize) -> DuplicateInstances {
        untraced(|| {
            let min = min_size.max(1);
            let mut uniform = (0usize, 0usize);
            let mut unread = (0usize, 0usize);
            // Per (size, fingerprint): the traces holding it.
            let mut classes: HashMap<(usize, u64), Vec<&Trace>> = HashMap::new();
            for t in self.traces().iter().filter(|t| t.size >= min) {
                match t.content() {
                    Content::Hash(h) => classes.entry((t.size, h)).or_default().push(t),
                    Content::Uniform => {
                        uniform.0 += 1;
                        uniform.1 = uniform.1.saturating_add(t.size);
                    }
                    Content::Unread => {
                        unread.0 += 1;
                        unread.1 = unread.1.saturating_add(t.size);
                    }
                }
            }
            // Per set of loaders (one per copy): the contents they copied.
            let mut by_loaders: HashMap<Vec<Frame>, DuplicateInstance> = HashMap::new();
            let mut singles: Vec<&Trace> = Vec::new();
            for ((size, _), traces) in classes {
                if traces.len() < 2 {
                    singles.extend(traces);
                    continue;
                }
                let mut callers = loaders(&traces);
                callers.sort();
                let first: Vec<Frame> =
                    traces[0].traceback.frames().iter().rev().cloned().collect();
                let path = traces[1..]
                    .iter()
                    .fold(first, |p, t| common_outer(p, t.traceback.frames()));
                let i = by_loaders
                    .entry(callers.clone())
                    .or_insert_with(|| DuplicateInstance {
                        callers,
                        path: path.clone(),
                        sites: Vec::new(),
                        blocks: 0,
                        bytes: 0,
                        alike_blocks: 0,
                        alike_bytes: 0,
                    });
                i.blocks += 1;
                i.bytes = i.bytes.saturating_add(size);
                if path.len() < i.path.len() {
                    i.path = path;
                }
                for t in &traces {
                    if let Some(f) = t.traceback.frames().first() {
                        if !i.sites.contains(f) {
                            i.sites.push(f.clone());
                        }
                    }
                }
            }
            let mut instances: Vec<DuplicateInstance> = by_loaders.into_values().collect();
            for i in &mut instances {
                i.sites.sort();
                add_alike(i, &singles);
            }
            instances.sort_by(|a, b| {
                b.saved_bytes()
                    .cmp(&a.saved_bytes())
                    .then_with(|| a.callers.cmp(&b.callers))
            });
            DuplicateInstances {
                instances,
                min_size,
                uniform,
                unread,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::frame::{Frame, Traceback};
    use crate::snapshot::{Content, Snapshot, Trace};

    /// The traceback of a block a library allocated for the user's line
    /// `main.rs:caller` (in `function`), cut at the limit well above it, as
    /// 40-frame loads through candle are at the default limit: the kept
    /// frames are the library's.
    fn deep(line: u32, caller: u32, function: &str) -> Traceback {
        Traceback::new(vec![
            Frame::new("candle-core-0.11.1/src/dtype.rs", 167, "to_cpu_storage"),
            Frame::new("candle-nn-0.11.1/src/var_builder.rs", line, "get"),
            Frame::new("candle-transformers-0.11.1/src/models/bert.rs", 222, "load"),
        ])
        .with_total_nframe(40)
        .with_user_frames(vec![
            Frame::new("src/load.rs", 30, "load"),
            Frame::new("src/main.rs", caller, function),
            Frame::new("src/main.rs", 7, "main"),
        ])
    }

    /// A model like a transformer's: 24 layers of query, key and value
    /// weights of one shape (sibling calls, different contents), a
    /// LayerNorm weight and bias of one shape, and an embedding; loaded by
    /// `main` at `caller`. Tensor `k`'s content is the same in every load.
    fn model(caller: u32, function: &str) -> Vec<Trace> {
        let mut t = Vec::new();
        let mut k = 0u64;
        let mut push = |size: usize, line: u32| {
            k += 1;
            t.push(
                Trace::new(size, deep(line, caller, function)).with_content(Content::Hash(k << 8)),
            );
        };
        for _ in 0..24 {
            for line in [222, 223, 224] {
                push(4 << 20, line);
            }
            push(4096, 163);
            push(4096, 170);
        }
        push(80 << 20, 300);
        t
    }

    const MODEL: usize = 24 * (3 * (4 << 20) + 2 * 4096) + (80 << 20);
    const TENSORS: usize = 24 * 5 + 1;

    #[test]
    fn one_model_of_equal_shapes_is_no_duplicate() {
        let d = Snapshot::new(model(100, "main"), 3).duplicate_instances(4096);
        assert!(d.instances().is_empty(), "{d}");
        assert_eq!(d.saved_bytes(), 0);
        assert!(d.to_string().starts_with("No duplicated instances"), "{d}");
    }

    #[test]
    fn two_loads_are_one_instance_named_at_the_users_lines() {
        let mut traces = model(196, "main");
        traces.extend(model(200, "main"));
        let d = Snapshot::new(traces, 3).duplicate_instances(4096);
        assert_eq!(d.instances().len(), 1, "{d}");
        let i = &d.instances()[0];
        assert_eq!((i.copies(), i.blocks(), i.bytes()), (2, TENSORS, MODEL));
        assert_eq!(d.saved_bytes(), MODEL);
        let lines: Vec<String> = i.callers().iter().map(Frame::to_string).collect();
        assert_eq!(lines, ["src/main.rs:196", "src/main.rs:200"]);
        assert_eq!(
            i.allocated_at()[0].to_string(),
            "candle-core-0.11.1/src/dtype.rs:167"
        );
        let text = d.to_string();
        assert!(text.contains("loaded at src/main.rs:196 (main)"), "{text}");
        assert!(text.contains("loaded at src/main.rs:200 (main)"), "{text}");
        assert!(
            text.contains("allocated at candle-core-0.11.1/src/dtype.rs:167"),
            "{text}"
        );
    }

    #[test]
    fn three_loads_are_two_redundant_copies() {
        let mut traces = model(100, "main");
        traces.extend(model(101, "main"));
        traces.extend(model(102, "main"));
        let d = Snapshot::new(traces, 3).duplicate_instances(4096);
        assert_eq!(d.instances().len(), 1, "{d}");
        assert_eq!(d.instances()[0].copies(), 3);
        assert_eq!(d.saved_bytes(), 2 * MODEL);
    }

    /// Loads inside closures, as timing code is written: each copy's user
    /// line is in a closure of its own, on its caller's line.
    #[test]
    fn copies_loaded_in_distinct_closures_are_found() {
        let mut traces = model(196, "main::{{closure}}");
        traces.extend(model(197, "main::{{closure}}"));
        let d = Snapshot::new(traces, 3).duplicate_instances(4096);
        assert_eq!(d.instances().len(), 1, "{d}");
        let i = &d.instances()[0];
        assert_eq!((i.copies(), i.bytes()), (2, MODEL));
        assert!(
            d.to_string()
                .contains("loaded at src/main.rs:197 (main::{{closure}})"),
            "{d}"
        );
    }

    /// Copies loaded by one line, in a loop, beside one loaded alone.
    #[test]
    fn copies_from_one_line_count_once_each() {
        let mut traces = model(100, "main");
        traces.extend(model(102, "main"));
        traces.extend(model(102, "main"));
        let d = Snapshot::new(traces, 3).duplicate_instances(4096);
        assert_eq!(d.instances().len(), 1, "{d}");
        let lines: Vec<u32> = d.instances()[0]
            .callers()
            .iter()
            .map(Frame::lineno)
            .collect();
        assert_eq!(lines, [100, 102, 102]);
        assert_eq!(d.saved_bytes(), 2 * MODEL);
    }

    /// Tracebacks cut at one frame, the same line for every block: many
    /// blocks under one key look like siblings by shape, but their
    /// contents differ (two towers of one shape, an encoder and a decoder).
    #[test]
    fn a_traceback_cut_short_makes_no_fake_siblings() {
        let cut = Traceback::new(vec![Frame::new(
            "candle-core-0.11.1/src/dtype.rs",
            167,
            "f",
        )])
        .with_total_nframe(40);
        let mut traces = Vec::new();
        for tower in 0..2u64 {
            for k in 0..48 {
                traces.push(
                    Trace::new(4 << 20, cut.clone())
                        .with_content(Content::Hash(100 + tower * 1000 + k)),
                );
            }
        }
        let d = Snapshot::new(traces, 1).duplicate_instances(4096);
        assert!(d.instances().is_empty(), "{d}");
    }

    #[test]
    fn zero_filled_blocks_are_undecidable_not_copies() {
        let tb = |caller| deep(222, caller, "main");
        let mut traces: Vec<Trace> = (0..4)
            .map(|i| Trace::new(1 << 20, tb(100 + i % 2)).with_content(Content::Uniform))
            .collect();
        traces.push(Trace::new(1 << 20, tb(100)));
        let d = Snapshot::new(traces, 3).duplicate_instances(4096);
        assert!(d.instances().is_empty(), "{d}");
        assert_eq!(d.undecidable(), (4, 4 << 20));
        assert_eq!(d.unread(), (1, 1 << 20));
        let text = d.to_string();
        assert!(
            text.contains("Undecidable: 4 blocks (4096 KiB) hold one value repeated"),
            "{text}"
        );
        assert!(text.contains("Not compared: 1 block (1024 KiB)"), "{text}");
    }

    /// A hash table in each copy, laid out by its own seed: no two equal
    /// bytes, but one block of one size from the same calls at each copy's
    /// line. Counted with the instance, apart; a table at one line only is
    /// not.
    #[test]
    fn blocks_held_alike_join_an_instance_found_by_content() {
        let table = |caller: u32, seed: u64| {
            Trace::new(64 << 10, deep(400, caller, "main")).with_content(Content::Hash(seed))
        };
        let mut traces = model(196, "main");
        traces.extend(model(200, "main"));
        traces.push(table(196, 7_000_001));
        traces.push(table(200, 7_000_002));
        traces.push(
            Trace::new(32 << 10, deep(401, 200, "main")).with_content(Content::Hash(7_000_003)),
        );
        let d = Snapshot::new(traces, 3).duplicate_instances(4096);
        assert_eq!(d.instances().len(), 1, "{d}");
        let i = &d.instances()[0];
        assert_eq!((i.blocks(), i.bytes()), (TENSORS, MODEL));
        assert_eq!((i.alike_blocks(), i.alike_bytes()), (1, 64 << 10));
        assert_eq!(d.saved_bytes(), MODEL + (64 << 10));
        assert!(
            d.to_string()
                .contains("and 1 block of 64.0 KiB each held alike"),
            "{d}"
        );
        // Without an instance found by content, shapes alone find nothing.
        let alone = Snapshot::new(vec![table(196, 1_000), table(200, 2_000)], 3);
        assert!(alone.duplicate_instances(4096).instances().is_empty());
    }

    #[test]
    fn blocks_under_the_minimum_are_left_out() {
        let mut traces = model(100, "main");
        traces.extend(model(101, "main"));
        let d = Snapshot::new(traces, 3).duplicate_instances(1 << 20);
        assert_eq!(d.instances()[0].blocks(), 24 * 3 + 1);
        assert_eq!(d.saved_bytes(), MODEL - 24 * 2 * 4096);
    }

    /// A block whose stack has no user frame is named at its allocating
    /// line.
    #[test]
    fn without_a_user_frame_the_allocating_line_names_the_copy() {
        let at = |line| Traceback::new(vec![Frame::new("dep-1.0.0/src/lib.rs", line, "f")]);
        let traces = vec![
            Trace::new(8192, at(1)).with_content(Content::Hash(7)),
            Trace::new(8192, at(2)).with_content(Content::Hash(7)),
        ];
        let d = Snapshot::new(traces, 1).duplicate_instances(4096);
        let lines: Vec<String> = d.instances()[0]
            .callers()
            .iter()
            .map(Frame::to_string)
            .collect();
        assert_eq!(lines, ["dep-1.0.0/src/lib.rs:1", "dep-1.0.0/src/lib.rs:2"]);
    }
}
