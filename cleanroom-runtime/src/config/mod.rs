//! Settings, in layers: defaults < `cleanroom.toml` < environment
//! (`CLEANROOM_*`) < command line (the `cleanroom` CLI sets the environment of
//! the `cargo test` it runs, so its flags beat the user's environment).
//!
//! Every setting is listed once, in [`SETTINGS`] and [`SERVICE_SETTINGS`];
//! `docs/configuration.md` is generated from those tables and a test keeps it
//! so. A key that is not in them, or a value a setting does not accept, is an
//! error that names the file (or variable), the key and what is allowed: the
//! run does not start with a typo silently ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::docker::PullPolicy;
use crate::error::Error;
use crate::service::definition::{GenericContainer, Mount};
use crate::service::health::HealthCheck;

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

const fn setting(
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
    setting(None, Some(CONFIG_ENV), "a path", "`cleanroom.toml` found from the crate's directory up to the workspace root", "the configuration file to read instead of searching for one"),
    setting(Some("run.pull"), Some("CLEANROOM_PULL"), "`missing`, `always`, `never`", "`missing`", "`missing` pulls absent images; `always` pulls every image once per run, even one that is here; `never` fails at once on an absent image (docs/caches.md)"),
    setting(Some("run.startup_timeout"), Some("CLEANROOM_STARTUP_TIMEOUT"), "seconds > 0", "60", "how long a service may take to be Ready, for definitions that set no timeout of their own"),
    setting(Some("run.keep"), Some("CLEANROOM_KEEP"), "`never`, `on-failure`, `always`", "`on-failure`", "when a test's database is kept instead of dropped"),
    setting(Some("run.pool"), Some("CLEANROOM_POOL"), "an integer >= 0", "4", "Postgres databases cloned ahead of demand (0: off)"),
    setting(Some("run.reuse"), Some("CLEANROOM_REUSE"), "`true`, `false` (env: also `1`/`0`, `yes`/`no`, `on`/`off`)", "`false`", "keep services running for the next run, matched by their full definition"),
    setting(Some("run.reuse_ttl"), Some("CLEANROOM_REUSE_TTL"), "seconds > 0", "900", "how long a reused service outlives the last run that used it"),
    setting(Some("run.reaper_grace"), Some("CLEANROOM_REAPER_GRACE"), "seconds >= 0", "3", "how long the reaper waits for the next test process while the runner still runs"),
    setting(Some("run.no_reaper"), Some("CLEANROOM_NO_REAPER"), "`true`, `false` (env: also `1`/`0`, ...)", "`false`", "no reaper: each process removes its own containers and shares none"),
    setting(Some("run.report"), Some("CLEANROOM_REPORT"), "`quiet`, `full`, `off`", "`quiet`", "the summary each test process prints on stderr at exit: `quiet` one line (nothing from a process that only attached and ran one test), and every line of a service that had trouble; `full` every line; `off` none (see docs/report.md)"),
    setting(Some("run.report_json"), Some("CLEANROOM_REPORT_JSON"), "a path", "unset", "also write the run's report to this file: one JSON document per run, merged by every test process of the run (docs/report.md)"),
    setting(Some("run.image_prefix"), Some("CLEANROOM_IMAGE_PREFIX"), "a string, e.g. `localhost:5000/`", "unset", "prepended to every image of a definition that names no registry (a mirror or private registry)"),
    setting(Some("run.volume_cache"), Some("CLEANROOM_VOLUME_CACHE"), "`true`, `false` (env: also `1`/`0`, ...)", "`true`", "keep the built-in Postgres's initialised cluster (and the templates its migrations made) in a named volume, so a cold start skips initdb and unchanged migrations (docs/caches.md)"),
    setting(Some("run.cache_ttl"), Some("CLEANROOM_CACHE_TTL"), "seconds >= 0", "604800 (7 days)", "a cache volume unused for longer is removed when a run ends"),
    setting(Some("run.cache_size"), Some("CLEANROOM_CACHE_SIZE"), "as `memory` of a service", "1GiB", "when a run ends and the cache volumes together are larger, the least recently used are removed"),
    setting(None, Some("CLEANROOM_SESSION"), "1 to 64 of `A-Z a-z 0-9 - _ .`", "`NEXTEST_RUN_ID`, else the runner process", "the id that labels this run's containers"),
];

/// The settings of one service: `[services.<name>]` in the file, where
/// `<name>` is `postgres`, `redis` or the name of a `#[cleanroom::service]`
/// function. In variable names `<SERVICE>` is the name in upper case with
/// every other character as `_` (`my-web` → `MY_WEB`).
pub const SERVICE_SETTINGS: &[Setting] = &[
    setting(Some("image"), Some("CLEANROOM_<SERVICE>_IMAGE"), "an image reference", "the definition's", "the image, taken as given (`run.image_prefix` is not applied to it)"),
    setting(Some("memory"), Some("CLEANROOM_<SERVICE>_MEMORY"), "bytes, or a number with `k`, `m`, `g` (`KiB`, `MB`... all binary, as docker's `--memory`)", "no limit", "memory limit"),
    setting(Some("cpus"), Some("CLEANROOM_<SERVICE>_CPUS"), "a number > 0, e.g. `1.5`", "no limit", "CPU limit, as docker's `--cpus`"),
    setting(Some("pids"), Some("CLEANROOM_<SERVICE>_PIDS"), "an integer > 0", "no limit", "limit on the number of processes"),
    setting(Some("shm_size"), Some("CLEANROOM_<SERVICE>_SHM_SIZE"), "as `memory`", "Docker's (64 MiB)", "size of `/dev/shm`"),
    setting(Some("env"), None, "a table of strings", "none", "environment variables, added to (and replacing) the definition's"),
    setting(Some("cmd"), None, "an array of strings", "the definition's", "replaces the command"),
    setting(Some("args"), None, "an array of strings", "none", "appended to the command (after `cmd` if both are given)"),
    setting(Some("labels"), None, "a table of strings", "none", "labels, added to the definition's (`cleanroom.*` stay cleanroom's)"),
    setting(Some("tmpfs"), None, "a table: path = mount options (`\"\"` for defaults)", "none", "tmpfs mounts, added to the definition's"),
    setting(Some("mounts"), None, "an array of tables `{ type = \"bind\" or \"volume\", source = \"...\", target = \"/path\", read_only = true }`", "none", "bind mounts (`source` a host path that must exist; relative to the file's directory) and named volumes (`source` a name; created for the run and removed with it unless it already exists), added to the definition's; one with the target of a definition's mount replaces it"),
    setting(Some("ports"), None, "an array of container ports and `\"host:container\"` strings, e.g. `[8080, \"18080:80\"]`", "none", "ports published on 127.0.0.1, added to the definition's: a bare port on a random host port, `host:container` on that fixed host port (which two runs at the same time cannot share)"),
    setting(Some("entrypoint"), None, "a string, or an array of strings (`[\"sh\", \"-c\"]`)", "the definition's", "replaces the entrypoint; `cmd` and `args` follow it"),
    setting(Some("health"), None, "an array of checks: `{ tcp = 8080 }`, `{ http = { port = 8080, path = \"/\", status = 200 } }`, `{ command = [\"sh\", \"-c\", \"...\"] }`, `{ file = \"/ready\" }`, `{ log = \"ready\" }`", "the definition's", "replaces the definition's health checks (all of them, built-in services' too); they run in order and must all pass"),
    setting(Some("health_timeout"), Some("CLEANROOM_<SERVICE>_HEALTH_TIMEOUT"), "seconds > 0", "2", "how long one attempt of each health check may take"),
    setting(Some("startup_timeout"), Some("CLEANROOM_<SERVICE>_STARTUP_TIMEOUT"), "seconds > 0", "the definition's, else `run.startup_timeout`", "how long this service may take to be Ready; beats `run.startup_timeout`"),
    setting(Some("init"), None, "an array of commands, each an array of strings: `[[\"sh\", \"-c\", \"...\"]]`", "none", "run in order inside a new container once its checks pass, after the definition's; a command that exits with a code other than 0 fails the start"),
    setting(Some("networks"), None, "an array of network names", "none", "existing Docker networks the container joins besides the run's, reached there by its service name"),
    setting(Some("recovery"), Some("CLEANROOM_<SERVICE>_RECOVERY"), "`automatic`, `manual`", "`automatic`", "when the running service dies or stays unhealthy: replace it with a fresh container, or fail the tests that ask for it (docs/monitoring.md)"),
    setting(Some("max_restarts"), Some("CLEANROOM_<SERVICE>_MAX_RESTARTS"), "an integer >= 0", "3", "replacements allowed per run and test process under `automatic` recovery"),
    setting(Some("health_interval"), Some("CLEANROOM_<SERVICE>_HEALTH_INTERVAL"), "seconds > 0", "5", "how often the health checks are repeated while the service runs"),
    setting(Some("on_limit"), Some("CLEANROOM_<SERVICE>_ON_LIMIT"), "`alert`, `throttle`, `restart`, `kill`", "`alert`", "what to do when CPU or memory use stays over its threshold of the limit"),
    setting(Some("cpu_threshold"), Some("CLEANROOM_<SERVICE>_CPU_THRESHOLD"), "a fraction > 0 and <= 1", "0.9", "share of the CPU limit (`cpus`) that counts as crossing it"),
    setting(Some("memory_threshold"), Some("CLEANROOM_<SERVICE>_MEMORY_THRESHOLD"), "a fraction > 0 and <= 1", "0.9", "share of the memory limit (`memory`) that counts as crossing it"),
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
    /// The file that was read, if any.
    pub file: Option<PathBuf>,
}

