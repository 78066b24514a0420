//! The layers a value can come from (file, environment, command line), where
//! each value was found, and the file's discovery and checks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use super::*;
use crate::docker::PullPolicy;
use crate::error::Error;
use crate::service::migration_tool::MigrationTool;

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
pub(super) enum Raw {
    Text(String),
    Toml(toml::Value),
}

/// One value with the name it was given under, for error messages.
#[derive(Debug, Clone)]
pub(super) struct Located {
    pub(super) raw: Raw,
    pub(super) origin: Origin,
    /// `run.keep in /path/cleanroom.toml`, `CLEANROOM_KEEP`, `--keep`.
    pub(super) name: String,
}

impl Located {
    pub(super) fn error(&self, reason: impl Into<String>) -> Error {
        Error::Configuration { key: self.name.clone(), reason: reason.into() }
    }

    pub(super) fn shown(&self) -> String {
        match &self.raw {
            Raw::Text(t) => format!("{t:?}"),
            Raw::Toml(v) => v.to_string(),
        }
    }

    /// The value as text, for scalars; tables and arrays are an error.
    pub(super) fn text(&self, expected: &str) -> Result<String, Error> {
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
        // Only cleanroom's variables, and only as text: a variable of
        // someone else's that is not UTF-8 is none of cleanroom's business.
        let env: BTreeMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v)))
            .filter(|(k, _)| k.starts_with("CLEANROOM_"))
            .map(|(k, v)| (k, v.to_string_lossy().into_owned()))
            .collect();
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
        layers.check_env()?;
        Ok(layers)
    }

    /// The file that was read.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_ref().map(|(p, _)| p.as_path())
    }

    /// The value of `key` (a file key such as `run.keep`) or its variable,
    /// from the highest layer that sets it.
    fn get(&self, key: Option<&str>, env: Option<&str>) -> Option<Located> {
        if let Some(env) = env {
            if let Some((v, flag)) = self.overrides.get(env) {
                return Some(Located { raw: Raw::Text(v.clone()), origin: Origin::CommandLine, name: flag.clone() });
            }
            if let Some(v) = self.env.get(env).filter(|v| !v.trim().is_empty()) {
                return Some(Located { raw: Raw::Text(v.clone()), origin: Origin::Env, name: env.to_string() });
            }
        }
        let (path, table) = self.file.as_ref()?;
        let mut parts = key?.split('.');
        let mut value = table.get(parts.next()?)?;
        for part in parts {
            value = value.as_table()?.get(part)?;
        }
        Some(Located {
            raw: Raw::Toml(value.clone()),
            origin: Origin::File(path.clone()),
            name: format!("{} in {}", key?, path.display()),
        })
    }

    fn run_setting(&self, key: &str) -> Option<Located> {
        let s = SETTINGS.iter().find(|s| s.key == Some(key) || (s.key.is_none() && s.env == Some(key)))?;
        self.get(s.key, s.env)
    }

    /// A run setting that has a second name (`run.cache_ttl` is
    /// `caches.volume.ttl` too): the name given in the higher layer wins;
    /// both in the same layer is an error naming both.
    fn aliased(&self, key: &str, alias: &str) -> Result<Option<Located>, Error> {
        let rank = |f: &Located| match f.origin {
            Origin::Default => 0,
            Origin::File(_) => 1,
            Origin::Env => 2,
            Origin::CommandLine => 3,
        };
        match (self.run_setting(key), self.run_setting(alias)) {
            (Some(main), Some(other)) if rank(&main) == rank(&other) => {
                Err(other.error(format!("is another name for {} (given too); keep one of them", main.name)))
            }
            (Some(main), Some(other)) => Ok(Some(if rank(&main) > rank(&other) { main } else { other })),
            (main, other) => Ok(main.or(other)),
        }
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
    /// Every `CLEANROOM_*` variable must be a run setting's or a service
    /// setting's (`CLEANROOM_<SERVICE>_<KEY>`, for any service: a binary
    /// knows only its own services): a typo is an error naming the closest
    /// known variable, not a setting silently ignored.
    fn check_env(&self) -> Result<(), Error> {
        for name in self.env.keys().chain(self.overrides.keys()) {
            if let Err(closest) = known_variable(name) {
                return Err(Error::Configuration {
                    key: name.clone(),
                    reason: format!(
                        "no setting is read from this variable; did you mean {closest}? (the settings and their \
                         variables are in docs/configuration.md)"
                    ),
                });
            }
        }
        Ok(())
    }

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
                        self.schema(name)?;
                    }
                }
                "caches" => {
                    let caches = self.table(value, "caches", "a table of cache layers")?;
                    let layers = ["container", "image", "network", "volume"];
                    for (layer, entry) in caches {
                        if !layers.contains(&layer.as_str()) {
                            return Err(unknown(format!("caches.{layer}"), layers.to_vec()));
                        }
                        let prefix = format!("caches.{layer}.");
                        let allowed: Vec<&str> =
                            SETTINGS.iter().filter_map(|s| s.key?.strip_prefix(prefix.as_str())).collect();
                        let entry = self.table(entry, &format!("caches.{layer}"), "a table of cache settings")?;
                        for key in entry.keys() {
                            if !allowed.contains(&key.as_str()) {
                                return Err(unknown(format!("caches.{layer}.{key}"), allowed));
                            }
                        }
                    }
                }
                other => return Err(unknown(other.to_string(), vec!["run", "services", "caches"])),
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
        let cache_ttl_and_size = (
            self.aliased("run.cache_ttl", "caches.volume.ttl")?
                .map(|f| seconds(&f, CACHE_TTL))
                .transpose()?
                .unwrap_or(DEFAULT_CACHE_TTL),
            self.aliased("run.cache_size", "caches.volume.max_size")?
                .map(|f| bytes(&f))
                .transpose()?
                .unwrap_or(DEFAULT_CACHE_SIZE),
        );
        Ok(Config {
            pull,
            startup_timeout: self.run_setting("run.startup_timeout").map(|f| seconds(&f, STARTUP)).transpose()?,
            keep,
            pool,
            reuse: self.run_setting("run.reuse").map(|f| switch(&f)).transpose()?.unwrap_or(false),
            reuse_ttl: self
                .run_setting("run.reuse_ttl")
                .map(|f| seconds(&f, REUSE_TTL))
                .transpose()?
                .unwrap_or(DEFAULT_REUSE_TTL),
            reaper_grace: self
                .run_setting("run.reaper_grace")
                .map(|f| seconds(&f, GRACE))
                .transpose()?
                .unwrap_or(DEFAULT_REAPER_GRACE),
            no_reaper: self.run_setting("run.no_reaper").map(|f| switch(&f)).transpose()?.unwrap_or(false),
            engine: match self.run_setting("run.engine") {
                None => EngineChoice::Docker,
                Some(f) => EngineChoice::parse(f.text("an engine")?.trim()).ok_or_else(|| {
                    f.error(format!("{} is not an engine; expected one of: docker, local, auto", f.shown()))
                })?,
            },
            postgres_bin: self
                .run_setting("run.postgres_bin")
                .map(|f| f.text("a directory"))
                .transpose()?
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
            report,
            report_json: self.run_setting("run.report_json").map(|f| f.text("a path")).transpose()?.map(PathBuf::from),
            image_prefix: self
                .run_setting("run.image_prefix")
                .map(|f| f.text("a string"))
                .transpose()?
                .filter(|p| !p.is_empty()),
            volume_cache: self.run_setting("run.volume_cache").map(|f| switch(&f)).transpose()?.unwrap_or(true),
            cache_ttl: cache_ttl_and_size.0,
            cache_size: cache_ttl_and_size.1,
            caches: self.cache_policies(&cache_ttl_and_size)?,
            remote_idle_ttl: self
                .run_setting("run.remote_idle_ttl")
                .map(|f| seconds(&f, REMOTE_IDLE_TTL))
                .transpose()?
                .unwrap_or(DEFAULT_REMOTE_IDLE_TTL),
            redis_lease_ttl: self
                .run_setting("run.redis_lease_ttl")
                .map(|f| seconds(&f, REDIS_LEASE_TTL))
                .transpose()?
                .unwrap_or(DEFAULT_REDIS_LEASE_TTL),
            file: self.file().map(Path::to_path_buf),
        })
    }

    /// `[caches.<layer>]`, with the volume layer's TTL and size from
    /// `run.cache_ttl` and `run.cache_size`.
    fn cache_policies(&self, (volume_ttl, volume_size): &(Duration, u64)) -> Result<CachePolicies, Error> {
        use crate::eviction::{Cap, Eviction};
        let strategy = |layer: &str, default: Eviction| -> Result<Eviction, Error> {
            self.run_setting(&format!("caches.{layer}.eviction"))
                .map(|f| eviction(&f))
                .transpose()
                .map(|e| e.unwrap_or(default))
        };
        let max_count = |layer: &str| -> Result<Option<Cap>, Error> {
            Ok(self.run_setting(&format!("caches.{layer}.max_count")).map(|f| count(&f)).transpose()?.map(Cap::Count))
        };
        Ok(CachePolicies {
            container: LayerPolicy::new(strategy("container", Eviction::Lru)?, None, max_count("container")?),
            image: LayerPolicy::new(
                strategy("image", Eviction::Ttl)?,
                self.run_setting("caches.image.ttl").map(|f| seconds(&f, CACHE_TTL)).transpose()?,
                self.run_setting("caches.image.max_size").map(|f| bytes(&f)).transpose()?.map(Cap::Bytes),
            ),
            network: LayerPolicy::new(strategy("network", Eviction::Lfu)?, None, max_count("network")?),
            volume: LayerPolicy::new(
                strategy("volume", Eviction::Lru)?,
                Some(*volume_ttl),
                Some(Cap::Bytes(*volume_size)),
            ),
        })
    }

    fn service_setting(&self, service: &str, key: &str) -> Option<Located> {
        let s = SERVICE_SETTINGS.iter().find(|s| s.key == Some(key))?;
        let env = s.env.map(|_| service_env_var(service, key));
        let file_key = format!("services.{service}.{key}");
        self.get(Some(&file_key), env.as_deref())
    }

    /// What the layers change in `service`'s definition.
    pub fn service(&self, service: &str) -> Result<ServiceOverride, Error> {
        let image_var = service_env_var(service, "image");
        if self.env.get(&image_var).is_some_and(|v| v.trim().is_empty()) {
            return Err(empty_image(image_var));
        }
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
            url: get("url")
                .map(|f| {
                    let text = f.text("a URL")?;
                    // The scheme says which server; the service's kind is
                    // checked against it when it starts.
                    let kind = match (service, text.starts_with("redis")) {
                        ("postgres", _) | (_, false) => crate::external::ServerKind::Postgres,
                        _ => crate::external::ServerKind::Redis,
                    };
                    crate::external::ServerUrl::parse(kind, &text).map_err(|reason| f.error(reason))
                })
                .transpose()?,
            databases: get("databases")
                .map(|f| {
                    let text = f.text("a range of databases")?;
                    crate::external::redis::DatabaseRange::parse(&text).map_err(|reason| f.error(reason))
                })
                .transpose()?,
            image: match get("image") {
                None => None,
                Some(f) => match f.text("an image reference")? {
                    image if image.is_empty() => return Err(empty_image(f.name.clone())),
                    image => Some(image),
                },
            },
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
            disk_read_bps: get("disk_read_bps").map(|f| bytes(&f)).transpose()?,
            disk_write_bps: get("disk_write_bps").map(|f| bytes(&f)).transpose()?,
            disk_read_iops: get("disk_read_iops").map(|f| iops(&f)).transpose()?,
            disk_write_iops: get("disk_write_iops").map(|f| iops(&f)).transpose()?,
            disk_device: get("disk_device")
                .map(|f| {
                    let device = f.text("a device path")?;
                    if device.starts_with("/dev/") {
                        Ok(device)
                    } else {
                        Err(f.error(format!(
                            "{} is not a block device; expected a path such as \"/dev/sda\"",
                            f.shown()
                        )))
                    }
                })
                .transpose()?,
            disk_size: get("disk_size").map(|f| bytes(&f)).transpose()?,
            network_latency: get("network_latency").map(|f| seconds(&f, NETWORK_DELAY)).transpose()?,
            network_jitter: get("network_jitter").map(|f| seconds(&f, NETWORK_DELAY)).transpose()?,
            network_upload: get("network_upload").map(|f| bytes(&f)).transpose()?,
            network_download: get("network_download").map(|f| bytes(&f)).transpose()?,
            network_reset_rate: get("network_reset_rate").map(|f| share(&f)).transpose()?,
            env: table("env")?,
            cmd: strings("cmd")?,
            local: strings("local")?,
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
            health_interval: get("health_interval").map(|f| seconds(&f, HEALTH_INTERVAL)).transpose()?,
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
            health_timeout: get("health_timeout").map(|f| seconds(&f, HEALTH_TIMEOUT)).transpose()?,
            startup_timeout: get("startup_timeout").map(|f| seconds(&f, STARTUP)).transpose()?,
            init: match get("init") {
                // A path: the SQL a Postgres room loads, read by `schema`.
                Some(f) if matches!(f.raw, Raw::Toml(toml::Value::String(_))) => {
                    if service != "postgres" {
                        return Err(f.error(format!(
                            "{} is a path, which only postgres takes (its init SQL); init of {service} \
                             is an array of commands, e.g. [[\"sh\", \"-c\", \"mkdir -p /data\"]]",
                            f.shown()
                        )));
                    }
                    Vec::new()
                }
                Some(f) => commands(&f)?,
                None => Vec::new(),
            },
            networks: strings("networks")?.unwrap_or_default(),
        })
    }
}

