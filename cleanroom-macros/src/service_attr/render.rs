//! Writes the service's registration and `Resolve`/`Service` impls for a
//! validated [`ServiceInfo`].

use proc_macro2::{Delimiter, Group, Ident, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::ReturnType;

use super::ServiceInfo;

/// `Into::<GenericContainer>::into(web())`. The call's first token carries
/// the span of the return type's first token and its parentheses that of the
/// last, so that a return type that is no container is underlined whole.
fn make(info: &ServiceInfo) -> TokenStream {
    let name = &info.func.sig.ident;
    let tokens = match &info.func.sig.output {
        ReturnType::Type(_, ty) => ty.to_token_stream(),
        ReturnType::Default => name.to_token_stream(),
    };
    let first = tokens.clone().into_iter().next().map_or_else(|| name.span(), |token| token.span());
    let last = tokens.into_iter().last().map_or(first, |token| token.span());
    let callee = Ident::new(&name.to_string(), first);
    let mut parens = Group::new(Delimiter::Parenthesis, TokenStream::new());
    parens.set_span(last);
    quote_spanned! {first=>
        ::core::convert::Into::<::cleanroom::__private::GenericContainer>::into(#callee #parens)
    }
}

/// The expansion of a valid service.
pub(crate) fn render(info: &ServiceInfo) -> TokenStream {
    let func = &info.func;
    let name = &func.sig.ident;
    let vis = &func.vis;
    let name_str = name.unraw().to_string();
    let cfgs = func.attrs.iter().filter(|attr| attr.path().is_ident("cfg"));
    let cfgs = quote!(#(#cfgs)*);
    let spec = format_ident!("__cleanroom_service_{}", name.unraw());
    let ctx = Ident::new("__cleanroom_ctx", Span::mixed_site());
    let make = make(info);
    quote! {
        #func

        #cfgs
        #[allow(non_camel_case_types, dead_code)]
        #[doc(hidden)]
        #vis struct #name {}

        #cfgs
        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        static #spec: ::cleanroom::__private::ServiceSpec = ::cleanroom::__private::ServiceSpec {
            name: #name_str,
            module_path: ::core::module_path!(),
            kind: ::cleanroom::__private::ServiceKind::Generic(|| #make),
        };

        #cfgs
        const _: () = {
            ::cleanroom::__private::inventory::submit! {
                ::cleanroom::__private::Registration::Service(&#spec)
            }
        };

        #cfgs
        impl ::cleanroom::__private::Resolve for #name {
            type Output = ::cleanroom::__private::Container;
            const NODE: ::cleanroom::__private::Node = ::cleanroom::__private::Node::service(&#spec);
            fn resolve(#ctx: &mut ::cleanroom::__private::TestContext) -> Self::Output {
                #ctx.container(&#spec)
            }
        }

        #cfgs
        impl ::cleanroom::__private::Service for #name {}
    }
}

#[cfg(test)]
mod should {
    use quote::quote;
    use syn::parse_quote;

    use super::super::parse::parse;
    use super::*;

    fn expand(func: syn::ItemFn) -> String {
        render(&parse(quote!(), func).unwrap()).to_string()
    }

    fn has(haystack: &str, needle: TokenStream) -> bool {
        haystack.contains(&needle.to_string())
    }

    #[test]
    fn keep_the_function_and_add_a_type_with_its_visibility() {
        let out = expand(parse_quote!(
            pub fn web() -> G {
                g()
            }
        ));
        assert!(
            out.starts_with(
                &quote!(
                    pub fn web() -> G {
                        g()
                    }
                )
                .to_string()
            ),
            "{out}"
        );
        assert!(
            has(
                &out,
                quote!(
                    pub struct web {}
                )
            ),
            "{out}"
        );
    }

    #[test]
    fn register_a_generic_spec_built_from_the_function() {
        let out = expand(parse_quote!(
            fn web() -> G {
                g()
            }
        ));
        assert!(has(&out, quote!(static __cleanroom_service_web: ::cleanroom::__private::ServiceSpec)), "{out}");
        assert!(
            has(
                &out,
                quote! {
                    ::cleanroom::__private::ServiceKind::Generic(||
                        ::core::convert::Into::<::cleanroom::__private::GenericContainer>::into(web()))
                }
            ),
            "{out}"
        );
        assert!(has(&out, quote!(::cleanroom::__private::Registration::Service(&__cleanroom_service_web))), "{out}");
    }

    #[test]
    fn implement_resolve_and_service() {
        let out = expand(parse_quote!(
            fn web() -> G {
                g()
            }
        ));
        assert!(has(&out, quote!(::cleanroom::__private::Node::service(&__cleanroom_service_web))), "{out}");
        assert!(has(&out, quote!(impl ::cleanroom::__private::Service for web {})), "{out}");
    }
}