/// How long an unused cache volume is kept, by default.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// The cache volumes' total size cap, by default.
pub const DEFAULT_CACHE_SIZE: u64 = 1 << 30;

/// How long reused services outlive the last run that used them, by default.
pub const DEFAULT_REUSE_TTL: Duration = Duration::from_secs(15 * 60);
/// How many Postgres databases are cloned ahead of demand, by default.
pub const DEFAULT_POOL: usize = 4;
/// How long the reaper waits for the next test process, by default.
pub const DEFAULT_REAPER_GRACE: Duration = Duration::from_secs(3);

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Nobody set it.
    Default,
    /// `cleanroom.toml` (this file).
    File(PathBuf),
    /// An environment variable.
    Env,
    /// A flag of the `cleanroom` command.
    CommandLine,
}

/// A value as one layer gave it.
#[derive(Debug, Clone)]
enum Raw {
    Text(String),
    Toml(toml::Value),
}

/// One value with the name it was given under, for error messages.
#[derive(Debug, Clone)]
struct Found {
    raw: Raw,
    origin: Origin,
    /// `run.keep in /path/cleanroom.toml`, `CLEANROOM_KEEP`, `--keep`.
    name: String,
}

impl Found {
    fn error(&self, reason: impl Into<String>) -> Error {
        Error::Configuration { key: self.name.clone(), reason: reason.into() }
    }

    fn shown(&self) -> String {
        match &self.raw {
            Raw::Text(t) => format!("{t:?}"),
            Raw::Toml(v) => v.to_string(),
        }
    }

    /// The value as text, for scalars; tables and arrays are an error.
    fn text(&self, expected: &str) -> Result<String, Error> {
        match &self.raw {
            Raw::Text(t) => Ok(t.trim().to_string()),
            Raw::Toml(toml::Value::String(s)) => Ok(s.trim().to_string()),
            Raw::Toml(toml::Value::Integer(i)) => Ok(i.to_string()),
            Raw::Toml(toml::Value::Float(f)) => Ok(f.to_string()),
            Raw::Toml(toml::Value::Boolean(b)) => Ok(b.to_string()),
            Raw::Toml(other) => Err(self.error(format!("{other} is not {expected}"))),
        }
    }
}

/// The command line's layer: environment variable → (value, flag), set by the CLI.
pub type Overrides = BTreeMap<String, (String, String)>;

/// All layers but the defaults, before they are interpreted.
#[derive(Debug, Clone, Default)]
pub struct Layers {
    file: Option<(PathBuf, toml::Table)>,
    env: BTreeMap<String, String>,
    overrides: Overrides,
}

impl Layers {
    /// Reads the file (from `CLEANROOM_CONFIG` or the search) and this
    /// process's environment. `overrides` is the command line's layer.
    pub fn load(overrides: Overrides) -> Result<Layers, Error> {
        let env: BTreeMap<String, String> = std::env::vars().filter(|(k, _)| k.starts_with("CLEANROOM_")).collect();
        let explicit = overrides.get(CONFIG_ENV).map(|(v, _)| v.clone()).or_else(|| env.get(CONFIG_ENV).cloned());
        let start = std::env::var_os("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .or_else(|| std::env::current_dir().ok())
            .unwrap_or_default();
        let path = match explicit.filter(|p| !p.trim().is_empty()) {
            Some(p) => Some(PathBuf::from(p)),
            None => find_file(&start),
        };
        let file = match path {
            None => None,
            Some(path) => Some((path.clone(), read_file(&path)?)),
        };
        Layers::from_parts(file, env, overrides)
    }

    /// Layers from given parts; checks the file's keys and values at once.
    pub(crate) fn from_parts(
        file: Option<(PathBuf, toml::Table)>,
        env: BTreeMap<String, String>,
        overrides: Overrides,
    ) -> Result<Layers, Error> {
        let layers = Layers { file, env, overrides };
        layers.check_file()?;
        Ok(layers)
    }

    /// The file that was read.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_ref().map(|(p, _)| p.as_path())
    }

    /// The value of `key` (a file key such as `run.keep`) or its variable,
    /// from the highest layer that sets it.
    fn get(&self, key: Option<&str>, env: Option<&str>) -> Option<Found> {
        if let Some(env) = env {
            if let Some((v, flag)) = self.overrides.get(env) {
                return Some(Found { raw: Raw::Text(v.clone()), origin: Origin::CommandLine, name: flag.clone() });
            }
            if let Some(v) = self.env.get(env).filter(|v| !v.trim().is_empty()) {
                return Some(Found { raw: Raw::Text(v.clone()), origin: Origin::Env, name: env.to_string() });
            }
        }
        let (path, table) = self.file.as_ref()?;
        let mut parts = key?.split('.');
        let mut value = table.get(parts.next()?)?;
        for part in parts {
            value = value.as_table()?.get(part)?;
        }
        Some(Found {
            raw: Raw::Toml(value.clone()),
            origin: Origin::File(path.clone()),
            name: format!("{} in {}", key?, path.display()),
        })
    }

    fn run_setting(&self, key: &str) -> Option<Found> {
        let s = SETTINGS.iter().find(|s| s.key == Some(key) || (s.key.is_none() && s.env == Some(key)))?;
        self.get(s.key, s.env)
    }

    /// The value of a run setting (`run.keep`, or `CLEANROOM_SESSION` for
    /// variables the file cannot set) as given, where it came from, and the
    /// name it was given under; `None` when only the default applies.
    pub fn value(&self, key: &str) -> Option<(String, Origin, String)> {
        self.run_setting(key).map(|f| (f.shown(), f.origin.clone(), f.name.clone()))
    }

    /// The same for a service setting (`image` of `postgres`).
    pub fn service_value(&self, service: &str, key: &str) -> Option<(String, Origin, String)> {
        self.service_setting(service, key).map(|f| (f.shown(), f.origin.clone(), f.name.clone()))
    }

    /// The services the file has a `[services.<name>]` table for.
    pub fn file_services(&self) -> Vec<String> {
        self.file
            .as_ref()
            .and_then(|(_, t)| t.get("services")?.as_table().map(|s| s.keys().cloned().collect()))
            .unwrap_or_default()
    }

    /// Where the value of a run setting (`run.keep`) comes from.
    pub fn origin(&self, key: &str) -> Origin {
        self.run_setting(key).map_or(Origin::Default, |f| f.origin)
    }

    /// Rejects unknown tables and keys, and bad values, in the file.
    fn check_file(&self) -> Result<(), Error> {
        let Some((path, table)) = &self.file else { return Ok(()) };
        let unknown = |key: String, allowed: Vec<&str>| Error::Configuration {
            key: format!("{key} in {}", path.display()),
            reason: format!("unknown key; expected one of: {}", allowed.join(", ")),
        };
        for (top, value) in table {
            match top.as_str() {
                "run" => {
                    let allowed: Vec<&str> = SETTINGS.iter().filter_map(|s| s.key?.strip_prefix("run.")).collect();
                    let run = self.table(value, "run", "a table of run settings")?;
                    for key in run.keys() {
                        if !allowed.contains(&key.as_str()) {
                            return Err(unknown(format!("run.{key}"), allowed));
                        }
                    }
                }
                "services" => {
                    let services = self.table(value, "services", "a table of services")?;
                    let allowed: Vec<&str> = SERVICE_SETTINGS.iter().filter_map(|s| s.key).collect();
                    for (name, entry) in services {
                        let entry = self.table(entry, &format!("services.{name}"), "a table of service settings")?;
                        for key in entry.keys() {
                            if !allowed.contains(&key.as_str()) {
                                return Err(unknown(format!("services.{name}.{key}"), allowed));
                            }
                        }
                        self.service(name)?;
                    }
                }
                other => return Err(unknown(other.to_string(), vec!["run", "services"])),
            }
        }
        self.config()?;
        Ok(())
    }