/// The schema `[services.postgres]` gives every Postgres room whose test
/// names none: `migrations`, `init` (a path) and `migrations_tool`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaSetting {
    /// The migrations directory, absolute.
    pub migrations: Option<PathBuf>,
    /// The init SQL file, absolute.
    pub init: Option<PathBuf>,
    /// The migration tool, when named.
    pub tool: Option<MigrationTool>,
    /// Where it was set, for messages: `[services.postgres] in /path/cleanroom.toml`.
    pub origin: String,
    /// Where its relative paths start, for messages.
    pub relative_to: String,
}

impl Layers {
    /// The default schema of `service`'s rooms; `None` when nothing sets
    /// one. Relative paths start from the file's directory (from the
    /// crate's directory when a variable gives them). Only `postgres` takes one.
    pub fn schema(&self, service: &str) -> Result<Option<SchemaSetting>, Error> {
        let get = |key: &str| self.service_setting(service, key);
        let init = get("init").filter(|f| matches!(f.raw, Raw::Toml(toml::Value::String(_))));
        let (migrations, tool) = (get("migrations"), get("migrations_tool"));
        if service != "postgres" {
            if let Some(f) = migrations.iter().chain(&tool).next() {
                return Err(f.error("applies to postgres only: the other services' rooms have no schema"));
            }
            return Ok(None);
        }
        let path = |f: &Located| -> Result<PathBuf, Error> {
            let text = f.text("a path")?;
            if text.is_empty() {
                return Err(f.error("is empty; give a path, relative to the file's directory"));
            }
            let base = match &f.origin {
                Origin::File(file) => file.parent().map(Path::to_path_buf).unwrap_or_default(),
                _ => crate::util::paths::crate_dir("."),
            };
            Ok(base.join(text))
        };
        let tool = tool
            .map(|f| {
                let text = f.text("a migration tool")?;
                MigrationTool::named(&text).ok_or_else(|| {
                    let names: Vec<&str> = MigrationTool::ALL.iter().map(|t| t.name()).collect();
                    f.error(format!("{} is not a migration tool; expected one of: {}", f.shown(), names.join(", ")))
                })
            })
            .transpose()?;
        let first = migrations.as_ref().or(init.as_ref());
        let Some(first) = first else {
            if let Some(f) = get("migrations_tool") {
                return Err(f.error("names the tool of migrations that are not given; set migrations too"));
            }
            return Ok(None);
        };
        let (origin, relative_to) = match &first.origin {
            Origin::File(file) => (
                format!("[services.{service}] in {}", file.display()),
                format!("relative paths in {} start from that file's directory", file.display()),
            ),
            _ => (first.name.clone(), format!("relative paths in {} start from the crate's directory", first.name)),
        };
        Ok(Some(SchemaSetting {
            migrations: migrations.as_ref().map(path).transpose()?,
            init: init.as_ref().map(path).transpose()?,
            tool,
            origin,
            relative_to,
        }))
    }
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

pub(super) fn read_file(path: &Path) -> Result<toml::Table, Error> {
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

/// What this process's layers change in `service`'s definition
/// ([`Layers::service`]), worked out once per service: a start asks more than
/// once (is it an existing server, what is its definition).
pub(crate) fn service_overrides(service: &str) -> Result<ServiceOverride, Error> {
    static MEMO: std::sync::Mutex<Vec<(String, Result<ServiceOverride, Error>)>> = std::sync::Mutex::new(Vec::new());
    let mut memo = MEMO.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, found)) = memo.iter().find(|(name, _)| name == service) {
        return found.clone();
    }
    let found = layers()?.service(service);
    memo.push((service.to_string(), found.clone()));
    found
}

