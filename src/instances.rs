//! Duplicated instances: the same thing loaded more than once, told from
//! many things of one size.
//!
//! The live blocks form a tree of call paths, from the outermost frame of
//! each traceback in to the line that allocated. Two sibling subtrees (two
//! calls from one function, at different lines) that hold the same blocks
//! (the same call paths below them, to the same lines, with the same
//! multiset of sizes) are two instances of one thing: all but one of them
//! could be shared. Twelve tensors of one shape decoded by one line are
//! twelve blocks in one subtree, and are not duplicates; nor are the equal
//! rows of a `Vec<Vec<u8>>` built by one line.
//!
//! Copies loaded by one line (a loop) hold each block a whole number of
//! times: a call whose blocks are all `k` times a sibling's holds `k`
//! copies. What this cannot see: copies that all come from one line, with
//! no sibling to compare with (twelve copies of one tensor, or one model of
//! twelve equal tensors?); and the caller of a load deeper than the
//! tracebacks' limit, whose copies then look like one subtree. Content is
//! not compared: two parts of one model loaded by two calls of one function
//! with the same shapes (an encoder and a decoder) look like two copies.

use std::collections::HashMap;
use std::fmt;

use crate::frame::Frame;
use crate::scope::untraced;
use crate::snapshot::format_size;
use crate::snapshot::Snapshot;

/// One thing held more than once: the calls that loaded each copy, and
/// what each copy holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DuplicateInstance {
    callers: Vec<Frame>,
    path: Vec<Frame>,
    blocks: usize,
    bytes: usize,
}

impl DuplicateInstance {
    /// The line that loaded each copy (one frame per copy, in line order: a
    /// line that loaded several, in a loop, once per copy).
    pub fn callers(&self) -> &[Frame] {
        &self.callers
    }

    /// The call path the copies share above those lines, outermost first,
    /// as far as the tracebacks go (empty when they begin at the callers).
    pub fn path(&self) -> &[Frame] {
        &self.path
    }

    /// How many copies are held.
    pub fn copies(&self) -> usize {
        self.callers.len()
    }

    /// Blocks in each copy.
    pub fn blocks(&self) -> usize {
        self.blocks
    }

    /// Bytes in each copy.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// What sharing one copy would save: all copies but one.
    pub fn saved_bytes(&self) -> usize {
        self.bytes.saturating_mul(self.copies().saturating_sub(1))
    }
}

/// The duplicated instances of a snapshot (see
/// [`Snapshot::duplicate_instances`]), biggest saving first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DuplicateInstances {
    instances: Vec<DuplicateInstance>,
    min_size: usize,
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
}

impl fmt::Display for DuplicateInstances {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let min = format_size(self.min_size as f64, false);
        if self.instances.is_empty() {
            return writeln!(
                f,
                "No duplicated instances: no two calls hold the same blocks (blocks >= {min})"
            );
        }
        writeln!(
            f,
            "Duplicated instances: calls that hold the same blocks (blocks >= {min})"
        )?;
        for i in &self.instances {
            writeln!(
                f,
                "  {} copies of {} {}, {} each; sharing one would save {}",
                i.copies(),
                i.blocks,
                if i.blocks == 1 { "block" } else { "blocks" },
                format_size(i.bytes as f64, false),
                format_size(i.saved_bytes() as f64, false)
            )?;
            for c in &i.callers {
                writeln!(f, "    loaded at {c} ({})", c.function())?;
            }
            if let Some(p) = i.path.last() {
                writeln!(f, "    in {p} ({})", p.function())?;
            }
        }
        writeln!(
            f,
            "Sharing would save {} in all",
            format_size(self.saved_bytes() as f64, false)
        )
    }
}

/// The tree of call paths: a node per frame, outermost first.
#[derive(Default)]
struct Node {
    /// The frame it stands for (`None` at the root).
    frame: Option<Frame>,
    children: HashMap<Frame, usize>,
    /// Sizes of the blocks whose traceback ends here (allocated here).
    sizes: Vec<usize>,
}

