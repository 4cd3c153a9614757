//! The `#[tracealloc::profile]` attribute (re-exported by `tracealloc` with
//! its `macros` feature): memory_profiler's `@profile` for a Rust function.
//!
//! The attribute rewrites the function's body so that each statement runs
//! between two calls into `tracealloc`'s runtime (`src/line_profile.rs`):
//!
//! ```text
//! fn load(path: &Path) -> io::Result<Vec<u8>> {      fn load(path: &Path) -> io::Result<Vec<u8>> {
//!     let bytes = fs::read(path)?;                       static SITE: __ProfileSite = { lines, source text, ... };
//!     check(&bytes);                        ==>          let f = __ProfiledFn::enter(&SITE);
//!     Ok(bytes)                                          let g = f.line(0, true); let bytes = fs::read(path)?; drop(g);
//! }                                                      { let g = f.line(1, true); check(&bytes); }
//!                                                        { let g = f.line(2, true); Ok(bytes) }
//!                                                    }
//! ```
//!
//! A line guard (`g`) records when it is dropped, so an early `return`, a
//! `?`, a `break` and a panic still record the line; the function guard (`f`)
//! prints the table when it is dropped, on return and on unwinding. `let`
//! statements (and macro statements, which may expand to `let`) are not put
//! in a block, so their bindings stay in scope; other statements and tail
//! expressions are, which keeps a tail's value, type and coercions.
//!
//! Line numbers and columns come from `proc_macro::Span::start()` (stable
//! since Rust 1.88; `proc_macro2`'s own `start()` needs the `span-locations`
//! feature, which a proc macro cannot use), the lines' text from
//! `Span::source_text()` of the function's top-level tokens, placed at their
//! columns (the body is one token, so its comments and blank lines are kept).

use std::collections::BTreeMap;

use proc_macro::TokenStream;
use proc_macro2::{Delimiter, Ident, Literal, Span, TokenStream as TokenStream2, TokenTree};
use quote::{quote, ToTokens};
use syn::visit_mut::{self, VisitMut};
use syn::{parse_quote, Attribute, Block, Expr, Item, ItemFn, Stmt};

/// memory_profiler's `@profile` for a Rust function: when the function
/// returns (or unwinds), prints a table of its lines with the process heap
/// after each (`Mem usage`), its change (`Increment`), how often the line
/// ran (`Occurrences`), and what memory_profiler cannot see: the calling
/// thread's net bytes, the highest heap reached *inside* the line, the
/// allocations it made, and (with `rss`) the resident set size beside the
/// heap.
///
/// Use it through `tracealloc` (feature `macros`) as
/// `#[tracealloc::profile]`; `tracealloc::LineTable` documents the columns,
/// `tracealloc::line_tables` and `tracealloc::line_profile_output` where the
/// tables go.
///
/// ```ignore
/// #[global_allocator]
/// static GLOBAL: tracealloc::TraceAlloc = tracealloc::TraceAlloc::system();
///
/// #[tracealloc::profile]
/// fn load() -> Vec<Vec<u8>> {
///     let mut parts = Vec::with_capacity(2);
///     parts.push(vec![0u8; 1 << 20]);
///     drop(vec![0u8; 8 << 20]); // +0 MiB, but 8 MiB peak inside the line
///     parts
/// }
/// ```
///
/// Arguments: `rss` reads the resident set size before and after every line
/// (about 14 µs per line on Linux, against 0.25 µs for the heap figures
/// alone), `precision = N` prints N decimals of MiB (1 by default, as
/// memory_profiler). Free functions, methods
/// (`self`, `&self`, `&mut self`), generic functions, `unsafe` and `extern`
/// functions are supported; `const fn` (which may run at compile time) and
/// `async fn` (whose lines run on whichever thread polls it) are refused, as
/// is any item that is not a function with a body.
///
/// Each statement is measured, also inside the blocks of `if`, `match`,
/// `loop`, `while`, `for` and plain blocks, and a `match` arm's expression
/// on a line of its own; closures, `async` blocks and nested items are
/// measured only as part of the line that runs them. A line that holds a
/// block (an `if`, a loop) shows everything that ran inside it, its inner
/// lines their own share. Statements on the same line as the line that
/// contains them (`if c { a(); }`) are part of that line.
#[proc_macro_attribute]
pub fn profile(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = TokenStream2::from(item);
    match expand(attr.into(), item.clone()) {
        Ok(ts) => ts.into(),
        // The error, and the item unchanged, so that the rest of the crate
        // still compiles and the error stands alone.
        Err(e) => {
            let mut out = e.to_compile_error();
            out.extend(item);
            out.into()
        }
    }
}

