//! Writes the `#[test]` function for a validated [`TestInfo`].
//!
//! The test's description and its registration are items next to the
//! function, not inside it: a non-test build removes `#[test]` functions
//! unchecked, and the description is where an unknown fixture, a fixture
//! listed as a service or a fixture cycle is reported, in every build. The
//! function's `#[cfg]`s are copied onto them.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::ItemFn;

use super::model::is_test_attribute;
use super::{Flavor, TestInfo};
use crate::dependency::Dependency;
use crate::param::strip_from;

/// The expansion of a valid test.
pub(crate) fn render(info: &TestInfo) -> TokenStream {
    let ItemFn { attrs, vis, sig, block } = &info.func;
    let name = &sig.ident;
    let output = &sig.output;
    let name_str = name.unraw().to_string();
    let ignored = info.is_ignored();
    let flavor = flavor(info);
    let needs = needs(info);
    let rooms = rooms(info);
    let desc = format_ident!("__cleanroom_test_{}", name.unraw());
    let cfgs = attrs.iter().filter(|attr| attr.path().is_ident("cfg"));
    let cfgs = quote!(#(#cfgs)*);

    let mut body_sig = sig.clone();
    body_sig.ident = Ident::new("__cleanroom_body", name.span());
    let body_name = &body_sig.ident;

    let ctx = ctx();
    let (args, bindings): (Vec<Ident>, Vec<TokenStream>) = info
        .params
        .iter()
        .enumerate()
        .map(|(i, param)| {
            // Located at the parameter's type, so that a type mismatch is
            // reported there; hygienic, so that it cannot clash with user names.
            let arg = format_ident!("__cleanroom_arg_{}", i, span = param.ty.span().resolved_at(Span::mixed_site()));
            let resolve = info.dependency(param).resolve(&ctx);
            (arg.clone(), quote!(let #arg = #resolve;))
        })
        .unzip();
    let call =
        if info.is_async() { quote!(#ctx.block_on(#body_name(#(#args),*))) } else { quote!(#body_name(#(#args),*)) };
    let builtin_names = crate::dependency::builtin_names();

    quote! {
        #cfgs
        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        static #desc: ::cleanroom::__private::TestDesc = {
            #builtin_names
            ::cleanroom::__private::TestDesc {
                module_path: ::core::module_path!(),
                name: #name_str,
                ignored: #ignored,
                flavor: #flavor,
                needs: &[#(#needs),*],
                rooms: &[#(#rooms),*],
            }
        };

        #cfgs
        const _: () = {
            ::cleanroom::__private::inventory::submit! {
                ::cleanroom::__private::Registration::Test(&#desc)
            }
        };

        #[::core::prelude::v1::test]
        #(#attrs)*
        #vis fn #name() #output {
            #body_sig #block
            ::cleanroom::__private::run(&#desc, |#ctx| {
                #builtin_names
                #(#bindings)*
                #call
            })
        }
    }
}

/// What is emitted next to the errors: the user's function as a plain,
/// unused function, so that nothing else fails or warns for want of it.
pub(crate) fn fallback(mut func: ItemFn) -> TokenStream {
    strip_from(&mut func.sig);
    func.attrs.retain(|attr| !is_test_attribute(attr));
    quote! {
        #[allow(unused)]
        #func
    }
}

/// The test context's name in generated code; it starts with `_` so that a
/// test without parameters does not warn about it.
fn ctx() -> Ident {
    Ident::new("__cleanroom_ctx", Span::mixed_site())
}

fn flavor(info: &TestInfo) -> TokenStream {
    let flavor = info.flavor.as_ref().map(|option| option.flavor);
    match (info.is_async(), flavor) {
        (false, _) => quote!(::cleanroom::__private::Flavor::Sync),
        (true, None | Some(Flavor::CurrentThread)) => {
            quote!(::cleanroom::__private::Flavor::CurrentThread)
        }
        (true, Some(Flavor::MultiThread)) => {
            let workers = match &info.worker_threads {
                Some(workers) => {
                    let count = workers.count;
                    quote!(::core::option::Option::Some(#count))
                }
                None => quote!(::core::option::Option::None),
            };
            quote!(::cleanroom::__private::Flavor::MultiThread(#workers))
        }
    }
}

/// What the listed services' rooms should be, for those given options.
fn rooms(info: &TestInfo) -> Vec<TokenStream> {
    info.services
        .iter()
        .filter_map(|service| Some(crate::room::render(&service.name, service.room.as_ref()?)))
        .collect()
}

/// The listed services, then the fixtures the parameters name, each once.
fn needs(info: &TestInfo) -> Vec<TokenStream> {
    let services = info.services.iter().map(|service| Dependency::named(&service.name).service_node());
    let mut seen = Vec::new();
    let fixtures = info.params.iter().filter(|param| !info.lists(&param.source)).filter_map(|param| {
        if seen.contains(&param.source) {
            return None;
        }
        seen.push(param.source.clone());
        Some(Dependency::Item(param.source.clone()).node())
    });
    services.chain(fixtures).collect()
}

#[cfg(test)]
mod should {
    use quote::quote;
    use syn::parse_quote;

    use super::super::parse::parse;
    use super::*;

    fn expand(args: TokenStream, func: ItemFn) -> String {
        render(&parse(args, func).unwrap()).to_string()
    }

    fn has(haystack: &str, needle: TokenStream) -> bool {
        haystack.contains(&needle.to_string())
    }

    #[test]
    fn mark_the_function_with_the_unshadowable_test_attribute() {
        let out = expand(
            quote!(),
            parse_quote!(
                fn t() {}
            ),
        );
        assert!(has(&out, quote!(#[::core::prelude::v1::test] fn t())), "{out}");
    }

    #[test]
    fn run_a_synchronous_test_without_a_runtime_flavor() {
        let out = expand(
            quote!(),
            parse_quote!(
                fn t() {}
            ),
        );
        assert!(has(&out, quote!(flavor: ::cleanroom::__private::Flavor::Sync)), "{out}");
        assert!(!out.contains("block_on"), "{out}");
    }

    #[test]
    fn run_an_async_test_on_a_current_thread_runtime_by_default() {
        let out = expand(
            quote!(),
            parse_quote!(
                async fn t() {}
            ),
        );
        assert!(has(&out, quote!(flavor: ::cleanroom::__private::Flavor::CurrentThread)), "{out}");
        assert!(out.contains("block_on"), "{out}");
    }

    #[test]
    fn pass_the_worker_threads_of_a_multi_thread_runtime() {
        let out = expand(
            quote!(flavor = "multi_thread", worker_threads = 3),
            parse_quote!(
                async fn t() {}
            ),
        );
        assert!(
            has(&out, quote!(::cleanroom::__private::Flavor::MultiThread(::core::option::Option::Some(3usize)))),
            "{out}"
        );
        let out = expand(
            quote!(flavor = "multi_thread"),
            parse_quote!(
                async fn t() {}
            ),
        );
        assert!(has(&out, quote!(::cleanroom::__private::Flavor::MultiThread(::core::option::Option::None))), "{out}");
    }

    #[test]
    fn strip_from_and_keep_the_users_signature_in_the_body_function() {
        let out = expand(
            quote!(),
            parse_quote!(
                async fn t(#[from(client)] mut c: Client) -> u8 {
                    1
                }
            ),
        );
        assert!(!out.contains("from"), "{out}");
        assert!(
            has(
                &out,
                quote!(
                    async fn __cleanroom_body(mut c: Client) -> u8 {
                        1
                    }
                )
            ),
            "{out}"
        );
        assert!(has(&out, quote!(fn t() -> u8)), "{out}");
    }

    #[test]
    fn list_services_before_fixtures_in_the_description() {
        let out = expand(
            quote!(postgres, web),
            parse_quote!(
                fn t(client: Client, postgres: Postgres, #[from(client)] again: Client) {}
            ),
        );
        let needs = quote!(needs: &[
            &<::cleanroom::__private::postgres as ::cleanroom::__private::Service>::NODE,
            &<web as ::cleanroom::__private::Service>::NODE,
            &<client as ::cleanroom::__private::Resolve>::NODE
        ]);
        assert!(has(&out, needs), "{out}");
    }

    #[test]
    fn resolve_each_parameter_from_what_it_names() {
        let out = expand(
            quote!(postgres),
            parse_quote!(
                fn t(postgres: Postgres, #[from(client)] c: Client) {}
            ),
        );
        assert!(
            has(&out, quote!(<::cleanroom::__private::postgres as ::cleanroom::__private::Resolve>::resolve)),
            "{out}"
        );
        assert!(has(&out, quote!(<client as ::cleanroom::__private::Resolve>::resolve)), "{out}");
    }

    #[test]
    fn describe_room_options_relative_to_the_users_crate() {
        let out = expand(
            quote!(postgres(migrations = "m"), redis),
            parse_quote!(
                fn t() {}
            ),
        );
        let rooms = quote!(rooms: &[::cleanroom::__private::RoomOptions {
            service: "postgres",
            shared: false,
            migrations: ::core::option::Option::Some("m"),
            init: ::core::option::Option::None,
            tool: ::core::option::Option::None,
            base_dir: ::core::env!("CARGO_MANIFEST_DIR"),
        }]);
        assert!(has(&out, rooms), "{out}");
        assert!(expand(
            quote!(postgres),
            parse_quote!(
                fn t() {}
            )
        )
        .contains("rooms : & []"));
    }

    #[test]
    fn record_whether_the_test_is_ignored() {
        assert!(expand(
            quote!(),
            parse_quote!(
                #[ignore]
                fn t() {}
            )
        )
        .contains("ignored : true"));
        assert!(expand(
            quote!(),
            parse_quote!(
                fn t() {}
            )
        )
        .contains("ignored : false"));
    }

    #[test]
    fn keep_the_users_attributes_on_the_test() {
        let out = expand(
            quote!(),
            parse_quote!(
                #[should_panic(expected = "boom")]
                #[doc = "d"]
                fn t() {}
            ),
        );
        assert!(has(&out, quote!(#[should_panic(expected = "boom")] #[doc = "d"] fn t())), "{out}");
    }

    #[test]
    fn register_the_test_through_the_private_door() {
        let out = expand(
            quote!(),
            parse_quote!(
                fn t() {}
            ),
        );
        assert!(has(&out, quote!(::cleanroom::__private::inventory::submit!)), "{out}");
        assert!(has(&out, quote!(::cleanroom::__private::run)), "{out}");
        assert!(has(&out, quote!(static __cleanroom_test_t: ::cleanroom::__private::TestDesc)), "{out}");
        assert!(has(&out, quote!(::cleanroom::__private::Registration::Test(&__cleanroom_test_t))), "{out}");
    }

    #[test]
    fn copy_cfg_to_the_description_and_its_registration() {
        let out = expand(
            quote!(),
            parse_quote!(
                #[cfg(feature = "db")]
                fn t() {}
            ),
        );
        assert_eq!(out.matches("cfg (feature = \"db\")").count(), 3, "{out}");
    }

    #[test]
    fn emit_the_plain_function_as_the_fallback() {
        let out = fallback(parse_quote!(
            #[tokio::test]
            async fn t(#[from(x)] a: A) {}
        ))
        .to_string();
        assert_eq!(
            out,
            quote!(
                #[allow(unused)]
                async fn t(a: A) {}
            )
            .to_string()
        );
    }
}
