//! Checks that a parsed [`TestInfo`] makes sense, reporting every problem at
//! once, each at the token that caused it.

use quote::ToTokens;
use syn::Attribute;

use super::model::is_test_attribute;
use super::{Flavor, TestInfo};
use crate::builtin::BuiltIn;
use crate::diagnostic::Errors;
use crate::signature;

/// `Ok(())` when the test can be rendered.
pub(crate) fn validate(info: &TestInfo) -> syn::Result<()> {
    let mut errors = Errors::default();
    services_listed_once(info, &mut errors);
    room_options_fit_the_service(info, &mut errors);
    options_fit_the_function(info, &mut errors);
    no_other_test_attribute(info, &mut errors);
    signature_is_plain(info, &mut errors);
    built_ins_are_listed(info, &mut errors);
    errors.finish()
}

fn services_listed_once(info: &TestInfo, errors: &mut Errors) {
    for (i, service) in info.services.iter().enumerate() {
        let name = &service.name;
        if info.services[..i].iter().any(|earlier| earlier.name == *name) {
            errors.spanned(name, format_args!("service `{name}` is listed twice"));
        }
    }
}

fn room_options_fit_the_service(info: &TestInfo, errors: &mut Errors) {
    for service in &info.services {
        if let Some(room) = &service.room {
            crate::room::check(&service.name, room, errors);
        }
    }
}

fn options_fit_the_function(info: &TestInfo, errors: &mut Errors) {
    if let Some(flavor) = info.flavor.as_ref().filter(|_| !info.is_async()) {
        errors.spanned(
            &flavor.key,
            "`flavor` applies to an `async fn` test only: a synchronous test has no runtime of its own",
        );
    }
    let multi_thread = info.flavor.as_ref().is_some_and(|option| option.flavor == Flavor::MultiThread);
    if let Some(workers) = info.worker_threads.as_ref().filter(|_| !multi_thread) {
        errors.spanned(&workers.key, "`worker_threads` needs flavor = \"multi_thread\"");
    }
}

fn no_other_test_attribute(info: &TestInfo, errors: &mut Errors) {
    for attr in info.func.attrs.iter().filter(|attr| is_test_attribute(attr)) {
        errors.spanned(
            attr,
            format_args!(
                "#[cleanroom::test] already makes this a test with its own runtime; remove #[{}]",
                written_as(attr)
            ),
        );
    }
}

/// How to name `attr` in a message. A `::core::prelude::…::test` was written
/// by a macro expanded before ours, in practice `#[tokio::test]`.
fn written_as(attr: &Attribute) -> String {
    let path = attr.path();
    let first = &path.segments[0].ident;
    if path.segments.len() > 1 && (first == "core" || first == "std") {
        return "tokio::test".to_owned();
    }
    path.to_token_stream().to_string().replace(' ', "")
}

fn signature_is_plain(info: &TestInfo, errors: &mut Errors) {
    if let Some(generics) = signature::generics(&info.func.sig) {
        errors.spanned(generics, "a cleanroom test cannot be generic: its parameters are resolved by name");
    }
    for impl_trait in info.params.iter().filter_map(|param| param.impl_trait()) {
        errors.spanned(
            impl_trait,
            "a cleanroom test cannot take `impl Trait`: write the type the fixture or service returns",
        );
    }
}

fn built_ins_are_listed(info: &TestInfo, errors: &mut Errors) {
    for param in &info.params {
        if let Some(builtin) = BuiltIn::named(&param.source).filter(|_| !info.lists(&param.source)) {
            let name = builtin.name();
            errors.spanned(
                &param.source,
                format_args!("`{name}` is a built-in service: list it in the attribute, #[cleanroom::test({name})]"),
            );
        }
    }
}

#[cfg(test)]
mod should {
    use quote::quote;
    use syn::parse_quote;

    use super::super::parse::parse;
    use super::*;

    fn messages(args: proc_macro2::TokenStream, func: syn::ItemFn) -> Vec<String> {
        match validate(&parse(args, func).unwrap()) {
            Ok(()) => Vec::new(),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn accept_services_fixtures_and_options_that_fit() {
        let none: Vec<String> = Vec::new();
        assert_eq!(
            messages(
                quote!(postgres, web, flavor = "multi_thread", worker_threads = 2),
                parse_quote!(
                    async fn t(postgres: Postgres, #[from(client)] c: Client, web: Container) {}
                )
            ),
            none
        );
    }

    #[test]
    fn reject_duplicate_services() {
        assert_eq!(
            messages(
                quote!(postgres, redis, postgres),
                parse_quote!(
                    fn t() {}
                )
            ),
            ["service `postgres` is listed twice"]
        );
    }

    #[test]
    fn reject_room_options_that_do_not_fit_the_service() {
        let errors = messages(
            quote!(web(shared), redis(migrations = "m"), postgres(shared, init = "i.sql")),
            parse_quote!(
                fn t() {}
            ),
        );
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("`web` takes no options"));
        assert!(errors[1].starts_with("`migrations` applies to postgres only"));
        assert!(errors[2].starts_with("`shared` uses the server's main database"));
    }

    #[test]
    fn reject_worker_threads_without_multi_thread() {
        assert_eq!(
            messages(
                quote!(flavor = "current_thread", worker_threads = 2),
                parse_quote!(
                    async fn t() {}
                )
            ),
            ["`worker_threads` needs flavor = \"multi_thread\""]
        );
    }

    #[test]
    fn reject_a_flavor_on_a_synchronous_test() {
        let errors = messages(
            quote!(flavor = "multi_thread"),
            parse_quote!(
                fn t() {}
            ),
        );
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("`flavor` applies to an `async fn` test only"));
    }

    #[test]
    fn reject_a_stacked_test_attribute_naming_it() {
        assert_eq!(
            messages(
                quote!(),
                parse_quote!(
                    #[tokio::test]
                    async fn t() {}
                )
            ),
            ["#[cleanroom::test] already makes this a test with its own runtime; remove #[tokio::test]"]
        );
        assert_eq!(
            messages(
                quote!(),
                parse_quote!(
                    #[::core::prelude::v1::test]
                    fn t() {}
                )
            ),
            ["#[cleanroom::test] already makes this a test with its own runtime; remove #[tokio::test]"]
        );
        assert_eq!(
            messages(
                quote!(),
                parse_quote!(
                    #[test]
                    fn t() {}
                )
            ),
            ["#[cleanroom::test] already makes this a test with its own runtime; remove #[test]"]
        );
    }

    #[test]
    fn reject_generics_and_impl_trait() {
        let errors = messages(
            quote!(),
            parse_quote!(
                fn t<T: Clone>(a: impl Clone, b: Vec<impl Copy>) {}
            ),
        );
        assert_eq!(errors.len(), 3, "{errors:?}");
    }

    #[test]
    fn reject_a_built_in_that_is_not_listed() {
        assert_eq!(
            messages(
                quote!(redis),
                parse_quote!(
                    fn t(#[from(postgres)] db: Postgres, redis: Redis) {}
                )
            ),
            ["`postgres` is a built-in service: list it in the attribute, #[cleanroom::test(postgres)]"]
        );
    }

    #[test]
    fn report_every_problem_at_once() {
        let errors = messages(
            quote!(postgres, postgres, worker_threads = 1),
            parse_quote!(
                #[test]
                fn t<T>(redis: Redis, x: impl Sized) {}
            ),
        );
        assert_eq!(errors.len(), 6, "{errors:?}");
    }
}
