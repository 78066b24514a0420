//! The Docker engine client: the first implementation of the
//! [`Engine`](crate::engine::Engine) trait, and the only code that speaks
//! Docker's API. One file per engine resource, the way bollard keeps them;
//! every answer from the engine is turned into a [`DockerError`] that keeps
//! the operation and the HTTP status, so that callers decide on the status
//! ("not found", "conflict", "transient") and never on the message's text.
//!
//! This layer knows nothing of cleanroom's service definitions: it takes a
//! [`ContainerRequest`] made of plain engine terms.

pub(crate) mod containers;
pub(crate) mod create;
pub(crate) mod discovery;
pub(crate) mod error;
pub(crate) mod events;
pub(crate) mod exec;
pub(crate) mod images;
pub(crate) mod labels;
pub(crate) mod networks;
pub(crate) mod volumes;

use std::time::Duration;

use testcontainers::bollard::Docker as Bollard;

pub(crate) use create::{absolute, ContainerRequest, Limits, MountRequest};
pub(crate) use error::DockerError;
pub(crate) use events::StatSample;
pub use exec::ExecOutput;
pub use images::PullPolicy;
pub(crate) use images::{split_image, ImageError};
pub use labels::{DEFINITION_LABEL, MANAGED_LABEL, OWNER_LABEL, REUSE_LABEL, SERVICE_LABEL, SESSION_LABEL};

/// How long cleanroom waits for the engine to answer its first ping.
pub(crate) const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// A connected engine.
#[derive(Clone)]
pub(crate) struct Docker {
    client: Bollard,
    pub(crate) host: String,
}

impl std::fmt::Debug for Docker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Docker").field("host", &self.host).finish()
    }
}

/// The engine address the docker CLI would use, with where it came from
/// (see [`discovery`]).
pub(crate) fn docker_host() -> Result<String, String> {
    crate::docker::discovery::chosen()
}

/// Why the engine could not be reached: its address and what went wrong.
#[derive(Debug, Clone)]
pub(crate) struct Unreachable {
    pub(crate) host: String,
    pub(crate) reason: String,
}

impl Docker {
    /// Connects and pings, failing within [`PING_TIMEOUT`].
    pub(crate) async fn connect() -> Result<Docker, Unreachable> {
        let host = docker_host().map_err(|reason| Unreachable { host: "the docker context".into(), reason })?;
        let unavailable = |reason: String| Unreachable { host: host.clone(), reason };
        let client = tokio::time::timeout(PING_TIMEOUT, testcontainers::core::client::docker_client_instance())
            .await
            .map_err(|_| unavailable(format!("no answer within {PING_TIMEOUT:?}")))?
            .map_err(|e| unavailable(e.to_string()))?;
        match tokio::time::timeout(PING_TIMEOUT, client.ping()).await {
            Ok(Ok(_)) => Ok(Docker { client, host }),
            Ok(Err(e)) => Err(unavailable(e.to_string())),
            Err(_) => Err(unavailable(format!("no answer within {PING_TIMEOUT:?}"))),
        }
    }
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "docker is not reachable at {}: {}", self.host, self.reason)
    }
}

impl From<Unreachable> for crate::error::Error {
    fn from(u: Unreachable) -> Self {
        crate::error::Error::DockerUnavailable { host: u.host, reason: u.reason }
    }
}

/// Where only the engine's words are wanted (a health check's last failure,
/// a log line), its error reads as text.
impl From<DockerError> for String {
    fn from(e: DockerError) -> String {
        e.to_string()
    }
}
