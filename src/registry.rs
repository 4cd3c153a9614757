//! [`Registry`]: keyed singletons, loaded once per key and shared.
//!
//! ```text
//! map       Mutex<Option<HashMap<K, Entry>>>, held only to look up or
//!           change an entry, never while a loader runs
//!   Strong(Arc<V>)        loaded, kept until `remove`
//!   Weak(Weak<V>)         loaded (weak registry), kept while users hold it
//!   Loading(Arc<Attempt>) a loader is running; others wait on the attempt
//! Attempt   Mutex<Option<Outcome>> + Condvar: the loader publishes Ready,
//!           Failed (the error, for every waiter) or Abandoned (it panicked)
//! ```

use std::any::Any;
use std::collections::HashMap;
use std::convert::Infallible;
use std::hash::Hash;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};

enum Entry<V> {
    Strong(Arc<V>),
    Weak(Weak<V>),
    Loading(Arc<Attempt<V>>),
}

enum Outcome<V> {
    Ready(Arc<V>),
    Failed(Arc<dyn Any + Send + Sync>),
    Abandoned,
}

struct Attempt<V> {
    outcome: Mutex<Option<Outcome<V>>>,
    done: Condvar,
}

impl<V> Attempt<V> {
    fn finish(&self, outcome: Outcome<V>) {
        *lock(&self.outcome) = Some(outcome);
        self.done.notify_all();
    }

