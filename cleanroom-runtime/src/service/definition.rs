//! What a service is: the image, how it is run, and how cleanroom knows it is
//! ready. [`GenericContainer`] is the builder users return from
//! `#[cleanroom::service]`; the built-in services produce one too.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::service::health::HealthCheck;

/// How long a service may take from container creation to passing its health
/// checks, unless the definition says otherwise.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// The variable that carries the built-in Redis's password, when it has one
/// (its port is reachable beyond the engine host's loopback).
pub(crate) const REDIS_PASSWORD_ENV: &str = "REDIS_PASSWORD";

/// Variables holding secrets generated anew by every process: not part of a
/// container's identity (every process of a run must agree on it), and taken
/// from the container's creator by the others.
const GENERATED_SECRETS: &[&str] = &["POSTGRES_PASSWORD", REDIS_PASSWORD_ENV];

/// A container definition: the image and how to run it.
///
/// ```
/// use cleanroom_runtime::{GenericContainer, HealthCheck};
///
/// let web = GenericContainer::new("cleanroom-offline/busybox:1.35")
///     .with_cmd(["httpd", "-f", "-p", "8080", "-h", "/www"])
///     .with_port(8080)
///     .with_health_check(HealthCheck::http(8080, "/"));
/// assert_eq!(web.image(), "cleanroom-offline/busybox:1.35");
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct GenericContainer {
    pub(crate) image: String,
    pub(crate) cmd: Vec<String>,
    /// The entrypoint in exec form; empty keeps the image's.
    pub(crate) entrypoint: Vec<String>,
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) ports: Vec<u16>,
    /// Container port → fixed host port, for ports not published on a random one.
    pub(crate) fixed_ports: BTreeMap<u16, u16>,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) health_checks: Vec<HealthCheck>,
    pub(crate) startup_timeout: Duration,
    pub(crate) rooms: Option<RoomHooks>,
    /// Directories mounted as tmpfs, with their mount options as given.
    pub(crate) tmpfs: BTreeMap<String, String>,
    /// The size cap of every tmpfs (`with_disk_size`), applied when the
    /// container is created, whatever the order of the builder's calls.
    pub(crate) disk_size: Option<u64>,
    pub(crate) limits: Limits,
    /// Bind mounts and named volumes, in order; one target at most once.
    pub(crate) mounts: Vec<Mount>,
    /// Commands run once in a new container after its checks pass, in order.
    pub(crate) init: Vec<Vec<String>>,
    /// Existing Docker networks joined besides the run's own.
    pub(crate) networks: Vec<String>,
    /// What the monitor watches for and does while the service runs.
    pub(crate) watch: crate::service::watch::Watch,
    /// What the volume cache keeps between runs (the built-in Postgres's
    /// initialised cluster); `None`: no cache.
    pub(crate) volume_cache: Option<VolumeCache>,
    /// Network conditions between each test and the service: every test's
    /// handle goes through a proxy of its own (docs/monitoring.md).
    pub(crate) network: Option<crate::proxy::NetworkConditions>,
    /// The block device disk limits apply to; `None`: the engine's storage's.
    pub(crate) disk_device: Option<String>,
    /// The command that runs the service on the local engine instead of its
    /// image (`with_local_command`); `None`: the local engine cannot run it.
    pub(crate) local_command: Option<Vec<String>>,
}

/// A bind mount (a host path) or a named volume, mounted into the container.
///
/// ```
/// use cleanroom_runtime::{GenericContainer, Mount};
///
/// let web = GenericContainer::new("cleanroom-offline/busybox:1.35")
///     .with_mount(Mount::bind("/etc/ssl/certs", "/certs").read_only())
///     .with_mount(Mount::volume("web-cache", "/cache"));
/// # let _ = web;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Mount {
    pub(crate) kind: MountKind,
    pub(crate) source: String,
    pub(crate) target: String,
    pub(crate) read_only: bool,
}

/// What a [`Mount`] mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MountKind {
    /// A file or directory of the host (`type = "bind"`).
    Bind,
    /// A named Docker volume (`type = "volume"`).
    Volume,
}

impl Mount {
    /// Mounts the host path `source` at `target`. A relative `source` is
    /// taken from the test process's current directory (the crate's
    /// directory under cargo); it must exist when the service starts.
    pub fn bind(source: impl Into<String>, target: impl Into<String>) -> Self {
        Mount { kind: MountKind::Bind, source: source.into(), target: target.into(), read_only: false }
    }

    /// Mounts the named volume `name` at `target`. A volume that does not
    /// exist yet is created for the run, labelled with its session, and
    /// removed with the run; one that exists is used and left alone.
    pub fn volume(name: impl Into<String>, target: impl Into<String>) -> Self {
        Mount { kind: MountKind::Volume, source: name.into(), target: target.into(), read_only: false }
    }