impl Snapshot {
    /// The things this snapshot holds more than once: sibling calls (one
    /// function calling, at two or more lines) under which the same blocks
    /// live, by call path below them and size. Only blocks of at least
    /// `min_size` bytes count. See the module's notes for what it cannot
    /// see.
    ///
    /// # Examples
    ///
    /// ```
    /// use tracealloc::{Frame, Snapshot, Trace, Traceback};
    ///
    /// // One model of two equal tensors and a bias, loaded at lines 10 and 11.
    /// let at = |caller: u32, line: u32| {
    ///     Traceback::new(vec![Frame::new("src/model.rs", line, "load"), Frame::new("src/main.rs", caller, "main")])
    /// };
    /// let mut traces = Vec::new();
    /// for caller in [10, 11] {
    ///     traces.push(Trace::new(4 << 20, at(caller, 42)));
    ///     traces.push(Trace::new(4 << 20, at(caller, 42)));
    ///     traces.push(Trace::new(1 << 20, at(caller, 43)));
    /// }
    /// let d = Snapshot::new(traces, 2).duplicate_instances(1 << 20);
    /// assert_eq!(d.instances().len(), 1);
    /// assert_eq!(d.instances()[0].copies(), 2);
    /// assert_eq!(d.saved_bytes(), 9 << 20);
    /// ```
    pub fn duplicate_instances(&self, min_size: usize) -> DuplicateInstances {
        untraced(|| {
            let mut nodes = vec![Node::default()];
            for t in self.traces().iter().filter(|t| t.size >= min_size.max(1)) {
                let mut at = 0;
                for f in t.traceback.frames().iter().rev() {
                    at = match nodes[at].children.get(f) {
                        Some(&c) => c,
                        None => {
                            nodes.push(Node {
                                frame: Some(f.clone()),
                                ..Node::default()
                            });
                            let c = nodes.len() - 1;
                            nodes[at].children.insert(f.clone(), c);
                            c
                        }
                    };
                }
                nodes[at].sizes.push(t.size);
            }
            let mut found = Vec::new();
            let mut path = Vec::new();
            find(&nodes, 0, &mut path, &mut found);
            // Tracebacks cut at the limit begin at different depths, so the
            // blocks of one copy can sit in several subtrees that begin
            // differently: copies made by the same calls are one instance.
            let mut instances: Vec<DuplicateInstance> = Vec::new();
            for i in found {
                match instances.iter_mut().find(|j| j.callers == i.callers) {
                    Some(j) => {
                        j.blocks += i.blocks;
                        j.bytes = j.bytes.saturating_add(i.bytes);
                        if i.path.len() > j.path.len() {
                            j.path = i.path;
                        }
                    }
                    None => instances.push(i),
                }
            }
            instances.sort_by(|a: &DuplicateInstance, b| {
                b.saved_bytes()
                    .cmp(&a.saved_bytes())
                    .then_with(|| a.callers.cmp(&b.callers))
            });
            DuplicateInstances {
                instances,
                min_size,
            }
        })
    }
}

/// What a subtree holds: per call path below its root and block size, how
/// many blocks; sorted.
type Held = Vec<(Vec<Frame>, usize, usize)>;

