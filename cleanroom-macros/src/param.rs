//! A parameter of a test or fixture, and which fixture or service feeds it:
//! its own name, or the one given by `#[from(name)]`.

use proc_macro2::Ident;
use syn::visit_mut::VisitMut;
use syn::{FnArg, Pat, Signature, Type, TypeImplTrait};

use crate::diagnostic::Errors;

/// One parameter.
#[derive(Debug, Clone)]
pub(crate) struct Param {
    /// The name it is resolved by.
    pub(crate) source: Ident,
    /// Its declared type.
    pub(crate) ty: Box<Type>,
}

impl Param {
    /// The first `impl Trait` in the parameter's type, if any.
    pub(crate) fn impl_trait(&self) -> Option<TypeImplTrait> {
        impl_trait_in(&self.ty)
    }
}

/// Reads every parameter of `sig`, removing the `#[from]` attributes (the
/// compiler knows no such attribute). `what` names the function's role in
/// messages ("test", "fixture").
pub(crate) fn parse_params(sig: &mut Signature, what: &str, errors: &mut Errors) -> Vec<Param> {
    let mut params = Vec::new();
    for input in &mut sig.inputs {
        match input {
            FnArg::Receiver(receiver) => errors
                .spanned(&*receiver, format_args!("a cleanroom {what} cannot take `self`: make it a free function")),
            FnArg::Typed(typed) => {
                let from = take_from(&mut typed.attrs, errors);
                let source = match (from, &*typed.pat) {
                    (Some(from), _) => from,
                    (None, Pat::Ident(pat)) => pat.ident.clone(),
                    (None, pat) => {
                        errors.spanned(
                            pat,
                            "cannot tell which fixture this parameter wants: \
                             give it a name, or name the fixture with #[from(name)]",
                        );
                        continue;
                    }
                };
                params.push(Param { source, ty: typed.ty.clone() });
            }
        }
    }
    params
}

/// Removes every `#[from]` attribute from `sig`, well-formed or not: what the
/// macros emit next to their errors must not add "cannot find attribute `from`".
pub(crate) fn strip_from(sig: &mut Signature) {
    for input in &mut sig.inputs {
        if let FnArg::Typed(typed) = input {
            typed.attrs.retain(|attr| !attr.path().is_ident("from"));
        }
    }
}

/// Removes `#[from(name)]` from `attrs` and returns `name`.
fn take_from(attrs: &mut Vec<syn::Attribute>, errors: &mut Errors) -> Option<Ident> {
    let mut from: Option<Ident> = None;
    attrs.retain(|attr| {
        if !attr.path().is_ident("from") {
            return true;
        }
        let name = attr.meta.require_list().and_then(|list| list.parse_args::<Ident>()).map_err(|_| {
            syn::Error::new_spanned(attr, "expected #[from(name)], with the name of a fixture or service")
        });
        match (errors.ok(name), &from) {
            (Some(_), Some(_)) => errors.spanned(attr, "#[from] is given twice for this parameter"),
            (Some(name), None) => from = Some(name),
            (None, _) => {}
        }
        false
    });
    from
}

/// The first `impl Trait` anywhere in `ty`.
pub(crate) fn impl_trait_in(ty: &Type) -> Option<TypeImplTrait> {
    #[derive(Default)]
    struct Find(Option<TypeImplTrait>);
    impl VisitMut for Find {
        fn visit_type_impl_trait_mut(&mut self, found: &mut TypeImplTrait) {
            self.0.get_or_insert_with(|| found.clone());
        }
    }
    let mut find = Find::default();
    find.visit_type_mut(&mut ty.clone());
    find.0
}

#[cfg(test)]
mod should {
    use quote::ToTokens;
    use syn::{parse_quote, ItemFn};

    use super::*;

    fn parse(mut func: ItemFn) -> (Vec<Param>, syn::Result<()>, ItemFn) {
        let mut errors = Errors::default();
        let params = parse_params(&mut func.sig, "test", &mut errors);
        (params, errors.finish(), func)
    }

    #[test]
    fn resolve_a_parameter_by_its_name() {
        let (params, result, _) = parse(parse_quote!(
            fn t(db: Client, mut web: Container) {}
        ));
        result.unwrap();
        let sources: Vec<String> = params.iter().map(|p| p.source.to_string()).collect();
        assert_eq!(sources, ["db", "web"]);
    }

    #[test]
    fn resolve_a_renamed_parameter_by_its_from_name_and_strip_the_attribute() {
        let (params, result, func) = parse(parse_quote!(
            fn t(#[from(client)] c: Client, #[allow(unused)] (a, b): P) {}
        ));
        assert!(result.is_err(), "the unnamed pattern has no source");
        assert_eq!(params[0].source, "client");
        let rendered = func.to_token_stream().to_string();
        assert!(!rendered.contains("from"), "{rendered}");
        assert!(rendered.contains("allow"), "other attributes stay: {rendered}");
    }

    #[test]
    fn accept_a_pattern_with_a_from_name() {
        let (params, result, _) = parse(parse_quote!(
            fn t(#[from(pair)] (a, b): (A, B)) {}
        ));
        result.unwrap();
        assert_eq!(params[0].source, "pair");
    }

    #[test]
    fn reject_self_and_unnamed_patterns_all_at_once() {
        let (_, result, _) = parse(parse_quote!(
            fn t(&self, (a, b): P, _: Q) {}
        ));
        let messages: Vec<String> = result.unwrap_err().into_iter().map(|e| e.to_string()).collect();
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert!(messages[0].contains("cannot take `self`"));
        assert!(messages[1].contains("#[from(name)]"));
    }

    #[test]
    fn reject_malformed_and_repeated_from() {
        let (_, result, _) = parse(parse_quote!(
            fn t(
                #[from] a: A,
                #[from(x, y)] b: B,
                #[from(c)]
                #[from(d)]
                e: E,
            ) {
            }
        ));
        let messages: Vec<String> = result.unwrap_err().into_iter().map(|e| e.to_string()).collect();
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert!(messages[2].contains("given twice"));
    }

    #[test]
    fn find_impl_trait_nested_in_a_type() {
        assert!(impl_trait_in(&parse_quote!(Vec<impl Clone>)).is_some());
        assert!(impl_trait_in(&parse_quote!(Vec<String>)).is_none());
    }
}
