//! One Quick start: the README's and the crate documentation's (the `//!`
//! comment at the top of src/lib.rs) must be the same Cargo.toml lines and
//! the same program. Both are compiled and run as doc tests (the README's
//! through `ReadmeDoctests` in src/lib.rs); this test keeps them from
//! drifting apart.

use std::path::Path;

/// The fenced code blocks (language tag, lines) under the heading `heading`
/// of a Markdown text, up to the next heading of the same level.
fn blocks_under(markdown: &str, heading: &str) -> Vec<(String, Vec<String>)> {
    let level = heading.split(' ').next().unwrap();
    let mut lines = markdown.lines().skip_while(|l| l.trim_end() != heading);
    assert!(
        lines.next().is_some(),
        "tracealloc: no `{heading}` heading found"
    );
    let mut blocks = Vec::new();
    let mut current: Option<(String, Vec<String>)> = None;
    for line in lines {
        match current.as_mut() {
            None if line.starts_with("```") => {
                current = Some((line[3..].trim().to_string(), Vec::new()));
            }
            None if line.split(' ').next() == Some(level) => break,
            None => {}
            Some(_) if line.starts_with("```") => blocks.push(current.take().unwrap()),
            // Placeholders kept as HTML comments are not part of the code.
            Some(_) if line.trim_start().starts_with("<!--") => {}
            Some((_, body)) => body.push(line.to_string()),
        }
    }
    assert!(
        current.is_none(),
        "tracealloc: unclosed code block under `{heading}`"
    );
    blocks
}

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("tracealloc: {}: {e}", full.display()))
}

#[test]
fn readme_and_crate_docs_have_the_same_quick_start() {
    let readme = blocks_under(&read("README.md"), "## Quick start");
    // The crate docs, as rustdoc reads them: the `//!` lines, less the marker
    // and the one space after it.
    let lib: String = read("src/lib.rs")
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let docs = blocks_under(&lib, "# Quick start");

    let tags = |b: &[(String, Vec<String>)]| b.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>();
    assert_eq!(
        tags(&readme),
        ["toml", "rust"],
        "README.md's Quick start blocks"
    );
    assert_eq!(
        tags(&docs),
        ["toml", "rust"],
        "src/lib.rs's Quick start blocks"
    );
    for ((tag, a), (_, b)) in readme.iter().zip(&docs) {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert_eq!(
                x,
                y,
                "the Quick start's {tag} block differs at its line {} between README.md (left) and src/lib.rs (right)",
                i + 1
            );
        }
        assert_eq!(
            a.len(),
            b.len(),
            "the Quick start's {tag} block has {} lines in README.md, {} in src/lib.rs",
            a.len(),
            b.len()
        );
    }
}
