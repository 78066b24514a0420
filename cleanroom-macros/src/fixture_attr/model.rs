//! What a `#[cleanroom::fixture]` says.

use syn::{parse_quote, ItemFn, ReturnType, Type};

use crate::param::Param;

/// One fixture function.
#[derive(Debug, Clone)]
pub(crate) struct FixtureInfo {
    /// The function's parameters: what the fixture depends on.
    pub(crate) params: Vec<Param>,
    /// The function, without the `#[from]` attributes.
    pub(crate) func: ItemFn,
}

impl FixtureInfo {
    /// Whether the fixture is an `async fn`.
    pub(crate) fn is_async(&self) -> bool {
        self.func.sig.asyncness.is_some()
    }

    /// The type of the value the fixture provides: `()` without a return type.
    pub(crate) fn output(&self) -> Type {
        match &self.func.sig.output {
            ReturnType::Default => parse_quote!(()),
            ReturnType::Type(_, ty) => Type::clone(ty),
        }
    }
}
