//! `#[cleanroom::service]`: keeps the function that describes a container and
//! adds a type of the same name that tests list in their attribute, plus the
//! registration that lets the runtime start the container once per run.

mod model;
mod parse;
mod render;
mod validate;

use proc_macro2::TokenStream;

use crate::diagnostic::with_error;

pub(crate) use model::ServiceInfo;

/// The whole macro: parse, validate, render; on error the user's function and
/// every error at once.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let func: syn::ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(error) => return with_error(item, error),
    };
    let info =
        parse::parse(args, func.clone()).and_then(|info| validate::validate(&info).map(|()| info));
    match info {
        Ok(info) => render::render(&info),
        Err(error) => with_error(quote::quote!(#[allow(unused)] #func), error),
    }
}
