//! Every setting, once: the run's and each service's, with their keys,
//! variables, accepted values and defaults; the parsed `Config`; and the
//! reference tables `docs/configuration.md` is generated from.

use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::docker::PullPolicy;
use crate::error::Error;

/// The file name looked for from the crate's directory up to the workspace root.
pub const CONFIG_FILE: &str = "cleanroom.toml";
/// The variable that names the configuration file instead.
pub const CONFIG_ENV: &str = "CLEANROOM_CONFIG";

/// One setting: its key in `cleanroom.toml`, its environment variable, what it
/// accepts and what it does. The reference page is generated from these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The key in `cleanroom.toml` (`run.keep`); `None` for variables the file cannot set.
    pub key: Option<&'static str>,
    /// The environment variable; `None` for keys only the file can set.
    pub env: Option<&'static str>,
    /// What it accepts.
    pub values: &'static str,
    /// Its default.
    pub default: &'static str,
    /// What it does.
    pub meaning: &'static str,
}

pub(super) const fn setting(
    key: Option<&'static str>,
    env: Option<&'static str>,
    values: &'static str,
    default: &'static str,
    meaning: &'static str,
) -> Setting {
    Setting { key, env, values, default, meaning }
}

/// The settings of a run: `[run]` in the file.
pub const SETTINGS: &[Setting] = &[
    setting(
        None,
        Some(CONFIG_ENV),
        "a path",
        "`cleanroom.toml` found from the crate's directory up to the workspace root",
        "the configuration file to read instead of searching for one",
    ),
    setting(
        Some("run.pull"),
        Some("CLEANROOM_PULL"),
        "`missing`, `always`, `never`",
        "`missing`",
        "`missing` pulls absent images; `always` pulls every image once per run, even one that is \
        here; `never` fails at once on an absent image (docs/caches.md)",
    ),
    setting(
        Some("run.startup_timeout"),
        Some("CLEANROOM_STARTUP_TIMEOUT"),
        "seconds, 1 to 86400",
        "60",
        "how long a service may take to be Ready, for definitions that set no timeout of their own",
    ),
    setting(
        Some("run.keep"),
        Some("CLEANROOM_KEEP"),
        "`never`, `on-failure`, `always`",
        "`on-failure`",
        "when a test's database is kept instead of dropped",
    ),
    setting(
        Some("run.pool"),
        Some("CLEANROOM_POOL"),
        "an integer >= 0",
        "4",
        "Postgres databases cloned ahead of demand (0: off)",
    ),
    setting(
        Some("run.reuse"),
        Some("CLEANROOM_REUSE"),
        "`true`, `false` (env: also `1`/`0`, `yes`/`no`, `on`/`off`)",
        "`false`",
        "keep services running for the next run, matched by their full definition",
    ),
    setting(
        Some("run.reuse_ttl"),
        Some("CLEANROOM_REUSE_TTL"),
        "seconds, 1 to 2592000 (30 days)",
        "900",
        "how long a reused service outlives the last run that used it",
    ),
    setting(
        Some("run.reaper_grace"),
        Some("CLEANROOM_REAPER_GRACE"),
        "seconds, 0 to 3600",
        "3",
        "how long the reaper waits for the next test process while the runner still runs",
    ),
    setting(
        Some("run.no_reaper"),
        Some("CLEANROOM_NO_REAPER"),
        "`true`, `false` (env: also `1`/`0`, ...)",
        "`false`",
        "no reaper: each process removes its own containers and shares none",
    ),
    setting(
        Some("run.engine"),
        Some("CLEANROOM_ENGINE"),
        "`docker`, `local`, `auto`",
        "`docker`",
        "what runs the services: `docker` containers; `local` processes of this machine's Postgres and \
        Redis binaries and services' local commands (docs/engines.md); `auto` Docker if it answers, \
        else local",
    ),
    setting(
        Some("run.postgres_bin"),
        Some("CLEANROOM_POSTGRES_BIN"),
        "a directory",
        "unset (`PATH`, then `/usr/lib/postgresql/<major>/bin`, then Homebrew's prefix)",
        "where the local engine takes `initdb` and `postgres` from",
    ),
    setting(
        Some("run.report"),
        Some("CLEANROOM_REPORT"),
        "`quiet`, `full`, `off`",
        "`quiet`",
        "the summary each test process prints on stderr at exit: `quiet` one line (nothing from a \
        process that only attached and ran one test), and every line of a service that had \
        trouble; `full` every line; `off` none (see docs/report.md)",
    ),
    setting(
        Some("run.report_json"),
        Some("CLEANROOM_REPORT_JSON"),
        "a path",
        "unset",
        "also write the run's report to this file: one JSON document per run, with what every test \
        process of the run measured (docs/report.md)",
    ),
    setting(
        Some("run.image_prefix"),
        Some("CLEANROOM_IMAGE_PREFIX"),
        "a string, e.g. `localhost:5000/`",
        "unset",
        "prepended to every image of a definition that names no registry (a mirror or private \
        registry)",
    ),
    setting(
        Some("run.volume_cache"),
        Some("CLEANROOM_VOLUME_CACHE"),
        "`true`, `false` (env: also `1`/`0`, ...)",
        "`true`",
        "keep the built-in Postgres's initialised cluster (and the templates its migrations made) \
        in a named volume, so a cold start skips initdb and unchanged migrations (docs/caches.md)",
    ),
    setting(
        Some("run.cache_ttl"),
        Some("CLEANROOM_CACHE_TTL"),
        "seconds, 0 to 31536000 (a year)",
        "604800 (7 days)",
        "a cache volume unused for longer is removed when a run ends",
    ),
    setting(
        Some("run.cache_size"),
        Some("CLEANROOM_CACHE_SIZE"),
        "as `memory` of a service",
        "1GiB",
        "when a run ends and the cache volumes together are larger, the least recently used are \
        removed",
    ),
    setting(
        Some("caches.container.eviction"),
        Some("CLEANROOM_CACHE_CONTAINER_EVICTION"),
        "`lru`, `lfu`, `mru`, `ttl`",
        "`lru`",
        "which idle reused services (`run.reuse`) go first when there are more than \
        `caches.container.max_count` (docs/caches.md)",
    ),
    setting(
        Some("caches.container.max_count"),
        Some("CLEANROOM_CACHE_CONTAINER_MAX_COUNT"),
        "a count, 0 to 10000",
        "unset (no cap; each goes after `run.reuse_ttl`)",
        "how many idle reused services may wait for the next run",
    ),
    setting(
        Some("caches.image.eviction"),
        Some("CLEANROOM_CACHE_IMAGE_EVICTION"),
        "`lru`, `lfu`, `mru`, `ttl`",
        "`ttl`",
        "which images cleanroom pulled itself go first when they are larger than \
        `caches.image.max_size` together; an image it did not pull is never removed",
    ),
    setting(
        Some("caches.image.ttl"),
        Some("CLEANROOM_CACHE_IMAGE_TTL"),
        "seconds, 0 to 31536000 (a year)",
        "unset (kept)",
        "an image cleanroom pulled is removed when a run ends once this old (`ttl`) or unused this \
        long (the other strategies); one a container uses stays",
    ),
    setting(
        Some("caches.image.max_size"),
        Some("CLEANROOM_CACHE_IMAGE_MAX_SIZE"),
        "as `memory` of a service",
        "unset (no cap)",
        "the size the images cleanroom pulled may take together",
    ),
    setting(
        Some("caches.network.eviction"),
        Some("CLEANROOM_CACHE_NETWORK_EVICTION"),
        "`lru`, `lfu`, `mru`, `ttl`",
        "`lfu`",
        "which reused-service networks no container uses go first when there are more than \
        `caches.network.max_count`",
    ),
    setting(
        Some("caches.network.max_count"),
        Some("CLEANROOM_CACHE_NETWORK_MAX_COUNT"),
        "a count, 0 to 10000",
        "unset (no cap; each goes with its last reused service)",
        "how many idle reused-service networks may wait for the next run",
    ),
    setting(
        Some("caches.volume.eviction"),
        Some("CLEANROOM_CACHE_VOLUME_EVICTION"),
        "`lru`, `lfu`, `mru`, `ttl`",
        "`lru`",
        "which cache volumes go first when they are larger than `run.cache_size` together (their TTL \
        is `run.cache_ttl`)",
    ),
    setting(
        Some("caches.volume.ttl"),
        Some("CLEANROOM_CACHE_VOLUME_TTL"),
        "as `run.cache_ttl`",
        "`run.cache_ttl`'s",
        "another name for `run.cache_ttl`, beside the other `[caches.<layer>]` keys; both names in \
        one place (the file, the environment) is an error",
    ),
    setting(
        Some("caches.volume.max_size"),
        Some("CLEANROOM_CACHE_VOLUME_MAX_SIZE"),
        "as `run.cache_size`",
        "`run.cache_size`'s",
        "another name for `run.cache_size`; both names in one place is an error",
    ),
    setting(
        Some("run.remote_idle_ttl"),
        Some("CLEANROOM_REMOTE_IDLE_TTL"),
        "seconds, 5 to 604800 (a week)",
        "1800 (30 minutes)",
        "on an engine shared by several machines: a run of another machine is removed once none \
        of its containers has had a heartbeat for this long, on the engine's clock; on an existing \
        Postgres, another owner's run once its heartbeat there is this old, on the server's clock; \
        a run that beats by a longer TTL of its own is given that one (docs/reliability.md)",
    ),
    setting(
        Some("run.redis_lease_ttl"),
        Some("CLEANROOM_REDIS_LEASE_TTL"),
        "seconds, 1 to 86400 (a day)",
        "600 (10 minutes)",
        "how long a Redis room's lease lasts unless renewed: its holder renews it every third of \
        this while its test runs, and a database whose holder died without giving it back is free \
        again after at most this; longer for tests paused in a debugger (docs/isolation.md)",
    ),
    setting(
        None,
        Some("CLEANROOM_HOST"),
        "a host name or IP address, no scheme or port",
        "`TESTCONTAINERS_HOST_OVERRIDE`, else the engine's host for `DOCKER_HOST=tcp://…`, else (in a \
        container) its network's gateway, else `127.0.0.1`",
        "the host tests, health checks and rooms connect to for published ports; ports are published on \
        every address of the engine host unless it is a loopback address (docs/environments.md)",
    ),
    setting(
        None,
        Some("TESTCONTAINERS_HOST_OVERRIDE"),
        "as `CLEANROOM_HOST`",
        "unset",
        "testcontainers' name for `CLEANROOM_HOST`, honoured so that CI set up for testcontainers keeps \
        working; `CLEANROOM_HOST` wins",
    ),
    setting(
        None,
        Some("CLEANROOM_SESSION"),
        "1 to 64 of `A-Z a-z 0-9 - _ .`",
        "`NEXTEST_RUN_ID`, else the runner process",
        "the id that labels this run's containers",
    ),
];

