//! The continuous-profiling example, as a scraper sees it: runs
//! `examples/pprof_server.rs` on a free port of 127.0.0.1, fetches
//! `/debug/pprof/heap` and `/debug/pprof/allocs` over plain HTTP/1.0, and
//! decodes the bodies (gunzip, then prost with this file's own copy of the
//! `profile.proto` messages it reads).
//!
//! The example binary must be built: `cargo test --features pprof` builds
//! it, or `cargo build --features pprof --example pprof_server` before
//! `cargo test --features pprof --test pprof_server`.
#![cfg(feature = "pprof")]

mod example_binary;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use prost::Message;

/// The parts of pprof's `perftools.profiles` messages this test reads
/// (prost skips the other fields).
mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Profile {
        #[prost(message, repeated, tag = "1")]
        pub sample_type: Vec<ValueType>,
        #[prost(message, repeated, tag = "2")]
        pub sample: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub mapping: Vec<Mapping>,
        #[prost(message, repeated, tag = "4")]
        pub location: Vec<Location>,
        #[prost(message, repeated, tag = "5")]
        pub function: Vec<Function>,
        #[prost(string, repeated, tag = "6")]
        pub string_table: Vec<String>,
        #[prost(int64, tag = "12")]
        pub period: i64,
        #[prost(int64, tag = "14")]
        pub default_sample_type: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueType {
        #[prost(int64, tag = "1")]
        pub r#type: i64,
        #[prost(int64, tag = "2")]
        pub unit: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(uint64, repeated, tag = "1")]
        pub location_id: Vec<u64>,
        #[prost(int64, repeated, tag = "2")]
        pub value: Vec<i64>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Mapping {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(int64, tag = "5")]
        pub filename: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Location {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub mapping_id: u64,
        #[prost(message, repeated, tag = "4")]
        pub line: Vec<Line>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Line {
        #[prost(uint64, tag = "1")]
        pub function_id: u64,
        #[prost(int64, tag = "2")]
        pub line: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Function {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(int64, tag = "2")]
        pub name: i64,
        #[prost(int64, tag = "4")]
        pub filename: i64,
    }
}

/// This test's example, built (see `example_binary/mod.rs`).
fn example_binary() -> PathBuf {
    example_binary::example_binary("pprof_server", Some("pprof"))
}

/// The running example, killed when the test ends (passing or not).
struct Server {
    child: Child,
    /// `127.0.0.1:PORT`.
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server() -> Server {
    let mut child = Command::new(example_binary())
        .arg("0")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the example starts");
    let stdout = child.stdout.take().unwrap();
    // The first line, within a minute (a thread: a pipe read cannot time out).
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let mut server = Server {
        child,
        addr: String::new(),
    };
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the example prints where it listens within a minute");
    let addr = line
        .trim_end()
        .strip_prefix("listening on http://")
        .and_then(|rest| rest.strip_suffix("/debug/pprof/heap"))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    server.addr = addr.to_string();
    server
}

/// `GET path` over HTTP/1.0: the status code, the headers (lowercase
/// names) and the body.
fn get(addr: &str, path: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = Vec::new();
    s.read_to_end(&mut response).expect("reads the response");
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8(response[..end].to_vec()).expect("ASCII headers");
    let body = response[end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap();
    let code = status
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("status line {status:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (code, headers, body)
}

fn fetch_profile(addr: &str, path: &str) -> proto::Profile {
    let (code, headers, body) = get(addr, path);
    assert_eq!(code, 200, "GET {path}");
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "content-type" && v == "application/octet-stream"),
        "{headers:?}"
    );
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(body.as_slice())
        .read_to_end(&mut raw)
        .expect("a gzip body");
    proto::Profile::decode(raw.as_slice()).expect("a perftools.profiles.Profile")
}

/// Per function name (at any depth of the stack, counted once per
/// sample): the summed values of the samples through it.
fn by_function(p: &proto::Profile) -> Vec<(String, [i64; 4])> {
    let text = |i: i64| p.string_table[i as usize].clone();
    let mut out: Vec<(String, [i64; 4])> = Vec::new();
    for s in &p.sample {
        let mut names: Vec<String> = Vec::new();
        for id in &s.location_id {
            let l = p
                .location
                .iter()
                .find(|l| l.id == *id)
                .unwrap_or_else(|| panic!("location {id} is missing"));
            assert!(
                p.mapping.iter().any(|m| m.id == l.mapping_id),
                "mapping {}",
                l.mapping_id
            );
            for line in &l.line {
                let f = p
                    .function
                    .iter()
                    .find(|f| f.id == line.function_id)
                    .unwrap_or_else(|| panic!("function {} is missing", line.function_id));
                names.push(text(f.name));
            }
        }
        names.sort();
        names.dedup();
        for name in names {
            let i = match out.iter().position(|(n, _)| *n == name) {
                Some(i) => i,
                None => {
                    out.push((name, [0; 4]));
                    out.len() - 1
                }
            };
            for (sum, v) in out[i].1.iter_mut().zip(&s.value) {
                *sum += v;
            }
        }
    }
    out
}

fn figures_of(p: &proto::Profile, suffix: &str) -> Option<[i64; 4]> {
    by_function(p)
        .into_iter()
        .find(|(name, _)| name.ends_with(suffix))
        .map(|(_, v)| v)
}

#[test]
fn serves_the_heap_as_pprof() {
    let server = start_server();

    let heap = fetch_profile(&server.addr, "/debug/pprof/heap");
    let text = |i: i64| heap.string_table[i as usize].as_str();
    let types: Vec<&str> = heap.sample_type.iter().map(|t| text(t.r#type)).collect();
    assert_eq!(
        types,
        [
            "alloc_objects",
            "alloc_space",
            "inuse_objects",
            "inuse_space"
        ]
    );
    assert_eq!(text(heap.default_sample_type), "inuse_space");
    assert_eq!(heap.period, 512 * 1024, "the example samples");
    assert!(!heap.sample.is_empty());
    // The cache: 64 blocks of 256 KiB live (16 MiB), sampled with
    // probability 1 - e^-0.5 each and weighted back; below 8 MiB would
    // take 13 or fewer of 64 sampled (over 3 standard deviations off).
    let cache = figures_of(&heap, "fill_cache").unwrap_or_else(|| {
        panic!(
            "no sample through fill_cache: {:?}",
            by_function(&heap)
                .iter()
                .map(|(n, _)| n)
                .collect::<Vec<_>>()
        )
    });
    assert!(
        (8 << 20..=48 << 20).contains(&cache[3]),
        "fill_cache in use: {cache:?}"
    );
    assert_eq!(
        (cache[0], cache[1]),
        (cache[2], cache[3]),
        "a snapshot: allocated = in use"
    );
    assert!(
        figures_of(&heap, "workload").is_some(),
        "the caller is in the stack"
    );

    // The whole run: the churn, allocated and freed at once, shows in
    // alloc_space (wait for the workload's first rounds).
    let deadline = Instant::now() + Duration::from_secs(30);
    let churn = loop {
        let allocs = fetch_profile(&server.addr, "/debug/pprof/allocs");
        match figures_of(&allocs, "churn") {
            Some(c) if c[1] >= 16 << 20 => break c,
            other => assert!(
                Instant::now() < deadline,
                "churn did not reach 16 MiB allocated in 30 s: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // At most one 1 MiB scratch block of the churn is live at a time.
    assert!(churn[3] <= 4 << 20, "churn in use: {churn:?}");

    let (code, _, _) = get(&server.addr, "/debug/pprof/nothing");
    assert_eq!(code, 404);
}

/// `go tool pprof`, the reference reader, reads what the server sends
/// and shows the example's sites. Needs Go (Debian: `golang-go`).
#[test]
#[ignore = "needs go: cargo test --features pprof --test pprof_server -- --ignored"]
fn go_tool_pprof_reads_it() {
    let server = start_server();
    let dir = std::env::temp_dir().join(format!("tracealloc-pprof-go-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pprof_top = |path: &str, index: &str| {
        let (code, _, body) = get(&server.addr, path);
        assert_eq!(code, 200);
        let file = dir.join(index);
        std::fs::write(&file, body).unwrap();
        let out = Command::new("go")
            .args(["tool", "pprof", "-top", "-sample_index", index])
            .arg(&file)
            .env("PPROF_TMPDIR", &dir)
            .output()
            .expect("`go` runs (install Debian's golang-go)");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "go tool pprof failed: {err}");
        eprintln!("$ go tool pprof -top -sample_index={index} {path}\n{err}{text}");
        (text, err)
    };
    // A row for the function: `pprof_server::churn`, or `churn` where the
    // debug information has short names (release, line tables only).
    let shows = |top: &str, function: &str| {
        top.lines()
            .any(|l| l.ends_with(&format!(" {function}")) || l.ends_with(&format!("::{function}")))
    };
    let (heap, _) = pprof_top("/debug/pprof/heap", "inuse_space");
    assert!(heap.contains("Type: inuse_space"), "{heap}");
    assert!(shows(&heap, "fill_cache"), "{heap}");
    std::thread::sleep(Duration::from_millis(500));
    let (allocs, err) = pprof_top("/debug/pprof/allocs", "alloc_space");
    assert!(allocs.contains("Type: alloc_space"), "{allocs}");
    assert!(shows(&allocs, "churn"), "{allocs}");
    assert!(!err.contains("symbolization failed"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
