//! Collecting every error of one macro invocation, and emitting them next to
//! the user's item so that one mistake does not cascade into others.

use std::fmt::Display;

use proc_macro2::TokenStream;
use quote::ToTokens;

/// The errors found so far; empty means everything was fine.
#[derive(Debug, Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    /// Records an error, keeping those found before.
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(first) => first.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// Records an error pointing at `tokens`.
    pub(crate) fn spanned(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// Records the error of a fallible step, handing back its value otherwise.
    pub(crate) fn ok<T>(&mut self, result: syn::Result<T>) -> Option<T> {
        result.map_err(|error| self.push(error)).ok()
    }

    /// `Ok(())` when nothing was recorded, otherwise every error at once.
    pub(crate) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// One attribute macro's whole run: take `crate = "…"` out of the arguments,
/// parse the item as a function, `parse` the model, `validate` it, `render` it
/// (naming cleanroom by the given path); on error the user's function as
/// `fallback` writes it (so that nothing else fails for want of it) followed
/// by every error at once.
pub(crate) fn expand<I>(
    args: TokenStream,
    item: TokenStream,
    parse: fn(TokenStream, syn::ItemFn) -> syn::Result<I>,
    validate: fn(&I) -> syn::Result<()>,
    render: fn(&I) -> TokenStream,
    fallback: fn(syn::ItemFn) -> TokenStream,
) -> TokenStream {
    let func: syn::ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(error) => return with_error(item, error),
    };
    let (args, krate) = match crate::crate_path::take(args) {
        Ok(taken) => taken,
        Err(error) => return with_error(fallback(func), error),
    };
    let info = parse(args, func.clone()).and_then(|info| validate(&info).map(|()| info));
    match info {
        Ok(info) => crate::crate_path::rewrite(render(&info), krate.as_ref()),
        Err(error) => with_error(fallback(func), error),
    }
}

/// `tokens` followed by one `compile_error!` per error.
pub(crate) fn with_error(mut tokens: TokenStream, error: syn::Error) -> TokenStream {
    tokens.extend(error.into_compile_error());
    tokens
}

#[cfg(test)]
mod should {
    use proc_macro2::Span;

    use super::*;

    #[test]
    fn report_every_error_it_was_given() {
        let mut errors = Errors::default();
        errors.push(syn::Error::new(Span::call_site(), "first"));
        errors.push(syn::Error::new(Span::call_site(), "second"));
        let messages: Vec<String> = errors.finish().unwrap_err().into_iter().map(|e| e.to_string()).collect();
        assert_eq!(messages, ["first", "second"]);
    }

    #[test]
    fn be_ok_when_nothing_was_recorded() {
        assert!(Errors::default().finish().is_ok());
    }
}
