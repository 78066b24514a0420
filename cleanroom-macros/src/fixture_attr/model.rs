//! What a `#[cleanroom::fixture]` says.

use proc_macro2::{Ident, Span};
use syn::{parse_quote, ItemFn, ReturnType, Type};

use crate::param::Param;
use crate::room::RoomArgs;

/// How long a fixture's value lives.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scope {
    /// Made for each test that asks (the default; `scope = "test"`).
    Test,
    /// Made once per test process, on first use (`scope = "process"`,
    /// written at the span).
    Process(Span),
}

impl Scope {
    /// What `scope = "…"` accepts, as listed in messages.
    pub(crate) const CHOICES: &'static str =
        "\"test\" (the default: one value per test), \"process\" (one per test process)";

    /// The scope called `name`, written at `span`.
    pub(crate) fn named(name: &str, span: Span) -> Option<Scope> {
        match name {
            "test" => Some(Scope::Test),
            "process" => Some(Scope::Process(span)),
            _ => None,
        }
    }
}

/// One fixture function.
#[derive(Debug, Clone)]
pub(crate) struct FixtureInfo {
    /// How long its value lives.
    pub(crate) scope: Scope,
    /// What the fixture asks of services' rooms, for every test that uses it:
    /// `#[cleanroom::fixture(postgres(migrations = "…"))]`.
    pub(crate) rooms: Vec<(Ident, RoomArgs)>,
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