/// The settings of one service: `[services.<name>]` in the file, where
/// `<name>` is `postgres`, `redis` or the name of a `#[cleanroom::service]`
/// function. In variable names `<SERVICE>` is the name in upper case with
/// every other character as `_` (`my-web` → `MY_WEB`).
pub const SERVICE_SETTINGS: &[Setting] = &[
    setting(
        Some("image"),
        Some("CLEANROOM_<SERVICE>_IMAGE"),
        "an image reference",
        "the definition's",
        "the image, taken as given (`run.image_prefix` is not applied to it)",
    ),
    setting(
        Some("memory"),
        Some("CLEANROOM_<SERVICE>_MEMORY"),
        "bytes, or a number with `k`, `m`, `g` (`KiB`, `MB`... all binary, as docker's `--memory`)",
        "no limit",
        "memory limit",
    ),
    setting(
        Some("cpus"),
        Some("CLEANROOM_<SERVICE>_CPUS"),
        "a number > 0, e.g. `1.5`",
        "no limit",
        "CPU limit, as docker's `--cpus`",
    ),
    setting(
        Some("pids"),
        Some("CLEANROOM_<SERVICE>_PIDS"),
        "an integer > 0",
        "no limit",
        "limit on the number of processes",
    ),
    setting(
        Some("shm_size"),
        Some("CLEANROOM_<SERVICE>_SHM_SIZE"),
        "as `memory`",
        "Docker's (64 MiB)",
        "size of `/dev/shm`",
    ),
    setting(
        Some("disk_read_bps"),
        Some("CLEANROOM_<SERVICE>_DISK_READ_BPS"),
        "bytes per second, as `memory`",
        "no limit",
        "disk read bandwidth, on the block device behind the engine's storage (volumes and bind \
        mounts on it; not a tmpfs; docs/monitoring.md)",
    ),
    setting(
        Some("disk_write_bps"),
        Some("CLEANROOM_<SERVICE>_DISK_WRITE_BPS"),
        "bytes per second, as `memory`",
        "no limit",
        "disk write bandwidth, likewise",
    ),
    setting(
        Some("disk_read_iops"),
        Some("CLEANROOM_<SERVICE>_DISK_READ_IOPS"),
        "an integer > 0",
        "no limit",
        "disk read operations per second, likewise",
    ),
    setting(
        Some("disk_write_iops"),
        Some("CLEANROOM_<SERVICE>_DISK_WRITE_IOPS"),
        "an integer > 0",
        "no limit",
        "disk write operations per second, likewise",
    ),
    setting(
        Some("disk_device"),
        Some("CLEANROOM_<SERVICE>_DISK_DEVICE"),
        "a block device path, e.g. `/dev/sda`",
        "the device behind the engine's storage (found for a local engine)",
        "the device the disk limits apply to",
    ),
    setting(
        Some("disk_size"),
        Some("CLEANROOM_<SERVICE>_DISK_SIZE"),
        "as `memory`",
        "the tmpfs default (half the memory)",
        "the size of each tmpfs data directory: what the service may write there (the built-in \
        Postgres keeps its data in one), watched against the cap (docs/monitoring.md); a service \
        with no tmpfs fails to start",
    ),
    setting(
        Some("network_latency"),
        Some("CLEANROOM_<SERVICE>_NETWORK_LATENCY"),
        "seconds, 0 to 60",
        "none",
        "added to every chunk of data each way between every test and the service, through a proxy \
        of each test's own (docs/monitoring.md); a test changes it with its handle's `network()`",
    ),
    setting(
        Some("network_jitter"),
        Some("CLEANROOM_<SERVICE>_NETWORK_JITTER"),
        "seconds, 0 to 60",
        "none",
        "the latency varies by up to this either way",
    ),
    setting(
        Some("network_upload"),
        Some("CLEANROOM_<SERVICE>_NETWORK_UPLOAD"),
        "bytes per second, as `memory`",
        "no limit",
        "bandwidth from the tests to the service",
    ),
    setting(
        Some("network_download"),
        Some("CLEANROOM_<SERVICE>_NETWORK_DOWNLOAD"),
        "bytes per second, as `memory`",
        "no limit",
        "bandwidth from the service to the tests",
    ),
    setting(
        Some("network_reset_rate"),
        Some("CLEANROOM_<SERVICE>_NETWORK_RESET_RATE"),
        "a number from 0 to 1",
        "0",
        "the share of new connections reset as they arrive (a proxy's \"loss\")",
    ),
    setting(
        Some("env"),
        None,
        "a table of strings",
        "none",
        "environment variables, added to (and replacing) the definition's",
    ),
    setting(Some("cmd"), None, "an array of strings", "the definition's", "replaces the command"),
    setting(
        Some("args"),
        None,
        "an array of strings",
        "none",
        "appended to the command (after `cmd` if both are given)",
    ),
    setting(
        Some("labels"),
        None,
        "a table of strings",
        "none",
        "labels, added to the definition's (`cleanroom.*` stay cleanroom's)",
    ),
    setting(
        Some("tmpfs"),
        None,
        "a table: path = mount options (`\"\"` for defaults)",
        "none",
        "tmpfs mounts, added to the definition's",
    ),
    setting(
        Some("mounts"),
        None,
        "an array of tables `{ type = \"bind\" or \"volume\", source = \"...\", target = \
        \"/path\", read_only = true }`",
        "none",
        "bind mounts (`source` a host path that must exist; relative to the file's directory) and \
        named volumes (`source` a name; created for the run and removed with it unless it already \
        exists), added to the definition's; one with the target of a definition's mount replaces \
        it",
    ),
    setting(
        Some("ports"),
        None,
        "an array of container ports and `\"host:container\"` strings, e.g. `[8080, \"18080:80\"]`",
        "none",
        "ports published on 127.0.0.1 (every address for a remote engine), added to the definition's: a bare port on a random host \
        port, `host:container` on that fixed host port (which two runs at the same time cannot \
        share)",
    ),
    setting(
        Some("entrypoint"),
        None,
        "a string, or an array of strings (`[\"sh\", \"-c\"]`)",
        "the definition's",
        "replaces the entrypoint; `cmd` and `args` follow it",
    ),
    setting(
        Some("health"),
        None,
        "an array of checks: `{ tcp = 8080 }`, `{ http = { port = 8080, path = \"/\", status = 200 \
        } }`, `{ command = [\"sh\", \"-c\", \"...\"] }`, `{ file = \"/ready\" }`, `{ log = \
        \"ready\" }`",
        "the definition's",
        "replaces the definition's health checks (all of them, built-in services' too); they run \
        in order and must all pass",
    ),
    setting(
        Some("health_timeout"),
        Some("CLEANROOM_<SERVICE>_HEALTH_TIMEOUT"),
        "seconds, 0.01 to 600",
        "2",
        "how long one attempt of each health check may take",
    ),
    setting(
        Some("startup_timeout"),
        Some("CLEANROOM_<SERVICE>_STARTUP_TIMEOUT"),
        "seconds, 1 to 86400",
        "the definition's, else `run.startup_timeout`",
        "how long this service may take to be Ready; beats `run.startup_timeout`",
    ),
    setting(
        Some("init"),
        None,
        "an array of commands, each an array of strings: `[[\"sh\", \"-c\", \"...\"]]`; for \
        `postgres` also a path to a `.sql` file",
        "none",
        "commands: run in order inside a new container once its checks pass, after the \
        definition's; a command that exits with a code other than 0 fails the start. A path \
        (`postgres` only): SQL loaded into the rooms' template after `migrations`, for every test \
        that names no schema of its own (relative to the file's directory)",
    ),
    setting(
        Some("migrations"),
        Some("CLEANROOM_<SERVICE>_MIGRATIONS"),
        "a directory (`postgres` only)",
        "none",
        "the migrations of every Postgres room whose test (or its fixtures) names none: the \
        default schema; relative to the file's directory, or from the variable to the crate's \
        (docs/migrations.md)",
    ),
    setting(
        Some("migrations_tool"),
        Some("CLEANROOM_<SERVICE>_MIGRATIONS_TOOL"),
        "`sqlx`, `refinery`, `diesel`, `sql` (`postgres` only)",
        "detected from the layout",
        "the migration tool whose layout and history table `migrations` follows \
        (docs/migrations.md)",
    ),
    setting(
        Some("networks"),
        None,
        "an array of network names",
        "none",
        "existing Docker networks the container joins besides the run's, reached there by its \
        service name",
    ),
    setting(
        Some("recovery"),
        Some("CLEANROOM_<SERVICE>_RECOVERY"),
        "`automatic`, `manual`",
        "`automatic`",
        "when the running service dies or stays unhealthy: replace it with a fresh container, or \
        fail the tests that ask for it (docs/monitoring.md)",
    ),
    setting(
        Some("max_restarts"),
        Some("CLEANROOM_<SERVICE>_MAX_RESTARTS"),
        "an integer >= 0",
        "3",
        "replacements allowed per run and test process under `automatic` recovery",
    ),
    setting(
        Some("health_interval"),
        Some("CLEANROOM_<SERVICE>_HEALTH_INTERVAL"),
        "seconds, 0.01 to 3600",
        "5",
        "how often the health checks are repeated while the service runs",
    ),
    setting(
        Some("on_limit"),
        Some("CLEANROOM_<SERVICE>_ON_LIMIT"),
        "`alert`, `throttle`, `restart`, `kill`",
        "`alert`",
        "what to do when CPU or memory use stays over its threshold of the limit",
    ),
    setting(
        Some("cpu_threshold"),
        Some("CLEANROOM_<SERVICE>_CPU_THRESHOLD"),
        "a fraction > 0 and <= 1",
        "0.9",
        "share of the CPU limit (`cpus`) that counts as crossing it",
    ),
    setting(
        Some("memory_threshold"),
        Some("CLEANROOM_<SERVICE>_MEMORY_THRESHOLD"),
        "a fraction > 0 and <= 1",
        "0.9",
        "share of the memory limit (`memory`) that counts as crossing it",
    ),
    setting(
        Some("url"),
        Some("CLEANROOM_<SERVICE>_URL"),
        "`postgres://user:password@host:port/db` or `redis://:password@host:port`",
        "none: cleanroom starts the service",
        "an existing server to use instead of starting one (`postgres` and `redis` only): tests get rooms \
        on it, and the run removes exactly the databases and keys it made there (docs/engines.md)",
    ),
    setting(
        Some("databases"),
        Some("CLEANROOM_<SERVICE>_DATABASES"),
        "`first-last`, e.g. `8-15`",
        "none: required with a Redis `url`",
        "the logical databases of an existing Redis that cleanroom may flush and hand out as rooms \
        (the last one holds its leases); no other database is touched",
    ),
    setting(
        Some("local"),
        None,
        "an array of strings; `{port}`, `{port:<container port>}` and `{dir}` are filled in",
        "the definition's (`GenericContainer::with_local_command`)",
        "the command that runs the service on the local engine (`run.engine = \"local\"`) instead of its image",
    ),
];

