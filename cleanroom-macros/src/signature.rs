//! What the three attributes require of a function's signature alike.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::Signature;

/// The generics of `sig` to point an error at, if it has any: the parameters,
/// else the `where` clause (which `Generics` does not print).
pub(crate) fn generics(sig: &Signature) -> Option<TokenStream> {
    let generics = &sig.generics;
    if !generics.params.is_empty() {
        Some(generics.to_token_stream())
    } else {
        generics.where_clause.as_ref().map(ToTokens::to_token_stream)
    }
}

#[cfg(test)]
mod should {
    use syn::{parse_quote, ItemFn};

    use super::*;

    #[test]
    fn blame_the_where_clause_when_there_are_no_parameters() {
        let func: ItemFn = parse_quote!(
            fn t()
            where
                u32: Copy,
            {
            }
        );
        assert!(generics(&func.sig).unwrap().to_string().starts_with("where u32 : Copy"));
    }

    #[test]
    fn find_nothing_in_a_plain_signature() {
        let func: ItemFn = parse_quote!(
            fn t() {}
        );
        assert!(generics(&func.sig).is_none());
    }
}
