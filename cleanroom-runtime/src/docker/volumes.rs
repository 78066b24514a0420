//! Named volumes: the run's own and the volume cache's.

use std::collections::{BTreeMap, HashMap};

use testcontainers::bollard::query_parameters::ListContainersOptionsBuilder;

use super::labels::label_filters;
use super::{Docker, DockerError};

/// Whether `labels` has every `(key, value)` of `wanted`.
fn carries_all(labels: &HashMap<String, String>, wanted: &[(&str, &str)]) -> bool {
    wanted.iter().all(|(k, v)| labels.get(*k).is_some_and(|have| have == v))
}

/// A volume as the engine lists it.
#[derive(Debug, Clone)]
pub(crate) struct Volume {
    pub(crate) name: String,
    pub(crate) labels: HashMap<String, String>,
    /// Seconds since the epoch (0 when Docker did not say).
    pub(crate) created: i64,
}

impl Docker {
    /// Makes sure the volume `name` exists, creating it with `labels` if
    /// not; `true` when this call created it.
    pub(crate) async fn ensure_volume(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<bool, DockerError> {
        match self.client.inspect_volume(name).await.map_err(|e| DockerError::from_bollard("inspect volume", e)) {
            Ok(_) => return Ok(false),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        let request = testcontainers::bollard::models::VolumeCreateRequest {
            name: Some(name.to_string()),
            labels: Some(labels.clone().into_iter().collect()),
            ..Default::default()
        };
        self.client
            .create_volume(request)
            .await
            .map(|_| true)
            .map_err(|e| DockerError::from_bollard("create volume", e))
    }

    /// Removes the volume `name`; one that is already gone counts as removed.
    pub(crate) async fn remove_volume(&self, name: &str) -> Result<(), DockerError> {
        use testcontainers::bollard::query_parameters::RemoveVolumeOptions;
        match self
            .client
            .remove_volume(name, None::<RemoveVolumeOptions>)
            .await
            .map_err(|e| DockerError::from_bollard("remove volume", e))
        {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every volume carrying `label` (`key=value` or just `key`).
    pub(crate) async fn volumes_with_label(&self, label: &str) -> Result<Vec<Volume>, DockerError> {
        use testcontainers::bollard::query_parameters::ListVolumesOptionsBuilder;
        let filters = label_filters([label.to_string()]);
        let volumes = self
            .client
            .list_volumes(Some(ListVolumesOptionsBuilder::new().filters(&filters).build()))
            .await
            .map_err(|e| DockerError::from_bollard("list volumes", e))?;
        Ok(volumes
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| Volume { created: v.created_at.map_or(0, |t| t.unix_timestamp()), name: v.name, labels: v.labels })
            .collect())
    }

    /// Names of the volumes mounted by any container, running or not.
    pub(crate) async fn volumes_mounted(&self) -> Result<Vec<String>, DockerError> {
        let options = ListContainersOptionsBuilder::new().all(true).build();
        let list = self
            .client
            .list_containers(Some(options))
            .await
            .map_err(|e| DockerError::from_bollard("list containers", e))?;
        Ok(list.into_iter().flat_map(|c| c.mounts.unwrap_or_default()).filter_map(|m| m.name).collect())
    }

    /// Removes every network and volume carrying all these labels.
    pub(crate) async fn remove_networks_and_volumes(&self, labels: &[(&str, &str)]) -> Result<(), DockerError> {
        use testcontainers::bollard::query_parameters::{ListNetworksOptionsBuilder, ListVolumesOptionsBuilder};
        let filters = label_filters(labels.iter().map(|(k, v)| format!("{k}={v}")));
        let networks = self
            .client
            .list_networks(Some(ListNetworksOptionsBuilder::new().filters(&filters).build()))
            .await
            .map_err(|e| DockerError::from_bollard("remove networks and volumes", e))?;
        for n in networks.into_iter().filter_map(|n| n.id) {
            let _ = self.client.remove_network(&n).await;
        }
        let volumes = self
            .client
            .list_volumes(Some(ListVolumesOptionsBuilder::new().filters(&filters).build()))
            .await
            .map_err(|e| DockerError::from_bollard("remove networks and volumes", e))?;
        // Podman 4 lists volumes carrying any of several labels where
        // Docker lists those carrying all of them: without this, a run's
        // reaper would remove every volume labelled cleanroom.managed=true
        // (the volume cache, other runs' volumes).
        for v in volumes.volumes.unwrap_or_default().into_iter().filter(|v| carries_all(&v.labels, labels)) {
            let _ = self
                .client
                .remove_volume(&v.name, None::<testcontainers::bollard::query_parameters::RemoveVolumeOptions>)
                .await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::carries_all;
        use std::collections::HashMap;

        #[test]
        fn keep_only_volumes_with_every_label_asked_for() {
            let labels: HashMap<String, String> =
                [("cleanroom.managed", "true"), ("cleanroom.session", "s1")].map(|(k, v)| (k.into(), v.into())).into();
            assert!(carries_all(&labels, &[("cleanroom.managed", "true"), ("cleanroom.session", "s1")]));
            assert!(!carries_all(&labels, &[("cleanroom.managed", "true"), ("cleanroom.session", "s2")]));
            let cache: HashMap<String, String> = [("cleanroom.managed".into(), "true".into())].into();
            assert!(!carries_all(&cache, &[("cleanroom.managed", "true"), ("cleanroom.session", "s1")]), "Podman's OR");
        }
    }
}