    fn table<'a>(&self, value: &'a toml::Value, key: &str, expected: &str) -> Result<&'a toml::Table, Error> {
        let path = self.file().map(|p| p.display().to_string()).unwrap_or_default();
        value.as_table().ok_or_else(|| Error::Configuration {
            key: format!("{key} in {path}"),
            reason: format!("{value} is not {expected}"),
        })
    }

    /// The run's settings, every layer applied.
    pub fn config(&self) -> Result<Config, Error> {
        let pull = match self.run_setting("run.pull") {
            None => PullPolicy::Missing,
            Some(f) => match PullPolicy::parse(&f.text("a pull policy")?) {
                Some(policy) => policy,
                None => {
                    return Err(
                        f.error(format!("{} is not a pull policy; expected one of: missing, always, never", f.shown()))
                    )
                }
            },
        };
        let keep = match self.run_setting("run.keep") {
            None => Keep::OnFailure,
            Some(f) => match f.text("a keep policy")?.as_str() {
                "" | "on-failure" => Keep::OnFailure,
                "never" => Keep::Never,
                "always" => Keep::Always,
                _ => {
                    return Err(f.error(format!(
                        "{} is not a keep policy; expected one of: never, on-failure, always",
                        f.shown()
                    )))
                }
            },
        };
        let pool = match self.run_setting("run.pool") {
            None => DEFAULT_POOL,
            Some(f) => f.text("a number")?.parse::<usize>().map_err(|_| {
                f.error(format!(
                    "{} is not a number of databases; expected an integer >= 0 (0 turns the pool off)",
                    f.shown()
                ))
            })?,
        };
        let report = match self.run_setting("run.report") {
            None => ReportMode::Quiet,
            Some(f) => match f.text("a report mode")?.as_str() {
                "" | "quiet" => ReportMode::Quiet,
                "full" => ReportMode::Full,
                "off" => ReportMode::Off,
                _ => {
                    return Err(
                        f.error(format!("{} is not a report mode; expected one of: quiet, full, off", f.shown()))
                    )
                }
            },
        };
        Ok(Config {
            pull,
            startup_timeout: self.run_setting("run.startup_timeout").map(|f| seconds(&f, false)).transpose()?,
            keep,
            pool,
            reuse: self.run_setting("run.reuse").map(|f| switch(&f)).transpose()?.unwrap_or(false),
            reuse_ttl: self
                .run_setting("run.reuse_ttl")
                .map(|f| seconds(&f, false))
                .transpose()?
                .unwrap_or(DEFAULT_REUSE_TTL),
            reaper_grace: self
                .run_setting("run.reaper_grace")
                .map(|f| seconds(&f, true))
                .transpose()?
                .unwrap_or(DEFAULT_REAPER_GRACE),
            no_reaper: self.run_setting("run.no_reaper").map(|f| switch(&f)).transpose()?.unwrap_or(false),
            report,
            report_json: self.run_setting("run.report_json").map(|f| f.text("a path")).transpose()?.map(PathBuf::from),
            image_prefix: self
                .run_setting("run.image_prefix")
                .map(|f| f.text("a string"))
                .transpose()?
                .filter(|p| !p.is_empty()),
            volume_cache: self.run_setting("run.volume_cache").map(|f| switch(&f)).transpose()?.unwrap_or(true),
            cache_ttl: self
                .run_setting("run.cache_ttl")
                .map(|f| seconds(&f, true))
                .transpose()?
                .unwrap_or(DEFAULT_CACHE_TTL),
            cache_size: self
                .run_setting("run.cache_size")
                .map(|f| bytes(&f))
                .transpose()?
                .unwrap_or(DEFAULT_CACHE_SIZE),
            file: self.file().map(Path::to_path_buf),
        })
    }

    fn service_setting(&self, service: &str, key: &str) -> Option<Found> {
        let s = SERVICE_SETTINGS.iter().find(|s| s.key == Some(key))?;
        let env = s.env.map(|_| service_env_var(service, key));
        let file_key = format!("services.{service}.{key}");
        self.get(Some(&file_key), env.as_deref())
    }

    /// What the layers change in `service`'s definition.
    pub fn service(&self, service: &str) -> Result<ServiceOverride, Error> {
        let get = |key: &str| self.service_setting(service, key);
        let strings = |key: &str| -> Result<Option<Vec<String>>, Error> {
            let Some(f) = get(key) else { return Ok(None) };
            let bad = || f.error(format!("{} is not an array of strings, e.g. [\"-c\", \"x=1\"]", f.shown()));
            match &f.raw {
                Raw::Toml(toml::Value::Array(items)) => items
                    .iter()
                    .map(|i| i.as_str().map(str::to_string).ok_or_else(bad))
                    .collect::<Result<_, _>>()
                    .map(Some),
                _ => Err(bad()),
            }
        };
        let table = |key: &str| -> Result<BTreeMap<String, String>, Error> {
            let Some(f) = get(key) else { return Ok(BTreeMap::new()) };
            let bad = || f.error(format!("{} is not a table of strings, e.g. {{ KEY = \"value\" }}", f.shown()));
            match &f.raw {
                Raw::Toml(toml::Value::Table(t)) => {
                    t.iter().map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())).ok_or_else(bad)).collect()
                }
                _ => Err(bad()),
            }
        };
        Ok(ServiceOverride {
            image: get("image").map(|f| f.text("an image reference")).transpose()?.filter(|i| !i.is_empty()),
            memory: get("memory").map(|f| bytes(&f)).transpose()?,
            cpus: get("cpus")
                .map(|f| {
                    let text = f.text("a number")?;
                    text.parse::<f64>().ok().filter(|c| *c > 0.0 && c.is_finite() && *c <= 1e6).ok_or_else(|| {
                        f.error(format!("{} is not a number of CPUs; expected a number > 0, e.g. 1.5", f.shown()))
                    })
                })
                .transpose()?,
            pids: get("pids")
                .map(|f| {
                    let text = f.text("a number")?;
                    text.parse::<i64>().ok().filter(|p| *p > 0).ok_or_else(|| {
                        f.error(format!("{} is not a process limit; expected an integer > 0, e.g. 256", f.shown()))
                    })
                })
                .transpose()?,
            shm_size: get("shm_size").map(|f| bytes(&f)).transpose()?,
            env: table("env")?,
            cmd: strings("cmd")?,
            args: strings("args")?.unwrap_or_default(),
            labels: table("labels")?,
            tmpfs: table("tmpfs")?,
            recovery: get("recovery")
                .map(|f| match f.text("a recovery policy")?.as_str() {
                    "automatic" => Ok(RecoveryKind::Automatic),
                    "manual" => Ok(RecoveryKind::Manual),
                    _ => Err(
                        f.error(format!("{} is not a recovery policy; expected one of: automatic, manual", f.shown()))
                    ),
                })
                .transpose()?,
            max_restarts: get("max_restarts")
                .map(|f| {
                    let text = f.text("a number")?;
                    text.parse::<u32>().map_err(|_| {
                        f.error(format!("{} is not a number of restarts; expected an integer >= 0, e.g. 3", f.shown()))
                    })
                })
                .transpose()?,
            health_interval: get("health_interval").map(|f| seconds(&f, false)).transpose()?,
            on_limit: get("on_limit")
                .map(|f| match f.text("a limit action")?.as_str() {
                    "alert" => Ok(crate::service::watch::LimitAction::Alert),
                    "throttle" => Ok(crate::service::watch::LimitAction::Throttle),
                    "restart" => Ok(crate::service::watch::LimitAction::Restart),
                    "kill" => Ok(crate::service::watch::LimitAction::Kill),
                    _ => Err(f.error(format!(
                        "{} is not a limit action; expected one of: alert, throttle, restart, kill",
                        f.shown()
                    ))),
                })
                .transpose()?,
            cpu_threshold: get("cpu_threshold").map(|f| fraction(&f)).transpose()?,
            memory_threshold: get("memory_threshold").map(|f| fraction(&f)).transpose()?,
            mounts: get("mounts").map(|f| mounts(&f)).transpose()?.unwrap_or_default(),
            ports: get("ports").map(|f| ports(&f)).transpose()?.unwrap_or_default(),
            entrypoint: get("entrypoint").map(|f| entrypoint(&f)).transpose()?,
            health: get("health").map(|f| health_checks(&f)).transpose()?,
            health_timeout: get("health_timeout").map(|f| seconds(&f, false)).transpose()?,
            startup_timeout: get("startup_timeout").map(|f| seconds(&f, false)).transpose()?,
            init: get("init").map(|f| commands(&f)).transpose()?.unwrap_or_default(),
            networks: strings("networks")?.unwrap_or_default(),
        })
    }
}

/// The array under a key, or an error saying what it should hold.
fn array<'a>(f: &'a Found, expected: &str) -> Result<&'a [toml::Value], Error> {
    match &f.raw {
        Raw::Toml(toml::Value::Array(items)) => Ok(items),
        _ => Err(f.error(format!("{} is not {expected}", f.shown()))),
    }
}

/// The one key of an entry table that is not in `allowed`, as an error.
fn unknown_entry_key(f: &Found, n: usize, table: &toml::Table, allowed: &[&str]) -> Result<(), Error> {
    match table.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(f.error(format!("entry {n}: unknown key `{k}`; expected one of: {}", allowed.join(", ")))),
        None => Ok(()),
    }
}