/// The environment variable that overrides `service`'s image, e.g.
/// `CLEANROOM_POSTGRES_IMAGE`.
pub fn image_env_var(service: &str) -> String {
    service_env_var(service, "image")
}

/// The environment variable of a service setting, e.g. `CLEANROOM_WEB_MEMORY`.
pub fn service_env_var(service: &str, key: &str) -> String {
    format!("CLEANROOM_{}_{}", env_key(service), key.to_ascii_uppercase())
}

/// A service name as it appears inside environment variable names.
pub(crate) fn env_key(service: &str) -> String {
    service.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
}

/// When a test's database is kept instead of dropped: `CLEANROOM_KEEP`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Keep {
    /// Always dropped.
    Never,
    /// Kept when the test fails (the default).
    #[default]
    OnFailure,
    /// Always kept.
    Always,
}

impl Keep {
    pub(crate) fn keeps(self, failed: bool) -> bool {
        match self {
            Keep::Never => false,
            Keep::OnFailure => failed,
            Keep::Always => true,
        }
    }
}

/// What runs the services: `CLEANROOM_ENGINE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineChoice {
    /// Docker containers (the default).
    #[default]
    Docker,
    /// Processes of this machine's binaries (docs/engines.md).
    Local,
    /// Docker if it answers, else local.
    Auto,
}

