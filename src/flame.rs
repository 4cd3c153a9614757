//! SVG flame graphs of a Profile, drawn through inferno (feature flamegraph).