/// `mounts = [{ type = "bind", source = "...", target = "/x", read_only = true }, ...]`.
fn mounts(f: &Found) -> Result<Vec<Mount>, Error> {
    const EXAMPLE: &str = "e.g. [{ type = \"bind\", source = \"fixtures\", target = \"/data\", read_only = true }, { type = \"volume\", source = \"cache\", target = \"/cache\" }]";
    let dir = match &f.origin {
        Origin::File(path) => path.parent().map(Path::to_path_buf),
        _ => None,
    };
    let mut out = Vec::new();
    for (i, item) in array(f, &format!("an array of mounts; expected {EXAMPLE}"))?.iter().enumerate() {
        let n = i + 1;
        let Some(table) = item.as_table() else {
            return Err(f.error(format!("entry {n}: {item} is not a mount; expected a table, {EXAMPLE}")));
        };
        unknown_entry_key(f, n, table, &["type", "source", "target", "read_only"])?;
        let text = |key: &str, what: &str| -> Result<String, Error> {
            match table.get(key) {
                Some(toml::Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
                Some(other) => Err(f.error(format!("entry {n}: `{key}` = {other} is not {what}"))),
                None => Err(f.error(format!("entry {n}: `{key}` is missing; expected {what}"))),
            }
        };
        let kind = text("type", "a mount type: one of bind, volume")?;
        let source = text("source", "a string: the host path (bind) or the volume name (volume)")?;
        let target = text("target", "an absolute path inside the container, e.g. \"/data\"")?;
        if !target.starts_with('/') {
            return Err(f.error(format!(
                "entry {n}: `target` = {target:?} is not an absolute path inside the container, e.g. \"/data\""
            )));
        }
        let read_only = match table.get("read_only") {
            None => false,
            Some(toml::Value::Boolean(b)) => *b,
            Some(other) => {
                return Err(f.error(format!("entry {n}: `read_only` = {other} is not a switch; expected true or false")))
            }
        };
        let mount = match kind.as_str() {
            "bind" => {
                let path = match &dir {
                    Some(dir) if Path::new(&source).is_relative() => dir.join(&source),
                    _ => PathBuf::from(&source),
                };
                if !path.exists() {
                    let relative = dir.as_ref().filter(|_| Path::new(&source).is_relative());
                    let note = relative.map(|d| format!(" (a relative source is taken from the file's directory, {})", d.display()));
                    return Err(f.error(format!(
                        "entry {n}: the bind mount's host path {} does not exist{}; create it or fix `source`",
                        path.display(),
                        note.unwrap_or_default()
                    )));
                }
                Mount::bind(path.display().to_string(), target)
            }
            "volume" => {
                let valid = source.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                    && source.len() >= 2
                    && source.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
                if !valid {
                    return Err(f.error(format!(
                        "entry {n}: `source` = {source:?} is not a volume name; expected 2 or more of letters, digits, `_`, `.`, `-`, starting with a letter or digit"
                    )));
                }
                Mount::volume(source, target)
            }
            other => {
                return Err(f.error(format!(
                    "entry {n}: {other:?} is not a mount type; expected one of: bind, volume (tmpfs mounts have their own key, `tmpfs`)"
                )))
            }
        };
        out.push(if read_only { mount.read_only() } else { mount });
    }
    Ok(out)
}

/// A port number 1 to 65535 in a file value or a string.
fn port_number(text: &str) -> Option<u16> {
    text.trim().parse::<u16>().ok().filter(|p| *p > 0)
}

/// `ports = [8080, "18080:80"]`: container ports, and `host:container` pairs.
fn ports(f: &Found) -> Result<Vec<(Option<u16>, u16)>, Error> {
    const EXPECTED: &str = "expected a container port (1-65535) or \"host:container\", e.g. [8080, \"18080:80\"]";
    let mut out = Vec::new();
    for (i, item) in array(f, &format!("an array of ports; {EXPECTED}"))?.iter().enumerate() {
        let parsed = match item {
            toml::Value::Integer(p) => u16::try_from(*p).ok().filter(|p| *p > 0).map(|p| (None, p)),
            toml::Value::String(s) => match s.split_once(':') {
                Some((host, container)) => port_number(host).zip(port_number(container)).map(|(h, c)| (Some(h), c)),
                None => port_number(s).map(|p| (None, p)),
            },
            _ => None,
        };
        out.push(parsed.ok_or_else(|| f.error(format!("entry {}: {item} is not a port; {EXPECTED}", i + 1)))?);
    }
    Ok(out)
}

/// `entrypoint = "sh"` or `entrypoint = ["sh", "-c"]`.
fn entrypoint(f: &Found) -> Result<Vec<String>, Error> {
    let bad = || {
        f.error(format!(
            "{} is not an entrypoint; expected a string or a non-empty array of strings, e.g. [\"sh\", \"-c\"]",
            f.shown()
        ))
    };
    match &f.raw {
        Raw::Toml(toml::Value::String(s)) if !s.trim().is_empty() => Ok(vec![s.clone()]),
        Raw::Toml(toml::Value::Array(items)) if !items.is_empty() => {
            items.iter().map(|i| i.as_str().map(str::to_string).ok_or_else(bad)).collect()
        }
        _ => Err(bad()),
    }
}

/// `init = [["sh", "-c", "..."], ...]`.
fn commands(f: &Found) -> Result<Vec<Vec<String>>, Error> {
    const EXPECTED: &str = "expected a non-empty array of strings, e.g. [\"sh\", \"-c\", \"mkdir -p /data\"]";
    let mut out = Vec::new();
    for (i, item) in array(
        f,
        "an array of commands; expected an array of arrays of strings, e.g. [[\"sh\", \"-c\", \"mkdir -p /data\"]]",
    )?
    .iter()
    .enumerate()
    {
        let cmd: Option<Vec<String>> = item
            .as_array()
            .filter(|words| !words.is_empty())
            .and_then(|words| words.iter().map(|w| w.as_str().map(str::to_string)).collect());
        out.push(cmd.ok_or_else(|| f.error(format!("entry {}: {item} is not a command; {EXPECTED}", i + 1)))?);
    }
    Ok(out)
}

/// `health = [{ tcp = 8080 }, { http = { port = 8080, path = "/" } }, ...]`.
fn health_checks(f: &Found) -> Result<Vec<HealthCheck>, Error> {
    const KINDS: &str = "tcp, http, command, file, log";
    const EXAMPLE: &str = "e.g. [{ tcp = 8080 }, { http = { port = 8080, path = \"/\" } }, { command = [\"sh\", \"-c\", \"test -e /ready\"] }, { file = \"/ready\" }, { log = \"ready\" }]";
    let mut out = Vec::new();
    for (i, item) in array(f, &format!("an array of health checks; expected {EXAMPLE}"))?.iter().enumerate() {
        let n = i + 1;
        let entry = item.as_table().filter(|t| t.len() == 1).and_then(|t| t.iter().next());
        let Some((kind, value)) = entry else {
            return Err(f.error(format!(
                "entry {n}: {item} is not a health check; expected a table with exactly one of: {KINDS}, {EXAMPLE}"
            )));
        };
        let bad = |what: &str| f.error(format!("entry {n}: `{kind}` = {value} is not {what}"));
        let port = |v: &toml::Value| v.as_integer().and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0);
        let check = match kind.as_str() {
            "tcp" => HealthCheck::tcp(port(value).ok_or_else(|| bad("a port (1-65535)"))?),
            "http" => {
                const HTTP: &str =
                    "a port or a table { port = 8080, path = \"/\", status = 200 } (path and status optional)";
                match value {
                    toml::Value::Table(t) => {
                        unknown_entry_key(f, n, t, &["port", "path", "status"])?;
                        let p = t.get("port").and_then(port).ok_or_else(|| bad(HTTP))?;
                        let path = match t.get("path") {
                            None => "/".to_string(),
                            Some(toml::Value::String(s)) if s.starts_with('/') => s.clone(),
                            Some(other) => {
                                return Err(f.error(format!("entry {n}: `http` path {other} is not a path; expected one starting with `/`, e.g. \"/health\"")))
                            }
                        };
                        let check = HealthCheck::http(p, path);
                        match t.get("status") {
                            None => check,
                            Some(v) => match v
                                .as_integer()
                                .and_then(|s| u16::try_from(s).ok())
                                .filter(|s| (100..600).contains(s))
                            {
                                Some(status) => check.with_status(status),
                                None => {
                                    return Err(f.error(format!(
                                    "entry {n}: `http` status {v} is not an HTTP status; expected 100 to 599, e.g. 204"
                                )))
                                }
                            },
                        }
                    }
                    other => HealthCheck::http(port(other).ok_or_else(|| bad(HTTP))?, "/"),
                }
            }
            "command" => {
                let cmd: Option<Vec<String>> = value
                    .as_array()
                    .filter(|words| !words.is_empty())
                    .and_then(|words| words.iter().map(|w| w.as_str().map(str::to_string)).collect());
                HealthCheck::command(
                    cmd.ok_or_else(|| bad("a non-empty array of strings, e.g. [\"sh\", \"-c\", \"test -e /ready\"]"))?,
                )
            }
            "file" => match value.as_str() {
                Some(path) if path.starts_with('/') => HealthCheck::file(path),
                _ => return Err(bad("an absolute path inside the container, e.g. \"/ready\"")),
            },
            "log" => match value.as_str() {
                Some(message) if !message.is_empty() => HealthCheck::log(message),
                _ => return Err(bad("a non-empty string")),
            },
            other => {
                return Err(
                    f.error(format!("entry {n}: `{other}` is not a kind of health check; expected one of: {KINDS}"))
                )
            }
        };
        out.push(check);
    }
    Ok(out)
}