    /// Mounts it read-only.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// Bind or volume.
    pub fn kind(&self) -> MountKind {
        self.kind
    }

    /// The host path or the volume name.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The path inside the container.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Whether it is mounted read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }
}

/// Resource limits of a container; `None` leaves Docker's default.
pub(crate) use crate::docker::Limits;

/// Which kind of data a definition's volume cache holds (the cache layer
/// decides whether and how).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VolumeCache {
    /// A Postgres cluster (`$PGDATA`).
    Postgres,
}

/// How a service makes and cleans a room for one test, so that a user's own
/// service (an S3 stand-in, a queue) offers the same isolation as the built-ins.
///
/// `prepare` runs before the test with a fresh, unique room name (letters,
/// digits and `_`); `release` runs after it (not after a failing test while
/// `CLEANROOM_KEEP` keeps rooms of failed tests). Both run on the test's
/// thread, outside any async runtime: use the `_blocking` methods of
/// [`Container`](crate::Container). The test reads the name with
/// `Container::room`.
///
/// ```
/// use cleanroom_runtime::{Container, GenericContainer, RoomHooks};
///
/// fn make_dir(c: &Container, room: &str) -> Result<(), String> {
///     let out = c.exec_blocking(["mkdir", "-p", &format!("/data/{room}")]).map_err(|e| e.to_string())?;
///     if out.exit_code == 0 { Ok(()) } else { Err(out.stderr) }
/// }
/// fn remove_dir(c: &Container, room: &str) -> Result<(), String> {
///     c.exec_blocking(["rm", "-rf", &format!("/data/{room}")]).map(|_| ()).map_err(|e| e.to_string())
/// }
///
/// let store = GenericContainer::new("cleanroom-offline/busybox:1.35")
///     .with_cmd(["sleep", "3600"])
///     .with_rooms(RoomHooks::new(make_dir, remove_dir));
/// # let _ = store;
/// ```
#[derive(Debug, Clone, Copy)]
pub struct RoomHooks {
    pub(crate) prepare: fn(&crate::Container, &str) -> Result<(), String>,
    pub(crate) release: fn(&crate::Container, &str) -> Result<(), String>,
}

impl RoomHooks {
    /// A hook pair: `prepare` makes the room, `release` cleans it up.
    pub fn new(
        prepare: fn(&crate::Container, &str) -> Result<(), String>,
        release: fn(&crate::Container, &str) -> Result<(), String>,
    ) -> Self {
        RoomHooks { prepare, release }
    }
}

impl GenericContainer {
    /// A container of `image` (`name:tag`; `latest` when no tag is given).
    pub fn new(image: impl Into<String>) -> Self {
        GenericContainer {
            image: image.into(),
            cmd: Vec::new(),
            entrypoint: Vec::new(),
            env: BTreeMap::new(),
            ports: Vec::new(),
            fixed_ports: BTreeMap::new(),
            labels: BTreeMap::new(),
            health_checks: Vec::new(),
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            rooms: None,
            tmpfs: BTreeMap::new(),
            disk_size: None,
            limits: Limits::default(),
            mounts: Vec::new(),
            init: Vec::new(),
            networks: Vec::new(),
            watch: crate::service::watch::Watch::default(),
            volume_cache: None,
            network: None,
            disk_device: None,
            local_command: None,
        }
    }

    /// The command that runs this service on the local engine
    /// (`CLEANROOM_ENGINE=local`, docs/engines.md), where there are no
    /// images: a program on `PATH` (or a path) and its arguments, in which
    /// `{port}` becomes the port its first port is reached on, `{port:<container
    /// port>}` that of another port, and `{dir}` a directory of its own
    /// (also in `CLEANROOM_PORT`, `CLEANROOM_PORT_<container port>` and
    /// `CLEANROOM_DIR`). Its health checks run as usual: ports on 127.0.0.1,
    /// logs from its output, commands and files on this machine.
    ///
    /// ```
    /// use cleanroom_runtime::{GenericContainer, HealthCheck};
    ///
    /// let web = GenericContainer::new("nginx:1.27")
    ///     .with_port(80)
    ///     .with_health_check(HealthCheck::http(80, "/"))
    ///     .with_local_command(["python3", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]);
    /// # let _ = web;
    /// ```
    pub fn with_local_command(mut self, cmd: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.local_command = Some(cmd.into_iter().map(Into::into).collect());
        self
    }

    /// Replaces the image's command.
    pub fn with_cmd(mut self, cmd: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.cmd = cmd.into_iter().map(Into::into).collect();
        self
    }

