//! `#[cleanroom::test]`: a `#[test]` that resolves its parameters from services
//! and fixtures and runs through `::cleanroom::__private::run`.

mod model;
mod parse;
mod render;
mod validate;

use proc_macro2::TokenStream;

pub(crate) use model::{Flavor, FlavorOption, ServiceArg, TestInfo, WorkerThreads};

/// The whole macro: parse, validate, render; on error the user's function
/// (so that nothing else fails for want of it) and every error at once.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    crate::diagnostic::expand(args, item, parse::parse, validate::validate, render::render, render::fallback)
}
