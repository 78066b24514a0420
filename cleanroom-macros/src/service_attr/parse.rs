//! Reads a service function into a [`ServiceInfo`].

use proc_macro2::TokenStream;
use syn::ItemFn;

use super::ServiceInfo;

/// Parses the service; the attribute takes no arguments.
pub(crate) fn parse(args: TokenStream, func: ItemFn) -> syn::Result<ServiceInfo> {
    if !args.is_empty() {
        return Err(syn::Error::new_spanned(args, "#[cleanroom::service] takes no arguments other than crate = \"…\""));
    }
    Ok(ServiceInfo { func })
}

#[cfg(test)]
mod should {
    use quote::quote;
    use syn::parse_quote;

    use super::*;

    #[test]
    fn reject_arguments() {
        let error = parse(
            quote!(image = "nginx"),
            parse_quote!(
                fn web() -> G {
                    g()
                }
            ),
        )
        .unwrap_err();
        assert_eq!(error.to_string(), "#[cleanroom::service] takes no arguments other than crate = \"…\"");
    }
}
