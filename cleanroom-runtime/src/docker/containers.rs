//! Containers: create and start, inspect, list, remove, kill, update.

use std::collections::{BTreeMap, HashMap};

use testcontainers::bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};

use super::labels::label_filters;
use super::{Docker, DockerError};
use crate::engine::Ended;

/// A container found by name.
#[derive(Debug, Clone)]
pub(crate) struct NamedContainer {
    pub(crate) id: String,
    pub(crate) running: bool,
    /// Docker's state: created, running, exited, ...
    pub(crate) status: String,
    pub(crate) exit_code: Option<i64>,
    pub(crate) env: BTreeMap<String, String>,
    /// The process that created it, for a container the processes of a run
    /// share ([`super::CREATOR_LABEL`]).
    pub(crate) creator: Option<String>,
}

/// A container as the engine lists it.
#[derive(Debug, Clone)]
pub(crate) struct Listed {
    pub(crate) id: String,
    pub(crate) name: String,
    /// created, running, exited, ...
    pub(crate) state: String,
    pub(crate) image: String,
    pub(crate) labels: HashMap<String, String>,
    /// Seconds since the epoch.
    pub(crate) created: i64,
}

/// How a container is attached to networks, for finding the way from it to
/// published ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContainerNetworks {
    pub(crate) id: String,
    /// `host` when it shares the engine host's network.
    pub(crate) mode: String,
    /// The gateways of its networks, by network name.
    pub(crate) gateways: BTreeMap<String, String>,
    /// The host name it was given (its short id unless `--hostname`).
    pub(crate) hostname: Option<String>,
}

