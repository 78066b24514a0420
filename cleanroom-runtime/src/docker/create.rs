//! Creating and starting a container from a [`ContainerRequest`]: plain
//! engine terms, made by the layers above from a service's definition.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use testcontainers::bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use testcontainers::bollard::query_parameters::{CreateContainerOptionsBuilder, UploadToContainerOptionsBuilder};

use super::{Docker, DockerError};

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
    /// The network it is created on and its alias there (the service's
    /// name): the run's network, made before.
    pub(crate) network: Option<(String, String)>,
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
        #[cfg(unix)]
        {
            let dev = rustix::fs::stat(root.as_str())
                .map_err(|e| unknown(format!("it cannot be looked at from here ({e}: a remote engine?)")))?
                .st_dev;
            block_device_of(rustix::fs::major(dev), rustix::fs::minor(dev)).ok_or_else(|| {
                unknown(format!("device {}:{} is not a block device", rustix::fs::major(dev), rustix::fs::minor(dev)))
            })
        }
        // Docker Desktop's engine runs in a VM: its disks are not this
        // machine's.
        #[cfg(windows)]
        Err(unknown("it cannot be looked at from here (the engine runs in a virtual machine)".to_string()))
    }
}

/// `/dev/<disk>` of the block device `major:minor`, or of the disk it is a
/// partition of, from `/sys/dev/block`.
#[cfg(unix)]
fn block_device_of(major: u32, minor: u32) -> Option<String> {
    let sys = std::path::PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    let sys = std::fs::canonicalize(sys).ok()?;
    let disk = if sys.join("partition").exists() { sys.parent()?.to_path_buf() } else { sys };
    let uevent = std::fs::read_to_string(disk.join("uevent")).ok()?;
    let name = uevent.lines().find_map(|l| l.strip_prefix("DEVNAME="))?;
    Some(format!("/dev/{name}"))
}

/// `path` made absolute against the current directory.
pub(crate) fn absolute(path: &str) -> std::path::PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.into())
}

impl ContainerRequest {
    /// What Docker's create takes: the whole request in one body, the run's
    /// network and its alias included, so that no connect follows.
    fn create_body(
        &self,
        publish_ip: &str,
        copy_binds: bool,
        device: Option<&str>,
    ) -> Result<ContainerCreateBody, DockerError> {
        use testcontainers::bollard::models::{
            EndpointSettings, Mount, MountType, MountVolumeOptions, NetworkingConfig, ThrottleDevice,
        };
        let port_bindings: HashMap<String, Option<Vec<PortBinding>>> = self
            .ports
            .iter()
            .map(|p| {
                let host_port = self.fixed_ports.get(p).map_or_else(String::new, u16::to_string);
                (
                    format!("{p}/tcp"),
                    Some(vec![PortBinding { host_ip: Some(publish_ip.into()), host_port: Some(host_port) }]),
                )
            })
            .collect();
        let tmpfs: HashMap<String, String> = self.tmpfs_mounts()?.into_iter().collect();
        let mounts: Vec<Mount> = self
            .mounts
            .iter()
            .filter_map(|mount| match mount {
                // Copied in through the archive API instead (`copy_binds`).
                MountRequest::Bind { .. } if copy_binds => None,
                MountRequest::Bind { source, target, read_only } => Some(Mount {
                    target: Some(target.clone()),
                    source: Some(absolute(source).display().to_string()),
                    typ: Some(MountType::BIND),
                    read_only: Some(*read_only),
                    ..Default::default()
                }),
                MountRequest::Volume { source, target, read_only } => Some(Mount {
                    target: Some(target.clone()),
                    source: Some(source.clone()),
                    typ: Some(MountType::VOLUME),
                    read_only: Some(*read_only),
                    ..Default::default()
                }),
                // A mount rather than a bind: should the volume have gone
                // since it was made (evicted by another run), Docker makes it
                // again with these labels, not bare.
                MountRequest::LabelledVolume { source, target, labels } => Some(Mount {
                    target: Some(target.clone()),
                    source: Some(source.clone()),
                    typ: Some(MountType::VOLUME),
                    volume_options: Some(MountVolumeOptions {
                        labels: Some(labels.clone().into_iter().collect()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            })
            .collect();
        let limits = self.limits;
        let throttle = |rate: Option<u64>| {
            let (device, rate) = (device?, rate?);
            Some(vec![ThrottleDevice { path: Some(device.to_string()), rate: Some(rate.min(i64::MAX as u64) as i64) }])
        };
        let host_config = HostConfig {
            publish_all_ports: Some(false),
            port_bindings: Some(port_bindings),
            tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
            mounts: (!mounts.is_empty()).then_some(mounts),
            memory: limits.memory.map(|bytes| i64::try_from(bytes).unwrap_or(i64::MAX)),
            nano_cpus: limits.cpus.map(|cpus| (cpus * 1e9).round() as i64),
            pids_limit: limits.pids,
            shm_size: limits.shm_size.map(|bytes| i64::try_from(bytes).unwrap_or(i64::MAX)),
            blkio_device_read_bps: throttle(limits.disk.read_bps),
            blkio_device_write_bps: throttle(limits.disk.write_bps),
            blkio_device_read_iops: throttle(limits.disk.read_iops),
            blkio_device_write_iops: throttle(limits.disk.write_iops),
            ..Default::default()
        };
        // The network as the mode too, as the docker CLI sends it: Podman
        // with another default network mode refuses aliases without it.
        let host_config =
            HostConfig { network_mode: self.network.as_ref().map(|(network, _)| network.clone()), ..host_config };
        let networking_config = self.network.as_ref().map(|(network, alias)| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                network.clone(),
                EndpointSettings { aliases: Some(vec![alias.clone()]), ..Default::default() },
            )])),
        });
        Ok(ContainerCreateBody {
            image: Some(self.image.clone()),
            entrypoint: (!self.entrypoint.is_empty()).then(|| self.entrypoint.clone()),
            cmd: (!self.cmd.is_empty()).then(|| self.cmd.clone()),
            env: Some(self.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            exposed_ports: Some(self.ports.iter().map(|p| format!("{p}/tcp")).collect()),
            labels: Some(self.labels.clone().into_iter().collect()),
            host_config: Some(host_config),
            networking_config,
            ..Default::default()
        })
    }
}

impl Docker {
    /// Creates and starts the container, publishing its ports on 127.0.0.1
    /// only, or on every address when the clients are elsewhere (see
    /// [`endpoint`](super::endpoint)), on the request's network if it names
    /// one; returns its id. Health checks are cleanroom's: none is given to
    /// the engine. A name another container has is a [`DockerError`] whose
    /// [`is_conflict`](DockerError::is_conflict) is true. A container created
    /// and not started is left for the caller to remove (by its labels).
    /// `created` is told the container's id once it exists, before its
    /// start is asked for.
    pub(crate) async fn start(
        &self,
        request: &ContainerRequest,
        created: impl FnOnce(&str) + Send,
    ) -> Result<String, DockerError> {
        // A bind mount's source is this process's: an engine that cannot see
        // it gets a copy, through the archive API, before the container starts.
        let copy_binds = super::endpoint::files_apart();
        let copies: Vec<(std::path::PathBuf, &str)> = if copy_binds {
            let mut copies = Vec::new();
            for mount in &request.mounts {
                let MountRequest::Bind { source, target, .. } = mount else { continue };
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
                copies.push((source, target.as_str()));
            }
            copies
        } else {
            Vec::new()
        };
        let device = match (request.limits.disk.any(), &request.disk_device) {
            (false, _) => None,
            (true, Some(device)) => Some(device.clone()),
            (true, None) => Some(self.storage_device().await?),
        };
        let publish_ip = publish_address(super::endpoint::publish_ip(), self.podman);
        let body = request.create_body(publish_ip, copy_binds, device.as_deref())?;
        let options = request.name.as_deref().map(|name| CreateContainerOptionsBuilder::new().name(name).build());
        let id = self
            .client
            .create_container(options, body)
            .await
            .map_err(|e| DockerError::from_bollard("create container", e))?
            .id;
        created(&id);
        for (source, target) in copies {
            self.copy_in(&id, &source, target).await?;
        }
        let started = tokio::time::timeout(request.startup_timeout, self.client.start_container(&id, None)).await;
        match started {
            Ok(Ok(())) => Ok(id),
            Ok(Err(e)) => Err(DockerError::from_bollard("start container", e)),
            Err(_) => Err(DockerError::new(
                "start container",
                None,
                format!("the engine did not start it within {:?} (startup_timeout)", request.startup_timeout),
            )),
        }
    }