/// The settings of this process, read once.
pub(crate) fn current() -> Result<&'static Config, Error> {
    static CONFIG: OnceLock<Result<Config, Error>> = OnceLock::new();
    CONFIG.get_or_init(|| layers()?.config()).as_ref().map_err(Clone::clone)
}

/// Variables cleanroom sets for itself (the reaper's), and
/// `CLEANROOM_REAPER_TRANSPORT`, which picks Windows's reaper transport on
/// Unix for the tests of it (`util::os::socket`).
const INTERNAL_VARIABLES: &[&str] = &["CLEANROOM_REAPER", "CLEANROOM_REAPER_RUNNER", "CLEANROOM_REAPER_TRANSPORT"];

/// `Ok` when `name` is a variable some setting reads; else the closest one
/// that is.
pub(super) fn known_variable(name: &str) -> Result<(), String> {
    // Every process reads its variables at start: the known ones are told
    // without making a list.
    let run = || SETTINGS.iter().filter_map(|s| s.env).chain([CONFIG_ENV]).chain(INTERNAL_VARIABLES.iter().copied());
    if run().any(|v| v == name) {
        return Ok(());
    }
    // CLEANROOM_<SERVICE>_<KEY>: the service is any non-empty name.
    let suffixes = || SERVICE_SETTINGS.iter().filter_map(|s| s.env?.strip_prefix("CLEANROOM_<SERVICE>_"));
    let rest = name.strip_prefix("CLEANROOM_").unwrap_or(name);
    let is_service_variable = |suffix: &str| {
        rest.strip_suffix(suffix).and_then(|s| s.strip_suffix('_')).is_some_and(|service| !service.is_empty())
    };
    if suffixes().any(is_service_variable) {
        return Ok(());
    }
    let run: Vec<&str> = run().collect();
    let suffixes: Vec<&str> = suffixes().collect();
    // The closest: a run variable, or this service's variable with the
    // closest key (the service taken as all but as many words as the key has).
    let words: Vec<&str> = rest.split('_').collect();
    let mut candidates: Vec<String> = run.iter().map(|s| s.to_string()).collect();
    for suffix in &suffixes {
        let n = suffix.split('_').count();
        if words.len() > n {
            candidates.push(format!("CLEANROOM_{}_{suffix}", words[..words.len() - n].join("_")));
        }
    }
    let closest = candidates.into_iter().min_by_key(|c| edit_distance(name, c)).unwrap_or_default();
    Err(closest)
}

/// Levenshtein distance, for "did you mean".
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let here = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(here + 1);
            prev = here;
        }
    }
    row[b.len()]
}

/// An image setting given but empty: most likely a variable meant to be set
/// that was not, so the default is not taken silently.
fn empty_image(name: String) -> Error {
    Error::Configuration {
        key: name,
        reason: "is empty; give an image reference (e.g. \"postgres:17-alpine\"), or unset it to use the \
                 definition's"
            .into(),
    }
}
