//! Checks that a parsed [`ServiceInfo`] describes a container.

use syn::ReturnType;

use super::ServiceInfo;
use crate::builtin::BuiltIn;
use crate::diagnostic::Errors;
use crate::signature;

/// `Ok(())` when the service can be rendered.
pub(crate) fn validate(info: &ServiceInfo) -> syn::Result<()> {
    let mut errors = Errors::default();
    let sig = &info.func.sig;
    if let Some(builtin) = BuiltIn::named(&sig.ident) {
        errors.spanned(
            &sig.ident,
            format_args!("`{}` is a built-in service: give this service another name", builtin.name()),
        );
    }
    if let Some(asyncness) = &sig.asyncness {
        errors.spanned(asyncness, "a service function cannot be async: it only describes the container to start");
    }
    if let Some(generics) = signature::generics(sig) {
        errors.spanned(generics, "a service function cannot be generic");
    }
    if !sig.inputs.is_empty() {
        errors.spanned(&sig.inputs, "a service function takes no parameters");
    }
    if let ReturnType::Default = sig.output {
        errors.spanned(
            &sig.ident,
            "a service function must return the container to start, as in -> cleanroom::GenericContainer",
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
    fn accept_a_function_returning_a_container() {
        assert!(messages(parse_quote!(
            fn web() -> cleanroom::GenericContainer {
                todo!()
            }
        ))
        .is_empty());
    }

    #[test]
    fn reject_the_built_in_names() {
        assert_eq!(
            messages(parse_quote!(
                fn postgres() -> G {
                    g()
                }
            )),
            ["`postgres` is a built-in service: give this service another name"]
        );
    }

    #[test]
    fn reject_every_misuse_at_once() {
        let errors = messages(parse_quote!(
            async fn web<T>(port: u16) {}
        ));
        assert_eq!(errors.len(), 4, "{errors:?}");
    }
}
