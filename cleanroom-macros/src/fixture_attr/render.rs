//! Writes the fixture's `Resolve` type for a validated [`FixtureInfo`].

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::ItemFn;

use super::{FixtureInfo, Scope};
use crate::dependency::Dependency;
use crate::param::strip_from;

/// The expansion of a valid fixture: the function, a type of the same name
/// (braced, so it lives in the type namespace only), and its `Resolve` impl
/// (with `ProcessScoped` for a process-scoped one).
pub(crate) fn render(info: &FixtureInfo) -> TokenStream {
    match info.scope {
        Scope::Test => render_per_test(info),
        Scope::Process(span) => render_process(info, span),
    }
}

/// The fixture function's arguments, one per parameter (spanned at its
/// type, so that a type error points there), and the `let` that binds each
/// to `value` of its dependency.
fn bind_arguments(info: &FixtureInfo, value: impl Fn(&Dependency) -> TokenStream) -> (Vec<Ident>, Vec<TokenStream>) {
    info.params
        .iter()
        .enumerate()
        .map(|(i, param)| {
            let arg = format_ident!("__cleanroom_arg_{}", i, span = param.ty.span().resolved_at(Span::mixed_site()));
            let value = value(&Dependency::named(&param.source));
            (arg.clone(), quote!(let #arg = #value;))
        })
        .unzip()
}

/// A fixture made for each test that asks.
fn render_per_test(info: &FixtureInfo) -> TokenStream {
    let func = &info.func;
    let name = &func.sig.ident;
    let vis = &func.vis;
    let name_str = name.unraw().to_string();
    let cfgs = func.attrs.iter().filter(|attr| attr.path().is_ident("cfg"));
    let cfgs = quote!(#(#cfgs)*);
    let output = info.output();
    let ctx = Ident::new("__cleanroom_ctx", Span::mixed_site());
    let cloner = Ident::new("__cleanroom_cloner", Span::mixed_site());

    let deps = info.params.iter().map(|param| Dependency::named(&param.source).node());
    let (args, bindings) = bind_arguments(info, |dependency| dependency.resolve(&ctx));
    let rooms = info.rooms.iter().map(|(service, room)| crate::room::render(service, room));
    let call = if info.is_async() { quote!(#ctx.block_on(#name(#(#args),*))) } else { quote!(#name(#(#args),*)) };
    let builtin_names = crate::dependency::builtin_names();

    quote! {
        #func

        #cfgs
        #[allow(non_camel_case_types, dead_code)]
        #[doc(hidden)]
        #vis struct #name {}

        #cfgs
        impl ::cleanroom::__private::Resolve for #name {
            type Output = #output;
            const NODE: ::cleanroom::__private::Node = {
                #builtin_names
                ::cleanroom::__private::Node::fixture(#name_str, ::core::module_path!(), &[#(#deps),*])
                    .with_rooms(&[#(#rooms),*])
            };
            fn resolve(#ctx: &mut ::cleanroom::__private::TestContext) -> Self::Output {
                #[allow(unused_imports)]
                use ::cleanroom::__private::{ShareClone as _, ShareNone as _};
                let #cloner = (&&::cleanroom::__private::Share::<#output>::new()).cloner();
                #ctx.fixture(&<Self as ::cleanroom::__private::Resolve>::NODE, #cloner, |#ctx| {
                    #builtin_names
                    #(#bindings)*
                    #call
                })
            }
        }
    }
}

/// A fixture made once per test process: the runtime keeps its value for
/// the process, its dependencies are process fixtures too (the
/// `ProcessScoped` bound says so at the parameter), and an async one runs on
/// the process fixtures' runtime, which outlives every test's.
fn render_process(info: &FixtureInfo, scope: Span) -> TokenStream {
    let func = &info.func;
    let name = &func.sig.ident;
    let vis = &func.vis;
    let name_str = name.unraw().to_string();
    let cfgs = func.attrs.iter().filter(|attr| attr.path().is_ident("cfg"));
    let cfgs = quote!(#(#cfgs)*);
    let output = info.output();
    let ctx = Ident::new("__cleanroom_ctx", Span::mixed_site());
    let test = Ident::new("__cleanroom_test", Span::mixed_site());

    let deps = info.params.iter().map(|param| Dependency::named(&param.source).node());
    let (args, bindings) = bind_arguments(info, |dependency| dependency.process_value(&test));
    let call = if info.is_async() {
        quote!(::cleanroom::__private::block_on_process(#name(#(#args),*)))
    } else {
        quote!(#name(#(#args),*))
    };
    // At the return type (or at `scope = "process"` without one), so that a
    // value that cannot be shared is reported there.
    let value_span = match &func.sig.output {
        syn::ReturnType::Type(_, ty) => ty.span(),
        syn::ReturnType::Default => scope,
    };
    let process_fixture = quote_spanned!(value_span=> ::cleanroom::__private::process_fixture::<#output>);

    quote! {
        #func

        #cfgs
        #[allow(non_camel_case_types, dead_code)]
        #[doc(hidden)]
        #vis struct #name {}

        #cfgs
        impl ::cleanroom::__private::Resolve for #name {
            type Output = #output;
            const NODE: ::cleanroom::__private::Node =
                ::cleanroom::__private::Node::fixture(#name_str, ::core::module_path!(), &[#(#deps),*]);
            fn resolve(#ctx: &mut ::cleanroom::__private::TestContext) -> Self::Output {
                <Self as ::cleanroom::__private::ProcessScoped>::process_value(#ctx.desc())
            }
        }

        #cfgs
        impl ::cleanroom::__private::ProcessScoped for #name {
            fn process_value(#test: &'static ::cleanroom::__private::TestDesc) -> Self::Output {
                #process_fixture(&<Self as ::cleanroom::__private::Resolve>::NODE, #test, || {
                    #(#bindings)*
                    #call
                })
            }
        }
    }
}

/// What is emitted next to the errors: the user's function alone.
pub(crate) fn fallback(mut func: ItemFn) -> TokenStream {
    strip_from(&mut func.sig);
    quote! {
        #[allow(unused)]
        #func
    }
}

#[cfg(test)]
mod should {
    use quote::quote;
    use syn::parse_quote;

    use super::super::parse::parse;
    use super::*;

    fn expand(func: ItemFn) -> String {
        render(&parse(quote!(), func).unwrap()).to_string()
    }

    fn has(haystack: &str, needle: TokenStream) -> bool {
        haystack.contains(&needle.to_string())
    }

    #[test]
    fn keep_the_function_without_from() {
        let out = expand(parse_quote!(
            pub fn client(#[from(other)] o: O) -> C {
                c(o)
            }
        ));
        assert!(
            out.starts_with(
                &quote!(
                    pub fn client(o: O) -> C {
                        c(o)
                    }
                )
                .to_string()
            ),
            "{out}"
        );
    }

    #[test]
    fn add_a_braced_type_with_the_functions_visibility() {
        let out = expand(parse_quote!(
            pub(crate) fn client() -> C {
                c()
            }
        ));
        assert!(
            has(
                &out,
                quote!(
                    pub(crate) struct client {}
                )
            ),
            "{out}"
        );
    }

    #[test]
    fn describe_its_dependencies_as_graph_nodes() {
        let out = expand(parse_quote!(
            fn client(postgres: Postgres, #[from(other)] o: O) -> C {
                c()
            }
        ));
        let node = quote!(::cleanroom::__private::Node::fixture(
            "client",
            ::core::module_path!(),
            &[
                &<::cleanroom::__private::postgres as ::cleanroom::__private::Resolve>::NODE,
                &<other as ::cleanroom::__private::Resolve>::NODE
            ]
        )
        .with_rooms(&[]));
        assert!(has(&out, node), "{out}");
    }

    #[test]
    fn share_the_value_through_the_concrete_return_type() {
        let out = expand(parse_quote!(
            fn client() -> tokio_postgres::Client {
                c()
            }
        ));
        assert!(
            has(
                &out,
                quote!(
                    type Output = tokio_postgres::Client;
                )
            ),
            "{out}"
        );
        assert!(has(&out, quote!(::cleanroom::__private::Share::<tokio_postgres::Client>::new())), "{out}");
    }

    #[test]
    fn provide_unit_without_a_return_type() {
        let out = expand(parse_quote!(
            fn setup() {}
        ));
        assert!(
            has(
                &out,
                quote!(
                    type Output = ();
                )
            ),
            "{out}"
        );
    }

    #[test]
    fn block_on_an_async_fixture_only() {
        assert!(expand(parse_quote!(
            async fn a() -> u8 {
                1
            }
        ))
        .contains("block_on (a ())"));
        assert!(!expand(parse_quote!(
            fn s() -> u8 {
                1
            }
        ))
        .contains("block_on"));
    }

    #[test]
    fn build_a_process_fixture_through_the_runtime_once() {
        let out = render(
            &parse(
                quote!(scope = "process"),
                parse_quote!(
                    async fn tracing(config: Config) -> Arc<T> {
                        t()
                    }
                ),
            )
            .unwrap(),
        )
        .to_string();
        assert!(has(&out, quote!(impl ::cleanroom::__private::ProcessScoped for tracing)), "{out}");
        // Written out: `quote!` would read `>>` as one token.
        assert!(out.contains(":: cleanroom :: __private :: process_fixture :: < Arc < T > >"), "{out}");
        assert!(
            has(&out, quote!(<config as ::cleanroom::__private::ProcessScoped>::process_value(__cleanroom_test))),
            "{out}"
        );
        assert!(has(&out, quote!(::cleanroom::__private::block_on_process(tracing(__cleanroom_arg_0)))), "{out}");
        assert!(!out.contains("ShareClone"), "a process fixture is not memoised per test: {out}");
    }

    #[test]
    fn copy_cfg_to_the_generated_items() {
        let out = expand(parse_quote!(
            #[cfg(feature = "db")]
            fn client() -> C {
                c()
            }
        ));
        assert_eq!(out.matches("cfg (feature = \"db\")").count(), 3, "{out}");
    }
}