impl EngineChoice {
    /// The choice named `text`, if any.
    pub fn parse(text: &str) -> Option<EngineChoice> {
        match text {
            "docker" => Some(EngineChoice::Docker),
            "local" => Some(EngineChoice::Local),
            "auto" => Some(EngineChoice::Auto),
            _ => None,
        }
    }
}

/// How much of the report a test process prints on stderr when it exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReportMode {
    /// One line, and only from a process that started a service or ran more
    /// than one test; every line of a service that had trouble (the default).
    #[default]
    Quiet,
    /// Every line: each service, the per-test overhead, the caches.
    Full,
    /// Nothing on stderr (the report files are still written).
    Off,
}

/// The settings cleanroom runs with, all layers applied.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// `run.pull`: `missing` (default), `always` or `never`.
    pub pull: PullPolicy,
    /// `run.startup_timeout`: overrides definitions that do not set their own.
    pub startup_timeout: Option<Duration>,
    /// `run.keep`: when test databases are kept.
    pub keep: Keep,
    /// `run.pool`: Postgres databases cloned ahead of demand.
    pub pool: usize,
    /// `run.reuse`: keep services running after the run for the next one.
    pub reuse: bool,
    /// `run.reuse_ttl`: how long a reused service outlives the last run that used it.
    pub reuse_ttl: Duration,
    /// `run.reaper_grace`: how long the reaper waits for the next test process.
    pub reaper_grace: Duration,
    /// `run.no_reaper`: each process removes its own containers.
    pub no_reaper: bool,
    /// `run.engine`: what runs the services.
    pub engine: EngineChoice,
    /// `run.postgres_bin`: where the local engine takes `initdb` and `postgres` from.
    pub postgres_bin: Option<PathBuf>,
    /// `run.report`: the summary printed on stderr at exit.
    pub report: ReportMode,
    /// `run.report_json`: where the run's report is also written.
    pub report_json: Option<PathBuf>,
    /// `run.image_prefix`: prepended to definition images that name no registry.
    pub image_prefix: Option<String>,
    /// `run.volume_cache`: keep initialised Postgres clusters between runs.
    pub volume_cache: bool,
    /// `run.cache_ttl`: cache volumes unused for longer are removed.
    pub cache_ttl: Duration,
    /// `run.cache_size`: the cache volumes' total size cap, in bytes.
    pub cache_size: u64,
    /// `[caches.<layer>]`: each cache layer's eviction.
    pub caches: CachePolicies,
    /// `run.remote_idle_ttl`: how long a run of another machine may go
    /// without a heartbeat before this machine removes what it left.
    pub remote_idle_ttl: Duration,
    /// `run.redis_lease_ttl`: how long a Redis room's lease lasts unless
    /// its holder renews it.
    pub redis_lease_ttl: Duration,
    /// The file that was read, if any.
    pub file: Option<PathBuf>,
}

