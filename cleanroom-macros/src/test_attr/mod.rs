//! `#[cleanroom::test]`: a `#[test]` that resolves its parameters from services
//! and fixtures and runs through `::cleanroom::__private::run`.

mod model;
mod parse;
mod render;
mod validate;

use proc_macro2::TokenStream;

use crate::diagnostic::with_error;

pub(crate) use model::{Flavor, FlavorOption, RoomArgs, ServiceArg, TestInfo, WorkerThreads};

/// The whole macro: parse, validate, render; on error the user's function
/// (so that nothing else fails for want of it) and every error at once.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let func: syn::ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(error) => return with_error(item, error),
    };
    let info =
        parse::parse(args, func.clone()).and_then(|info| validate::validate(&info).map(|()| info));
    match info {
        Ok(info) => render::render(&info),
        Err(error) => with_error(render::fallback(func), error),
    }
}
