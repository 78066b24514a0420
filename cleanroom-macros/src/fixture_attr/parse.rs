//! Reads a fixture function into a [`FixtureInfo`].

use proc_macro2::TokenStream;
use syn::ItemFn;

use super::FixtureInfo;
use crate::diagnostic::Errors;
use crate::param::parse_params;

/// Parses the fixture, reporting every malformed parameter at once.
pub(crate) fn parse(args: TokenStream, mut func: ItemFn) -> syn::Result<FixtureInfo> {
    let mut errors = Errors::default();
    if !args.is_empty() {
        errors.spanned(args, "expected no arguments: #[cleanroom::fixture] takes none");
    }
    let params = parse_params(&mut func.sig, "fixture", &mut errors);
    errors.finish()?;
    Ok(FixtureInfo { params, func })
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

    #[test]
    fn reject_arguments() {
        let error = parse(
            quote!(scope = "run"),
            parse_quote!(
                fn f() {}
            ),
        )
        .unwrap_err();
        assert_eq!(error.to_string(), "expected no arguments: #[cleanroom::fixture] takes none");
    }
}
