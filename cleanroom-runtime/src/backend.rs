//! Everything cleanroom asks of Docker. Containers are created and started
//! through testcontainers; the rest (ping, images, inspect, logs, exec,
//! removal by label) goes straight to the engine through the bollard client
//! testcontainers is configured with.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures_util::StreamExt;
use testcontainers::bollard::models::{ExecConfig, PortBinding};
use testcontainers::bollard::query_parameters::{
    CreateImageOptionsBuilder, DownloadFromContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use testcontainers::bollard::Docker as Bollard;
use testcontainers::core::ContainerPort;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use crate::config::PullPolicy;
use crate::definition::GenericContainer;
use crate::error::Error;

/// How long cleanroom waits for the engine to answer its first ping.
pub(crate) const PING_TIMEOUT: Duration = Duration::from_secs(2);

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

/// How a container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ended {
    pub(crate) code: i64,
    pub(crate) oom_killed: bool,
}

/// One sample of Docker's stats stream, as counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StatSample {
    /// CPU time the container used, nanoseconds, since it started.
    pub(crate) cpu_total: u64,
    /// CPU time of the whole host, nanoseconds.
    pub(crate) system_total: u64,
    pub(crate) online_cpus: u32,
    /// Bytes in use (without reclaimable page cache).
    pub(crate) memory: u64,
    pub(crate) memory_limit: u64,
    /// Bytes received and sent, in total.
    pub(crate) network: (u64, u64),
    /// Bytes read and written, in total.
    pub(crate) block: (u64, u64),
}

impl StatSample {
    /// CPU use between `prev` and `self`, in percent of one core.
    pub(crate) fn cpu_percent_since(&self, prev: &StatSample) -> Option<f64> {
        let cpu = self.cpu_total.checked_sub(prev.cpu_total)? as f64;
        let system = self.system_total.checked_sub(prev.system_total)? as f64;
        (system > 0.0).then(|| cpu / system * f64::from(self.online_cpus) * 100.0)
    }
}

/// The entrypoint testcontainers can pass (one word) and the command with
/// the entrypoint's other words in front of it.
fn exec_form(entrypoint: &[String], cmd: &[String]) -> (Option<String>, Vec<String>) {
    match entrypoint.split_first() {
        None => (None, cmd.to_vec()),
        Some((program, rest)) => (Some(program.clone()), rest.iter().chain(cmd).cloned().collect()),
    }
}

/// A cleanroom mount as testcontainers passes it to Docker; a relative bind
/// source is taken from the current directory, as Docker wants it absolute.
fn docker_mount(mount: &crate::definition::Mount) -> testcontainers::core::Mount {
    use crate::definition::MountKind;
    use testcontainers::core::{AccessMode, Mount};
    let m = match mount.kind {
        MountKind::Bind => Mount::bind_mount(absolute(&mount.source).display().to_string(), &mount.target),
        MountKind::Volume => Mount::volume_mount(&mount.source, &mount.target),
    };
    m.with_access_mode(if mount.read_only { AccessMode::ReadOnly } else { AccessMode::ReadWrite })
}

/// `path` made absolute against the current directory.
pub(crate) fn absolute(path: &str) -> std::path::PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.into())
}

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
/// (see `context.rs`).
pub(crate) fn docker_host() -> Result<String, String> {
    crate::context::chosen()
}

/// A container found by name.
#[derive(Debug, Clone)]
pub(crate) struct NamedContainer {
    pub(crate) id: String,
    pub(crate) running: bool,
    /// Docker's state: created, running, exited, ...
    pub(crate) status: String,
    pub(crate) exit_code: Option<i64>,
    pub(crate) env: BTreeMap<String, String>,
}

/// The engine's filter for objects carrying every one of `labels`
/// (`key=value` or just `key`).
fn label_filters(labels: impl IntoIterator<Item = String>) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), labels.into_iter().collect())])
}

/// A volume as the engine lists it.
#[derive(Debug, Clone)]
pub(crate) struct Volume {
    pub(crate) name: String,
    pub(crate) labels: HashMap<String, String>,
    /// Seconds since the epoch (0 when Docker did not say).
    pub(crate) created: i64,
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

/// What an exec'd command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Its exit code.
    pub exit_code: i64,
    /// What it wrote to stdout.
    pub stdout: String,
    /// What it wrote to stderr.
    pub stderr: String,
}

