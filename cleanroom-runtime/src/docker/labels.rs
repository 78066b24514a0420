//! The labels that mark what cleanroom owns, and the engine's filter for them.

use std::collections::HashMap;

/// The label every container, network and volume cleanroom creates carries.
pub const MANAGED_LABEL: &str = "cleanroom.managed";
/// The label that names the session (the run) that created it.
pub const SESSION_LABEL: &str = "cleanroom.session";
/// The label that names the service.
pub const SERVICE_LABEL: &str = "cleanroom.service";
/// The label with the hash of the service's full definition.
pub const DEFINITION_LABEL: &str = "cleanroom.definition";
/// The label with the uid of the user whose run created it.
pub const OWNER_LABEL: &str = "cleanroom.owner";
/// The label of a service kept for the next run (`CLEANROOM_REUSE`).
pub const REUSE_LABEL: &str = "cleanroom.reuse";

/// The engine's filter for objects carrying every one of `labels`
/// (`key=value` or just `key`).
pub(crate) fn label_filters(labels: impl IntoIterator<Item = String>) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), labels.into_iter().collect())])
}