    /// Copies the file or directory `source` on this machine to `target` in
    /// the container, through the engine's archive API.
    async fn copy_in(&self, id: &str, source: &std::path::Path, target: &str) -> Result<(), DockerError> {
        let failed = |e: std::io::Error| {
            DockerError::new("copy into container", None, format!("could not pack {}: {e}", source.display()))
        };
        let mut tar = tokio_tar::Builder::new(Vec::new());
        let in_tar = target.trim_start_matches('/');
        if source.is_dir() {
            tar.append_dir_all(in_tar, source).await.map_err(failed)?;
        } else {
            // root's, as a file `docker cp` copies in (a server may refuse a
            // key file of another owner); its mode and time kept.
            let meta = tokio::fs::metadata(source).await.map_err(failed)?;
            let mut header = tokio_tar::Header::new_gnu();
            header.set_metadata(&meta);
            header.set_uid(0);
            header.set_gid(0);
            let file = tokio::fs::File::open(source).await.map_err(failed)?;
            tar.append_data(&mut header, in_tar, file).await.map_err(failed)?;
        }
        let tar = tar.into_inner().await.map_err(failed)?;
        let options = UploadToContainerOptionsBuilder::new().path("/").no_overwrite_dir_non_dir("false").build();
        self.client
            .upload_to_container(id, Some(options), testcontainers::bollard::body_full(tar.into()))
            .await
            .map_err(|e| DockerError::from_bollard("copy into container", e))
    }
}

/// The host address ports are published on, as the engine must be told it.
/// Podman (4.3) takes Docker's "every IPv4 address", 0.0.0.0, literally: its
/// DNAT rule then matches only packets sent to 0.0.0.0, and nothing beyond
/// the engine host's loopback reaches the port (tests in a container with
/// the socket mounted). An empty address means every address to Podman;
/// Docker keeps 0.0.0.0 (empty would publish on IPv6 too).
fn publish_address(ip: &'static str, podman: bool) -> &'static str {
    match ip {
        "0.0.0.0" if podman => "",
        ip => ip,
    }
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::publish_address;

        #[test]
        fn publish_on_every_address_as_each_engine_understands_it() {
            assert_eq!(publish_address("0.0.0.0", false), "0.0.0.0", "Docker: every IPv4 address");
            assert_eq!(publish_address("0.0.0.0", true), "", "Podman: empty is every address, 0.0.0.0 is literal");
            assert_eq!(publish_address("127.0.0.1", true), "127.0.0.1", "loopback stays loopback");
            assert_eq!(publish_address("127.0.0.1", false), "127.0.0.1");
        }
    }
}
