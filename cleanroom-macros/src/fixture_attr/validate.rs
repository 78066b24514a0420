//! Checks that a parsed [`FixtureInfo`] can be resolved by name.

use super::FixtureInfo;
use crate::builtin::BuiltIn;
use crate::diagnostic::Errors;
use crate::param::impl_trait_in;
use crate::signature;

/// `Ok(())` when the fixture can be rendered.
pub(crate) fn validate(info: &FixtureInfo) -> syn::Result<()> {
    let mut errors = Errors::default();
    let sig = &info.func.sig;
    if let Some(builtin) = BuiltIn::named(&sig.ident) {
        errors.spanned(
            &sig.ident,
            format_args!("`{}` is a built-in service: give this fixture another name", builtin.name()),
        );
    }
    if let Some(generics) = signature::generics(sig) {
        errors.spanned(generics, "a cleanroom fixture cannot be generic: tests ask for it by name alone");
    }
    for impl_trait in info.params.iter().filter_map(|param| param.impl_trait()) {
        errors.spanned(impl_trait, "a cleanroom fixture cannot take `impl Trait`: write the type it depends on");
    }
    if let Some(impl_trait) = impl_trait_in(&info.output()) {
        errors.spanned(
            impl_trait,
            "a cleanroom fixture cannot return `impl Trait`: tests need the type's name; write it, or box it",
        );
    }
    errors.finish()
}

#[cfg(test)]
mod should {
    use quote::quote;
    use syn::parse_quote;

    use super::super::parse::parse;
    use super::*;

    fn messages(func: syn::ItemFn) -> Vec<String> {
        match validate(&parse(quote!(), func).unwrap()) {
            Ok(()) => Vec::new(),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn accept_a_plain_fixture() {
        assert!(messages(parse_quote!(
            pub async fn client(postgres: Postgres) -> Client {
                todo!()
            }
        ))
        .is_empty());
    }

    #[test]
    fn reject_a_fixture_named_like_a_built_in() {
        assert_eq!(
            messages(parse_quote!(
                fn redis() -> u8 {
                    1
                }
            )),
            ["`redis` is a built-in service: give this fixture another name"]
        );
    }

    #[test]
    fn reject_generics_and_impl_trait_everywhere_at_once() {
        assert_eq!(
            messages(parse_quote!(
                fn f<T>(a: impl Clone) -> impl Clone {
                    1
                }
            ))
            .len(),
            3
        );
    }
}