impl Docker {
    /// The network mode and gateways of container `id`; `None` when the
    /// engine does not know it (this process runs under another engine).
    pub(crate) async fn container_networks(&self, id: &str) -> Option<ContainerNetworks> {
        let info = self.client.inspect_container(id, None).await.ok()?;
        let mode = info.host_config.and_then(|h| h.network_mode).unwrap_or_default();
        let hostname = info.config.and_then(|c| c.hostname);
        let gateways = info
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(name, e)| Some((name, e.gateway.filter(|g| !g.is_empty())?)))
            .collect();
        Some(ContainerNetworks { id: info.id.unwrap_or_else(|| id.to_string()), mode, gateways, hostname })
    }

    /// The host ports Docker published for each container port.
    pub(crate) async fn published_ports(&self, id: &str) -> Result<BTreeMap<u16, u16>, DockerError> {
        let info = self
            .client
            .inspect_container(id, None)
            .await
            .map_err(|e| DockerError::from_bollard("inspect container", e))?;
        let mut out = BTreeMap::new();
        let ports = info.network_settings.and_then(|n| n.ports).unwrap_or_default();
        for (key, bindings) in ports {
            let Some(container_port) = key.split('/').next().and_then(|p| p.parse::<u16>().ok()) else { continue };
            let host_port = bindings
                .unwrap_or_default()
                .into_iter()
                .filter(|b| b.host_ip.as_deref().is_none_or(|ip| !ip.contains(':')))
                .find_map(|b| b.host_port.and_then(|p| p.parse::<u16>().ok()));
            if let Some(hp) = host_port {
                out.insert(container_port, hp);
            }
        }
        Ok(out)
    }

    /// Whether the container is running, and its exit code if it is not.
    pub(crate) async fn exit_status(&self, id: &str) -> Result<Option<i64>, DockerError> {
        let info = self
            .client
            .inspect_container(id, None)
            .await
            .map_err(|e| DockerError::from_bollard("inspect container", e))?;
        let state = info.state.unwrap_or_default();
        if state.running.unwrap_or(false) {
            Ok(None)
        } else {
            Ok(Some(state.exit_code.unwrap_or(-1)))
        }
    }

    /// Ids of every container (running or not) carrying all these labels.
    pub(crate) async fn containers_labelled(&self, labels: &[(&str, &str)]) -> Result<Vec<String>, DockerError> {
        let filters = label_filters(labels.iter().map(|(k, v)| format!("{k}={v}")));
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let list = self
            .client
            .list_containers(Some(options))
            .await
            .map_err(|e| DockerError::from_bollard("list containers", e))?;
        Ok(list.into_iter().filter_map(|c| c.id).collect())
    }

    /// Every container carrying `label` (`key=value` or just `key`), with its
    /// labels and creation time (seconds since the epoch).
    pub(crate) async fn containers_with_labels(
        &self,
        label: &str,
    ) -> Result<Vec<(String, HashMap<String, String>, i64)>, DockerError> {
        Ok(self.list(label).await?.into_iter().map(|c| (c.id, c.labels, c.created)).collect())
    }

    /// Every container carrying `label`, running or not, as `docker ps -a` lists it.
    pub(crate) async fn list(&self, label: &str) -> Result<Vec<Listed>, DockerError> {
        let filters = label_filters([label.to_string()]);
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let list = self
            .client
            .list_containers(Some(options))
            .await
            .map_err(|e| DockerError::from_bollard("list containers", e))?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                Some(Listed {
                    id: c.id?,
                    name: c
                        .names
                        .unwrap_or_default()
                        .first()
                        .map(|n| n.trim_start_matches('/').to_string())
                        .unwrap_or_default(),
                    state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                    image: c.image.unwrap_or_default(),
                    labels: c.labels.unwrap_or_default(),
                    created: c.created.unwrap_or(0),
                })
            })
            .collect())
    }

    /// The container named `name`: its id, whether it runs, its exit code,
    /// and its environment. `None` if there is none.
    pub(crate) async fn inspect_named(&self, name: &str) -> Result<Option<NamedContainer>, DockerError> {
        match self
            .client
            .inspect_container(name, None)
            .await
            .map_err(|e| DockerError::from_bollard("inspect container", e))
        {
            Ok(info) => {
                let state = info.state.unwrap_or_default();
                let config = info.config.unwrap_or_default();
                let creator = config.labels.and_then(|mut labels| labels.remove(super::CREATOR_LABEL));
                let env = config
                    .env
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
                    .collect();
                Ok(Some(NamedContainer {
                    id: info.id.unwrap_or_default(),
                    running: state.running.unwrap_or(false),
                    status: state.status.map(|s| s.to_string()).unwrap_or_default(),
                    exit_code: state.exit_code,
                    env,
                    creator,
                }))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Stops and removes a container with its anonymous volumes; a container
    /// that is already gone counts as removed. A removal the engine fails on
    /// its side is asked again, a few times ([`removal_retry`]): one that
    /// meets the engine still reading the container (its archive API, a
    /// `docker cp`) can leave it dead, "Removal In Progress", and a second
    /// removal takes it.
    pub(crate) async fn remove(&self, id: &str) -> Result<(), DockerError> {
        let mut attempt = 0;
        loop {
            let options = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
            match self
                .client
                .remove_container(id, Some(options))
                .await
                .map_err(|e| DockerError::from_bollard("remove container", e))
            {
                Ok(()) => return Ok(()),
                Err(e) if e.is_not_found() => return Ok(()),
                Err(e) => match removal_retry(&e, attempt) {
                    Some(pause) => tokio::time::sleep(pause).await,
                    None => return Err(e),
                },
            }
            attempt += 1;
        }
    }

    /// How the container ended, if it did: its exit code and whether the
    /// kernel killed it for memory. `None` while it runs; a container that is
    /// gone reads as exit code -1.
    pub(crate) async fn ended(&self, id: &str) -> Option<Ended> {
        match self
            .client
            .inspect_container(id, None)
            .await
            .map_err(|e| DockerError::from_bollard("inspect container", e))
        {
            Ok(info) => {
                let state = info.state.unwrap_or_default();
                if state.running.unwrap_or(false) {
                    None
                } else {
                    Some(Ended { code: state.exit_code.unwrap_or(-1), oom_killed: state.oom_killed.unwrap_or(false) })
                }
            }
            Err(e) if e.is_not_found() => Some(Ended { code: -1, oom_killed: false }),
            // The engine did not answer: say nothing rather than guess.
            Err(_) => None,
        }
    }

    /// The container's CPU limit in nano-CPUs (0: none).
    pub(crate) async fn nano_cpus(&self, id: &str) -> Result<i64, DockerError> {
        let info = self
            .client
            .inspect_container(id, None)
            .await
            .map_err(|e| DockerError::from_bollard("inspect container", e))?;
        Ok(info.host_config.and_then(|h| h.nano_cpus).unwrap_or(0))
    }

    /// Changes the container's CPU limit while it runs.
    pub(crate) async fn set_nano_cpus(&self, id: &str, nano_cpus: i64) -> Result<(), DockerError> {
        if self.podman {
            // Podman 4 routes no `POST /containers/{id}/update`: its 404
            // would read as "no such container".
            return Err(DockerError::new(
                "update container",
                None,
                "Podman's Docker API cannot change a running container's limits (it has no \
                 `POST /containers/{id}/update`): the `throttle` limit action does not work on Podman; use `alert`, \
                 `restart` or `kill`",
            ));
        }
        let body =
            testcontainers::bollard::models::ContainerUpdateBody { nano_cpus: Some(nano_cpus), ..Default::default() };
        self.client.update_container(id, body).await.map_err(|e| DockerError::from_bollard("update container", e))
    }

    /// Sends SIGKILL to the container.
    pub(crate) async fn kill(&self, id: &str) -> Result<(), DockerError> {
        use testcontainers::bollard::query_parameters::KillContainerOptionsBuilder;
        let options = KillContainerOptionsBuilder::new().signal("KILL").build();
        self.client.kill_container(id, Some(options)).await.map_err(|e| DockerError::from_bollard("kill container", e))
    }
}

/// Whether a failed removal is asked again, and after how long: an error
/// on the engine's side (5xx) or a removal already in progress (409), at
/// most five more times over about three seconds. An engine that does not
/// answer at all is not waited for here (the reaper asks again for longer).
pub(super) fn removal_retry(error: &DockerError, attempt: u32) -> Option<std::time::Duration> {
    let again = matches!(error.status, Some(status) if status >= 500 || status == 409);
    (again && attempt < 5).then(|| std::time::Duration::from_millis(100 << attempt))
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::{removal_retry, DockerError};
        use std::time::Duration;

        #[test]
        fn ask_again_for_a_removal_the_engine_failed_on_its_side_or_already_runs() {
            let dead = DockerError::new("remove container", Some(500), "directory not empty");
            let pauses: Vec<Duration> = (0..7).map_while(|n| removal_retry(&dead, n)).collect();
            assert_eq!(pauses.len(), 5, "five more tries, then the error");
            assert_eq!(pauses.iter().sum::<Duration>(), Duration::from_millis(3100));
            let in_progress = DockerError::new("remove container", Some(409), "removal already in progress");
            assert_eq!(removal_retry(&in_progress, 0), Some(Duration::from_millis(100)));
        }

        #[test]
        fn not_ask_again_for_a_mistake_or_an_engine_that_is_away() {
            assert_eq!(removal_retry(&DockerError::new("remove container", Some(400), "bad"), 0), None);
            assert_eq!(removal_retry(&DockerError::new("remove container", None, "connection refused"), 0), None);
        }
    }
}