    /// Waits for the loader; `Ready` or `Failed` as it published, or
    /// `Abandoned`.
    fn wait(&self) -> Outcome<V> {
        let mut g = lock(&self.outcome);
        loop {
            match &*g {
                Some(Outcome::Ready(v)) => return Outcome::Ready(v.clone()),
                Some(Outcome::Failed(e)) => return Outcome::Failed(e.clone()),
                Some(Outcome::Abandoned) => return Outcome::Abandoned,
                None => g = self.done.wait(g).unwrap_or_else(PoisonError::into_inner),
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Keyed singletons: `get_or_load(key, loader)` runs `loader` **once per
/// key**, even when many threads ask for the same key at once (the others
/// wait for it, then share the result), and loads of different keys do not
/// wait for each other.
///
/// A strong registry ([`new`](Registry::new)) keeps each instance until
/// [`remove`](Registry::remove). A weak one ([`weak`](Registry::weak)) keeps
/// only a `Weak`: the instance is freed when its last user drops it, and
/// loaded again on the next ask.
///
/// Errors from [`get_or_try_load`](Registry::get_or_try_load) go to every
/// caller waiting on that attempt and are not cached; a loader that panics
/// leaves the key free for the next caller (its waiters try again).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use tracealloc::Registry;
///
/// struct Model {
///     weights: Vec<f32>,
/// }
///
/// static MODELS: Registry<String, Model> = Registry::new();
///
/// let load = || Model { weights: vec![0.5; 1024] };
/// let a = MODELS.get_or_load("bge-large".to_string(), load);
/// let b = MODELS.get_or_load("bge-large".to_string(), || unreachable!("loaded once"));
/// assert!(Arc::ptr_eq(&a, &b));
/// assert_eq!(MODELS.len(), 1);
/// assert_eq!(a.weights.len(), 1024);
/// ```
pub struct Registry<K, V> {
    map: Mutex<Option<HashMap<K, Entry<V>>>>,
    weak: bool,
}

impl<K, V> Default for Registry<K, V> {
    fn default() -> Self {
        Registry::new()
    }
}

impl<K, V> std::fmt::Debug for Registry<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("weak", &self.weak)
            .finish_non_exhaustive()
    }
}

impl<K, V> Registry<K, V> {
    /// A registry that keeps every instance it loaded until
    /// [`remove`](Registry::remove). `const`: usable as a `static`.
    pub const fn new() -> Self {
        Registry {
            map: Mutex::new(None),
            weak: false,
        }
    }

    /// A registry that holds only weak references: an instance lives while
    /// its users hold it, and is loaded again on the next ask after the last
    /// one dropped it. `const`: usable as a `static`.
    ///
    /// # Examples
    ///
    /// ```
    /// use tracealloc::Registry;
    ///
    /// let models: Registry<&str, Vec<u8>> = Registry::weak();
    /// let a = models.get_or_load("m", || vec![1; 10]);
    /// assert_eq!(models.len(), 1);
    /// drop(a);
    /// assert_eq!(models.len(), 0, "freed with its last user");
    /// let b = models.get_or_load("m", || vec![2; 10]);
    /// assert_eq!(b[0], 2, "loaded again");
    /// ```
    pub const fn weak() -> Self {
        Registry {
            map: Mutex::new(None),
            weak: true,
        }
    }
}

impl<K: Eq + Hash + Clone, V> Registry<K, V> {
    /// The instance for `key`, running `loader` if there is none yet (once,
    /// whatever the number of threads asking at the same time).
    ///
    /// # Panics
    ///
    /// If `loader` panics, the panic goes on in this thread; the key stays
    /// free, and threads that were waiting for this load try it again.
    pub fn get_or_load(&self, key: K, loader: impl FnOnce() -> V) -> Arc<V> {
        match self.get_or_try_load(key, || Ok::<V, Infallible>(loader())) {
            Ok(v) => v,
            Err(never) => match never {},
        }
    }

    /// As [`get_or_load`](Registry::get_or_load) with a fallible loader: an
    /// error is returned to this caller and to every caller waiting on the
    /// same attempt, and is not cached: the next call loads again.
    ///
    /// # Errors
    ///
    /// The loader's error, if it failed (here, or in the thread whose load
    /// this call waited for).
    ///
    /// # Examples
    ///
    /// ```
    /// use tracealloc::Registry;
    ///
    /// let r: Registry<u32, String> = Registry::new();
    /// assert_eq!(r.get_or_try_load(1, || Err("disk on fire")), Err::<std::sync::Arc<String>, _>("disk on fire"));
    /// assert!(r.is_empty(), "errors are not cached");
    /// assert_eq!(*r.get_or_try_load(1, || Ok::<_, &str>("ok".to_string())).unwrap(), "ok");
    /// ```
    pub fn get_or_try_load<E>(
        &self,
        key: K,
        loader: impl FnOnce() -> Result<V, E>,
    ) -> Result<Arc<V>, E>
    where
        E: Clone + Send + Sync + 'static,
    {
        let mut loader = Some(loader);
        loop {
            let (attempt, mine) = {
                let mut guard = lock(&self.map);
                let map = guard.get_or_insert_with(HashMap::new);
                match map.get(&key) {
                    Some(Entry::Strong(v)) => return Ok(v.clone()),
                    Some(Entry::Weak(w)) => {
                        if let Some(v) = w.upgrade() {
                            return Ok(v);
                        }
                        self.begin(map, &key)
                    }
                    Some(Entry::Loading(a)) => (a.clone(), false),
                    None => self.begin(map, &key),
                }
            };
            if !mine {
                match attempt.wait() {
                    Outcome::Ready(v) => return Ok(v),
                    Outcome::Failed(e) => match e.downcast_ref::<E>() {
                        Some(e) => return Err(e.clone()),
                        // A caller with another error type failed: try again.
                        None => continue,
                    },
                    Outcome::Abandoned => continue,
                }
            }
            let Some(load) = loader.take() else {
                // Unreachable: this thread starts at most one attempt, and
                // returns from it.
                continue;
            };
            let mut abandon = AbandonOnUnwind {
                registry: self,
                key: &key,
                attempt: &attempt,
                armed: true,
            };
            let result = load();
            abandon.armed = false;
            return match result {
                Ok(v) => {
                    let v = Arc::new(v);
                    self.settle(&key, &attempt, Some(&v));
                    attempt.finish(Outcome::Ready(v.clone()));
                    Ok(v)
                }
                Err(e) => {
                    self.settle(&key, &attempt, None);
                    attempt.finish(Outcome::Failed(Arc::new(e.clone())));
                    Err(e)
                }
            };
        }
    }

    /// Registers a new attempt for `key`, run by the calling thread.
    fn begin(&self, map: &mut HashMap<K, Entry<V>>, key: &K) -> (Arc<Attempt<V>>, bool) {
        let attempt = Arc::new(Attempt {
            outcome: Mutex::new(None),
            done: Condvar::new(),
        });
        map.insert(key.clone(), Entry::Loading(attempt.clone()));
        (attempt, true)
    }

    /// Replaces `attempt`'s entry by the loaded value (or removes it), unless
    /// the key was removed or replaced meanwhile.
    fn settle(&self, key: &K, attempt: &Arc<Attempt<V>>, value: Option<&Arc<V>>) {
        let mut guard = lock(&self.map);
        let Some(map) = guard.as_mut() else { return };
        let ours = matches!(map.get(key), Some(Entry::Loading(a)) if Arc::ptr_eq(a, attempt));
        if !ours {
            return;
        }
        match value {
            Some(v) if self.weak => map.insert(key.clone(), Entry::Weak(Arc::downgrade(v))),
            Some(v) => map.insert(key.clone(), Entry::Strong(v.clone())),
            None => map.remove(key),
        };
    }

    /// Removes `key`, returning its instance if it was loaded (and, in a weak
    /// registry, still alive). Users holding it keep it; the next ask loads
    /// it again. A load running for `key` finishes for its callers but is not
    /// kept.
    ///
    /// # Examples
    ///
    /// ```
    /// use tracealloc::Registry;
    ///
    /// let r: Registry<&str, u32> = Registry::new();
    /// r.get_or_load("a", || 1);
    /// assert_eq!(r.remove(&"a").as_deref(), Some(&1));
    /// assert!(r.is_empty());
    /// ```
    pub fn remove(&self, key: &K) -> Option<Arc<V>> {
        let mut guard = lock(&self.map);
        match guard.as_mut()?.remove(key)? {
            Entry::Strong(v) => Some(v),
            Entry::Weak(w) => w.upgrade(),
            Entry::Loading(_) => None,
        }
    }

    /// How many instances are loaded (in a weak registry: still alive).
    pub fn len(&self) -> usize {
        let mut guard = lock(&self.map);
        let Some(map) = guard.as_mut() else { return 0 };
        map.retain(|_, e| !matches!(e, Entry::Weak(w) if w.strong_count() == 0));
        map.values()
            .filter(|e| !matches!(e, Entry::Loading(_)))
            .count()
    }

    /// Whether no instance is loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Marks an attempt abandoned if its loader unwinds, so that waiters retry
/// and the key is free again.
struct AbandonOnUnwind<'a, K: Eq + Hash + Clone, V> {
    registry: &'a Registry<K, V>,
    key: &'a K,
    attempt: &'a Arc<Attempt<V>>,
    armed: bool,
}

impl<K: Eq + Hash + Clone, V> Drop for AbandonOnUnwind<'_, K, V> {
    fn drop(&mut self) {
        if self.armed {
            self.registry.settle(self.key, self.attempt, None);
            self.attempt.finish(Outcome::Abandoned);
        }
    }
}
