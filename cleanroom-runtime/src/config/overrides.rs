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
    /// Added environment.
    pub env: BTreeMap<String, String>,
    /// Replaces the command.
    pub cmd: Option<Vec<String>>,
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
        def.env.extend(self.env);
        if let Some(cmd) = self.cmd {
            def.cmd = cmd;
        }
        def.cmd.extend(self.args);
        def.labels.extend(self.labels);
        def.tmpfs.extend(self.tmpfs);
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
