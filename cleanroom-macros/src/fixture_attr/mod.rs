//! `#[cleanroom::fixture]`: keeps the function and adds a zero-sized type of
//! the same name implementing `Resolve`, which tests and other fixtures reach
//! by naming a parameter after the fixture.

mod model;
mod parse;
mod render;
mod validate;

use proc_macro2::TokenStream;

pub(crate) use model::{FixtureInfo, Scope};

/// The whole macro: parse, validate, render; on error the user's function and
/// every error at once.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    crate::diagnostic::expand(args, item, parse::parse, validate::validate, render::render, render::fallback)
}
