//! What a `#[cleanroom::test]` says, as written: validation decides whether
//! it makes sense.

use proc_macro2::Ident;
use syn::{Attribute, ItemFn};

use crate::dependency::Dependency;
use crate::param::Param;
use crate::room::RoomArgs;

/// One test function and its attribute.
#[derive(Debug, Clone)]
pub(crate) struct TestInfo {
    /// The services listed in the attribute, in order, repeats included.
    pub(crate) services: Vec<ServiceArg>,
    /// `flavor = "…"`.
    pub(crate) flavor: Option<FlavorOption>,
    /// `worker_threads = N`.
    pub(crate) worker_threads: Option<WorkerThreads>,
    /// The function's parameters.
    pub(crate) params: Vec<Param>,
    /// The function, without the `#[from]` attributes.
    pub(crate) func: ItemFn,
}

/// One service listed in the attribute: `postgres`, or `postgres(…)` with
/// options for the test's room.
#[derive(Debug, Clone)]
pub(crate) struct ServiceArg {
    /// The service's name.
    pub(crate) name: Ident,
    /// `(…)` after the name, if any.
    pub(crate) room: Option<RoomArgs>,
}

/// The runtime flavors one can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// `"current_thread"`.
    CurrentThread,
    /// `"multi_thread"`.
    MultiThread,
}

impl Flavor {
    /// The values `flavor = "…"` accepts, as listed in messages.
    pub(crate) const CHOICES: &'static str = "\"current_thread\", \"multi_thread\"";

    /// The flavor written as `value`.
    pub(crate) fn named(value: &str) -> Option<Flavor> {
        match value {
            "current_thread" => Some(Flavor::CurrentThread),
            "multi_thread" => Some(Flavor::MultiThread),
            _ => None,
        }
    }
}

/// `flavor = "…"`.
#[derive(Debug, Clone)]
pub(crate) struct FlavorOption {
    /// The `flavor` key, for messages.
    pub(crate) key: Ident,
    /// The value.
    pub(crate) flavor: Flavor,
}

/// `worker_threads = N`.
#[derive(Debug, Clone)]
pub(crate) struct WorkerThreads {
    /// The `worker_threads` key, for messages.
    pub(crate) key: Ident,
    /// The value.
    pub(crate) count: usize,
}

impl TestInfo {
    /// Whether the test is an `async fn`.
    pub(crate) fn is_async(&self) -> bool {
        self.func.sig.asyncness.is_some()
    }

    /// Whether the test carries `#[ignore]`.
    pub(crate) fn is_ignored(&self) -> bool {
        self.func.attrs.iter().any(|attr| attr.path().is_ident("ignore"))
    }

    /// Whether `name` is listed in the attribute.
    pub(crate) fn lists(&self, name: &Ident) -> bool {
        self.services.iter().any(|service| service.name == *name)
    }

    /// What feeds `param`: the listed service it names, or else the fixture.
    pub(crate) fn dependency(&self, param: &Param) -> Dependency {
        if self.lists(&param.source) {
            Dependency::named(&param.source)
        } else {
            Dependency::Item(param.source.clone())
        }
    }
}

/// `#[test]`, `#[tokio::test]`, `#[cleanroom::test]`, and what such an
/// attribute expanded above ours leaves behind, `#[::core::prelude::v1::test]`.
pub(crate) fn is_test_attribute(attr: &Attribute) -> bool {
    attr.path().segments.last().is_some_and(|last| last.ident == "test")
}
