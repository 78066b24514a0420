//! The services cleanroom ships: their names are reserved.

use proc_macro2::Ident;

/// A built-in service, reached as `::cleanroom::__private::<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BuiltIn {
    /// `postgres`: a `cleanroom::Postgres`.
    Postgres,
    /// `redis`: a `cleanroom::Redis`.
    Redis,
}

impl BuiltIn {
    /// Every built-in service.
    pub(crate) const ALL: [BuiltIn; 2] = [BuiltIn::Postgres, BuiltIn::Redis];

    /// The name users write, which is also the item's name in `__private`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            BuiltIn::Postgres => "postgres",
            BuiltIn::Redis => "redis",
        }
    }

    /// The built-in service called `ident`, if there is one.
    pub(crate) fn named(ident: &Ident) -> Option<BuiltIn> {
        Self::ALL.into_iter().find(|builtin| ident == builtin.name())
    }
}

#[cfg(test)]
mod should {
    use syn::parse_quote;

    use super::*;

    #[test]
    fn recognise_the_built_in_names() {
        assert_eq!(BuiltIn::named(&parse_quote!(postgres)), Some(BuiltIn::Postgres));
        assert_eq!(BuiltIn::named(&parse_quote!(redis)), Some(BuiltIn::Redis));
    }

    #[test]
    fn not_mistake_other_names_for_built_ins() {
        assert_eq!(BuiltIn::named(&parse_quote!(postgres_pool)), None);
        assert_eq!(BuiltIn::named(&parse_quote!(web)), None);
    }
}
