//! The `#[tracealloc::profile]` attribute (re-exported by `tracealloc` with
//! its `macros` feature).

use proc_macro::TokenStream;

/// memory_profiler's `@profile` for a Rust function (see `tracealloc`).
#[proc_macro_attribute]
pub fn profile(_attr: TokenStream, item: TokenStream) -> TokenStream {
    item
}
