//! A service that runs: its container, ports and definition, and the engine
//! that runs it.

use std::collections::BTreeMap;

use std::sync::Arc;

use crate::engine::Engine;
use crate::service::definition::GenericContainer;

/// A service that passed its health checks.
#[derive(Debug)]
pub(crate) struct RunningService {
    pub(crate) name: String,
    pub(crate) image: String,
    pub(crate) id: String,
    pub(crate) ports: BTreeMap<u16, u16>,
    pub(crate) definition: GenericContainer,
    /// The engine that runs the container.
    pub(crate) engine: Arc<dyn Engine>,
    /// Where its ports are reached when that is not the engine's host (see
    /// [`endpoint`](crate::docker::endpoint)): an existing server's own
    /// address.
    pub(crate) host: Option<String>,
    /// On an existing server: what marks cleanroom's work there.
    pub(crate) existing: Option<crate::external::Existing>,
}

impl RunningService {
    /// Where the service's ports are reached.
    pub(crate) fn host(&self) -> &str {
        self.host.as_deref().unwrap_or_else(|| crate::docker::endpoint::host())
    }

    pub(crate) fn env(&self, key: &str) -> Option<&str> {
        self.definition.env.get(key).map(String::as_str)
    }
}
