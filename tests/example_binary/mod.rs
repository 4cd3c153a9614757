//! Finds an example binary cargo built beside the running test, for the
//! tests that run the examples as a user would.

use std::path::PathBuf;

/// The example `name` cargo built beside this test:
/// `target/<profile>/deps/<test>-<hash>` → `target/<profile>/examples/<name>`.
/// Panics, saying how to build it, when it is missing; `features` is the
/// `--features …` its build needs, if any.
pub fn example_binary(name: &str, features: Option<&str>) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>");
    let bin = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let features = features.map_or(String::new(), |f| format!(" --features {f}"));
    assert!(
        bin.is_file(),
        "{} is missing: build the example first with \
         `cargo build{features} --example {name}` (`cargo test{features}` builds it too)",
        bin.display()
    );
    bin
}
