//! Python's `fnmatch.fnmatchcase`, for [`Filter`](crate::Filter) patterns.

/// Python's `fnmatch.fnmatchcase`: `*` any run (slashes included), `?` one
/// character, `[seq]` / `[!seq]` a set with ranges; a `[` without its `]` is
/// literal.
pub(crate) fn fnmatch(pattern: &str, name: &str) -> bool {
    if pattern.is_ascii() && name.is_ascii() {
        // The usual case, without collecting characters.
        fnmatch_units(pattern.as_bytes(), name.as_bytes())
    } else {
        let p: Vec<char> = pattern.chars().collect();
        let n: Vec<char> = name.chars().collect();
        fnmatch_units(&p, &n)
    }
}

/// A pattern or name unit: an ASCII byte or a `char`.
trait Unit: Copy + PartialOrd {
    fn is(self, c: char) -> bool;
}

impl Unit for u8 {
    fn is(self, c: char) -> bool {
        self as char == c
    }
}

impl Unit for char {
    fn is(self, c: char) -> bool {
        self == c
    }
}

fn fnmatch_units<U: Unit>(p: &[U], n: &[U]) -> bool {
    // Iterative matching with one backtrack point for the last `*`.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        let step = match p.get(pi) {
            Some(c) if c.is('*') => {
                star = Some((pi, ni));
                pi += 1;
                continue;
            }
            Some(c) if c.is('?') => Some(pi + 1),
            Some(c) if c.is('[') => match class(p, pi, n[ni]) {
                Some((true, end)) => Some(end),
                Some((false, _)) => None,
                None => n[ni].is('[').then_some(pi + 1),
            },
            Some(&c) => (c == n[ni]).then_some(pi + 1),
            None => None,
        };
        match step {
            Some(next) => {
                pi = next;
                ni += 1;
            }
            None => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| c.is('*'))
}

/// Matches `c` against the set starting at `p[start] == '['`: `Some((matched,
/// index after the closing bracket))`, or `None` if the set is not closed.
fn class<U: Unit>(p: &[U], start: usize, c: U) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = p.get(i).is_some_and(|u| u.is('!'));
    if negate {
        i += 1;
    }
    let first = i;
    let mut matched = false;
    while i < p.len() && (!p[i].is(']') || i == first) {
        if i + 2 < p.len() && p[i + 1].is('-') && !p[i + 2].is(']') {
            matched |= p[i] <= c && c <= p[i + 2];
            i += 3;
        } else {
            matched |= p[i] == c;
            i += 1;
        }
    }
    (i < p.len()).then_some((matched != negate, i + 1))
}