/// How long an unused cache volume is kept, by default.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// What each cache layer keeps and what goes first (`[caches.<layer>]`,
/// docs/caches.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CachePolicies {
    /// Idle reused services (`run.reuse`), capped by count.
    pub container: LayerPolicy,
    /// Images cleanroom pulled itself, capped by bytes.
    pub image: LayerPolicy,
    /// Idle networks of reused services, capped by count.
    pub network: LayerPolicy,
    /// Cache volumes (`run.cache_ttl`, `run.cache_size`), capped by bytes.
    pub volume: LayerPolicy,
}

/// One cache layer's eviction: its strategy, TTL and cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LayerPolicy {
    /// What goes first over the cap.
    pub eviction: crate::eviction::Eviction,
    /// What has outlived this goes (`None`: nothing goes for its age here).
    pub ttl: Option<Duration>,
    /// How much the layer may hold (`None`: no cap).
    pub cap: Option<crate::eviction::Cap>,
}

impl LayerPolicy {
    pub(crate) const fn new(
        eviction: crate::eviction::Eviction,
        ttl: Option<Duration>,
        cap: Option<crate::eviction::Cap>,
    ) -> LayerPolicy {
        LayerPolicy { eviction, ttl, cap }
    }
}

/// How long a run of another machine may go without a heartbeat, by default.
pub const DEFAULT_REMOTE_IDLE_TTL: Duration = Duration::from_secs(30 * 60);
/// How long a Redis room's lease lasts unless renewed, by default.
pub const DEFAULT_REDIS_LEASE_TTL: Duration = Duration::from_secs(10 * 60);
/// The cache volumes' total size cap, by default.
pub const DEFAULT_CACHE_SIZE: u64 = 1 << 30;