/// The blocks under node `n`, by path below it (see [`Held`]).
fn held(nodes: &[Node], n: usize) -> Held {
    fn walk(
        nodes: &[Node],
        n: usize,
        path: &mut Vec<Frame>,
        out: &mut HashMap<(Vec<Frame>, usize), usize>,
    ) {
        for &size in &nodes[n].sizes {
            *out.entry((path.clone(), size)).or_default() += 1;
        }
        for &c in nodes[n].children.values() {
            if let Some(f) = &nodes[c].frame {
                path.push(f.clone());
            }
            walk(nodes, c, path, out);
            path.pop();
        }
    }
    let mut counts = HashMap::new();
    walk(nodes, n, &mut Vec::new(), &mut counts);
    let mut held: Held = counts.into_iter().map(|((p, s), k)| (p, s, k)).collect();
    held.sort();
    held
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Looks under node `n` (reached by `path`) for sibling calls that hold the
/// same thing: the same blocks by path and size, or a whole multiple of
/// them (a call that loaded `k` copies itself, in a loop, holds every block
/// `k` times). A call alone whose blocks are all repeated is not taken for
/// copies: twelve equal tensors of one model look the same.
fn find(nodes: &[Node], n: usize, path: &mut Vec<Frame>, out: &mut Vec<DuplicateInstance>) {
    // Per reduced content: the calls holding it, and how many times each.
    let mut by_content: HashMap<Held, Vec<(usize, usize)>> = HashMap::new();
    for &c in nodes[n].children.values() {
        let mut h = held(nodes, c);
        let k = h.iter().fold(0, |g, e| gcd(g, e.2)).max(1);
        for e in &mut h {
            e.2 /= k;
        }
        by_content.entry(h).or_default().push((c, k));
    }
    for (content, mut calls) in by_content {
        if calls.len() >= 2 {
            calls.sort_by(|a, b| nodes[a.0].frame.cmp(&nodes[b.0].frame));
            // One copy is what the calls have in common: the reduced content
            // times the greatest common multiple of theirs (a model whose
            // tensors all come in even numbers is not two copies of a half).
            let unit = calls.iter().fold(0, |g, c| gcd(g, c.1)).max(1);
            let blocks = content.iter().map(|e| e.2 * unit).sum();
            let bytes = content.iter().fold(0usize, |s, e| {
                s.saturating_add(e.1.saturating_mul(e.2).saturating_mul(unit))
            });
            out.push(DuplicateInstance {
                callers: calls
                    .iter()
                    .flat_map(|&(c, k)| std::iter::repeat_n(nodes[c].frame.clone(), k / unit))
                    .flatten()
                    .collect(),
                path: path.clone(),
                blocks,
                bytes,
            });
        } else {
            let c = calls[0].0;
            if let Some(f) = &nodes[c].frame {
                path.push(f.clone());
            }
            find(nodes, c, path, out);
            path.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::frame::{Frame, Traceback};
    use crate::snapshot::{Snapshot, Trace};

    /// A model like a small transformer's: many tensors of a few shapes,
    /// decoded by one line, and a vocabulary; loaded by `main` at `caller`.
    fn model(caller: u32) -> Vec<Trace> {
        let tb = |line: u32| {
            Traceback::new(vec![
                Frame::new("src/model.rs", line, "decode"),
                Frame::new("src/model.rs", 20, "load"),
                Frame::new("src/main.rs", caller, "main"),
            ])
        };
        let mut t = Vec::new();
        for _ in 0..12 {
            t.push(Trace::new(16 << 20, tb(50)));
        }
        for _ in 0..24 {
            t.push(Trace::new(4 << 20, tb(50)));
        }
        t.push(Trace::new(3 << 20, tb(61)));
        t
    }

    const MODEL: usize = 12 * (16 << 20) + 24 * (4 << 20) + (3 << 20);

    #[test]
    fn one_model_of_equal_tensors_is_no_duplicate() {
        let d = Snapshot::new(model(100), 3).duplicate_instances(1 << 20);
        assert!(d.instances().is_empty(), "{d}");
        assert_eq!(d.saved_bytes(), 0);
    }

    #[test]
    fn two_loads_are_one_duplicate_of_one_model() {
        let mut traces = model(100);
        traces.extend(model(101));
        let d = Snapshot::new(traces, 3).duplicate_instances(1 << 20);
        assert_eq!(d.instances().len(), 1, "{d}");
        let i = &d.instances()[0];
        assert_eq!((i.copies(), i.blocks(), i.bytes()), (2, 37, MODEL));
        assert_eq!(d.saved_bytes(), MODEL);
        let lines: Vec<u32> = i.callers().iter().map(Frame::lineno).collect();
        assert_eq!(lines, [100, 101]);
        let text = d.to_string();
        assert!(text.contains("loaded at src/main.rs:100 (main)"), "{text}");
        assert!(text.contains("loaded at src/main.rs:101 (main)"), "{text}");
    }

    #[test]
    fn three_loads_are_two_redundant_copies() {
        let mut traces = model(100);
        traces.extend(model(101));
        traces.extend(model(102));
        let d = Snapshot::new(traces, 3).duplicate_instances(1 << 20);
        assert_eq!(d.instances().len(), 1, "{d}");
        assert_eq!(d.instances()[0].copies(), 3);
        assert_eq!(d.saved_bytes(), 2 * MODEL);
    }

    /// Copies loaded by one line, in a loop, beside one loaded alone.
    #[test]
    fn copies_from_one_line_are_counted_against_a_sibling() {
        let mut traces = model(100);
        traces.extend(model(102));
        traces.extend(model(102));
        let d = Snapshot::new(traces, 3).duplicate_instances(1 << 20);
        assert_eq!(d.instances().len(), 1, "{d}");
        let i = &d.instances()[0];
        let lines: Vec<u32> = i.callers().iter().map(Frame::lineno).collect();
        assert_eq!(lines, [100, 102, 102]);
        assert_eq!((i.blocks(), i.bytes()), (37, MODEL));
        assert_eq!(d.saved_bytes(), 2 * MODEL);
    }

    /// A model whose tensors all come in even numbers, loaded twice: two
    /// copies, not four halves.
    #[test]
    fn a_model_of_even_counts_loaded_twice() {
        let mut traces = model(100);
        traces.pop();
        let mut second = model(101);
        second.pop();
        traces.extend(second);
        let d = Snapshot::new(traces, 3).duplicate_instances(1 << 20);
        assert_eq!(d.instances().len(), 1, "{d}");
        assert_eq!(d.instances()[0].copies(), 2);
        assert_eq!(d.saved_bytes(), MODEL - (3 << 20));
    }

    #[test]
    fn equal_rows_built_by_one_line_are_no_duplicate() {
        let tb = Traceback::new(vec![
            Frame::new("src/grid.rs", 7, "rows"),
            Frame::new("src/main.rs", 3, "main"),
        ]);
        let traces = (0..100).map(|_| Trace::new(1 << 20, tb.clone())).collect();
        let d = Snapshot::new(traces, 2).duplicate_instances(1 << 10);
        assert!(d.instances().is_empty(), "{d}");
    }

    #[test]
    fn different_contents_under_two_calls_are_no_duplicate() {
        let mut traces = model(100);
        let mut other = model(101);
        other.pop(); // no vocabulary in the second
        traces.extend(other);
        let d = Snapshot::new(traces, 3).duplicate_instances(1 << 20);
        assert!(d.instances().is_empty(), "{d}");
    }
}
