//! Procedural macros of [cleanroom]: `#[cleanroom::test]`, `#[cleanroom::fixture]`
//! and `#[cleanroom::service]`.
//!
//! Use them through the `cleanroom` crate, which documents every option; this
//! crate is an implementation detail. Each macro parses its input into a typed
//! model, validates it (reporting every mistake at once, each at the token that
//! caused it) and renders code that reaches the runtime only through
//! `::cleanroom::__private`.
//!
//! [cleanroom]: https://docs.rs/cleanroom-test
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms, unreachable_pub)]
#![forbid(unsafe_code)]

mod builtin;
mod crate_path;
mod dependency;
mod diagnostic;
mod fixture_attr;
mod param;
mod room;
mod service_attr;
mod signature;
mod test_attr;

use proc_macro::TokenStream;

/// Marks a function as a cleanroom test; see `cleanroom::test`.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    test_attr::expand(args.into(), item.into()).into()
}

/// Marks a function as a fixture that tests take by name; see `cleanroom::fixture`.
#[proc_macro_attribute]
pub fn fixture(args: TokenStream, item: TokenStream) -> TokenStream {
    fixture_attr::expand(args.into(), item.into()).into()
}

/// Marks a function as a container definition shared by the run; see `cleanroom::service`.
#[proc_macro_attribute]
pub fn service(args: TokenStream, item: TokenStream) -> TokenStream {
    service_attr::expand(args.into(), item.into()).into()
}
