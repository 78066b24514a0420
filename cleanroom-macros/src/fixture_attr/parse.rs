//! Reads a fixture function into a [`FixtureInfo`].

use proc_macro2::TokenStream;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, ItemFn, Lit, Meta, Token};

use super::{FixtureInfo, Scope};
use crate::diagnostic::Errors;
use crate::param::parse_params;

/// What the attribute accepts, as listed in messages.
const OPTIONS: &str = "expected `scope = \"process\"`, or what the fixture asks of a service's room, as in \
                       `postgres(migrations = \"migrations\")` (or no arguments)";

/// Parses the attribute's options and the fixture, reporting every malformed
/// option and parameter at once.
pub(crate) fn parse(args: TokenStream, mut func: ItemFn) -> syn::Result<FixtureInfo> {
    let metas = Punctuated::<Meta, Token![,]>::parse_terminated.parse2(args)?;
    let mut errors = Errors::default();
    let mut scope = None;
    let mut rooms = Vec::new();
    for meta in metas {
        match &meta {
            Meta::List(list) if list.path.get_ident().is_some() => {
                let name = list.path.get_ident().cloned().expect("checked above");
                let room = errors.ok(list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated));
                let room = room.map(|metas| crate::room::parse(metas, &mut errors)).unwrap_or_default();
                if rooms.iter().any(|(n, _)| *n == name) {
                    errors.spanned(&name, format_args!("`{name}` is listed twice"));
                }
                rooms.push((name, room));
            }
            Meta::NameValue(option) if option.path.is_ident("scope") => {
                let Expr::Lit(ExprLit { lit: Lit::Str(name), .. }) = &option.value else {
                    errors.spanned(&option.value, format_args!("expected a string: scope = one of {}", Scope::CHOICES));
                    continue;
                };
                match (Scope::named(&name.value(), name.span()), scope) {
                    (None, _) => errors.spanned(
                        name,
                        format_args!("unknown scope \"{}\": expected one of {}", name.value(), Scope::CHOICES),
                    ),
                    (Some(_), Some(_)) => errors.spanned(&option.path, "`scope` is set twice"),
                    (Some(named), None) => scope = Some(named),
                }
            }
            Meta::Path(path) if path.is_ident("scope") => {
                errors.spanned(path, "`scope` needs a value, as in scope = \"process\"")
            }
            _ => {
                let path = meta.path();
                let name = quote::quote!(#path).to_string().replace(' ', "");
                errors.spanned(&meta, format_args!("unknown option `{name}`: {OPTIONS}"));
            }
        }
    }
    let params = parse_params(&mut func.sig, "fixture", &mut errors);
    errors.finish()?;
    Ok(FixtureInfo { scope: scope.unwrap_or(Scope::Test), rooms, params, func })
}

#[cfg(test)]
mod should {
    use quote::quote;
    use syn::parse_quote;

    use super::*;

    #[test]
    fn read_the_parameters_as_dependencies() {
        let info = parse(
            quote!(),
            parse_quote!(
                fn client(postgres: Postgres, #[from(other)] o: O) -> C {
                    c()
                }
            ),
        )
        .unwrap();
        let sources: Vec<String> = info.params.iter().map(|p| p.source.to_string()).collect();
        assert_eq!(sources, ["postgres", "other"]);
    }

    #[test]
    fn default_the_output_to_unit() {
        let info = parse(
            quote!(),
            parse_quote!(
                fn setup() {}
            ),
        )
        .unwrap();
        assert_eq!(info.output(), parse_quote!(()));
    }

    fn messages(args: TokenStream) -> Vec<String> {
        match parse(
            args,
            parse_quote!(
                fn f() {}
            ),
        ) {
            Ok(_) => Vec::new(),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn read_room_options() {
        let info = parse(
            quote!(postgres(migrations = "m", tool = "sqlx")),
            parse_quote!(
                fn db(postgres: Postgres) {}
            ),
        )
        .unwrap();
        assert_eq!(info.rooms[0].0, "postgres");
        assert_eq!(info.rooms[0].1.migrations.as_ref().unwrap().1.value(), "m");
    }

    #[test]
    fn default_the_scope_to_one_value_per_test() {
        let info = parse(
            quote!(),
            parse_quote!(
                fn f() {}
            ),
        )
        .unwrap();
        assert!(matches!(info.scope, Scope::Test), "{:?}", info.scope);
    }

    #[test]
    fn read_the_process_scope() {
        let info = parse(
            quote!(scope = "process"),
            parse_quote!(
                fn f() {}
            ),
        )
        .unwrap();
        assert!(matches!(info.scope, Scope::Process(_)), "{:?}", info.scope);
    }

    #[test]
    fn reject_an_unknown_scope_naming_the_choices() {
        assert_eq!(
            messages(quote!(scope = "run")),
            ["unknown scope \"run\": expected one of \"test\" (the default: one value per test), \"process\" (one per test process)"]
        );
    }

    #[test]
    fn reject_unknown_options_and_a_scope_set_twice_all_at_once() {
        let messages = messages(quote!(image = "x", scope = "process", scope = "test", scope));
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert!(messages[0].starts_with("unknown option `image`"), "{messages:?}");
        assert_eq!(messages[1], "`scope` is set twice");
        assert!(messages[2].contains("needs a value"), "{messages:?}");
    }
}
