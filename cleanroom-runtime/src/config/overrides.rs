//! What the configuration changes in one service's definition.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::service::definition::{GenericContainer, Mount};
use crate::service::health::HealthCheck;

/// A recovery policy the configuration can name (a fallback hook needs code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryKind {
    /// `automatic`.
    Automatic,
    /// `manual`.
    Manual,
}

/// What the configuration changes in one service's definition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceOverride {
    /// An existing server to use instead of starting one.
    pub(crate) url: Option<crate::external::ServerUrl>,
    /// The logical databases of an existing Redis cleanroom may use.
    pub(crate) databases: Option<crate::external::redis::DatabaseRange>,
    /// Replaces the image (taken as given).
    pub image: Option<String>,
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// CPU limit.
    pub cpus: Option<f64>,
    /// Process limit.
    pub pids: Option<i64>,
    /// `/dev/shm` size in bytes.
    pub shm_size: Option<u64>,
    /// Disk bytes per second read, written; operations per second read, written.
    pub disk_read_bps: Option<u64>,
    /// See `disk_read_bps`.
    pub disk_write_bps: Option<u64>,
    /// See `disk_read_bps`.
    pub disk_read_iops: Option<u64>,
    /// See `disk_read_bps`.
    pub disk_write_iops: Option<u64>,
    /// The block device the disk limits apply to.
    pub disk_device: Option<String>,
    /// The size of each tmpfs data directory, in bytes.
    pub disk_size: Option<u64>,
    /// Added latency between every test and the service.
    pub network_latency: Option<Duration>,
    /// Its variation either way.
    pub network_jitter: Option<Duration>,
    /// Bytes per second from the tests to the service.
    pub network_upload: Option<u64>,
    /// Bytes per second from the service to the tests.
    pub network_download: Option<u64>,
    /// The share of new connections reset.
    pub network_reset_rate: Option<f64>,
    /// Added environment.
    pub env: BTreeMap<String, String>,
    /// Replaces the command.
    pub cmd: Option<Vec<String>>,
    /// Replaces the local command (`local`).
    pub local: Option<Vec<String>>,
    /// Appended to the command.
    pub args: Vec<String>,
    /// Added labels.
    pub labels: BTreeMap<String, String>,
    /// Added tmpfs mounts.
    pub tmpfs: BTreeMap<String, String>,
    /// Replaces the recovery policy.
    pub recovery: Option<RecoveryKind>,
    /// Replacements allowed under automatic recovery.
    pub max_restarts: Option<u32>,
    /// How often health checks repeat while the service runs.
    pub health_interval: Option<Duration>,
    /// What to do when a limit is crossed.
    pub on_limit: Option<crate::service::watch::LimitAction>,
    /// Share of the CPU limit that counts as crossing it.
    pub cpu_threshold: Option<f64>,
    /// Share of the memory limit that counts as crossing it.
    pub memory_threshold: Option<f64>,
    /// Added bind mounts and volumes (bind sources made absolute).
    pub mounts: Vec<Mount>,
    /// Added ports: a fixed host port (`Some`) or a random one, and the container port.
    pub ports: Vec<(Option<u16>, u16)>,
    /// Replaces the entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the health checks.
    pub health: Option<Vec<HealthCheck>>,
    /// How long one attempt of each health check may take.
    pub health_timeout: Option<Duration>,
    /// How long the service may take to be Ready.
    pub startup_timeout: Option<Duration>,
    /// Init commands, run after the definition's.
    pub init: Vec<Vec<String>>,
    /// Extra networks to join.
    pub networks: Vec<String>,
}

impl ServiceOverride {
    /// `def` with the overrides applied; `image_prefix` goes before a
    /// definition's image that names no registry, never before an image the
    /// configuration names.
    pub(crate) fn apply(self, mut def: GenericContainer, image_prefix: Option<&str>) -> GenericContainer {
        match (self.image, image_prefix) {
            (Some(image), _) => def.image = image,
            (None, Some(prefix)) if !names_registry(&def.image) => def.image = format!("{prefix}{}", def.image),
            (None, _) => {}
        }
        def.limits.memory = self.memory.or(def.limits.memory);
        def.limits.cpus = self.cpus.or(def.limits.cpus);
        def.limits.pids = self.pids.or(def.limits.pids);
        def.limits.shm_size = self.shm_size.or(def.limits.shm_size);
        let disk = &mut def.limits.disk;
        disk.read_bps = self.disk_read_bps.or(disk.read_bps);
        disk.write_bps = self.disk_write_bps.or(disk.write_bps);
        disk.read_iops = self.disk_read_iops.or(disk.read_iops);
        disk.write_iops = self.disk_write_iops.or(disk.write_iops);
        if self.disk_device.is_some() {
            def.disk_device = self.disk_device;
        }
        def.env.extend(self.env);
        if let Some(cmd) = self.cmd {
            def.cmd = cmd;
        }
        if let Some(local) = self.local {
            def.local_command = Some(local);
        }
        def.cmd.extend(self.args);
        def.labels.extend(self.labels);
        def.tmpfs.extend(self.tmpfs);
        if let Some(bytes) = self.disk_size {
            def = def.with_disk_size(bytes);
        }
        let network = [self.network_latency.is_some(), self.network_jitter.is_some()]
            .into_iter()
            .chain([self.network_upload.is_some(), self.network_download.is_some()])
            .chain([self.network_reset_rate.is_some()])
            .any(|set| set);
        if network {
            let mut c = def.network.unwrap_or_default();
            c.latency = self.network_latency.unwrap_or(c.latency);
            c.jitter = self.network_jitter.unwrap_or(c.jitter);
            c.upload = self.network_upload.or(c.upload);
            c.download = self.network_download.or(c.download);
            c.reset_rate = self.network_reset_rate.unwrap_or(c.reset_rate);
            def.network = Some(c);
        }
        use crate::service::watch::Recovery;
        let current_max = match def.watch.recovery {
            Recovery::Automatic { max_restarts } => max_restarts,
            _ => 3,
        };
        match (self.recovery, self.max_restarts) {
            (Some(RecoveryKind::Manual), _) => def.watch.recovery = Recovery::Manual,
            (Some(RecoveryKind::Automatic), max) => {
                def.watch.recovery = Recovery::Automatic { max_restarts: max.unwrap_or(current_max) }
            }
            (None, Some(max)) => def.watch.recovery = Recovery::Automatic { max_restarts: max },
            (None, None) => {}
        }
        if let Some(interval) = self.health_interval {
            def.watch.health_interval = interval;
        }
        if let Some(action) = self.on_limit {
            def.watch.limit_action = action;
        }
        if let Some(t) = self.cpu_threshold {
            def.watch.cpu_threshold = t;
        }
        if let Some(t) = self.memory_threshold {
            def.watch.memory_threshold = t;
        }
        for mount in self.mounts {
            def = def.with_mount(mount);
        }
        for (host, container) in self.ports {
            def = match host {
                Some(host) => def.with_port_mapping(host, container),
                None => def.with_port(container),
            };
        }
        if let Some(entrypoint) = self.entrypoint {
            def.entrypoint = entrypoint;
        }
        if let Some(checks) = self.health {
            def.health_checks = checks;
        }
        if let Some(timeout) = self.health_timeout {
            def.health_checks = def.health_checks.into_iter().map(|c| c.with_timeout(timeout)).collect();
        }
        if let Some(timeout) = self.startup_timeout {
            def.startup_timeout = timeout;
        }
        def.init.extend(self.init);
        for network in self.networks {
            def = def.with_network(network);
        }
        def
    }
}