/// A recovery policy the configuration can name (a fallback hook needs code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryKind {
    /// `automatic`.
    Automatic,
    /// `manual`.
    Manual,
}

fn fraction(f: &Found) -> Result<f64, Error> {
    let text = f.text("a number")?;
    text.parse::<f64>().ok().filter(|x| *x > 0.0 && *x <= 1.0).ok_or_else(|| {
        f.error(format!("{} is not a fraction of the limit; expected a number > 0 and <= 1, e.g. 0.8", f.shown()))
    })
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

/// Whether an image reference starts with a registry host, the way Docker
/// tells: the first component has a `.` or `:` or is `localhost`.
pub(crate) fn names_registry(image: &str) -> bool {
    match image.split_once('/') {
        Some((first, _)) => first.contains('.') || first.contains(':') || first == "localhost",
        None => false,
    }
}

fn seconds(f: &Found, zero_allowed: bool) -> Result<Duration, Error> {
    let text = f.text("a number of seconds")?;
    match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && (secs > 0.0 || (zero_allowed && secs == 0.0)) && secs < 1e9 => {
            Ok(Duration::from_secs_f64(secs))
        }
        _ => Err(f.error(format!(
            "{} is not a number of seconds; expected a number {} 0, e.g. 90",
            f.shown(),
            if zero_allowed { ">=" } else { ">" }
        ))),
    }
}

fn switch(f: &Found) -> Result<bool, Error> {
    let bad =
        || f.error(format!("{} is not a switch; expected true or false (env: also 1/0, yes/no, on/off)", f.shown()));
    match &f.raw {
        Raw::Toml(toml::Value::Boolean(b)) => Ok(*b),
        Raw::Toml(_) => Err(bad()),
        Raw::Text(t) => match t.trim().to_ascii_lowercase().as_str() {
            "" | "0" | "false" | "no" | "off" => Ok(false),
            "1" | "true" | "yes" | "on" => Ok(true),
            _ => Err(bad()),
        },
    }
}

/// Bytes the way docker's `--memory` reads them: `512m`, `1g`, `512MiB`,
/// `1GB`; every unit is binary.
pub(crate) fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return None,
    };
    let bytes = number * factor as f64;
    (bytes >= 1.0 && bytes.is_finite() && bytes < u64::MAX as f64).then_some(bytes as u64)
}

fn bytes(f: &Found) -> Result<u64, Error> {
    let text = f.text("a size")?;
    parse_bytes(&text).ok_or_else(|| {
        f.error(format!(
            "{} is not a size; expected bytes or a number with a unit k, m, g (or KiB, MiB, GiB), e.g. \"512MiB\"",
            f.shown()
        ))
    })
}

/// The nearest `cleanroom.toml` from `start` up to the workspace root (the
/// first directory up whose `Cargo.toml` has a `[workspace]` table; without
/// one, the topmost directory with a `Cargo.toml`).
pub(crate) fn find_file(start: &Path) -> Option<PathBuf> {
    let dirs: Vec<&Path> = start.ancestors().collect();
    let manifest = |d: &Path| std::fs::read_to_string(d.join("Cargo.toml")).ok();
    let limit = dirs
        .iter()
        .position(|d| manifest(d).is_some_and(|m| m.lines().any(|l| l.trim() == "[workspace]")))
        .or_else(|| dirs.iter().rposition(|d| d.join("Cargo.toml").is_file()))
        .unwrap_or(0);
    dirs[..=limit].iter().map(|d| d.join(CONFIG_FILE)).find(|p| p.is_file())
}

fn read_file(path: &Path) -> Result<toml::Table, Error> {
    let key = format!("{} ({CONFIG_ENV} or found from the crate's directory)", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| Error::Configuration {
        key: key.clone(),
        reason: format!("cannot read the file: {e}; fix its permissions, or point {CONFIG_ENV} at a readable file"),
    })?;
    text.parse::<toml::Table>().map_err(|e| Error::Configuration {
        key: path.display().to_string(),
        reason: format!("not valid TOML: {}", e.to_string().trim_end()),
    })
}

/// The layers of this process, read once.
pub(crate) fn layers() -> Result<&'static Layers, Error> {
    static LAYERS: OnceLock<Result<Layers, Error>> = OnceLock::new();
    LAYERS.get_or_init(|| Layers::load(Overrides::new())).as_ref().map_err(Clone::clone)
}

/// The settings of this process, read once.
pub(crate) fn current() -> Result<&'static Config, Error> {
    static CONFIG: OnceLock<Result<Config, Error>> = OnceLock::new();
    CONFIG.get_or_init(|| layers()?.config()).as_ref().map_err(Clone::clone)
}

impl Config {
    /// Reads the settings of this process: the file and the environment.
    pub fn from_env() -> Result<Config, Error> {
        current().cloned()
    }
}

