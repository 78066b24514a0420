//! Reads the attribute's options and the function into a [`TestInfo`].

use proc_macro2::{Ident, TokenStream};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, ItemFn, Lit, Meta, MetaNameValue, Token};

use super::{Flavor, FlavorOption, ServiceArg, TestInfo, WorkerThreads};
use crate::diagnostic::Errors;
use crate::param::parse_params;
use crate::room::set_once;

/// What the attribute accepts, as listed in messages.
const OPTIONS: &str = "expected one of: flavor, worker_threads, crate, or a service name";

/// Parses the attribute's `args` and the test function, reporting every
/// malformed option and parameter at once.
pub(crate) fn parse(args: TokenStream, mut func: ItemFn) -> syn::Result<TestInfo> {
    let metas = Punctuated::<Meta, Token![,]>::parse_terminated.parse2(args)?;
    let mut errors = Errors::default();
    let (mut services, mut flavor_option, mut workers_option) = (Vec::new(), None, None);
    for meta in metas {
        match meta {
            Meta::Path(path) => match path.get_ident() {
                Some(ident) if ident == "flavor" || ident == "worker_threads" => {
                    errors.spanned(ident, format_args!("`{ident}` needs a value, as in {ident} = {}", example(ident)));
                }
                Some(ident) if Flavor::named(&ident.to_string()).is_some() => errors.spanned(
                    ident,
                    format_args!("set the runtime flavor with flavor = \"{ident}\"; a bare name is a service"),
                ),
                Some(ident) => services.push(ServiceArg { name: ident.clone(), room: None }),
                None => errors.spanned(
                    &path,
                    "expected the name of a service, not a path: bring the service into scope with `use`",
                ),
            },
            Meta::NameValue(option) => match option.path.get_ident() {
                Some(key) if key == "flavor" => {
                    let flavor = errors.ok(flavor(key, &option));
                    set_once(&mut flavor_option, flavor, key, &mut errors);
                }
                Some(key) if key == "worker_threads" => {
                    let workers = errors.ok(worker_threads(key, &option));
                    set_once(&mut workers_option, workers, key, &mut errors);
                }
                _ => errors.spanned(&option.path, unknown(&option.path)),
            },
            Meta::List(list) => match list.path.get_ident() {
                Some(name) if name != "flavor" && name != "worker_threads" => {
                    let room = errors.ok(list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated));
                    let room = room.map(|metas| crate::room::parse(metas, &mut errors)).unwrap_or_default();
                    services.push(ServiceArg { name: name.clone(), room: Some(room) });
                }
                Some(key) => errors
                    .spanned(&list, format_args!("`{key}` takes a value after `=`, as in {key} = {}", example(key))),
                None => errors.spanned(&list, unknown(&list.path)),
            },
        }
    }
    let params = parse_params(&mut func.sig, "test", &mut errors);
    errors.finish()?;
    Ok(TestInfo { services, flavor: flavor_option, worker_threads: workers_option, params, func })
}

fn unknown(path: &syn::Path) -> String {
    let name = quote::quote!(#path).to_string().replace(' ', "");
    format!("unknown option `{name}`: {OPTIONS}")
}

fn example(key: &Ident) -> &'static str {
    if key == "flavor" {
        "\"multi_thread\""
    } else {
        "4"
    }
}

fn flavor(key: &Ident, option: &MetaNameValue) -> syn::Result<FlavorOption> {
    let Expr::Lit(ExprLit { lit: Lit::Str(literal), .. }) = &option.value else {
        return Err(syn::Error::new_spanned(
            &option.value,
            format_args!("expected a string: flavor = one of {}", Flavor::CHOICES),
        ));
    };
    match Flavor::named(&literal.value()) {
        Some(flavor) => Ok(FlavorOption { key: key.clone(), flavor }),
        None => Err(syn::Error::new_spanned(
            literal,
            format_args!("unknown flavor {:?}: expected one of: {}", literal.value(), Flavor::CHOICES),
        )),
    }
}

