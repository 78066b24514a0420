//! A name that a test or fixture depends on, and the tokens that reach it:
//! `<name as ::cleanroom::__private::Resolve>`.
//!
//! The tokens carry the span of the name the user wrote, so that a name with
//! nothing behind it is "cannot find type `x` in this scope" at that name, and
//! a fixture listed as a service is "`x` is not a cleanroom service" there.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{quote, quote_spanned};

use crate::builtin::BuiltIn;

/// What one name stands for.
#[derive(Debug, Clone)]
pub(crate) enum Dependency {
    /// A built-in service, written at `Span`.
    BuiltIn(BuiltIn, Span),
    /// An item in the user's scope: a fixture or a user service.
    Item(Ident),
}

impl Dependency {
    /// The built-in service if `name` is one, else the user's item of that name.
    pub(crate) fn named(name: &Ident) -> Self {
        match BuiltIn::named(name) {
            Some(builtin) => Dependency::BuiltIn(builtin, name.span()),
            None => Dependency::Item(name.clone()),
        }
    }

    fn span(&self) -> Span {
        match self {
            Dependency::BuiltIn(_, span) => *span,
            Dependency::Item(ident) => ident.span(),
        }
    }

    /// The type implementing `Resolve`.
    fn ty(&self) -> TokenStream {
        match self {
            Dependency::BuiltIn(builtin, span) => {
                let item = Ident::new(builtin.name(), *span);
                quote_spanned!(*span=> ::cleanroom::__private::#item)
            }
            Dependency::Item(ident) => quote!(#ident),
        }
    }

    /// `&<T as Resolve>::NODE`: a node of the dependency graph.
    pub(crate) fn node(&self) -> TokenStream {
        let ty = self.ty();
        quote_spanned!(self.span()=> &<#ty as ::cleanroom::__private::Resolve>::NODE)
    }

    /// `&<T as Service>::NODE`: the same node, required to be a service.
    pub(crate) fn service_node(&self) -> TokenStream {
        let ty = self.ty();
        quote_spanned!(self.span()=> &<#ty as ::cleanroom::__private::Service>::NODE)
    }

    /// `<T as ProcessScoped>::process_value(test)`: the value of a
    /// process-scoped fixture, which a fixture that is not one cannot give.
    pub(crate) fn process_value(&self, test: &Ident) -> TokenStream {
        let ty = self.ty();
        quote_spanned!(self.span()=> <#ty as ::cleanroom::__private::ProcessScoped>::process_value(#test))
    }

    /// `<T as Resolve>::resolve(ctx)`: the value, resolved for one test.
    pub(crate) fn resolve(&self, ctx: &Ident) -> TokenStream {
        let ty = self.ty();
        quote_spanned!(self.span()=> <#ty as ::cleanroom::__private::Resolve>::resolve(#ctx))
    }
}

/// `use` of the built-ins under the names users write, for the block that
/// resolves a test's or fixture's dependencies: a misspelt built-in then gets
/// the compiler's "a struct with a similar name exists", as a misspelt
/// fixture does. A glob import hides none of the user's own names.
pub(crate) fn builtin_names() -> TokenStream {
    quote! {
        #[allow(unused_imports)]
        use ::cleanroom::__private::builtin_names::*;
    }
}

#[cfg(test)]
mod should {
    use syn::parse_quote;

    use super::*;

    #[test]
    fn reach_built_ins_through_the_private_door() {
        let node = Dependency::named(&parse_quote!(postgres)).node().to_string();
        assert_eq!(
            node,
            quote!(&<::cleanroom::__private::postgres as ::cleanroom::__private::Resolve>::NODE).to_string()
        );
    }

    #[test]
    fn reach_other_names_in_the_users_scope() {
        let node = Dependency::named(&parse_quote!(client)).node().to_string();
        assert_eq!(node, quote!(&<client as ::cleanroom::__private::Resolve>::NODE).to_string());
    }

    #[test]
    fn bound_a_process_fixtures_dependencies_by_the_process_scoped_trait() {
        let test = Ident::new("test", Span::call_site());
        let value = Dependency::named(&parse_quote!(tracing)).process_value(&test).to_string();
        assert_eq!(value, quote!(<tracing as ::cleanroom::__private::ProcessScoped>::process_value(test)).to_string());
    }

    #[test]
    fn bound_listed_services_by_the_service_trait() {
        let node = Dependency::named(&parse_quote!(web)).service_node().to_string();
        assert_eq!(node, quote!(&<web as ::cleanroom::__private::Service>::NODE).to_string());
    }
}