impl Docker {
    /// Connects and pings, failing within [`PING_TIMEOUT`].
    pub(crate) async fn connect() -> Result<Docker, Error> {
        let host =
            docker_host().map_err(|reason| Error::DockerUnavailable { host: "the docker context".into(), reason })?;
        let unavailable = |reason: String| Error::DockerUnavailable { host: host.clone(), reason };
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

    /// Makes sure the image is on this machine, pulling it if the policy
    /// allows (`missing`, `never`; `always` is the registry's, which pulls
    /// once per run); `true` when it had to be pulled.
    pub(crate) async fn ensure_image(&self, service: &str, image: &str, policy: PullPolicy) -> Result<bool, Error> {
        if self.client.inspect_image(image).await.is_ok() {
            return Ok(false);
        }
        let not_found = |pull: String| Error::ImageNotFound {
            service: service.to_string(),
            image: image.to_string(),
            pull,
            env: crate::config::env_key(service),
        };
        if policy == PullPolicy::Never {
            return Err(not_found("pulling is off (CLEANROOM_PULL=never)".into()));
        }
        self.pull(image).await.map_err(|e| not_found(format!("the pull failed: {e}")))?;
        Ok(true)
    }

    /// Whether the image is on this machine.
    pub(crate) async fn has_image(&self, image: &str) -> bool {
        self.client.inspect_image(image).await.is_ok()
    }

    /// Pulls the image, present or not.
    pub(crate) async fn pull(&self, image: &str) -> Result<(), String> {
        let (name, tag) = crate::definition::split_image(image);
        let options = CreateImageOptionsBuilder::new().from_image(&name).tag(&tag).build();
        let mut pull = self.client.create_image(Some(options), None, None);
        while let Some(step) = pull.next().await {
            step.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Creates and starts the container with cleanroom's labels, publishing
    /// its ports on 127.0.0.1 only. Health checks are cleanroom's, not
    /// testcontainers', so none are given to it.
    pub(crate) async fn start(
        &self,
        service: &str,
        def: &GenericContainer,
        labels: BTreeMap<String, String>,
        container_name: Option<&str>,
    ) -> Result<ContainerAsync<GenericImage>, Error> {
        let (name, tag) = def.image_name_and_tag();
        let mut image = GenericImage::new(name, tag);
        let mut ports = def.ports.clone();
        for check in &def.health_checks {
            if let Some(p) = check.port() {
                if !ports.contains(&p) {
                    ports.push(p);
                }
            }
        }
        for port in &ports {
            image = image.with_exposed_port(ContainerPort::Tcp(*port));
        }
        // testcontainers gives Docker a one-word entrypoint: the words after
        // the program go in front of the command, which runs the same process.
        let (entrypoint, cmd) = exec_form(&def.entrypoint, &def.cmd);
        if let Some(entrypoint) = &entrypoint {
            image = image.with_entrypoint(entrypoint);
        }
        let mut request = image.with_labels(labels);
        if !cmd.is_empty() {
            request = request.with_cmd(cmd);
        }
        for (k, v) in &def.env {
            request = request.with_env_var(k, v);
        }
        for mount in &def.mounts {
            request = request.with_mount(docker_mount(mount));
        }
        let bindings: HashMap<String, Option<Vec<PortBinding>>> = ports
            .iter()
            .map(|p| {
                let host_port = def.fixed_ports.get(p).map_or_else(String::new, u16::to_string);
                (
                    format!("{p}/tcp"),
                    Some(vec![PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some(host_port) }]),
                )
            })
            .collect();
        let tmpfs: HashMap<String, String> = def.tmpfs.clone().into_iter().collect();
        let cache_mount = def.cache_mount.clone();
        let limits = def.limits;
        request = request.with_startup_timeout(def.startup_timeout).with_host_config_modifier(move |hc| {
            hc.publish_all_ports = Some(false);
            hc.port_bindings = Some(bindings.clone());
            if !tmpfs.is_empty() {
                hc.tmpfs = Some(tmpfs.clone());
            }
            if let Some(volume) = &cache_mount {
                // A mount rather than a bind: should the volume have gone
                // since it was made (evicted by another run), Docker makes
                // it again with these labels, not bare.
                use testcontainers::bollard::models::{Mount, MountType, MountVolumeOptions};
                hc.mounts.get_or_insert_with(Vec::new).push(Mount {
                    target: Some(crate::cache::MOUNT.to_string()),
                    source: Some(volume.name.clone()),
                    typ: Some(MountType::VOLUME),
                    volume_options: Some(MountVolumeOptions {
                        labels: Some(volume.labels.clone().into_iter().collect()),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
            if let Some(bytes) = limits.memory {
                hc.memory = Some(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
            if let Some(cpus) = limits.cpus {
                hc.nano_cpus = Some((cpus * 1e9).round() as i64);
            }
            if let Some(pids) = limits.pids {
                hc.pids_limit = Some(pids);
            }
            if let Some(bytes) = limits.shm_size {
                hc.shm_size = Some(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
        });
        if let Some(name) = container_name {
            request = request.with_container_name(name);
        }
        request.start().await.map_err(|e| {
            let reason = e.to_string();
            if reason.contains("409") || reason.contains("Conflict") || reason.contains("already in use") {
                return Error::NameTaken { service: service.into(), reason };
            }
            if reason.contains("create") || reason.contains("Create") {
                Error::Creation { service: service.into(), image: def.image.clone(), reason }
            } else {
                Error::Start { service: service.into(), image: def.image.clone(), reason }
            }
        })
    }

    /// Makes sure the volume `name` exists, creating it with `labels` if
    /// not; `true` when this call created it.
    pub(crate) async fn ensure_volume(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<bool, String> {
        use testcontainers::bollard::errors::Error as E;
        match self.client.inspect_volume(name).await {
            Ok(_) => return Ok(false),
            Err(E::DockerResponseServerError { status_code: 404, .. }) => {}
            Err(e) => return Err(e.to_string()),
        }
        let request = testcontainers::bollard::models::VolumeCreateRequest {
            name: Some(name.to_string()),
            labels: Some(labels.clone().into_iter().collect()),
            ..Default::default()
        };
        self.client.create_volume(request).await.map(|_| true).map_err(|e| e.to_string())
    }

    /// Removes the volume `name`; one that is already gone counts as removed.
    pub(crate) async fn remove_volume(&self, name: &str) -> Result<(), String> {
        use testcontainers::bollard::query_parameters::RemoveVolumeOptions;
        match self.client.remove_volume(name, None::<RemoveVolumeOptions>).await {
            Ok(()) => Ok(()),
            Err(testcontainers::bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The host ports Docker published for each container port.
    pub(crate) async fn published_ports(&self, id: &str) -> Result<BTreeMap<u16, u16>, String> {
        let info = self.client.inspect_container(id, None).await.map_err(|e| e.to_string())?;
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
    pub(crate) async fn exit_status(&self, id: &str) -> Result<Option<i64>, String> {
        let info = self.client.inspect_container(id, None).await.map_err(|e| e.to_string())?;
        let state = info.state.unwrap_or_default();
        if state.running.unwrap_or(false) {
            Ok(None)
        } else {
            Ok(Some(state.exit_code.unwrap_or(-1)))
        }
    }

    /// The container's output (stdout and stderr, interleaved), the last
    /// `tail` lines or all of it.
    pub(crate) async fn logs(&self, id: &str, tail: Option<usize>) -> Result<String, String> {
        let tail = tail.map_or_else(|| "all".to_string(), |n| n.to_string());
        let options = LogsOptionsBuilder::new().stdout(true).stderr(true).tail(&tail).build();
        let mut stream = self.client.logs(id, Some(options));
        let mut out = String::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            out.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
        Ok(out)
    }

    /// Runs a command inside the container and waits for it.
    pub(crate) async fn exec(&self, id: &str, cmd: &[String]) -> Result<ExecOutput, String> {
        let config = ExecConfig {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(cmd.to_vec()),
            ..Default::default()
        };
        let exec = self.client.create_exec(id, config).await.map_err(|e| e.to_string())?;
        let started = self.client.start_exec(&exec.id, None).await.map_err(|e| e.to_string())?;
        let (mut stdout, mut stderr) = (String::new(), String::new());
        if let testcontainers::bollard::exec::StartExecResults::Attached { mut output, .. } = started {
            while let Some(chunk) = output.next().await {
                match chunk.map_err(|e| e.to_string())? {
                    testcontainers::bollard::container::LogOutput::StdErr { message } => {
                        stderr.push_str(&String::from_utf8_lossy(&message))
                    }
                    other => stdout.push_str(&String::from_utf8_lossy(&other.into_bytes())),
                }
            }
        }
        // The stream ends when the process does, but its exit code may be
        // recorded a moment later.
        for _ in 0..50 {
            let info = self.client.inspect_exec(&exec.id).await.map_err(|e| e.to_string())?;
            if info.running != Some(true) {
                if let Some(code) = info.exit_code {
                    return Ok(ExecOutput { exit_code: code, stdout, stderr });
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(format!("`{}` did not report an exit code", cmd.join(" ")))
    }

    /// Whether `path` exists in the container (asks the engine's archive API,
    /// so it works in images without a shell).
    pub(crate) async fn path_exists(&self, id: &str, path: &str) -> Result<bool, String> {
        let options = DownloadFromContainerOptionsBuilder::new().path(path).build();
        let mut stream = self.client.download_from_container(id, Some(options));
        match stream.next().await {
            Some(Ok(_)) | None => Ok(true),
            Some(Err(testcontainers::bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            })) => Ok(false),
            Some(Err(e)) => Err(e.to_string()),
        }
    }

    /// Ids of every container (running or not) carrying all these labels.
    pub(crate) async fn containers_labelled(&self, labels: &[(&str, &str)]) -> Result<Vec<String>, String> {
        let filters = label_filters(labels.iter().map(|(k, v)| format!("{k}={v}")));
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let list = self.client.list_containers(Some(options)).await.map_err(|e| e.to_string())?;
        Ok(list.into_iter().filter_map(|c| c.id).collect())
    }

    /// Every container carrying `label` (`key=value` or just `key`), with its
    /// labels and creation time (seconds since the epoch).
    pub(crate) async fn containers_with_labels(
        &self,
        label: &str,
    ) -> Result<Vec<(String, HashMap<String, String>, i64)>, String> {
        Ok(self.list(label).await?.into_iter().map(|c| (c.id, c.labels, c.created)).collect())
    }

    /// Every container carrying `label`, running or not, as `docker ps -a` lists it.
    pub(crate) async fn list(&self, label: &str) -> Result<Vec<Listed>, String> {
        let filters = label_filters([label.to_string()]);
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let list = self.client.list_containers(Some(options)).await.map_err(|e| e.to_string())?;
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

    /// Makes sure the network `name` exists, creating it with `labels` if
    /// not; `true` when this call created it. Another process creating it
    /// at the same moment (Docker answers 409) counts as found.
    pub(crate) async fn ensure_network(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<bool, String> {
        use testcontainers::bollard::errors::Error as E;
        match self.client.inspect_network(name, None).await {
            Ok(_) => return Ok(false),
            Err(E::DockerResponseServerError { status_code: 404, .. }) => {}
            Err(e) => return Err(e.to_string()),
        }
        let request = testcontainers::bollard::models::NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            labels: Some(labels.clone().into_iter().collect()),
            ..Default::default()
        };
        match self.client.create_network(request).await {
            Ok(_) => Ok(true),
            Err(E::DockerResponseServerError { status_code: 409, .. }) => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Connects the container to `network`, where the other containers on
    /// it reach it as `alias`.
    pub(crate) async fn connect_network(&self, network: &str, id: &str, alias: &str) -> Result<(), String> {
        let request = testcontainers::bollard::models::NetworkConnectRequest {
            container: id.to_string(),
            endpoint_config: Some(testcontainers::bollard::models::EndpointSettings {
                aliases: Some(vec![alias.to_string()]),
                ..Default::default()
            }),
        };
        self.client.connect_network(network, request).await.map_err(|e| e.to_string())
    }

    /// Removes the network `name`; one that is already gone counts as removed.
    pub(crate) async fn remove_network(&self, name: &str) -> Result<(), String> {
        match self.client.remove_network(name).await {
            Ok(()) => Ok(()),
            Err(testcontainers::bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Every network carrying `label` (`key=value` or just `key`): its name
    /// and labels.
    pub(crate) async fn networks_with_labels(
        &self,
        label: &str,
    ) -> Result<Vec<(String, HashMap<String, String>)>, String> {
        use testcontainers::bollard::query_parameters::ListNetworksOptionsBuilder;
        let filters = label_filters([label.to_string()]);
        let networks = self
            .client
            .list_networks(Some(ListNetworksOptionsBuilder::new().filters(&filters).build()))
            .await
            .map_err(|e| e.to_string())?;
        Ok(networks.into_iter().filter_map(|n| Some((n.name?, n.labels.unwrap_or_default()))).collect())
    }

    /// Every volume carrying `label` (`key=value` or just `key`).
    pub(crate) async fn volumes_with_label(&self, label: &str) -> Result<Vec<Volume>, String> {
        use testcontainers::bollard::query_parameters::ListVolumesOptionsBuilder;
        let filters = label_filters([label.to_string()]);
        let volumes = self
            .client
            .list_volumes(Some(ListVolumesOptionsBuilder::new().filters(&filters).build()))
            .await
            .map_err(|e| e.to_string())?;
        Ok(volumes
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| Volume { created: v.created_at.map_or(0, |t| t.unix_timestamp()), name: v.name, labels: v.labels })
            .collect())
    }

    /// Names of the volumes mounted by any container, running or not.
    pub(crate) async fn volumes_mounted(&self) -> Result<Vec<String>, String> {
        let options = ListContainersOptionsBuilder::new().all(true).build();
        let list = self.client.list_containers(Some(options)).await.map_err(|e| e.to_string())?;
        Ok(list.into_iter().flat_map(|c| c.mounts.unwrap_or_default()).filter_map(|m| m.name).collect())
    }

    /// Removes every network and volume carrying all these labels.
    pub(crate) async fn remove_networks_and_volumes(&self, labels: &[(&str, &str)]) -> Result<(), String> {
        use testcontainers::bollard::query_parameters::{ListNetworksOptionsBuilder, ListVolumesOptionsBuilder};
        let filters = label_filters(labels.iter().map(|(k, v)| format!("{k}={v}")));
        let networks = self
            .client
            .list_networks(Some(ListNetworksOptionsBuilder::new().filters(&filters).build()))
            .await
            .map_err(|e| e.to_string())?;
        for n in networks.into_iter().filter_map(|n| n.id) {
            let _ = self.client.remove_network(&n).await;
        }
        let volumes = self
            .client
            .list_volumes(Some(ListVolumesOptionsBuilder::new().filters(&filters).build()))
            .await
            .map_err(|e| e.to_string())?;
        for v in volumes.volumes.unwrap_or_default() {
            let _ = self
                .client
                .remove_volume(&v.name, None::<testcontainers::bollard::query_parameters::RemoveVolumeOptions>)
                .await;
        }
        Ok(())
    }

    /// The container named `name`: its id, whether it runs, its exit code,
    /// and its environment. `None` if there is none.
    pub(crate) async fn inspect_named(&self, name: &str) -> Result<Option<NamedContainer>, String> {
        match self.client.inspect_container(name, None).await {
            Ok(info) => {
                let state = info.state.unwrap_or_default();
                let env = info
                    .config
                    .and_then(|c| c.env)
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
                }))
            }
            Err(testcontainers::bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Stops and removes a container with its anonymous volumes; a container
    /// that is already gone counts as removed.
    pub(crate) async fn remove(&self, id: &str) -> Result<(), String> {
        let options = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
        match self.client.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(testcontainers::bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// How the container ended, if it did: its exit code and whether the
    /// kernel killed it for memory. `None` while it runs; a container that is
    /// gone reads as exit code -1.
    pub(crate) async fn ended(&self, id: &str) -> Option<Ended> {
        match self.client.inspect_container(id, None).await {
            Ok(info) => {
                let state = info.state.unwrap_or_default();
                if state.running.unwrap_or(false) {
                    None
                } else {
                    Some(Ended { code: state.exit_code.unwrap_or(-1), oom_killed: state.oom_killed.unwrap_or(false) })
                }
            }
            Err(testcontainers::bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
                Some(Ended { code: -1, oom_killed: false })
            }
            // The engine did not answer: say nothing rather than guess.
            Err(_) => None,
        }
    }

    /// Docker's events about one container (`die`, `oom`, `health_status`…)
    /// from now on, as `(action, exit code attribute)`.
    pub(crate) fn container_events(
        &self,
        id: &str,
    ) -> impl futures_util::Stream<Item = Result<(String, Option<String>), String>> + Send + 'static {
        use testcontainers::bollard::query_parameters::EventsOptionsBuilder;
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("container".to_string(), vec![id.to_string()]),
        ]);
        let options = EventsOptionsBuilder::new().filters(&filters).build();
        self.client.events(Some(options)).map(|event| {
            event.map_err(|e| e.to_string()).map(|e| {
                let exit =
                    e.actor.as_ref().and_then(|a| a.attributes.as_ref()).and_then(|a| a.get("exitCode").cloned());
                (e.action.unwrap_or_default(), exit)
            })
        })
    }

    /// Docker's stats stream for one container: one sample a second, over
    /// one connection.
    pub(crate) fn stats(
        &self,
        id: &str,
    ) -> impl futures_util::Stream<Item = Result<StatSample, String>> + Send + 'static {
        use testcontainers::bollard::query_parameters::StatsOptionsBuilder;
        let options = StatsOptionsBuilder::new().stream(true).one_shot(false).build();
        self.client.stats(id, Some(options)).map(|s| {
            s.map_err(|e| e.to_string()).map(|s| {
                let cpu = s.cpu_stats.unwrap_or_default();
                let mem = s.memory_stats.unwrap_or_default();
                // Memory in use as the docker CLI shows it: without the page
                // cache the kernel can drop.
                let cache = mem
                    .stats
                    .as_ref()
                    .and_then(|m| m.get("inactive_file").or_else(|| m.get("total_inactive_file")).copied());
                let (rx, tx) = s
                    .networks
                    .unwrap_or_default()
                    .values()
                    .fold((0, 0), |(rx, tx), n| (rx + n.rx_bytes.unwrap_or(0), tx + n.tx_bytes.unwrap_or(0)));
                let (read, write) =
                    s.blkio_stats.and_then(|b| b.io_service_bytes_recursive).unwrap_or_default().iter().fold(
                        (0, 0),
                        |(r, w), e| match e.op.as_deref().map(str::to_ascii_lowercase).as_deref() {
                            Some("read") => (r + e.value.unwrap_or(0), w),
                            Some("write") => (r, w + e.value.unwrap_or(0)),
                            _ => (r, w),
                        },
                    );
                StatSample {
                    cpu_total: cpu.cpu_usage.and_then(|u| u.total_usage).unwrap_or(0),
                    system_total: cpu.system_cpu_usage.unwrap_or(0),
                    online_cpus: cpu.online_cpus.unwrap_or(1).max(1),
                    memory: mem.usage.unwrap_or(0).saturating_sub(cache.unwrap_or(0)),
                    memory_limit: mem.limit.unwrap_or(0),
                    network: (rx, tx),
                    block: (read, write),
                }
            })
        })
    }

    /// The container's CPU limit in nano-CPUs (0: none).
    pub(crate) async fn nano_cpus(&self, id: &str) -> Result<i64, String> {
        let info = self.client.inspect_container(id, None).await.map_err(|e| e.to_string())?;
        Ok(info.host_config.and_then(|h| h.nano_cpus).unwrap_or(0))
    }

    /// Changes the container's CPU limit while it runs.
    pub(crate) async fn set_nano_cpus(&self, id: &str, nano_cpus: i64) -> Result<(), String> {
        let body =
            testcontainers::bollard::models::ContainerUpdateBody { nano_cpus: Some(nano_cpus), ..Default::default() };
        self.client.update_container(id, body).await.map_err(|e| e.to_string())
    }

    /// Sends SIGKILL to the container.
    pub(crate) async fn kill(&self, id: &str) -> Result<(), String> {
        use testcontainers::bollard::query_parameters::KillContainerOptionsBuilder;
        let options = KillContainerOptionsBuilder::new().signal("KILL").build();
        self.client.kill_container(id, Some(options)).await.map_err(|e| e.to_string())
    }
}
