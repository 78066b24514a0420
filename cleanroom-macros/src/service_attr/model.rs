//! What a `#[cleanroom::service]` says.

use syn::ItemFn;

/// One service function: it returns the container to start.
#[derive(Debug, Clone)]
pub(crate) struct ServiceInfo {
    /// The function, as written.
    pub(crate) func: ItemFn,
}