/// What the attribute's arguments ask for.
struct Args {
    rss: bool,
    precision: u8,
}

const USAGE: &str = "#[tracealloc::profile] takes `rss` (read the resident set size per line) \
                     and `precision = N` (decimals of MiB, 0 to 9)";

fn parse_args(attr: TokenStream2) -> syn::Result<Args> {
    let mut args = Args {
        rss: false,
        precision: 1,
    };
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("rss") {
            args.rss = true;
            Ok(())
        } else if meta.path.is_ident("precision") {
            let lit: syn::LitInt = meta.value()?.parse()?;
            match lit.base10_parse::<u8>() {
                Ok(n) if n <= 9 => {
                    args.precision = n;
                    Ok(())
                }
                _ => Err(syn::Error::new(
                    lit.span(),
                    "#[tracealloc::profile]: `precision` is the number of decimals, 0 to 9",
                )),
            }
        } else {
            let name = meta.path.to_token_stream().to_string().replace(' ', "");
            Err(meta.error(format!("unknown argument `{name}`: {USAGE}")))
        }
    });
    syn::parse::Parser::parse2(parser, attr)?;
    Ok(args)
}

fn expand(attr: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let args = parse_args(attr)?;
    let mut func = parse_fn(item.clone())?;
    if let Some(c) = &func.sig.constness {
        return Err(syn::Error::new(
            c.span,
            "#[tracealloc::profile] cannot go on a `const fn`: a const fn may run at compile \
             time, where nothing is allocated or measured. Remove `const`, or profile the \
             function that calls it",
        ));
    }
    if let Some(a) = &func.sig.asyncness {
        return Err(syn::Error::new(
            a.span,
            "#[tracealloc::profile] does not support `async fn`: its lines run in pieces, on \
             whichever thread polls the future, between which other tasks allocate. Profile \
             the synchronous functions it calls, or `tracealloc::measure` the work between \
             two awaits",
        ));
    }

    let def_line = def_line(&item);
    let mut source = layout(&item);
    let mut inst = Instrument {
        fn_ident: Ident::new("__tracealloc_fn", Span::mixed_site()),
        line_ident: Ident::new("__tracealloc_line", Span::mixed_site()),
        enclosing: def_line,
        slots: Vec::new(),
        fallback: BTreeMap::new(),
    };
    inst.visit_block_mut(&mut func.block);
    for (line, text) in std::mem::take(&mut inst.fallback) {
        source.entry(line).or_insert(text);
    }

    let name = func.sig.ident.to_string();
    let lines = inst
        .slots
        .iter()
        .map(|&l| Literal::u32_unsuffixed(l as u32));
    let source = source.iter().map(|(&l, text)| {
        let l = Literal::u32_unsuffixed(l as u32);
        quote!((#l, #text))
    });
    let def_line = Literal::u32_unsuffixed(def_line as u32);
    let rss = args.rss;
    let precision = Literal::u8_unsuffixed(args.precision);
    let f = &inst.fn_ident;
    let prologue: Vec<Stmt> = vec![
        parse_quote! {
            static __TRACEALLOC_SITE: ::tracealloc::__ProfileSite = ::tracealloc::__ProfileSite {
                function: #name,
                module: ::core::module_path!(),
                file: ::core::file!(),
                line: #def_line,
                source: &[#(#source),*],
                lines: &[#(#lines),*],
                rss: #rss,
                precision: #precision,
            };
        },
        parse_quote! {
            let #f = ::tracealloc::__ProfiledFn::enter(&__TRACEALLOC_SITE);
        },
    ];
    func.block.stmts.splice(0..0, prologue);
    Ok(func.into_token_stream())
}

/// The item as a function with a body, or an error saying what it is.
fn parse_fn(item: TokenStream2) -> syn::Result<ItemFn> {
    let parsed = syn::parse2::<Item>(item.clone());
    if let Ok(Item::Fn(f)) = parsed {
        return Ok(f);
    }
    if let Ok(m) = syn::parse2::<syn::TraitItemFn>(item.clone()) {
        if m.default.is_none() {
            return Err(syn::Error::new(
                m.sig.ident.span(),
                "#[tracealloc::profile] needs a function with a body: put it on the \
                 implementations of this trait method, or on its default body",
            ));
        }
    }
    let item = parsed?;
    let (span, what) = match &item {
        Item::Struct(i) => (i.struct_token.span, "a struct"),
        Item::Enum(i) => (i.enum_token.span, "an enum"),
        Item::Union(i) => (i.union_token.span, "a union"),
        Item::Impl(i) => (
            i.impl_token.span,
            "an impl block (put it on each method to profile)",
        ),
        Item::Trait(i) => (i.trait_token.span, "a trait"),
        Item::TraitAlias(i) => (i.trait_token.span, "a trait alias"),
        Item::Mod(i) => (i.mod_token.span, "a module"),
        Item::Static(i) => (i.static_token.span, "a static"),
        Item::Const(i) => (i.const_token.span, "a const item"),
        Item::Type(i) => (i.type_token.span, "a type alias"),
        Item::Use(i) => (i.use_token.span, "a `use` item"),
        Item::ExternCrate(i) => (i.extern_token.span, "an `extern crate` item"),
        Item::ForeignMod(i) => (i.abi.extern_token.span, "an extern block"),
        Item::Macro(i) => (
            i.mac
                .path
                .segments
                .last()
                .map_or_else(Span::call_site, |s| s.ident.span()),
            "a macro",
        ),
        _ => (Span::call_site(), "this item"),
    };
    Err(syn::Error::new(
        span,
        format!(
            "#[tracealloc::profile] goes on a function with a body (`fn name(...) {{ ... }}`), \
             not on {what}"
        ),
    ))
}

// ---------------------------------------------------------------------------
// Lines and source text

/// The line and column where `span` starts (lines from 1, columns as
/// `proc_macro` counts them, in characters).
fn line_col(span: Span) -> (usize, usize) {
    let start = span.unwrap().start();
    (start.line(), start.column())
}

/// The tokens after the leading outer attributes (`#[...]`, doc comments):
/// where a statement or the item begins on the page.
fn past_attrs(tokens: TokenStream2) -> Vec<TokenTree> {
    let mut tts: Vec<TokenTree> = tokens.into_iter().collect();
    let mut i = 0;
    while let Some(TokenTree::Punct(p)) = tts.get(i) {
        if p.as_char() != '#' {
            break;
        }
        match tts.get(i + 1) {
            Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Bracket => i += 2,
            _ => break,
        }
    }
    tts.split_off(i)
}

/// The span of the first token past the attributes.
fn first_span(tokens: TokenStream2) -> Option<Span> {
    past_attrs(tokens).first().map(TokenTree::span)
}

/// The line of the item's first token after its attributes (`pub`, `fn`,
/// ...): the row of the whole call.
fn def_line(item: &TokenStream2) -> usize {
    first_span(item.clone()).map_or(0, |s| line_col(s).0)
}

/// The lines of the item from its first token after the attributes to its
/// closing brace, rebuilt by placing each top-level token's source text at
/// its line and column. The body is a single token (a group), so the text
/// inside it, comments and blank lines included, comes out as written; only
/// comments between the signature's tokens are lost.
fn layout(item: &TokenStream2) -> BTreeMap<usize, String> {
    let tokens = past_attrs(item.clone());
    let mut lines: BTreeMap<usize, String> = BTreeMap::new();
    let (Some(first), Some(body)) = (tokens.first(), tokens.last()) else {
        return lines;
    };
    // The rows run from the first token's line to the body's last; a token
    // elsewhere (an identifier passed to a `macro_rules!` that wrote the
    // function) is left out.
    let first_line = line_col(first.span()).0;
    let last_line = line_col(body.span()).0
        + body
            .span()
            .source_text()
            .map_or(0, |t| t.matches('\n').count());
    for tt in tokens {
        let span = tt.span();
        let (line, col) = line_col(span);
        if line < first_line || line > last_line {
            continue;
        }
        let text = span.source_text().unwrap_or_else(|| tt.to_string());
        let l = lines.entry(line).or_default();
        // Columns count characters; pad with spaces up to ours.
        let have = l.chars().count();
        let want = col.saturating_sub(COLUMN_BASE);
        if have > want {
            // Already written: a token the compiler splits in two for proc
            // macros (`->`, `'a`) whose halves both carry the whole span.
            continue;
        }
        l.extend(std::iter::repeat_n(' ', want - have));
        for (k, piece) in text.split('\n').enumerate() {
            let l = lines.entry(line + k).or_default();
            l.push_str(piece.trim_end_matches('\r'));
        }
    }
    for l in lines.values_mut() {
        l.truncate(l.trim_end().len());
    }
    lines
}

/// The column `proc_macro::Span::column` gives to a token at the start of a
/// line.
const COLUMN_BASE: usize = 1;

/// The line a statement starts on, past its attributes (0 if unknown).
fn stmt_line(tokens: TokenStream2) -> usize {
    first_span(tokens).map_or(0, |s| line_col(s).0)
}

/// A statement's first line as text, for lines the layout does not cover
/// (statements whose spans point elsewhere, e.g. made by a `macro_rules!`).
fn stmt_text(tokens: &TokenStream2) -> String {
    let text = first_span(tokens.clone())
        .and_then(|s| s.source_text())
        .unwrap_or_else(|| tokens.to_string());
    text.lines().next().unwrap_or("").trim().to_string()
}

/// `#[cfg]` and `#[cfg_attr]` attributes: copied onto the guard's statements,
/// so that a statement compiled out records nothing.
fn cfgs(attrs: &[Attribute]) -> Vec<Attribute> {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("cfg") || a.path().is_ident("cfg_attr"))
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------------
// Rewriting the body

struct Instrument {
    /// The function guard's local (mixed-site: invisible to the body).
    fn_ident: Ident,
    /// Each line guard's local.
    line_ident: Ident,
    /// The line of the statement being rewritten: statements inside it on
    /// the same line are part of it.
    enclosing: usize,
    /// The line of each slot (the runtime's rows), in order of first use.
    slots: Vec<usize>,
    /// Text for measured lines outside the layout.
    fallback: BTreeMap<usize, String>,
}

impl Instrument {
    /// `let <guard> = <fn>.line(slot, count);` for `line`.
    fn open(
        &mut self,
        line: usize,
        count: bool,
        attrs: &[Attribute],
        tokens: &TokenStream2,
    ) -> Stmt {
        let slot = match self.slots.iter().position(|&l| l == line) {
            Some(s) => s,
            None => {
                self.slots.push(line);
                self.slots.len() - 1
            }
        };
        self.fallback
            .entry(line)
            .or_insert_with(|| stmt_text(tokens));
        let slot = Literal::u32_unsuffixed(slot as u32);
        let (f, g) = (&self.fn_ident, &self.line_ident);
        parse_quote! { #(#attrs)* let #g = #f.line(#slot, #count); }
    }

    /// Visits the inside of a statement or expression at `line`, with that
    /// line as the enclosing one.
    fn within<T>(&mut self, line: usize, node: &mut T, visit: impl FnOnce(&mut Self, &mut T)) {
        let saved = std::mem::replace(&mut self.enclosing, line);
        visit(self, node);
        self.enclosing = saved;
    }
}

impl VisitMut for Instrument {
    fn visit_block_mut(&mut self, block: &mut Block) {
        let stmts = std::mem::take(&mut block.stmts);
        let n = stmts.len();
        let mut previous_line = None;
        for (i, mut stmt) in stmts.into_iter().enumerate() {
            let tail = i + 1 == n;
            if matches!(stmt, Stmt::Item(_)) || is_empty(&stmt) {
                block.stmts.push(stmt);
                continue;
            }
            let tokens = stmt.to_token_stream();
            let line = stmt_line(tokens.clone());
            if line == 0 || line == self.enclosing {
                visit_mut::visit_stmt_mut(self, &mut stmt);
                block.stmts.push(stmt);
                continue;
            }
            self.within(line, &mut stmt, |s, stmt| {
                visit_mut::visit_stmt_mut(s, stmt)
            });
            // Statements sharing a line add up in one row, counted once.
            let count = previous_line != Some(line);
            previous_line = Some(line);
            let g = self.line_ident.clone();
            match stmt {
                // Bindings (and what a macro statement may expand to) must
                // stay in scope: guard before, dropped after, no block.
                Stmt::Local(ref local) => {
                    let attrs = cfgs(&local.attrs);
                    block.stmts.push(self.open(line, count, &attrs, &tokens));
                    block.stmts.push(stmt);
                    block.stmts.push(close(&g, &attrs));
                }
                Stmt::Macro(ref m) if m.semi_token.is_some() || !tail => {
                    let attrs = cfgs(&m.attrs);
                    block.stmts.push(self.open(line, count, &attrs, &tokens));
                    block.stmts.push(stmt);
                    block.stmts.push(close(&g, &attrs));
                }
                // An expression statement, or the block's value: in a block
                // of its own, which keeps the value, its type and coercions.
                Stmt::Expr(ref e, Some(_)) => {
                    let attrs = cfgs(expr_attrs(e));
                    let open = self.open(line, count, &[], &tokens);
                    block.stmts.push(Stmt::Expr(
                        parse_quote! { #(#attrs)* { #open #stmt } },
                        None,
                    ));
                }
                _ => {
                    let open = self.open(line, count, &[], &tokens);
                    block
                        .stmts
                        .push(Stmt::Expr(parse_quote! { { #open #stmt } }, None));
                }
            }
        }
    }

    fn visit_arm_mut(&mut self, arm: &mut syn::Arm) {
        if let Some((_, guard)) = &mut arm.guard {
            self.visit_expr_mut(guard);
        }
        let body = &mut *arm.body;
        if matches!(body, Expr::Block(b) if b.label.is_none() && b.attrs.is_empty()) {
            self.visit_expr_mut(body);
            return;
        }
        let tokens = body.to_token_stream();
        let line = stmt_line(tokens.clone());
        if line == 0 || line == self.enclosing {
            self.visit_expr_mut(body);
            return;
        }
        self.within(line, body, |s, e| s.visit_expr_mut(e));
        let open = self.open(line, true, &[], &tokens);
        *body = parse_quote! { { #open #body } };
        if arm.comma.is_none() {
            arm.comma = Some(Default::default());
        }
    }

    // Not measured line by line: closures and async blocks run later or
    // elsewhere; nested items are other functions; const blocks, array
    // lengths, types, generic arguments and patterns are const contexts.
    fn visit_expr_closure_mut(&mut self, _: &mut syn::ExprClosure) {}
    fn visit_expr_async_mut(&mut self, _: &mut syn::ExprAsync) {}
    fn visit_expr_const_mut(&mut self, _: &mut syn::ExprConst) {}
    fn visit_item_mut(&mut self, _: &mut Item) {}
    fn visit_type_mut(&mut self, _: &mut syn::Type) {}
    fn visit_generic_argument_mut(&mut self, _: &mut syn::GenericArgument) {}
    fn visit_pat_mut(&mut self, _: &mut syn::Pat) {}
    fn visit_expr_repeat_mut(&mut self, e: &mut syn::ExprRepeat) {
        self.visit_expr_mut(&mut e.expr);
    }
}

/// `#[allow(unreachable_code)] ::core::mem::drop(<guard>);` (the statement
/// before may diverge: `let x = return;`, `let v: u8 = todo!();`).
fn close(g: &Ident, attrs: &[Attribute]) -> Stmt {
    parse_quote! { #(#attrs)* #[allow(unreachable_code)] ::core::mem::drop(#g); }
}

/// A lone `;`.
fn is_empty(stmt: &Stmt) -> bool {
    matches!(stmt, Stmt::Expr(Expr::Verbatim(ts), _) if ts.is_empty())
}

fn expr_attrs(e: &Expr) -> &[Attribute] {
    match e {
        Expr::Array(x) => &x.attrs,
        Expr::Assign(x) => &x.attrs,
        Expr::Async(x) => &x.attrs,
        Expr::Await(x) => &x.attrs,
        Expr::Binary(x) => &x.attrs,
        Expr::Block(x) => &x.attrs,
        Expr::Break(x) => &x.attrs,
        Expr::Call(x) => &x.attrs,
        Expr::Cast(x) => &x.attrs,
        Expr::Closure(x) => &x.attrs,
        Expr::Const(x) => &x.attrs,
        Expr::Continue(x) => &x.attrs,
        Expr::Field(x) => &x.attrs,
        Expr::ForLoop(x) => &x.attrs,
        Expr::Group(x) => &x.attrs,
        Expr::If(x) => &x.attrs,
        Expr::Index(x) => &x.attrs,
        Expr::Let(x) => &x.attrs,
        Expr::Lit(x) => &x.attrs,
        Expr::Loop(x) => &x.attrs,
        Expr::Macro(x) => &x.attrs,
        Expr::Match(x) => &x.attrs,
        Expr::MethodCall(x) => &x.attrs,
        Expr::Paren(x) => &x.attrs,
        Expr::Path(x) => &x.attrs,
        Expr::Range(x) => &x.attrs,
        Expr::Reference(x) => &x.attrs,
        Expr::Repeat(x) => &x.attrs,
        Expr::Return(x) => &x.attrs,
        Expr::Struct(x) => &x.attrs,
        Expr::Try(x) => &x.attrs,
        Expr::TryBlock(x) => &x.attrs,
        Expr::Tuple(x) => &x.attrs,
        Expr::Unary(x) => &x.attrs,
        Expr::Unsafe(x) => &x.attrs,
        Expr::While(x) => &x.attrs,
        Expr::Yield(x) => &x.attrs,
        _ => &[],
    }
}
