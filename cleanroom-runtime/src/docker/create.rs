//! Creating and starting a container from a [`ContainerRequest`]: plain
//! engine terms, made by the layers above from a service's definition.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use testcontainers::bollard::models::PortBinding;
use testcontainers::core::ContainerPort;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use super::{split_image, Docker, DockerError};

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Limits {
    /// Memory limit in bytes (`docker run --memory`).
    pub(crate) memory: Option<u64>,
    /// CPUs (`--cpus`), sent to Docker as nano CPUs.
    pub(crate) cpus: Option<f64>,
    /// Maximum number of processes (`--pids-limit`).
    pub(crate) pids: Option<i64>,
    /// Size of `/dev/shm` in bytes (`--shm-size`).
    pub(crate) shm_size: Option<u64>,
}

/// A mount as the engine takes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum MountRequest {
    /// A host path (made absolute against the current directory).
    Bind { source: String, target: String, read_only: bool },
    /// A named volume, made by the engine if missing (bare).
    Volume { source: String, target: String, read_only: bool },
    /// A named volume that, should it be missing, the engine makes with
    /// these labels (never bare).
    LabelledVolume { source: String, target: String, labels: BTreeMap<String, String> },
}

/// Everything the engine needs to create and start one container.
#[derive(Debug, Clone, Default)]
pub(crate) struct ContainerRequest {
    pub(crate) image: String,
    /// Exec form; the first word is the program.
    pub(crate) entrypoint: Vec<String>,
    pub(crate) cmd: Vec<String>,
    pub(crate) env: BTreeMap<String, String>,
    /// Container ports to publish on the host's loopback.
    pub(crate) ports: Vec<u16>,
    /// Container port → fixed host port (the others get a free one).
    pub(crate) fixed_ports: BTreeMap<u16, u16>,
    pub(crate) mounts: Vec<MountRequest>,
    pub(crate) tmpfs: BTreeMap<String, String>,
    pub(crate) limits: Limits,
    pub(crate) labels: BTreeMap<String, String>,
    /// The container's name; the engine refuses a second one with a 409.
    pub(crate) name: Option<String>,
    pub(crate) startup_timeout: Duration,
}

/// The entrypoint testcontainers can pass (one word) and the command with
/// the entrypoint's other words in front of it.
fn exec_form(entrypoint: &[String], cmd: &[String]) -> (Option<String>, Vec<String>) {
    match entrypoint.split_first() {
        None => (None, cmd.to_vec()),
        Some((program, rest)) => (Some(program.clone()), rest.iter().chain(cmd).cloned().collect()),
    }
}

/// `path` made absolute against the current directory.
pub(crate) fn absolute(path: &str) -> std::path::PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.into())
}

fn testcontainers_mount(mount: &MountRequest) -> Option<testcontainers::core::Mount> {
    use testcontainers::core::{AccessMode, Mount};
    let access = |read_only: bool| if read_only { AccessMode::ReadOnly } else { AccessMode::ReadWrite };
    match mount {
        MountRequest::Bind { source, target, read_only } => {
            Some(Mount::bind_mount(absolute(source).display().to_string(), target).with_access_mode(access(*read_only)))
        }
        MountRequest::Volume { source, target, read_only } => {
            Some(Mount::volume_mount(source, target).with_access_mode(access(*read_only)))
        }
        MountRequest::LabelledVolume { .. } => None,
    }
}

impl Docker {
    /// Creates and starts the container, publishing its ports on 127.0.0.1
    /// only. Health checks are cleanroom's, not testcontainers', so none are
    /// given to it. A name another container has is a [`DockerError`] whose
    /// [`is_conflict`](DockerError::is_conflict) is true.
    pub(crate) async fn start(&self, request: &ContainerRequest) -> Result<ContainerAsync<GenericImage>, DockerError> {
        let (name, tag) = split_image(&request.image);
        let mut image = GenericImage::new(name, tag);
        for port in &request.ports {
            image = image.with_exposed_port(ContainerPort::Tcp(*port));
        }
        // testcontainers gives Docker a one-word entrypoint: the words after
        // the program go in front of the command, which runs the same process.
        let (entrypoint, cmd) = exec_form(&request.entrypoint, &request.cmd);
        if let Some(entrypoint) = &entrypoint {
            image = image.with_entrypoint(entrypoint);
        }
        let mut tc = image.with_labels(request.labels.clone());
        if !cmd.is_empty() {
            tc = tc.with_cmd(cmd);
        }
        for (k, v) in &request.env {
            tc = tc.with_env_var(k, v);
        }
        for mount in request.mounts.iter().filter_map(testcontainers_mount) {
            tc = tc.with_mount(mount);
        }
        let bindings: HashMap<String, Option<Vec<PortBinding>>> = request
            .ports
            .iter()
            .map(|p| {
                let host_port = request.fixed_ports.get(p).map_or_else(String::new, u16::to_string);
                (
                    format!("{p}/tcp"),
                    Some(vec![PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some(host_port) }]),
                )
            })
            .collect();
        let tmpfs: HashMap<String, String> = request.tmpfs.clone().into_iter().collect();
        let labelled: Vec<(String, String, BTreeMap<String, String>)> = request
            .mounts
            .iter()
            .filter_map(|m| match m {
                MountRequest::LabelledVolume { source, target, labels } => {
                    Some((source.clone(), target.clone(), labels.clone()))
                }
                _ => None,
            })
            .collect();
        let limits = request.limits;
        tc = tc.with_startup_timeout(request.startup_timeout).with_host_config_modifier(move |hc| {
            hc.publish_all_ports = Some(false);
            hc.port_bindings = Some(bindings.clone());
            if !tmpfs.is_empty() {
                hc.tmpfs = Some(tmpfs.clone());
            }
            for (source, target, labels) in &labelled {
                // A mount rather than a bind: should the volume have gone
                // since it was made (evicted by another run), Docker makes
                // it again with these labels, not bare.
                use testcontainers::bollard::models::{Mount, MountType, MountVolumeOptions};
                hc.mounts.get_or_insert_with(Vec::new).push(Mount {
                    target: Some(target.clone()),
                    source: Some(source.clone()),
                    typ: Some(MountType::VOLUME),
                    volume_options: Some(MountVolumeOptions {
                        labels: Some(labels.clone().into_iter().collect()),
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
        if let Some(name) = &request.name {
            tc = tc.with_container_name(name);
        }
        tc.start().await.map_err(DockerError::from_testcontainers)
    }
}
