//! `Registry` under contention: one load per key whatever the number of
//! threads, no key waiting on another's loader, errors shared but not cached,
//! panics not poisoning, weak mode freeing and reloading.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use tracealloc::Registry;

#[test]
fn sixteen_threads_on_one_key_load_once_and_share() {
    let registry: Arc<Registry<String, Vec<u64>>> = Arc::new(Registry::new());
    let loads = Arc::new(AtomicUsize::new(0));
    let go = Arc::new(Barrier::new(16));
    let got: Vec<Arc<Vec<u64>>> = (0..16)
        .map(|_| {
            let (registry, loads, go) = (registry.clone(), loads.clone(), go.clone());
            std::thread::spawn(move || {
                go.wait();
                registry.get_or_load("model".to_string(), || {
                    loads.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(50));
                    vec![7; 1000]
                })
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert_eq!(loads.load(Ordering::SeqCst), 1, "the loader ran once");
    assert!(
        got.iter().all(|m| Arc::ptr_eq(m, &got[0])),
        "all share one instance"
    );
    assert_eq!(registry.len(), 1);
}

#[test]
fn different_keys_do_not_wait_for_each_other() {
    let registry: Arc<Registry<u32, u32>> = Arc::new(Registry::new());
    let slow_started = Arc::new(Barrier::new(2));
    let slow = {
        let (registry, started) = (registry.clone(), slow_started.clone());
        std::thread::spawn(move || {
            registry.get_or_load(1, || {
                started.wait();
                std::thread::sleep(Duration::from_millis(1500));
                1
            })
        })
    };
    slow_started.wait();
    // While key 1 loads, 8 threads load other keys: none waits for it.
    let t = Instant::now();
    let fast: Vec<_> = (2..10)
        .map(|k| {
            let registry = registry.clone();
            std::thread::spawn(move || *registry.get_or_load(k, || k * 10))
        })
        .collect();
    let values: Vec<u32> = fast.into_iter().map(|h| h.join().unwrap()).collect();
    let waited = t.elapsed();
    assert_eq!(values, (2..10).map(|k| k * 10).collect::<Vec<_>>());
    assert!(
        waited < Duration::from_millis(1000),
        "other keys waited {waited:?} for key 1's loader"
    );
    assert_eq!(*slow.join().unwrap(), 1);
    assert_eq!(registry.len(), 9);
}

#[test]
fn a_failed_load_reaches_every_waiter_and_is_not_cached() {
    let registry: Arc<Registry<&'static str, String>> = Arc::new(Registry::new());
    let loads = Arc::new(AtomicUsize::new(0));
    let go = Arc::new(Barrier::new(8));
    let results: Vec<Result<Arc<String>, String>> = (0..8)
        .map(|_| {
            let (registry, loads, go) = (registry.clone(), loads.clone(), go.clone());
            std::thread::spawn(move || {
                go.wait();
                registry.get_or_try_load("cfg", || {
                    loads.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(100));
                    Err("no such file".to_string())
                })
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert!(results
        .iter()
        .all(|r| r.as_ref().err().map(String::as_str) == Some("no such file")));
    // Threads that arrived after the attempt ended started their own: still
    // far fewer than 8 when they raced, and never cached.
    assert!(loads.load(Ordering::SeqCst) >= 1);
    assert!(registry.is_empty());
    let ok = registry
        .get_or_try_load("cfg", || Ok::<_, String>("loaded".to_string()))
        .unwrap();
    assert_eq!(*ok, "loaded", "a later call tries again");
}

#[test]
fn a_panicking_loader_does_not_poison_the_key() {
    let registry: Arc<Registry<u8, u8>> = Arc::new(Registry::new());
    let entered = Arc::new(Barrier::new(2));
    let panicker = {
        let (registry, entered) = (registry.clone(), entered.clone());
        std::thread::spawn(move || {
            registry.get_or_load(1, || {
                entered.wait();
                std::thread::sleep(Duration::from_millis(100));
                panic!("loader failed");
            })
        })
    };
    entered.wait();
    // This caller waits on the panicking attempt, then loads itself.
    let waiter = {
        let registry = registry.clone();
        std::thread::spawn(move || *registry.get_or_load(1, || 42))
    };
    assert!(panicker.join().is_err(), "the panic reaches its caller");
    assert_eq!(waiter.join().unwrap(), 42);
    assert_eq!(*registry.get_or_load(1, || 0), 42);
}

#[test]
fn weak_registry_frees_with_the_last_user_and_reloads() {
    struct Model(Arc<Mutex<Vec<&'static str>>>);
    impl Drop for Model {
        fn drop(&mut self) {
            self.0.lock().unwrap().push("dropped");
        }
    }
    let log = Arc::new(Mutex::new(Vec::new()));
    let registry: Registry<&str, Model> = Registry::weak();
    let load = || {
        log.lock().unwrap().push("loaded");
        Model(log.clone())
    };
    let a = registry.get_or_load("m", load);
    let b = registry.get_or_load("m", || unreachable!("shared while alive"));
    assert!(Arc::ptr_eq(&a, &b));
    drop(a);
    assert_eq!(registry.len(), 1, "b still holds it");
    drop(b);
    assert_eq!(
        *log.lock().unwrap(),
        ["loaded", "dropped"],
        "freed with the last user"
    );
    assert_eq!(registry.len(), 0);
    let c = registry.get_or_load("m", load);
    assert_eq!(
        *log.lock().unwrap(),
        ["loaded", "dropped", "loaded"],
        "loaded again"
    );
    drop(c);
}

#[test]
fn remove_and_static_use() {
    static SHARED: Registry<u32, String> = Registry::new();
    let a = SHARED.get_or_load(7, || "seven".to_string());
    assert_eq!(
        SHARED.remove(&7).as_deref().map(String::as_str),
        Some("seven")
    );
    assert!(SHARED.is_empty());
    let b = SHARED.get_or_load(7, || "again".to_string());
    assert!(!Arc::ptr_eq(&a, &b));
    assert_eq!(SHARED.remove(&8), None);
}
