//! Checks that a parsed [`FixtureInfo`] can be resolved by name.

use super::{FixtureInfo, Scope};
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
    for (name, room) in &info.rooms {
        if let Some(shared) = &room.shared {
            errors.spanned(shared, "`shared` is for the test to say: a fixture can ask for migrations and init only");
        }
        crate::room::check(name, room, &mut errors);
        if let Scope::Process(_) = info.scope {
            errors.spanned(
                name,
                "a process-scoped fixture has no room to ask for: its value is shared by every test of the process; \
                 ask for migrations on a per-test fixture (no scope) or on the tests",
            );
        }
    }
    if let Scope::Process(_) = info.scope {
        // Other per-test fixtures are refused by the `ProcessScoped` bound,
        // where the type system can tell; the built-ins are known here.
        for param in &info.params {
            if let Some(builtin) = BuiltIn::named(&param.source) {
                errors.spanned(
                    &param.source,
                    format_args!(
                        "a process-scoped fixture cannot take `{}`: its handle is one test's room, and the fixture's \
                         value is shared by every test of the process; take `{}` in a per-test fixture (no scope) \
                         instead",
                        builtin.name(),
                        builtin.name()
                    ),
                );
            }
        }
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
        messages_with(quote!(), func)
    }

    fn messages_with(args: proc_macro2::TokenStream, func: syn::ItemFn) -> Vec<String> {
        match validate(&parse(args, func).unwrap()) {
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

    #[test]
    fn reject_a_process_fixture_that_takes_a_built_in_service() {
        let messages = messages_with(
            quote!(scope = "process"),
            parse_quote!(
                async fn pool(postgres: Postgres, #[from(redis)] r: Redis) -> Pool {
                    todo!()
                }
            ),
        );
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(messages[0].starts_with("a process-scoped fixture cannot take `postgres`"), "{messages:?}");
        assert!(messages[1].starts_with("a process-scoped fixture cannot take `redis`"), "{messages:?}");
    }

    #[test]
    fn accept_a_per_test_fixture_that_takes_a_built_in_service() {
        assert!(messages_with(
            quote!(scope = "test"),
            parse_quote!(
                async fn client(postgres: Postgres) -> Client {
                    todo!()
                }
            )
        )
        .is_empty());
    }
}