    /// Replaces the image's entrypoint with one program; in
    /// `cleanroom.toml`: `entrypoint = "/bin/sh"`.
    pub fn with_entrypoint(mut self, entrypoint: impl Into<String>) -> Self {
        self.entrypoint = vec![entrypoint.into()];
        self
    }

    /// Replaces the image's entrypoint with a program and its first
    /// arguments (Docker's exec form); in `cleanroom.toml`:
    /// `entrypoint = ["sh", "-c"]`. The command follows them.
    ///
    /// Docker receives it whole (`docker inspect` shows
    /// `Entrypoint ["sh", "-c"]` and the command after it).
    ///
    /// ```
    /// # use cleanroom_runtime::GenericContainer;
    /// let job = GenericContainer::new("cleanroom-offline/busybox:1.35")
    ///     .with_entrypoint_exec(["sh", "-c"])
    ///     .with_cmd(["echo ready; sleep 600"]);
    /// # let _ = job;
    /// ```
    pub fn with_entrypoint_exec(mut self, entrypoint: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.entrypoint = entrypoint.into_iter().map(Into::into).collect();
        self
    }

    /// Sets an environment variable.
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Publishes a container port on a random port of 127.0.0.1 (of a remote
    /// engine's host: every address, docs/environments.md); read it back
    /// with `Container::port`.
    pub fn with_port(mut self, port: u16) -> Self {
        if !self.ports.contains(&port) {
            self.ports.push(port);
        }
        self
    }

    /// Publishes container port `container` on the fixed port `host` of
    /// 127.0.0.1 (never on other interfaces, but for a remote engine); in `cleanroom.toml`:
    /// `ports = ["18080:80"]`. `Container::port(container)` returns `host`.
    ///
    /// A fixed host port can be bound once per machine: two runs at the same
    /// time (two checkouts, two users) cannot both start this service, and
    /// the second fails with Docker's "port is already allocated". The
    /// processes of one run share the container and are not affected.
    /// Prefer [`with_port`](Self::with_port) unless something outside the
    /// tests needs a known port.
    ///
    /// ```
    /// # use cleanroom_runtime::GenericContainer;
    /// let web = GenericContainer::new("cleanroom-offline/busybox:1.35").with_port_mapping(18080, 80);
    /// # let _ = web;
    /// ```
    pub fn with_port_mapping(mut self, host: u16, container: u16) -> Self {
        self = self.with_port(container);
        self.fixed_ports.insert(container, host);
        self
    }

    /// Mounts a host path or a named volume; see [`Mount`]. A mount with
    /// the target of an earlier one replaces it.
    pub fn with_mount(mut self, mount: Mount) -> Self {
        self.mounts.retain(|m| m.target != mount.target);
        self.mounts.push(mount);
        self
    }

    /// Mounts the host path `host` at `container` (read-write; use
    /// [`with_mount`](Self::with_mount) and [`Mount::read_only`] for
    /// read-only); in `cleanroom.toml`: `mounts = [{ type = "bind", source =
    /// "fixtures", target = "/data", read_only = true }]`.
    ///
    /// When the engine cannot see this machine's files (a remote engine, or
    /// tests running in one of its containers), the source is copied into
    /// the container before it starts instead: a copy, not shared
    /// (docs/environments.md).
    ///
    /// ```
    /// # use cleanroom_runtime::GenericContainer;
    /// let web = GenericContainer::new("cleanroom-offline/busybox:1.35").with_bind_mount("tests/fixtures", "/www");
    /// # let _ = web;
    /// ```
    pub fn with_bind_mount(self, host: impl Into<String>, container: impl Into<String>) -> Self {
        self.with_mount(Mount::bind(host, container))
    }

    /// Mounts the named volume `name` at `container`, creating it for the
    /// run if it does not exist (see [`Mount::volume`]); in
    /// `cleanroom.toml`: `mounts = [{ type = "volume", source = "cache",
    /// target = "/cache" }]`.
    ///
    /// ```
    /// # use cleanroom_runtime::GenericContainer;
    /// let web = GenericContainer::new("cleanroom-offline/busybox:1.35").with_volume("web-cache", "/cache");
    /// # let _ = web;
    /// ```
    pub fn with_volume(self, name: impl Into<String>, container: impl Into<String>) -> Self {
        self.with_mount(Mount::volume(name, container))
    }

    /// Runs `cmd` inside the container once it passed its health checks,
    /// before any test gets it: seed data, create a bucket. Commands run in
    /// the order they were added, once per container, by the process that
    /// created it (not by processes that attach to it, nor again when a
    /// reused container is found). A command that exits with a code other
    /// than 0 fails the service's start with its stderr. In
    /// `cleanroom.toml`: `init = [["sh", "-c", "mkdir -p /data/in"]]`.
    ///
    /// ```
    /// # use cleanroom_runtime::GenericContainer;
    /// let store = GenericContainer::new("cleanroom-offline/busybox:1.35")
    ///     .with_cmd(["sleep", "600"])
    ///     .with_init_command(["sh", "-c", "mkdir -p /data/bucket"]);
    /// # let _ = store;
    /// ```
    pub fn with_init_command(mut self, cmd: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.init.push(cmd.into_iter().map(Into::into).collect());
        self
    }

    /// Connects the container to the existing Docker network `name` too,
    /// besides the run's own network, with the service name as its alias
    /// there; in `cleanroom.toml`: `networks = ["backend"]`. cleanroom does
    /// not create or remove it: a network that does not exist fails the
    /// service's start.
    ///
    /// ```
    /// # use cleanroom_runtime::GenericContainer;
    /// let web = GenericContainer::new("cleanroom-offline/busybox:1.35").with_network("backend");
    /// # let _ = web;
    /// ```
    pub fn with_network(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        if !self.networks.contains(&name) {
            self.networks.push(name);
        }
        self
    }

    /// Adds a label (cleanroom's own `cleanroom.*` labels cannot be replaced).
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Adds a check that must pass before the service is Ready. Checks run in
    /// the order they were added.
    pub fn with_health_check(mut self, check: HealthCheck) -> Self {
        self.health_checks.push(check);
        self
    }

    /// How long creation, start and all health checks may take together.
    pub fn with_startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Gives every test a room of its own in this service, made and cleaned
    /// by `hooks`. Without hooks the service is shared by all tests.
    pub fn with_rooms(mut self, hooks: RoomHooks) -> Self {
        self.rooms = Some(hooks);
        self
    }

    /// Mounts a tmpfs (memory) at `path` with mount `options` (`""` for the
    /// defaults, `"size=512m"` to cap it): for data directories of throwaway
    /// servers it removes most disk I/O.
    pub fn with_tmpfs(mut self, path: impl Into<String>, options: impl Into<String>) -> Self {
        self.tmpfs.insert(path.into(), options.into());
        self
    }

    /// Limits the container's memory to `bytes`, as `docker run --memory`.
    /// `cleanroom.toml` can set it without code: `memory = "512MiB"`.
    ///
    /// ```
    /// # use cleanroom_runtime::GenericContainer;
    /// let web = GenericContainer::new("cleanroom-offline/busybox:1.35").with_memory_limit(512 * 1024 * 1024);
    /// # let _ = web;
    /// ```
    pub fn with_memory_limit(mut self, bytes: u64) -> Self {
        self.limits.memory = Some(bytes);
        self
    }

    /// Limits the container to `cpus` CPUs (`1.5`: one and a half), as
    /// `docker run --cpus`; in `cleanroom.toml`: `cpus = 1.5`.
    ///
    /// ```
    /// # use cleanroom_runtime::GenericContainer;
    /// let web = GenericContainer::new("cleanroom-offline/busybox:1.35").with_cpus(1.5);
    /// # let _ = web;
    /// ```
    pub fn with_cpus(mut self, cpus: f64) -> Self {
        self.limits.cpus = Some(cpus);
        self
    }

    /// Limits how many processes the container may run, as `docker run
    /// --pids-limit`; in `cleanroom.toml`: `pids = 256`.
    ///
    /// ```
    /// # use cleanroom_runtime::GenericContainer;
    /// let web = GenericContainer::new("cleanroom-offline/busybox:1.35").with_pids_limit(256);
    /// # let _ = web;
    /// ```
    pub fn with_pids_limit(mut self, pids: i64) -> Self {
        self.limits.pids = Some(pids);
        self
    }

    /// Sizes `/dev/shm` to `bytes` (Docker's default is 64 MiB), as `docker
    /// run --shm-size`; in `cleanroom.toml`: `shm_size = "256m"`.
    ///
    /// ```
    /// # use cleanroom_runtime::GenericContainer;
    /// let pg = GenericContainer::new("cleanroom-offline/postgres:15").with_shm_size(256 * 1024 * 1024);
    /// # let _ = pg;
    /// ```
    pub fn with_shm_size(mut self, bytes: u64) -> Self {
        self.limits.shm_size = Some(bytes);
        self
    }

    /// Throttles what the service may write to disk, in bytes per second
    /// (Docker's blkio throttle on the block device behind the engine's
    /// storage: volumes and bind mounts on it; a tmpfs is memory, and a
    /// storage driver outside the kernel, such as fuse-overlayfs, writes the
    /// container's own layer from another process, so neither is throttled).
    ///
    /// ```
    /// # use cleanroom_runtime::GenericContainer;
    /// let db = GenericContainer::new("cleanroom-offline/postgres:15").with_disk_write_limit(8 << 20);
    /// # let _ = db;
    /// ```
    pub fn with_disk_write_limit(mut self, bytes_per_second: u64) -> Self {
        self.limits.disk.write_bps = Some(bytes_per_second);
        self
    }

    /// Throttles what the service may read from disk, in bytes per second
    /// (see [`GenericContainer::with_disk_write_limit`]).
    pub fn with_disk_read_limit(mut self, bytes_per_second: u64) -> Self {
        self.limits.disk.read_bps = Some(bytes_per_second);
        self
    }

    /// Throttles the service's disk writes to `ops` per second.
    pub fn with_disk_write_iops(mut self, ops: u64) -> Self {
        self.limits.disk.write_iops = Some(ops);
        self
    }

    /// Throttles the service's disk reads to `ops` per second.
    pub fn with_disk_read_iops(mut self, ops: u64) -> Self {
        self.limits.disk.read_iops = Some(ops);
        self
    }

    /// Caps what the service may write to each of its tmpfs data
    /// directories (the built-in Postgres keeps its data in one) at `bytes`:
    /// a write beyond it fails with "no space left on device". The cap
    /// applies to every tmpfs of the definition, those added before and
    /// after this call, when the container is created; it replaces a
    /// tmpfs's own `size=`. A writable layer's size cannot be capped this way
    /// on every storage driver, so a cap on a definition without a tmpfs
    /// fails the service's start, naming the fix. While the service runs,
    /// the monitor samples what each capped tmpfs holds, shows it in the
    /// report against the cap and acts (see [`on_limit`](Self::on_limit))
    /// when it passes the memory fraction of the cap (a tmpfs is memory).
    ///
    /// ```
    /// # use cleanroom_runtime::GenericContainer;
    /// let db = GenericContainer::new("cleanroom-offline/busybox:1.35").with_disk_size(64 << 20).with_tmpfs("/data", "");
    /// # let _ = db;
    /// ```
    pub fn with_disk_size(mut self, bytes: u64) -> Self {
        self.disk_size = Some(bytes);
        self
    }

    /// The block device the disk limits apply to, e.g. `/dev/sda` (by
    /// default the one behind the engine's storage, which cleanroom finds
    /// when the engine runs on this machine).
    pub fn with_disk_device(mut self, device: impl Into<String>) -> Self {
        self.disk_device = Some(device.into());
        self
    }

    /// Network conditions between every test and this service: added
    /// latency and jitter, bandwidth each way, a share of connections reset,
    /// through a TCP proxy of each test's own (its handle's `port()` is the
    /// proxy's). A test changes them for itself with its handle's
    /// `network()`. Traffic between containers is not affected.
    ///
    /// ```
    /// # use cleanroom_runtime::{GenericContainer, NetworkConditions};
    /// # use std::time::Duration;
    /// let slow = NetworkConditions { latency: Duration::from_millis(50), download: Some(1 << 20), ..Default::default() };
    /// let web = GenericContainer::new("cleanroom-offline/busybox:1.35").with_port(8080).with_network_conditions(slow);
    /// # let _ = web;
    /// ```
    pub fn with_network_conditions(mut self, conditions: crate::proxy::NetworkConditions) -> Self {
        self.network = Some(conditions);
        self
    }

    /// What cleanroom does when the running service dies or turns unhealthy:
    /// [`Recovery::Automatic`](crate::Recovery::Automatic) (the default, at
    /// most 3 replacements per run), [`Recovery::Manual`](crate::Recovery::Manual)
    /// (fail fast) or [`Recovery::Fallback`](crate::Recovery::Fallback).
    ///
    /// ```
    /// # use cleanroom_runtime::{GenericContainer, Recovery};
    /// let web = GenericContainer::new("cleanroom-offline/busybox:1.35").with_recovery(Recovery::Manual);
    /// # let _ = web;
    /// ```
    pub fn with_recovery(mut self, recovery: crate::service::watch::Recovery) -> Self {
        self.watch.recovery = recovery;
        self
    }

    /// How often the running service's health checks are repeated in the
    /// background (default 5 s; log checks only gate readiness). Three
    /// failures in a row make it Unhealthy, which recovery treats like a death.
    pub fn with_health_interval(mut self, interval: Duration) -> Self {
        self.watch.health_interval = interval;
        self
    }

    /// Acts when memory use crosses `fraction` of the memory limit (default
    /// 0.9; only with [`with_memory_limit`](Self::with_memory_limit)) or CPU
    /// use crosses `fraction` of the CPU limit (default 0.9; only with
    /// [`with_cpus`](Self::with_cpus)) for samples in a row covering 2.5 s
    /// (three of Docker's, one a second; one of Podman's, one every five
    /// seconds). What it does is
    /// [`LimitAction::Alert`](crate::LimitAction::Alert) unless told otherwise.
    ///
    /// ```
    /// # use cleanroom_runtime::{GenericContainer, LimitAction};
    /// let worker = GenericContainer::new("cleanroom-offline/busybox:1.35")
    ///     .with_cpus(1.0)
    ///     .on_limit(LimitAction::Throttle, 0.8, 0.9);
    /// # let _ = worker;
    /// ```
    pub fn on_limit(
        mut self,
        action: crate::service::watch::LimitAction,
        cpu_fraction: f64,
        memory_fraction: f64,
    ) -> Self {
        self.watch.limit_action = action;
        self.watch.cpu_threshold = cpu_fraction;
        self.watch.memory_threshold = memory_fraction;
        self
    }

    /// Replaces the image (used by configuration overrides).
    pub fn with_image(mut self, image: impl Into<String>) -> Self {
        self.image = image.into();
        self
    }

    /// The image reference.
    pub fn image(&self) -> &str {
        &self.image
    }

    /// The environment the container starts with.
    pub fn env(&self) -> &BTreeMap<String, String> {
        &self.env
    }

    /// The published container ports.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// The health checks, in order.
    pub fn health_checks(&self) -> &[HealthCheck] {
        &self.health_checks
    }

    /// The bind mounts and named volumes.
    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// A hash of everything that makes two containers interchangeable
    /// (image, command, entrypoint, environment, ports and fixed host ports,
    /// labels, checks, tmpfs, bind and volume mounts, resource limits, init
    /// commands, extra networks), the
    /// same in every process. Secrets generated per run (the Postgres and
    /// Redis passwords) and room hooks (code addresses) are left out.
    pub(crate) fn identity_hash(&self) -> u64 {
        use crate::util::hash::Fields;
        let GenericContainer {
            image,
            cmd,
            entrypoint,
            env,
            ports,
            fixed_ports,
            labels,
            health_checks,
            startup_timeout,
            // Code addresses differ between builds; hooks act on rooms, not
            // on the container.
            rooms: _,
            tmpfs,
            disk_size,
            limits,
            mounts,
            init,
            networks,
            // How cleanroom watches a container does not change the container.
            watch: _,
            volume_cache,
            // Conditions live in each test's proxy, not in the container.
            network: _,
            disk_device,
            // How the local engine runs it is not part of the container.
            local_command: _,
        } = self;
        let mut h = Fields::new().field(image);
        let list = |h: Fields, items: &[String]| items.iter().fold(h.field("["), |h, i| h.field(i)).field("]");
        h = list(h, cmd);
        h = list(h, entrypoint);
        // Secrets generated per run are not part of what the container is.
        for (k, v) in env.iter().filter(|(k, _)| !GENERATED_SECRETS.contains(&k.as_str())) {
            h = h.field(k).field(v);
        }
        h = ports.iter().fold(h.field("ports"), |h, p| h.field(p.to_string()));
        h = fixed_ports.iter().fold(h.field("fixed"), |h, (c, p)| h.field(c.to_string()).field(p.to_string()));
        h = labels.iter().fold(h.field("labels"), |h, (k, v)| h.field(k).field(v));
        h = health_checks.iter().fold(h.field("checks"), |h, c| c.identity(h));
        h = h.field(startup_timeout.as_millis().to_string());
        h = tmpfs.iter().fold(h.field("tmpfs"), |h, (k, v)| h.field(k).field(v));
        h = h.field(format!("disk size {disk_size:?}"));
        h = h.field(format!("{limits:?}"));
        h = mounts.iter().fold(h.field("mounts"), |h, m| h.field(format!("{m:?}")));
        h = init.iter().fold(h.field("init"), |h, c| list(h, c));
        h = networks.iter().fold(h.field("networks"), |h, n| h.field(n));
        h.field(format!("{volume_cache:?}")).field(format!("{disk_device:?}")).finish()
    }

    /// What the engine is asked to create: the definition in engine terms.
    /// The health checks' ports are published too, so that they can be probed.
    pub(crate) fn container_request(&self) -> crate::docker::ContainerRequest {
        let mut ports = self.ports.clone();
        for port in self.health_checks.iter().filter_map(HealthCheck::port) {
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
        let mounts = self
            .mounts
            .iter()
            .map(|m| match m.kind {
                MountKind::Bind => crate::docker::MountRequest::Bind {
                    source: m.source.clone(),
                    target: m.target.clone(),
                    read_only: m.read_only,
                },
                MountKind::Volume => crate::docker::MountRequest::Volume {
                    source: m.source.clone(),
                    target: m.target.clone(),
                    read_only: m.read_only,
                },
            })
            .collect();
        crate::docker::ContainerRequest {
            image: self.image.clone(),
            entrypoint: self.entrypoint.clone(),
            cmd: self.cmd.clone(),
            env: self.env.clone(),
            ports,
            fixed_ports: self.fixed_ports.clone(),
            mounts,
            tmpfs: self.tmpfs.clone(),
            tmpfs_size: self.disk_size,
            limits: self.limits,
            disk_device: self.disk_device.clone(),
            labels: self.labels.clone(),
            name: None,
            network: None,
            startup_timeout: self.startup_timeout,
        }
    }
}

/// Which kind of handle a service hands to tests.
#[derive(Debug, Clone, Copy)]
pub enum ServiceKind {
    /// The built-in Postgres service.
    Postgres,
    /// The built-in Redis service.
    Redis,
    /// A `#[cleanroom::service]`: its function builds the definition.
    Generic(fn() -> GenericContainer),
}

/// A service as the macros declare it: its name and how to build its
/// definition. Definitions are built at most once per process, when the
/// service is first started.
#[derive(Debug)]
pub struct ServiceSpec {
    /// The name tests use (`postgres`, `web`); unique in a test binary.
    pub name: &'static str,
    /// Where it was declared.
    pub module_path: &'static str,
    /// Built-in or user-defined.
    pub kind: ServiceKind,
}

#[cfg(test)]
mod tests {
    use super::*;

    mod should {
        use super::*;

        #[test]
        fn tell_definitions_apart_by_every_part_of_their_checks() {
            use crate::service::health::HealthCheck;
            use std::time::Duration;
            let with = |c: HealthCheck| GenericContainer::new("i").with_health_check(c).identity_hash();
            let checks = [
                HealthCheck::log("ready"),
                HealthCheck::log_times("ready", 2),
                HealthCheck::log("ready!"),
                HealthCheck::tcp(80),
                HealthCheck::tcp(81),
                HealthCheck::http(80, "/"),
                HealthCheck::http(80, "/health"),
                HealthCheck::http(80, "/").with_status(204),
                HealthCheck::command(["a", "b"]),
                HealthCheck::command(["a b"]),
                HealthCheck::command(["a", "b"]).once(),
                HealthCheck::file("/ready"),
                HealthCheck::tcp(80).with_interval(Duration::from_millis(7)),
                HealthCheck::tcp(80).with_timeout(Duration::from_millis(7)),
            ];
            let hashes: Vec<u64> = checks.iter().map(|c| with(c.clone())).collect();
            for (i, a) in hashes.iter().enumerate() {
                assert_eq!(*a, with(checks[i].clone()), "the same check, the same identity");
                for (j, b) in hashes.iter().enumerate().skip(i + 1) {
                    assert_ne!(a, b, "{:?} and {:?}", checks[i], checks[j]);
                }
            }
        }

        #[test]
        fn leave_the_redis_password_out_of_the_identity() {
            let a = GenericContainer::new("redis:7").with_env("REDIS_PASSWORD", "one");
            let b = GenericContainer::new("redis:7").with_env("REDIS_PASSWORD", "two");
            assert_eq!(a.identity_hash(), b.identity_hash());
        }

        #[test]
        fn leave_the_generated_password_but_not_the_image_out_of_the_identity() {
            let a = GenericContainer::new("pg:1").with_env("POSTGRES_PASSWORD", "one");
            let b = GenericContainer::new("pg:1").with_env("POSTGRES_PASSWORD", "two");
            assert_eq!(a.identity_hash(), b.identity_hash());
            assert_ne!(a.identity_hash(), GenericContainer::new("pg:2").identity_hash());
            assert_ne!(a.identity_hash(), a.clone().with_env("X", "1").identity_hash());
        }

        #[test]
        fn change_the_identity_with_every_resource_limit() {
            let base = GenericContainer::new("img:1");
            let limited = [
                base.clone().with_memory_limit(1 << 30),
                base.clone().with_cpus(1.5),
                base.clone().with_pids_limit(64),
                base.clone().with_shm_size(1 << 27),
            ];
            for (i, a) in limited.iter().enumerate() {
                assert_ne!(a.identity_hash(), base.identity_hash(), "limit {i}");
                for b in &limited[i + 1..] {
                    assert_ne!(a.identity_hash(), b.identity_hash());
                }
            }
            assert_ne!(base.clone().with_cpus(1.0).identity_hash(), base.clone().with_cpus(2.0).identity_hash());
            assert_eq!(base.clone().with_cpus(1.5).identity_hash(), base.with_cpus(1.5).identity_hash());
        }

        #[test]
        fn change_the_identity_with_every_customizer() {
            let base = GenericContainer::new("img:1");
            let customized = [
                base.clone().with_bind_mount("/srv/a", "/a"),
                base.clone().with_mount(Mount::bind("/srv/a", "/a").read_only()),
                base.clone().with_bind_mount("/srv/b", "/a"),
                base.clone().with_volume("cache", "/a"),
                base.clone().with_volume("other", "/a"),
                base.clone().with_port(80),
                base.clone().with_port_mapping(18080, 80),
                base.clone().with_port_mapping(18081, 80),
                base.clone().with_health_check(HealthCheck::tcp(80)),
                base.clone().with_health_check(HealthCheck::tcp(80).with_timeout(Duration::from_secs(9))),
                base.clone().with_startup_timeout(Duration::from_secs(9)),
                base.clone().with_init_command(["touch", "/a"]),
                base.clone().with_init_command(["touch", "/b"]),
                base.clone().with_entrypoint("sh"),
                base.clone().with_entrypoint_exec(["sh", "-c"]),
                base.clone().with_network("backend"),
                base.clone().with_network("frontend"),
            ];
            for (i, a) in customized.iter().enumerate() {
                assert_ne!(a.identity_hash(), base.identity_hash(), "customizer {i}");
                for (j, b) in customized.iter().enumerate().skip(i + 1) {
                    assert_ne!(a.identity_hash(), b.identity_hash(), "customizers {i} and {j}");
                }
            }
            let twice = base.clone().with_init_command(["a"]).with_init_command(["b"]);
            let swapped = base.clone().with_init_command(["b"]).with_init_command(["a"]);
            assert_ne!(twice.identity_hash(), swapped.identity_hash(), "init commands run in order");
        }

        #[test]
        fn replace_a_mount_with_the_same_target_and_keep_networks_unique() {
            let c = GenericContainer::new("img:1")
                .with_bind_mount("/srv/a", "/a")
                .with_volume("v", "/b")
                .with_mount(Mount::volume("w", "/a").read_only())
                .with_network("n")
                .with_network("n");
            assert_eq!(c.mounts(), &[Mount::volume("v", "/b"), Mount::volume("w", "/a").read_only()]);
            assert_eq!(c.networks, vec!["n".to_string()]);
            let c = GenericContainer::new("img:1").with_port_mapping(18080, 80).with_port(80);
            assert_eq!((c.ports(), c.fixed_ports.get(&80)), (&[80][..], Some(&18080)));
        }

        #[test]
        fn cap_every_tmpfs_whatever_the_order_of_the_calls() {
            let before = GenericContainer::new("img:1").with_tmpfs("/a", "rw,size=1g").with_disk_size(1 << 20);
            let after = GenericContainer::new("img:1").with_disk_size(1 << 20).with_tmpfs("/a", "rw,size=1g");
            let both = before.clone().with_tmpfs("/b", "");
            for def in [&before, &after] {
                let tmpfs = def.container_request().tmpfs_mounts().unwrap();
                assert_eq!(tmpfs["/a"], "rw,size=1048576", "the cap replaces the tmpfs's own size");
            }
            let tmpfs = both.container_request().tmpfs_mounts().unwrap();
            assert_eq!((tmpfs["/a"].as_str(), tmpfs["/b"].as_str()), ("rw,size=1048576", "size=1048576"));
            assert_eq!(before.identity_hash(), after.identity_hash(), "the same container");
            let uncapped = GenericContainer::new("img:1").with_tmpfs("/a", "rw,size=1g");
            assert_ne!(before.identity_hash(), uncapped.identity_hash());
            assert_eq!(uncapped.container_request().tmpfs_mounts().unwrap()["/a"], "rw,size=1g");
        }

        #[test]
        fn refuse_a_size_cap_with_no_tmpfs_to_hold_it() {
            let def = GenericContainer::new("img:1").with_disk_size(1 << 20);
            let error = def.container_request().tmpfs_mounts().unwrap_err().to_string();
            assert!(error.contains("a disk size cap (1048576 bytes)"), "{error}");
            assert!(error.contains(".with_tmpfs(\"/data\", \"\")"), "names the fix: {error}");
            assert!(GenericContainer::new("img:1").container_request().tmpfs_mounts().unwrap().is_empty());
        }

        #[test]
        fn collect_settings_in_the_builder() {
            let c = GenericContainer::new("img:1").with_env("A", "b").with_port(80).with_port(80).with_cmd(["x"]);
            assert_eq!(c.ports(), &[80]);
            assert_eq!(c.env().get("A").map(String::as_str), Some("b"));
            assert_eq!(c.cmd, vec!["x".to_string()]);
        }
    }
}
