//! Networks: the run's own, and existing ones a service joins.

use std::collections::{BTreeMap, HashMap};

use super::labels::label_filters;
use super::{Docker, DockerError};

impl Docker {
    /// Makes sure the network `name` exists, creating it with `labels` if
    /// not; `true` when this call created it. Another process creating it
    /// at the same moment (Docker answers 409) counts as found.
    pub(crate) async fn ensure_network(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<bool, DockerError> {
        match self.client.inspect_network(name, None).await.map_err(|e| DockerError::from_bollard("inspect network", e))
        {
            Ok(_) => return Ok(false),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        let request = testcontainers::bollard::models::NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            labels: Some(labels.clone().into_iter().collect()),
            ..Default::default()
        };
        match self.client.create_network(request).await.map_err(|e| DockerError::from_bollard("create network", e)) {
            Ok(_) => Ok(true),
            Err(e) if e.is_conflict() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Connects the container to `network`, where the other containers on
    /// it reach it as `alias`.
    pub(crate) async fn connect_network(&self, network: &str, id: &str, alias: &str) -> Result<(), DockerError> {
        let request = testcontainers::bollard::models::NetworkConnectRequest {
            container: id.to_string(),
            endpoint_config: Some(testcontainers::bollard::models::EndpointSettings {
                aliases: Some(vec![alias.to_string()]),
                ..Default::default()
            }),
        };
        self.client.connect_network(network, request).await.map_err(|e| DockerError::from_bollard("connect network", e))
    }

    /// Removes the network `name`; one that is already gone counts as removed.
    pub(crate) async fn remove_network(&self, name: &str) -> Result<(), DockerError> {
        match self.client.remove_network(name).await.map_err(|e| DockerError::from_bollard("remove network", e)) {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// How many containers the network connects, with its labels; `None`
    /// if there is no such network.
    pub(crate) async fn network_use(
        &self,
        name: &str,
    ) -> Result<Option<(usize, HashMap<String, String>)>, DockerError> {
        match self.client.inspect_network(name, None).await.map_err(|e| DockerError::from_bollard("inspect network", e))
        {
            Ok(n) => Ok(Some((n.containers.map_or(0, |c| c.len()), n.labels.unwrap_or_default()))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every network carrying `label` (`key=value` or just `key`): its name
    /// and labels.
    pub(crate) async fn networks_with_labels(
        &self,
        label: &str,
    ) -> Result<Vec<(String, HashMap<String, String>)>, DockerError> {
        use testcontainers::bollard::query_parameters::ListNetworksOptionsBuilder;
        let filters = label_filters([label.to_string()]);
        let networks = self
            .client
            .list_networks(Some(ListNetworksOptionsBuilder::new().filters(&filters).build()))
            .await
            .map_err(|e| DockerError::from_bollard("list networks", e))?;
        Ok(networks.into_iter().filter_map(|n| Some((n.name?, n.labels.unwrap_or_default()))).collect())
    }
}
