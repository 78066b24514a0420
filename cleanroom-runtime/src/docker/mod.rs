//! The Docker engine client: the first implementation of the
//! [`Engine`](crate::engine::Engine) trait, and the only code that speaks
//! Docker's API. One file per engine resource, the way bollard keeps them;
//! every answer from the engine is turned into a [`DockerError`] that keeps
//! the operation and the HTTP status, so that callers decide on the status
//! ("not found", "conflict", "transient") and never on the message's text.
//!
//! This layer knows nothing of cleanroom's service definitions: it takes a
//! [`ContainerRequest`] made of plain engine terms. Creating containers,
//! networks and volumes and listing what a run owns are still Docker's own
//! methods, used by the run layer; what the layers above do with a running
//! container goes through the [`Engine`](crate::engine::Engine) trait.

pub(crate) mod containers;
pub(crate) mod create;
pub(crate) mod discovery;
pub(crate) mod endpoint;
pub(crate) mod error;
pub(crate) mod events;
pub(crate) mod exec;
pub(crate) mod files;
pub(crate) mod images;
pub(crate) mod labels;
pub(crate) mod networks;
pub(crate) mod volumes;

use std::time::Duration;

use testcontainers::bollard::Docker as Bollard;

use crate::engine::{EngineFuture, EngineStream};

pub(crate) use create::{absolute, ContainerRequest, Limits, MountRequest};
pub(crate) use error::DockerError;
pub(crate) use images::ImageError;
pub use images::PullPolicy;
pub(crate) use labels::{is_mine, owner_key, owner_labels, owner_labels_for};
pub use labels::{
    CREATOR_LABEL, DEFINITION_LABEL, HOST_LABEL, MANAGED_LABEL, OWNER_LABEL, PROCESS_LABEL, REUSE_LABEL, RUNTIME_LABEL,
    SERVICE_LABEL, SESSION_LABEL, TTL_LABEL,
};

/// How long cleanroom waits for the engine to answer its first ping.
pub(crate) const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// A connected engine.
#[derive(Clone)]
pub(crate) struct Docker {
    client: Bollard,
    pub(crate) host: String,
    /// Podman serving Docker's API (`podman system service`): what its API
    /// lacks is refused with an error naming the difference.
    pub(crate) podman: bool,
}

impl std::fmt::Debug for Docker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Docker").field("host", &self.host).field("podman", &self.podman).finish()
    }
}

/// Whether the engine's `/version` names Podman among its components
/// ("Podman Engine"), as `podman system service` answers.
pub(crate) fn is_podman(version: &testcontainers::bollard::models::SystemVersion) -> bool {
    version.components.iter().flatten().any(|c| c.name.to_ascii_lowercase().contains("podman"))
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
            Ok(Ok(_)) => {
                let podman = matches!(
                    tokio::time::timeout(PING_TIMEOUT, client.version()).await,
                    Ok(Ok(version)) if is_podman(&version)
                );
                Ok(Docker { client, host, podman })
            }
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

/// Docker as the engine of the services it runs.
impl crate::engine::Engine for Docker {
    fn kind(&self) -> crate::engine::EngineKind {
        crate::engine::EngineKind::Docker
    }

    fn exec<'a>(
        &'a self,
        id: &'a str,
        cmd: &'a [String],
    ) -> EngineFuture<'a, Result<crate::engine::ExecOutput, DockerError>> {
        Box::pin(Docker::exec(self, id, cmd))
    }

    fn logs<'a>(&'a self, id: &'a str, tail: Option<usize>) -> EngineFuture<'a, Result<String, DockerError>> {
        Box::pin(Docker::logs(self, id, tail))
    }

    fn path_exists<'a>(&'a self, id: &'a str, path: &'a str) -> EngineFuture<'a, Result<bool, DockerError>> {
        Box::pin(Docker::path_exists(self, id, path))
    }

    fn exit_status<'a>(&'a self, id: &'a str) -> EngineFuture<'a, Result<Option<i64>, DockerError>> {
        Box::pin(Docker::exit_status(self, id))
    }

    fn ended<'a>(&'a self, id: &'a str) -> EngineFuture<'a, Option<crate::engine::Ended>> {
        Box::pin(Docker::ended(self, id))
    }

    fn remove<'a>(&'a self, id: &'a str) -> EngineFuture<'a, Result<(), DockerError>> {
        Box::pin(Docker::remove(self, id))
    }

    fn kill<'a>(&'a self, id: &'a str) -> EngineFuture<'a, Result<(), DockerError>> {
        Box::pin(Docker::kill(self, id))
    }

    fn events(&self, id: &str) -> EngineStream<Result<(String, Option<String>), DockerError>> {
        Box::pin(self.container_events(id))
    }

    fn stats(&self, id: &str) -> EngineStream<Result<crate::engine::StatSample, DockerError>> {
        Box::pin(Docker::stats(self, id))
    }

    fn cpu_limit<'a>(&'a self, id: &'a str) -> EngineFuture<'a, Result<i64, DockerError>> {
        Box::pin(self.nano_cpus(id))
    }

    fn set_cpu_limit<'a>(&'a self, id: &'a str, nano_cpus: i64) -> EngineFuture<'a, Result<(), DockerError>> {
        Box::pin(self.set_nano_cpus(id, nano_cpus))
    }
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::is_podman;
        use testcontainers::bollard::models::{SystemVersion, SystemVersionComponents};

        fn version(names: &[&str]) -> SystemVersion {
            let components =
                names.iter().map(|n| SystemVersionComponents { name: n.to_string(), ..Default::default() }).collect();
            SystemVersion { components: Some(components), ..Default::default() }
        }

        #[test]
        fn tell_podman_from_docker_by_its_components() {
            assert!(is_podman(&version(&["Podman Engine", "Conmon", "OCI Runtime (runc)"])));
            assert!(!is_podman(&version(&["Engine", "containerd", "runc", "docker-init"])));
            assert!(!is_podman(&SystemVersion::default()), "no components: Docker's rules");
        }
    }
}