/// The reference table of `docs/configuration.md`, generated from
/// [`SETTINGS`] and [`SERVICE_SETTINGS`].
pub fn reference_tables() -> String {
    let cell = |s: Option<&str>| s.map_or("—".to_string(), |s| format!("`{s}`"));
    let mut out = String::from("| key in `cleanroom.toml` | environment variable | values | default | meaning |\n| --- | --- | --- | --- | --- |\n");
    for s in SETTINGS {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            cell(s.key),
            cell(s.env),
            s.values,
            s.default,
            s.meaning
        ));
    }
    out.push_str("\n| key in `[services.<name>]` | environment variable | values | default | meaning |\n| --- | --- | --- | --- | --- |\n");
    for s in SERVICE_SETTINGS {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Option<(PathBuf, toml::Table)> {
        Some((PathBuf::from("/proj/cleanroom.toml"), text.parse().unwrap()))
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn cli(pairs: &[(&str, &str, &str)]) -> Overrides {
        pairs.iter().map(|(k, v, flag)| (k.to_string(), (v.to_string(), flag.to_string()))).collect()
    }

    fn error(file_text: &str, env_pairs: &[(&str, &str)]) -> String {
        Layers::from_parts(file(file_text), env(env_pairs), Overrides::new())
            .and_then(|l| l.config().map(|_| ()))
            .unwrap_err()
            .to_string()
    }

    mod should {
        use super::*;

        #[test]
        fn name_image_variables_in_upper_snake_case() {
            assert_eq!(image_env_var("postgres"), "CLEANROOM_POSTGRES_IMAGE");
            assert_eq!(image_env_var("my-web"), "CLEANROOM_MY_WEB_IMAGE");
            assert_eq!(service_env_var("my-web", "shm_size"), "CLEANROOM_MY_WEB_SHM_SIZE");
        }

        #[test]
        fn use_the_defaults_when_nothing_is_set() {
            let c = Layers::default().config().unwrap();
            assert_eq!(c.pull, PullPolicy::Missing);
            assert_eq!(c.keep, Keep::OnFailure);
            assert_eq!(c.pool, DEFAULT_POOL);
            assert!(!c.reuse && !c.no_reaper);
            assert_eq!(c.reuse_ttl, DEFAULT_REUSE_TTL);
            assert_eq!(c.reaper_grace, DEFAULT_REAPER_GRACE);
            assert_eq!((c.startup_timeout, c.report_json, c.image_prefix), (None, None, None));
            assert_eq!(c.report, ReportMode::Quiet);
        }

        #[test]
        fn read_every_pull_policy_from_the_file_and_the_environment() {
            let pull = |f: &str, e: &[(&str, &str)]| {
                Layers::from_parts(file(f), env(e), Overrides::new()).unwrap().config().unwrap().pull
            };
            assert_eq!(pull("", &[]), PullPolicy::Missing);
            assert_eq!(pull("[run]\npull = \"missing\"\n", &[]), PullPolicy::Missing);
            assert_eq!(pull("[run]\npull = \"always\"\n", &[]), PullPolicy::Always);
            assert_eq!(pull("[run]\npull = \"never\"\n", &[]), PullPolicy::Never);
            assert_eq!(pull("[run]\npull = \"never\"\n", &[("CLEANROOM_PULL", "always")]), PullPolicy::Always);
            assert_eq!(pull("", &[("CLEANROOM_PULL", "")]), PullPolicy::Missing);
            // Policies are lowercase words, as in docker's --pull.
            assert_eq!(PullPolicy::parse("Always"), None);
            let msg = error("[run]\npull = \"alway\"\n", &[]);
            assert!(msg.contains("\"alway\" is not a pull policy; expected one of: missing, always, never"), "{msg}");
        }

        #[test]
        fn let_each_layer_beat_the_one_below() {
            // keep: set in the file, the environment and the command line;
            // pool: file and environment; pull: the file alone; reuse_ttl: nowhere.
            let f = file("[run]\nkeep = \"never\"\npool = 1\npull = \"never\"\n");
            let e = env(&[("CLEANROOM_KEEP", "on-failure"), ("CLEANROOM_POOL", "2")]);
            let l = Layers::from_parts(f, e, cli(&[("CLEANROOM_KEEP", "always", "--keep")])).unwrap();
            let c = l.config().unwrap();
            assert_eq!(c.keep, Keep::Always);
            assert_eq!(l.origin("run.keep"), Origin::CommandLine);
            assert_eq!(c.pool, 2);
            assert_eq!(l.origin("run.pool"), Origin::Env);
            assert_eq!(c.pull, PullPolicy::Never);
            assert_eq!(l.origin("run.pull"), Origin::File(PathBuf::from("/proj/cleanroom.toml")));
            assert_eq!(c.reuse_ttl, DEFAULT_REUSE_TTL);
            assert_eq!(l.origin("run.reuse_ttl"), Origin::Default);
        }

        #[test]
        fn read_the_report_mode_from_every_layer() {
            let mode = |f: &str, e: &[(&str, &str)], c: &[(&str, &str, &str)]| {
                Layers::from_parts(file(f), env(e), cli(c)).unwrap().config().unwrap().report
            };
            assert_eq!(mode("[run]\nreport = \"full\"\n", &[], &[]), ReportMode::Full);
            assert_eq!(mode("[run]\nreport = \"full\"\n", &[("CLEANROOM_REPORT", "off")], &[]), ReportMode::Off);
            assert_eq!(
                mode("", &[("CLEANROOM_REPORT", "off")], &[("CLEANROOM_REPORT", "quiet", "--report")]),
                ReportMode::Quiet
            );
        }

        #[test]
        fn let_service_settings_follow_the_same_layers() {
            let f = file("[services.web]\nimage = \"a:1\"\nmemory = \"1g\"\ncpus = 2\n");
            let e = env(&[("CLEANROOM_WEB_IMAGE", "b:2"), ("CLEANROOM_WEB_CPUS", "0.5")]);
            let l = Layers::from_parts(f, e, cli(&[("CLEANROOM_WEB_IMAGE", "c:3", "--image web=c:3")])).unwrap();
            let o = l.service("web").unwrap();
            assert_eq!(o.image.as_deref(), Some("c:3"));
            assert_eq!(o.cpus, Some(0.5));
            assert_eq!(o.memory, Some(1 << 30));
            assert_eq!(l.service("other").unwrap(), ServiceOverride::default());
        }

        #[test]
        fn reject_an_unknown_key_naming_the_file_and_the_allowed_keys() {
            let msg = error("[run]\nkep = \"always\"\n", &[]);
            assert!(
                msg.contains(
                    "run.kep in /proj/cleanroom.toml: unknown key; expected one of: pull, startup_timeout, keep"
                ),
                "{msg}"
            );
            let msg = error("[services.postgres]\nmemroy = \"1g\"\n", &[]);
            assert!(msg.contains("services.postgres.memroy in /proj/cleanroom.toml: unknown key; expected one of: image, memory, cpus"), "{msg}");
            let msg = error("[runn]\n", &[]);
            assert!(msg.contains("runn in /proj/cleanroom.toml: unknown key; expected one of: run, services"), "{msg}");
        }

        #[test]
        fn reject_bad_values_naming_the_key_and_what_is_allowed() {
            let cases: &[(&str, &str)] = &[
                ("[run]\npull = \"sometimes\"", "run.pull in /proj/cleanroom.toml: \"sometimes\" is not a pull policy; expected one of: missing, always, never"),
                ("[run]\nkeep = \"forever\"", "run.keep in /proj/cleanroom.toml: \"forever\" is not a keep policy; expected one of: never, on-failure, always"),
                ("[run]\npool = -1", "run.pool in /proj/cleanroom.toml: -1 is not a number of databases; expected an integer >= 0"),
                ("[run]\nreuse = \"maybe\"", "run.reuse in /proj/cleanroom.toml: \"maybe\" is not a switch; expected true or false"),
                ("[run]\nno_reaper = 1", "run.no_reaper in /proj/cleanroom.toml: 1 is not a switch"),
                ("[run]\nstartup_timeout = 0", "run.startup_timeout in /proj/cleanroom.toml: 0 is not a number of seconds; expected a number > 0"),
                ("[run]\nreuse_ttl = \"soon\"", "run.reuse_ttl in /proj/cleanroom.toml: \"soon\" is not a number of seconds"),
                ("[run]\nreaper_grace = -1", "run.reaper_grace in /proj/cleanroom.toml: -1 is not a number of seconds; expected a number >= 0"),
                ("[run]\nimage_prefix = [1]", "run.image_prefix in /proj/cleanroom.toml: [1] is not a string"),
                ("[run]\nreport_json = {}", "run.report_json in /proj/cleanroom.toml: {} is not a path"),
                ("[run]\nreport = \"loud\"", "run.report in /proj/cleanroom.toml: \"loud\" is not a report mode; expected one of: quiet, full, off"),
                ("run = 1", "run in /proj/cleanroom.toml: 1 is not a table of run settings"),
                ("[services]\nweb = 1", "services.web in /proj/cleanroom.toml: 1 is not a table of service settings"),
                ("[services.web]\nmemory = \"lots\"", "services.web.memory in /proj/cleanroom.toml: \"lots\" is not a size; expected bytes or a number with a unit"),
                ("[services.web]\nshm_size = \"1x\"", "services.web.shm_size in /proj/cleanroom.toml: \"1x\" is not a size"),
                ("[services.web]\ncpus = 0", "services.web.cpus in /proj/cleanroom.toml: 0 is not a number of CPUs; expected a number > 0"),
                ("[services.web]\npids = 0", "services.web.pids in /proj/cleanroom.toml: 0 is not a process limit; expected an integer > 0"),
                ("[services.web]\nimage = 5\nargs = \"-c\"", "services.web.args in /proj/cleanroom.toml: \"-c\" is not an array of strings"),
                ("[services.web]\ncmd = [1]", "services.web.cmd in /proj/cleanroom.toml: [1] is not an array of strings"),
                ("[services.web]\nenv = [\"A=1\"]", "services.web.env in /proj/cleanroom.toml: [\"A=1\"] is not a table of strings"),
                ("[services.web]\nlabels = { a = 1 }", "services.web.labels in /proj/cleanroom.toml: { a = 1 } is not a table of strings"),
                ("[services.web]\ntmpfs = \"/x\"", "services.web.tmpfs in /proj/cleanroom.toml: \"/x\" is not a table of strings"),
            ];
            for (text, expected) in cases {
                let msg = error(text, &[]);
                assert!(msg.starts_with("invalid cleanroom configuration: "), "{msg}");
                assert!(msg.contains(expected), "for {text:?}\n  got: {msg}\n want: {expected}");
            }
        }

        #[test]
        fn name_the_variable_or_flag_a_bad_value_came_from() {
            let msg = error("", &[("CLEANROOM_PULL", "sometimes")]);
            assert_eq!(msg, "invalid cleanroom configuration: CLEANROOM_PULL: \"sometimes\" is not a pull policy; expected one of: missing, always, never");
            let msg = error("", &[("CLEANROOM_REUSE", "maybe")]);
            assert!(msg.contains("CLEANROOM_REUSE: \"maybe\" is not a switch"), "{msg}");
            let l = Layers::from_parts(None, env(&[]), cli(&[("CLEANROOM_KEEP", "forever", "--keep")])).unwrap();
            assert!(l.config().unwrap_err().to_string().contains("--keep: \"forever\" is not a keep policy"));
            let l = Layers::from_parts(None, env(&[("CLEANROOM_WEB_MEMORY", "big")]), Overrides::new()).unwrap();
            assert!(l.service("web").unwrap_err().to_string().contains("CLEANROOM_WEB_MEMORY: \"big\" is not a size"));
        }

        #[test]
        fn report_a_file_that_cannot_be_read_or_parsed() {
            let dir = std::env::temp_dir().join(format!("cleanroom-config-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let missing = dir.join("missing.toml");
            let msg = read_file(&missing).unwrap_err().to_string();
            assert!(msg.contains(&format!("{}", missing.display())) && msg.contains("cannot read the file"), "{msg}");
            assert!(msg.contains("CLEANROOM_CONFIG"), "{msg}");
            let broken = dir.join("broken.toml");
            std::fs::write(&broken, "[run\nkeep = 1").unwrap();
            let msg = read_file(&broken).unwrap_err().to_string();
            assert!(msg.contains(&format!("{}: not valid TOML", broken.display())), "{msg}");
            std::fs::remove_dir_all(&dir).unwrap();
        }

        #[test]
        fn find_the_nearest_file_up_to_the_workspace_root() {
            let root = std::env::temp_dir().join(format!("cleanroom-find-{}", std::process::id()));
            let member = root.join("ws/crates/app");
            std::fs::create_dir_all(&member).unwrap();
            std::fs::write(root.join("ws/Cargo.toml"), "[workspace]\nmembers = []\n").unwrap();
            std::fs::write(member.join("Cargo.toml"), "[package]\n").unwrap();
            std::fs::write(root.join(CONFIG_FILE), "").unwrap();
            assert_eq!(find_file(&member), None, "above the workspace root is not looked at");
            std::fs::write(root.join("ws").join(CONFIG_FILE), "").unwrap();
            assert_eq!(find_file(&member), Some(root.join("ws").join(CONFIG_FILE)));
            std::fs::write(member.join(CONFIG_FILE), "").unwrap();
            assert_eq!(find_file(&member), Some(member.join(CONFIG_FILE)));
            std::fs::remove_dir_all(&root).unwrap();
        }

        #[test]
        fn read_sizes_like_docker() {
            assert_eq!(parse_bytes("512MiB"), Some(512 << 20));
            assert_eq!(parse_bytes("1g"), Some(1 << 30));
            assert_eq!(parse_bytes("1GB"), Some(1 << 30));
            assert_eq!(parse_bytes("64m"), Some(64 << 20));
            assert_eq!(parse_bytes("1.5k"), Some(1536));
            assert_eq!(parse_bytes("4096"), Some(4096));
            assert_eq!(parse_bytes("lots"), None);
            assert_eq!(parse_bytes("1x"), None);
            assert_eq!(parse_bytes("0"), None);
        }

        #[test]
        fn prefix_only_images_that_name_no_registry() {
            let o = ServiceOverride::default();
            let def = |i: &str| GenericContainer::new(i);
            assert_eq!(
                o.clone().apply(def("postgres:17"), Some("localhost:5000/")).image,
                "localhost:5000/postgres:17"
            );
            assert_eq!(o.clone().apply(def("team/app:1"), Some("localhost:5000/")).image, "localhost:5000/team/app:1");
            assert_eq!(o.clone().apply(def("localhost:5000/app:1"), Some("m/")).image, "localhost:5000/app:1");
            assert_eq!(o.clone().apply(def("registry.local/app"), Some("m/")).image, "registry.local/app");
            let named = ServiceOverride { image: Some("mine:1".into()), ..Default::default() };
            assert_eq!(named.apply(def("postgres:17"), Some("localhost:5000/")).image, "mine:1");
        }

        #[test]
        fn apply_a_file_entry_over_a_definition() {
            let f = file(
                "[services.web]\nmemory = \"512MiB\"\ncpus = 1.5\npids = 64\nshm_size = \"1g\"\nargs = [\"-v\"]\nenv = { A = \"2\" }\nlabels = { team = \"db\" }\ntmpfs = { \"/data\" = \"size=1m\" }\n",
            );
            let l = Layers::from_parts(f, env(&[]), Overrides::new()).unwrap();
            let def = GenericContainer::new("img:1").with_cmd(["serve"]).with_env("A", "1").with_env("B", "1");
            let def = l.service("web").unwrap().apply(def, None);
            assert_eq!(def.cmd, vec!["serve".to_string(), "-v".to_string()]);
            assert_eq!(def.env.get("A").map(String::as_str), Some("2"));
            assert_eq!(def.env.get("B").map(String::as_str), Some("1"));
            assert_eq!(def.labels.get("team").map(String::as_str), Some("db"));
            assert_eq!(def.tmpfs.get("/data").map(String::as_str), Some("size=1m"));
            assert_eq!(def.limits.memory, Some(512 << 20));
            assert_eq!(def.limits.cpus, Some(1.5));
            assert_eq!(def.limits.pids, Some(64));
            assert_eq!(def.limits.shm_size, Some(1 << 30));
            let l =
                Layers::from_parts(file("[services.web]\ncmd = [\"a\"]\nargs = [\"b\"]\n"), env(&[]), Overrides::new())
                    .unwrap();
            assert_eq!(
                l.service("web").unwrap().apply(GenericContainer::new("i").with_cmd(["x"]), None).cmd,
                vec!["a", "b"]
            );
        }

        #[test]
        fn set_recovery_and_limit_actions_from_the_file_and_the_environment() {
            use crate::service::watch::{LimitAction, Recovery};
            let f = file("[services.web]\nrecovery = \"automatic\"\nmax_restarts = 1\non_limit = \"throttle\"\ncpu_threshold = 0.5\nhealth_interval = 2\n");
            let l =
                Layers::from_parts(f, env(&[("CLEANROOM_WEB_MEMORY_THRESHOLD", "0.75")]), Overrides::new()).unwrap();
            let def = l.service("web").unwrap().apply(GenericContainer::new("i"), None);
            assert!(matches!(def.watch.recovery, Recovery::Automatic { max_restarts: 1 }));
            assert_eq!(def.watch.limit_action, LimitAction::Throttle);
            assert_eq!((def.watch.cpu_threshold, def.watch.memory_threshold), (0.5, 0.75));
            assert_eq!(def.watch.health_interval, Duration::from_secs(2));
            let l = Layers::from_parts(file("[services.web]\nrecovery = \"manual\"\n"), env(&[]), Overrides::new())
                .unwrap();
            assert!(matches!(
                l.service("web").unwrap().apply(GenericContainer::new("i"), None).watch.recovery,
                Recovery::Manual
            ));

            let err = |text: &str| match Layers::from_parts(file(text), env(&[]), Overrides::new()) {
                Err(e) => e.to_string(),
                Ok(l) => l.service("web").unwrap_err().to_string(),
            };
            assert!(err("[services.web]\nrecovery = \"sometimes\"\n").contains("expected one of: automatic, manual"));
            assert!(err("[services.web]\non_limit = \"panic\"\n")
                .contains("expected one of: alert, throttle, restart, kill"));
            assert!(err("[services.web]\ncpu_threshold = 1.5\n").contains("expected a number > 0 and <= 1"));
            assert!(err("[services.web]\nmax_restarts = -1\n").contains("expected an integer >= 0"));
        }

        #[test]
        fn reject_bad_customizer_values_naming_the_entry_and_what_is_allowed() {
            let cases: &[(&str, &str)] = &[
                ("mounts = { type = \"bind\" }", "services.web.mounts in /proj/cleanroom.toml: { type = \"bind\" } is not an array of mounts; expected e.g. [{ type = \"bind\""),
                ("mounts = [5]", "services.web.mounts in /proj/cleanroom.toml: entry 1: 5 is not a mount; expected a table"),
                ("mounts = [{ type = \"nfs\", source = \"x\", target = \"/x\" }]", "entry 1: \"nfs\" is not a mount type; expected one of: bind, volume (tmpfs mounts have their own key, `tmpfs`)"),
                ("mounts = [{ source = \"x\", target = \"/x\" }]", "entry 1: `type` is missing; expected a mount type: one of bind, volume"),
                ("mounts = [{ type = \"volume\", target = \"/x\" }]", "entry 1: `source` is missing; expected a string: the host path (bind) or the volume name (volume)"),
                ("mounts = [{ type = \"volume\", source = \"v1\" }]", "entry 1: `target` is missing; expected an absolute path inside the container"),
                ("mounts = [{ type = \"volume\", source = \"v1\", target = \"x\" }]", "entry 1: `target` = \"x\" is not an absolute path inside the container"),
                ("mounts = [{ type = \"volume\", source = 1, target = \"/x\" }]", "entry 1: `source` = 1 is not a string"),
                ("mounts = [{ type = \"volume\", source = \"a/b\", target = \"/x\" }]", "entry 1: `source` = \"a/b\" is not a volume name; expected 2 or more of letters, digits"),
                ("mounts = [{ type = \"volume\", source = \"v1\", target = \"/x\", read_only = \"yes\" }]", "entry 1: `read_only` = \"yes\" is not a switch; expected true or false"),
                ("mounts = [{ type = \"volume\", source = \"v1\", target = \"/x\", readonly = true }]", "entry 1: unknown key `readonly`; expected one of: type, source, target, read_only"),
                ("mounts = [{ type = \"bind\", source = \"/\", target = \"/x\" }, { type = \"bind\", source = \"/no/such/dir\", target = \"/y\" }]", "services.web.mounts in /proj/cleanroom.toml: entry 2: the bind mount's host path /no/such/dir does not exist; create it or fix `source`"),
                ("mounts = [{ type = \"bind\", source = \"no-such-dir\", target = \"/y\" }]", "the bind mount's host path /proj/no-such-dir does not exist (a relative source is taken from the file's directory, /proj)"),
                ("ports = 8080", "services.web.ports in /proj/cleanroom.toml: 8080 is not an array of ports; expected a container port (1-65535) or \"host:container\", e.g. [8080, \"18080:80\"]"),
                ("ports = [0]", "services.web.ports in /proj/cleanroom.toml: entry 1: 0 is not a port; expected a container port (1-65535) or \"host:container\""),
                ("ports = [80, 70000]", "entry 2: 70000 is not a port"),
                ("ports = [\"18080-80\"]", "entry 1: \"18080-80\" is not a port"),
                ("ports = [\"18080:\"]", "entry 1: \"18080:\" is not a port"),
                ("ports = [\"x:80\"]", "entry 1: \"x:80\" is not a port"),
                ("ports = [1.5]", "entry 1: 1.5 is not a port"),
                ("entrypoint = 5", "services.web.entrypoint in /proj/cleanroom.toml: 5 is not an entrypoint; expected a string or a non-empty array of strings, e.g. [\"sh\", \"-c\"]"),
                ("entrypoint = []", "[] is not an entrypoint"),
                ("entrypoint = [\"sh\", 1]", "[\"sh\", 1] is not an entrypoint"),
                ("health = { tcp = 80 }", "services.web.health in /proj/cleanroom.toml: { tcp = 80 } is not an array of health checks; expected e.g. [{ tcp = 8080 }"),
                ("health = [{ tcp = 80, file = \"/x\" }]", "entry 1: { file = \"/x\", tcp = 80 } is not a health check; expected a table with exactly one of: tcp, http, command, file, log"),
                ("health = [\"tcp\"]", "entry 1: \"tcp\" is not a health check"),
                ("health = [{ udp = 53 }]", "entry 1: `udp` is not a kind of health check; expected one of: tcp, http, command, file, log"),
                ("health = [{ tcp = \"80\" }]", "entry 1: `tcp` = \"80\" is not a port (1-65535)"),
                ("health = [{ tcp = 80 }, { http = { path = \"/\" } }]", "entry 2: `http` = { path = \"/\" } is not a port or a table { port = 8080, path = \"/\", status = 200 }"),
                ("health = [{ http = { port = 80, path = \"health\" } }]", "entry 1: `http` path \"health\" is not a path; expected one starting with `/`, e.g. \"/health\""),
                ("health = [{ http = { port = 80, status = 999 } }]", "entry 1: `http` status 999 is not an HTTP status; expected 100 to 599"),
                ("health = [{ http = { port = 80, verb = \"HEAD\" } }]", "entry 1: unknown key `verb`; expected one of: port, path, status"),
                ("health = [{ command = \"true\" }]", "entry 1: `command` = \"true\" is not a non-empty array of strings"),
                ("health = [{ file = \"ready\" }]", "entry 1: `file` = \"ready\" is not an absolute path inside the container"),
                ("health = [{ log = \"\" }]", "entry 1: `log` = \"\" is not a non-empty string"),
                ("health_timeout = 0", "services.web.health_timeout in /proj/cleanroom.toml: 0 is not a number of seconds; expected a number > 0"),
                ("startup_timeout = \"soon\"", "services.web.startup_timeout in /proj/cleanroom.toml: \"soon\" is not a number of seconds"),
                ("init = [\"sh\", \"-c\", \"x\"]", "services.web.init in /proj/cleanroom.toml: entry 1: \"sh\" is not a command; expected a non-empty array of strings, e.g. [\"sh\", \"-c\", \"mkdir -p /data\"]"),
                ("init = \"true\"", "services.web.init in /proj/cleanroom.toml: \"true\" is not an array of commands; expected an array of arrays of strings"),
                ("init = [[]]", "entry 1: [] is not a command"),
                ("networks = \"backend\"", "services.web.networks in /proj/cleanroom.toml: \"backend\" is not an array of strings"),
            ];
            for (text, expected) in cases {
                let msg = error(&format!("[services.web]\n{text}\n"), &[]);
                assert!(msg.starts_with("invalid cleanroom configuration: "), "{msg}");
                assert!(msg.contains(expected), "for {text:?}\n  got: {msg}\n want: {expected}");
            }
            let l =
                Layers::from_parts(None, env(&[("CLEANROOM_WEB_STARTUP_TIMEOUT", "-1")]), Overrides::new()).unwrap();
            assert!(l
                .service("web")
                .unwrap_err()
                .to_string()
                .contains("CLEANROOM_WEB_STARTUP_TIMEOUT: \"-1\" is not a number of seconds"));
            let l = Layers::from_parts(None, env(&[("CLEANROOM_WEB_HEALTH_TIMEOUT", "x")]), Overrides::new()).unwrap();
            assert!(l
                .service("web")
                .unwrap_err()
                .to_string()
                .contains("CLEANROOM_WEB_HEALTH_TIMEOUT: \"x\" is not a number of seconds"));
        }

        #[test]
        fn apply_every_customizer_of_the_file_over_a_definition() {
            use crate::service::definition::MountKind;
            let dir = std::env::temp_dir().join(format!("cleanroom-customize-{}", std::process::id()));
            std::fs::create_dir_all(dir.join("fixtures")).unwrap();
            let text = r#"
[services.web]
mounts = [
  { type = "bind", source = "fixtures", target = "/data", read_only = true },
  { type = "volume", source = "web-cache", target = "/cache" },
]
ports = [8080, "18080:80", "9090"]
entrypoint = ["sh", "-c"]
health = [{ tcp = 8080 }, { http = { port = 80, path = "/up", status = 204 } }, { http = 81 }, { command = ["test", "-e", "/ready"] }, { file = "/ready" }, { log = "started" }]
health_timeout = 3
startup_timeout = 30
init = [["touch", "/a"], ["touch", "/b"]]
networks = ["backend", "frontend"]
"#;
            let f = Some((dir.join(CONFIG_FILE), text.parse().unwrap()));
            let l = Layers::from_parts(f, env(&[("CLEANROOM_WEB_HEALTH_TIMEOUT", "4")]), Overrides::new()).unwrap();
            let code = GenericContainer::new("img:1")
                .with_entrypoint("bash")
                .with_health_check(HealthCheck::log("from code"))
                .with_init_command(["true"])
                .with_volume("old", "/data");
            let def = l.service("web").unwrap().apply(code, None);
            let fixtures = dir.join("fixtures").display().to_string();
            assert_eq!(
                def.mounts,
                vec![Mount::bind(fixtures, "/data").read_only(), Mount::volume("web-cache", "/cache")]
            );
            assert_eq!(def.mounts[0].kind(), MountKind::Bind);
            assert_eq!(def.ports, vec![8080, 80, 9090]);
            assert_eq!(def.fixed_ports, BTreeMap::from([(80, 18080)]));
            assert_eq!(def.entrypoint, vec!["sh", "-c"]);
            let four = Duration::from_secs(4);
            let expected = vec![
                HealthCheck::tcp(8080).with_timeout(four),
                HealthCheck::http(80, "/up").with_status(204).with_timeout(four),
                HealthCheck::http(81, "/").with_timeout(four),
                HealthCheck::command(["test", "-e", "/ready"]).with_timeout(four),
                HealthCheck::file("/ready").with_timeout(four),
                HealthCheck::log("started").with_timeout(four),
            ];
            assert_eq!(
                def.health_checks, expected,
                "the file's checks replace the code's; the environment's timeout beats the file's"
            );
            assert_eq!(def.startup_timeout, Duration::from_secs(30));
            assert_eq!(
                def.init,
                vec![vec!["true".to_string()], vec!["touch".into(), "/a".into()], vec!["touch".into(), "/b".into()]]
            );
            assert_eq!(def.networks, vec!["backend", "frontend"]);
            let l = Layers::from_parts(
                file("[services.web]\nentrypoint = \"/bin/sh\"\nhealth_timeout = 5\n"),
                env(&[]),
                Overrides::new(),
            )
            .unwrap();
            let def = l
                .service("web")
                .unwrap()
                .apply(GenericContainer::new("i").with_health_check(HealthCheck::tcp(1)), None);
            assert_eq!(def.entrypoint, vec!["/bin/sh"]);
            assert_eq!(
                def.health_checks,
                vec![HealthCheck::tcp(1).with_timeout(Duration::from_secs(5))],
                "without `health` the code's checks stay"
            );
            std::fs::remove_dir_all(dir).unwrap();
        }

        #[test]
        fn list_every_setting_in_the_reference_page() {
            let page = include_str!("../../../docs/configuration.md");
            let tables = reference_tables();
            assert!(
                page.contains(&tables),
                "docs/configuration.md does not contain the tables generated from SETTINGS and SERVICE_SETTINGS; \
                 regenerate them with `cargo test -p cleanroom-runtime -- --ignored bless_reference_page`\n{tables}"
            );
        }
    }

    #[test]
    fn facade_docs_name_every_variable_and_key() {
        let facade = include_str!("../../../cleanroom/src/lib.rs");
        for s in SETTINGS {
            for name in [s.env, s.key].into_iter().flatten() {
                assert!(facade.contains(&format!("`{name}`")), "cleanroom/src/lib.rs does not document {name}");
            }
        }
    }

    /// Rewrites the generated tables of `docs/configuration.md`.
    #[test]
    #[ignore = "rewrites docs/configuration.md: run it on purpose after changing SETTINGS"]
    fn bless_reference_page() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
        let page = std::fs::read_to_string(&path).unwrap();
        let (start, end) = ("<!-- settings:start -->\n", "<!-- settings:end -->");
        let (head, rest) = page.split_once(start).expect("the page has a settings:start marker");
        let (_, tail) = rest.split_once(end).expect("the page has a settings:end marker");
        std::fs::write(&path, format!("{head}{start}{}{end}{tail}", reference_tables())).unwrap();
    }

    #[test]
    fn keep_a_database_by_the_outcome_and_the_policy() {
        assert!(!Keep::OnFailure.keeps(false) && Keep::OnFailure.keeps(true));
        assert!(!Keep::Never.keeps(true) && Keep::Always.keeps(false));
    }
}