fn worker_threads(key: &Ident, option: &MetaNameValue) -> syn::Result<WorkerThreads> {
    let Expr::Lit(ExprLit { lit: Lit::Int(literal), .. }) = &option.value else {
        return Err(syn::Error::new_spanned(&option.value, "expected a number of threads, as in worker_threads = 4"));
    };
    match literal.base10_parse::<usize>()? {
        0 => Err(syn::Error::new_spanned(literal, "`worker_threads` must be at least 1")),
        count => Ok(WorkerThreads { key: key.clone(), count }),
    }
}

#[cfg(test)]
mod should {
    use quote::quote;
    use syn::parse_quote;

    use super::*;

    fn messages(result: syn::Result<TestInfo>) -> Vec<String> {
        result.unwrap_err().into_iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn read_services_and_options() {
        let info = parse(
            quote!(postgres, web, flavor = "multi_thread", worker_threads = 2),
            parse_quote!(
                async fn t() {}
            ),
        )
        .unwrap();
        let services: Vec<String> = info.services.iter().map(|s| s.name.to_string()).collect();
        assert_eq!(services, ["postgres", "web"]);
        assert_eq!(info.flavor.unwrap().flavor, Flavor::MultiThread);
        assert_eq!(info.worker_threads.unwrap().count, 2);
    }

    #[test]
    fn read_room_options() {
        let info = parse(
            quote!(postgres(migrations = "migrations", init = "seed.sql"), redis(shared)),
            parse_quote!(
                fn t() {}
            ),
        )
        .unwrap();
        let postgres = info.services[0].room.as_ref().unwrap();
        assert_eq!(postgres.migrations.as_ref().unwrap().1.value(), "migrations");
        assert_eq!(postgres.init.as_ref().unwrap().1.value(), "seed.sql");
        assert!(postgres.shared.is_none());
        assert!(info.services[1].room.as_ref().unwrap().shared.is_some());
    }

    #[test]
    fn reject_an_unknown_room_option_listing_the_valid_ones() {
        assert_eq!(
            messages(parse(
                quote!(postgres(version = "15")),
                parse_quote!(
                    fn t() {}
                )
            )),
            ["unknown room option `version`: expected one of: shared, migrations, tool, init"]
        );
    }

    #[test]
    fn accept_no_arguments() {
        let info = parse(
            quote!(),
            parse_quote!(
                fn t() {}
            ),
        )
        .unwrap();
        assert!(info.services.is_empty() && info.flavor.is_none() && info.worker_threads.is_none());
    }

    #[test]
    fn reject_an_unknown_option_listing_the_valid_ones() {
        assert_eq!(
            messages(parse(
                quote!(timeout = 3),
                parse_quote!(
                    fn t() {}
                )
            )),
            ["unknown option `timeout`: expected one of: flavor, worker_threads, crate, or a service name"]
        );
    }

    #[test]
    fn reject_an_unknown_flavor_listing_the_valid_ones() {
        assert_eq!(
            messages(parse(
                quote!(flavor = "threaded"),
                parse_quote!(
                    async fn t() {}
                )
            )),
            ["unknown flavor \"threaded\": expected one of: \"current_thread\", \"multi_thread\""]
        );
    }

    #[test]
    fn report_every_malformed_option_at_once() {
        let errors = messages(parse(
            quote!(flavor = 1, worker_threads = 0, flavor, multi_thread, a::b, c(d)),
            parse_quote!(
                async fn t(self) {}
            ),
        ));
        assert_eq!(errors.len(), 7, "{errors:?}");
    }

    #[test]
    fn show_how_to_give_an_option_its_value() {
        assert_eq!(
            messages(parse(
                quote!(flavor("multi_thread")),
                parse_quote!(
                    async fn t() {}
                )
            )),
            ["`flavor` takes a value after `=`, as in flavor = \"multi_thread\""]
        );
    }

    #[test]
    fn reject_an_option_set_twice() {
        assert_eq!(
            messages(parse(
                quote!(flavor = "multi_thread", flavor = "current_thread"),
                parse_quote!(
                    async fn t() {}
                )
            )),
            ["`flavor` is set twice"]
        );
    }

    #[test]
    fn strip_from_attributes_from_the_function() {
        let info = parse(
            quote!(),
            parse_quote!(
                fn t(#[from(client)] c: Client) {}
            ),
        )
        .unwrap();
        assert_eq!(info.params[0].source, "client");
        let func = &info.func;
        assert!(!quote!(#func).to_string().contains("from"));
    }
}
