//! `#[cleanroom::service]`: keeps the function that describes a container and
//! adds a type of the same name that tests list in their attribute, plus the
//! registration that lets the runtime start the container once per run.

mod model;
mod parse;
mod render;
mod validate;

use proc_macro2::TokenStream;

pub(crate) use model::ServiceInfo;

/// The whole macro: parse, validate, render; on error the user's function and
/// every error at once.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    crate::diagnostic::expand(
        args,
        item,
        parse::parse,
        validate::validate,
        render::render,
        |func| quote::quote!(#[allow(unused)] #func),
    )
}