/// How long reused services outlive the last run that used them, by default.
pub const DEFAULT_REUSE_TTL: Duration = Duration::from_secs(15 * 60);
/// How many Postgres databases are cloned ahead of demand, by default.
pub const DEFAULT_POOL: usize = 4;
/// How long the reaper waits for the next test process, by default.
pub const DEFAULT_REAPER_GRACE: Duration = Duration::from_secs(3);

impl Config {
    /// Reads the settings of this process: the file and the environment.
    pub fn from_env() -> Result<Config, Error> {
        current().cloned()
    }
}

/// The reference table of `docs/configuration.md`, generated from
/// [`SETTINGS`] and [`SERVICE_SETTINGS`].
pub fn reference_tables() -> String {
    let table = |first: &str, settings: &[Setting]| {
        let cell = |s: Option<&str>| s.map_or("—".to_string(), |s| format!("`{s}`"));
        let mut out = format!(
            "| {first} | environment variable | values | default | meaning |\n| --- | --- | --- | --- | --- |\n"
        );
        for s in settings {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                cell(s.key),
                cell(s.env),
                s.values,
                s.default,
                s.meaning
            ));
        }
        out
    };
    format!("{}\n{}", table("key in `cleanroom.toml`", SETTINGS), table("key in `[services.<name>]`", SERVICE_SETTINGS))
}
