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
    /// Disk bandwidth and operations per second, on the block device that
    /// backs the engine's storage (`--device-read-bps` and the like).
    pub(crate) disk: DiskLimits,
}

/// Disk throttles (Docker's blkio throttles, per block device).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub(crate) struct DiskLimits {
    pub(crate) read_bps: Option<u64>,
    pub(crate) write_bps: Option<u64>,
    pub(crate) read_iops: Option<u64>,
    pub(crate) write_iops: Option<u64>,
}

impl DiskLimits {
    pub(crate) fn any(&self) -> bool {
        self.read_bps.is_some() || self.write_bps.is_some() || self.read_iops.is_some() || self.write_iops.is_some()
    }
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
    /// Tmpfs mounts and their options, before `tmpfs_size` is applied.
    pub(crate) tmpfs: BTreeMap<String, String>,
    /// The size cap of every tmpfs, bytes (`None`: their own options).
    pub(crate) tmpfs_size: Option<u64>,
    pub(crate) limits: Limits,
    /// The block device the disk limits apply to (`None`: the one that
    /// backs the engine's storage, found when the engine is local).
    pub(crate) disk_device: Option<String>,
    pub(crate) labels: BTreeMap<String, String>,
    /// The container's name; the engine refuses a second one with a 409.
    pub(crate) name: Option<String>,
    pub(crate) startup_timeout: Duration,
}

impl ContainerRequest {
    /// The tmpfs mounts as Docker takes them: each with the size cap in
    /// place of its own `size=`. A cap with no tmpfs to hold it is refused:
    /// it would be ignored, and the service would write without a cap.
    pub(crate) fn tmpfs_mounts(&self) -> Result<BTreeMap<String, String>, DockerError> {
        let Some(bytes) = self.tmpfs_size else { return Ok(self.tmpfs.clone()) };
        if self.tmpfs.is_empty() {
            return Err(DockerError::new(
                "disk size",
                None,
                format!(
                    "a disk size cap ({bytes} bytes) applies to the service's tmpfs data directories, and it has none; \
                     add one where it writes (`.with_tmpfs(\"/data\", \"\")` or `tmpfs = {{ \"/data\" = \"\" }}` in \
                     cleanroom.toml), or remove `with_disk_size` / `disk_size`"
                ),
            ));
        }
        let capped = |options: &String| {
            options
                .split(',')
                .filter(|o| !o.is_empty() && !o.starts_with("size="))
                .map(str::to_string)
                .chain([format!("size={bytes}")])
                .collect::<Vec<_>>()
                .join(",")
        };
        Ok(self.tmpfs.iter().map(|(path, options)| (path.clone(), capped(options))).collect())
    }
}

impl Docker {
    /// The block device that holds the engine's storage (its root
    /// directory, where volumes live): what disk limits throttle. Found only
    /// when the engine is on this machine; a whole disk, not a partition
    /// (the kernel throttles disks).
    pub(crate) async fn storage_device(&self) -> Result<String, DockerError> {
        let info = self.client.info().await.map_err(|e| DockerError::from_bollard("info", e))?;
        let root = info.docker_root_dir.unwrap_or_else(|| "/var/lib/docker".to_string());
        let unknown = |why: String| {
            DockerError::new(
                "disk limits",
                None,
                format!(
                    "disk limits apply to the block device behind the engine's storage ({root}), and {why}; \
                     name it with `.with_disk_device(\"/dev/sda\")` or `disk_device = \"/dev/sda\"`"
                ),
            )
        };
        let dev = rustix::fs::stat(root.as_str())
            .map_err(|e| unknown(format!("it cannot be looked at from here ({e}: a remote engine?)")))?
            .st_dev;
        block_device_of(rustix::fs::major(dev), rustix::fs::minor(dev)).ok_or_else(|| {
            unknown(format!("device {}:{} is not a block device", rustix::fs::major(dev), rustix::fs::minor(dev)))
        })
    }
}

/// `/dev/<disk>` of the block device `major:minor`, or of the disk it is a
/// partition of, from `/sys/dev/block`.
fn block_device_of(major: u32, minor: u32) -> Option<String> {
    let sys = std::path::PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    let sys = std::fs::canonicalize(sys).ok()?;
    let disk = if sys.join("partition").exists() { sys.parent()?.to_path_buf() } else { sys };
    let uevent = std::fs::read_to_string(disk.join("uevent")).ok()?;
    let name = uevent.lines().find_map(|l| l.strip_prefix("DEVNAME="))?;
    Some(format!("/dev/{name}"))
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
    /// only, or on every address when the clients are elsewhere (see
    /// [`endpoint`](super::endpoint)). Health checks are cleanroom's, not testcontainers', so none are
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
        // A bind mount's source is this process's: an engine that cannot see
        // it gets a copy, through the archive API, before the container starts.
        let copy_binds = super::endpoint::files_apart();
        for mount in &request.mounts {
            match mount {
                MountRequest::Bind { source, target, .. } if copy_binds => {
                    let source = absolute(source);
                    if !source.exists() {
                        return Err(DockerError::new(
                            "bind mount",
                            None,
                            format!(
                                "{} (mounted at {target}) does not exist; the engine is on another machine or this \
                                 process runs in a container, so it is copied in from here",
                                source.display()
                            ),
                        ));
                    }
                    tc = tc.with_copy_to(target.as_str(), source);
                }
                _ => {
                    if let Some(mount) = testcontainers_mount(mount) {
                        tc = tc.with_mount(mount);
                    }
                }
            }
        }
        let publish_ip = super::endpoint::publish_ip();
        let bindings: HashMap<String, Option<Vec<PortBinding>>> = request
            .ports
            .iter()
            .map(|p| {
                let host_port = request.fixed_ports.get(p).map_or_else(String::new, u16::to_string);
                (
                    format!("{p}/tcp"),
                    Some(vec![PortBinding { host_ip: Some(publish_ip.into()), host_port: Some(host_port) }]),
                )
            })
            .collect();
        let tmpfs: HashMap<String, String> = request.tmpfs_mounts()?.into_iter().collect();
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
        let device = match (limits.disk.any(), &request.disk_device) {
            (false, _) => None,
            (true, Some(device)) => Some(device.clone()),
            (true, None) => Some(self.storage_device().await?),
        };
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
            if let Some(device) = &device {
                use testcontainers::bollard::models::ThrottleDevice;
                let throttle = |rate: Option<u64>| {
                    rate.map(|r| {
                        vec![ThrottleDevice { path: Some(device.clone()), rate: Some(r.min(i64::MAX as u64) as i64) }]
                    })
                };
                hc.blkio_device_read_bps = throttle(limits.disk.read_bps);
                hc.blkio_device_write_bps = throttle(limits.disk.write_bps);
                hc.blkio_device_read_iops = throttle(limits.disk.read_iops);
                hc.blkio_device_write_iops = throttle(limits.disk.write_iops);
            }
        });
        if let Some(name) = &request.name {
            tc = tc.with_container_name(name);
        }
        tc.start().await.map_err(DockerError::from_testcontainers)
    }
}
