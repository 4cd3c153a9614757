//! Continuous heap profiling: serves the current heap as pprof at
//! `/debug/pprof/heap`, Go's path, the one Parca, Pyroscope and Grafana
//! Alloy scrape, while a background thread allocates and frees.
//!
//! ```text
//! cargo run --release --features pprof --example pprof_server [PORT]
//! ```
//!
//! The first line on stdout is where it listens (`PORT` defaults to 6060;
//! 0 takes a free port):
//!
//! ```text
//! listening on http://127.0.0.1:6060/debug/pprof/heap
//! ```
//!
//! Then, from another terminal:
//!
//! ```text
//! go tool pprof -top http://127.0.0.1:6060/debug/pprof/heap
//! go tool pprof -http=:8080 http://127.0.0.1:6060/debug/pprof/heap
//! go tool pprof -sample_index=alloc_space -top http://127.0.0.1:6060/debug/pprof/allocs
//! ```
//!
//! - `/debug/pprof/heap`: the live blocks now, from
//!   [`tracealloc::take_snapshot`] (`inuse_space` and `inuse_objects`; in a
//!   snapshot the `alloc_*` values equal them).
//! - `/debug/pprof/allocs`: the whole run per call site, from
//!   [`tracealloc::profile`]: `alloc_space` and `alloc_objects` count every
//!   block allocated since tracing started, the churn a live snapshot never
//!   sees, beside what is live now.
//!
//! Anything else is a 404. Tracing samples one block per 512 KiB allocated
//! on average (the figures are weighted back to estimates of the whole), as
//! Go's runtime does, so the server can run in production.

use std::io::Write;
use std::sync::mpsc;
use std::time::Duration;

#[global_allocator]
static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();

/// Blocks kept for the program's life: what `/debug/pprof/heap` shows.
#[inline(never)]
fn fill_cache(entries: usize, bytes: usize) -> Vec<Vec<u8>> {
    (0..entries)
        .map(|i| std::hint::black_box(vec![i as u8; bytes]))
        .collect()
}

/// Short-lived blocks, allocated and freed at once: the churn that
/// `/debug/pprof/allocs` shows and a live snapshot does not.
#[inline(never)]
fn churn(round: usize) -> usize {
    let mut total = 0;
    for i in 0..4 {
        let scratch = std::hint::black_box(vec![(round + i) as u8; 1 << 20]);
        total += scratch.len();
    }
    total
}

/// The background work: a cache built once (then one entry replaced each
/// round), and churn.
fn workload(ready: mpsc::Sender<()>) {
    let mut cache = fill_cache(64, 256 << 10);
    let _ = ready.send(());
    for round in 0.. {
        churn(round);
        let slot = round % cache.len();
        cache[slot] = fill_cache(1, 256 << 10).remove(0);
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn main() {
    let port: u16 = match std::env::args().nth(1) {
        None => 6060,
        Some(arg) => arg.parse().unwrap_or_else(|_| {
            eprintln!("usage: pprof_server [PORT]  (PORT: 0 to 65535, not {arg:?})");
            std::process::exit(2)
        }),
    };
    tracealloc::Config::new()
        .frames(32)
        .sample_bytes(512 * 1024)
        .start();

    let (ready, is_ready) = mpsc::channel();
    std::thread::spawn(move || workload(ready));
    // Serve once the cache is built, so the first fetch shows it.
    is_ready.recv().expect("the workload thread started");

    let server = tiny_http::Server::http(("127.0.0.1", port)).unwrap_or_else(|e| {
        eprintln!("pprof_server: cannot listen on 127.0.0.1:{port}: {e}");
        std::process::exit(1)
    });
    let addr = server
        .server_addr()
        .to_ip()
        .expect("a TCP listener has an IP address");
    println!("listening on http://{addr}/debug/pprof/heap");
    std::io::stdout().flush().expect("stdout");

    let octet_stream =
        tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/octet-stream"[..])
            .expect("a valid header");
    for request in server.incoming_requests() {
        // Scrapers may add a query (`?seconds=30`, `?gc=1`): the path decides.
        let path = request.url().split('?').next().unwrap_or("");
        let body = match path {
            "/debug/pprof/heap" => Some(tracealloc::take_snapshot().pprof()),
            "/debug/pprof/allocs" => Some(tracealloc::profile().pprof()),
            _ => None,
        };
        let sent = match body {
            Some(body) => request
                .respond(tiny_http::Response::from_data(body).with_header(octet_stream.clone())),
            None => request.respond(tiny_http::Response::empty(404)),
        };
        if let Err(e) = sent {
            eprintln!("pprof_server: cannot answer: {e}");
        }
    }
}
