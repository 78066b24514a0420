//! Services on the local engine (`run.engine = "local"`, docs/engines.md):
//! which server a definition asks for, starting it once per run (or
//! attaching to the one another process of the run started), and removing
//! a run's servers at its end, or after it was killed.
//!
//! The processes of a run share each server as they share a container:
//! `runs/<session>/local/<service>/` in the runtime directory holds a lock
//! and the server's record (pid, start time, ports, password). Whoever
//! takes the lock first and finds no live server starts one and records it;
//! the others wait on the lock, then attach from the record. The server's
//! files live in `dirs::session_dir(session)`, which the run's reaper
//! removes with the servers; a reaper that starts removes those of runs
//! whose lock nobody holds any more (a run killed with `kill -9`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::registry::{Registry, RunningService};
use super::start::{StartRequest, Started};
use crate::config::{Config, EngineChoice};
use crate::engine::{EngineError, EngineFuture, EngineKind, Owned, Provisioner};
use crate::error::Error;
use crate::local::{args, binaries, dirs, process, LocalEngine, Server, STOP_GRACE};
use crate::metrics::Phases;
use crate::service::definition::{GenericContainer, REDIS_PASSWORD_ENV};
use crate::service::health::{HealthCheck, Probe};

/// The engine `auto` settled on in this process: `true` for local.
static AUTO: tokio::sync::OnceCell<bool> = tokio::sync::OnceCell::const_new();

/// Servers this process started for itself alone (no reaper): it stops
/// them at exit.
static OWN: Mutex<Vec<(Server, PathBuf)>> = Mutex::new(Vec::new());

/// How many ports a server is tried on when the one picked was taken
/// between picking and listening.
const PORT_ATTEMPTS: u32 = 3;

/// What the local engine runs for a definition.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// The built-in Postgres: `initdb` and `postgres`.
    Postgres,
    /// The built-in Redis: `redis-server`.
    Redis,
    /// The definition's local command.
    Command(Vec<String>),
}

/// A definition's own local command first; else the built-ins, known by
/// their checks (a real Postgres login, a Redis `PING`); else none.
fn kind_of(name: &str, def: &GenericContainer) -> Result<Kind, Error> {
    if let Some(cmd) = &def.local_command {
        if cmd.is_empty() {
            return Err(Error::Configuration {
                key: format!("service `{name}`, its local command"),
                reason: "it is empty; name a program and its arguments".into(),
            });
        }
        return Ok(Kind::Command(cmd.clone()));
    }
    let probes = || def.health_checks.iter().map(|c| &c.probe);
    if probes().any(|p| *p == Probe::PostgresQuery) {
        return Ok(Kind::Postgres);
    }
    if probes().any(|p| matches!(p, Probe::RedisPing { .. })) {
        return Ok(Kind::Redis);
    }
    Err(image_only(name, &def.image))
}

/// The error of a service the local engine cannot run: it has an image only.
fn image_only(name: &str, image: &str) -> Error {
    Error::Configuration {
        key: format!("service `{name}`"),
        reason: format!(
            "it is defined by the image {image} and the local engine (CLEANROOM_ENGINE=local) runs no images; give \
             it a command to run on this machine with `GenericContainer::with_local_command([...])` or `local = \
             [\"program\", \"arg\", ...]` under [services.{name}] in cleanroom.toml, or run it on Docker \
             (CLEANROOM_ENGINE=docker)"
        ),
    }
}

impl Registry {
    /// Whether this process runs its services on the local engine:
    /// `run.engine`, and under `auto` whether Docker answers (asked once, and
    /// said on stderr when it does not).
    pub(super) async fn runs_locally(&self) -> Result<bool, Error> {
        let config = self.config.as_ref().map_err(Clone::clone)?;
        match config.engine {
            EngineChoice::Docker => Ok(false),
            EngineChoice::Local => Ok(true),
            EngineChoice::Auto => Ok(*AUTO
                .get_or_init(|| async {
                    match self.docker().await {
                        Ok(_) => false,
                        Err(e) => {
                            let why = match e {
                                Error::DockerUnavailable { host, reason } => format!("at {host}: {reason}"),
                                other => other.to_string(),
                            };
                            crate::util::say!("cleanroom: CLEANROOM_ENGINE=auto: docker does not answer ({why}); the services run from this machine's binaries (the local engine, docs/engines.md)");
                            true
                        }
                    }
                })
                .await),
        }
    }
}

/// The local engine as a start's engine: servers as processes of this
/// machine, one per run behind the service's lock and record.
#[derive(Debug, Default)]
pub(crate) struct LocalDriver;

impl<'s> Provisioner<StartRequest<'s>, Started, Error> for LocalDriver {
    fn kind(&self) -> EngineKind {
        EngineKind::Local
    }

    /// Who starts the server is decided under its lock, in `create`: a
    /// process that finds it ready there attaches.
    fn attach<'a>(&'a self, _request: &'a StartRequest<'s>) -> EngineFuture<'a, Result<Option<Started>, Error>> {
        Box::pin(async { Ok(None) })
    }

    /// Starts the server, or attaches to the one another process of the run
    /// started.
    fn create<'a>(&'a self, request: &'a StartRequest<'s>) -> EngineFuture<'a, Result<Started, Error>> {
        Box::pin(async move {
            let (name, started) = (request.name, request.started);
            let registry = request.registry;
            let config = registry.config.clone()?;
            let session = registry.session()?.to_string();
            let shared = registry.reaper_attached();
            let def = request.def.clone();
            let kind = kind_of(name, &def)?;
            let (service, created_here) = start_or_attach(name, def, &kind, &config, &session, shared, started).await?;
            *request.slot.container_id.lock().unwrap_or_else(|e| e.into_inner()) = Some(service.id.clone());
            let phases =
                Phases { start_ms: Some(crate::metrics::ms(started.elapsed())), created_here, ..Phases::default() };
            Ok(Started { service, phases })
        })
    }

    /// The local servers this runtime directory's runs recorded.
    fn list_owned(&self) -> EngineFuture<'_, Result<Vec<Owned>, EngineError>> {
        Box::pin(async { Ok(recorded_servers().into_iter().map(|(owned, _)| owned).collect()) })
    }

    /// Stops the recorded server with that id and forgets it.
    fn remove_owned<'a>(&'a self, id: &'a str) -> EngineFuture<'a, Result<(), EngineError>> {
        Box::pin(async move {
            for (owned, path) in recorded_servers() {
                if owned.id == id {
                    if let Some(server) = read_record(&path) {
                        let _ = tokio::task::spawn_blocking(move || stop_server(&server)).await;
                    }
                    if let Some(dir) = path.parent() {
                        let _ = std::fs::remove_dir_all(dir);
                    }
                }
            }
            Ok(())
        })
    }

    /// Servers of runs whose reaper's lock nobody holds, and of reaperless
    /// processes that are gone ([`sweep`]).
    fn sweep_dead<'a>(&'a self, me: &'a str, dry_run: bool) -> EngineFuture<'a, Result<Vec<String>, EngineError>> {
        Box::pin(async move { Ok(if dry_run { dead_sessions(me) } else { sweep(me) }) })
    }
}

/// A service's directory name: its name, and this process's pid when the
/// server is this process's alone.
fn dir_name(name: &str, shared: bool) -> String {
    let clean: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    if shared {
        clean
    } else {
        format!("{clean}-{}", std::process::id())
    }
}

/// Every local server this runtime directory's runs recorded, with the
/// path of its record.
fn recorded_servers() -> Vec<(Owned, PathBuf)> {
    let Ok(runs) = std::fs::read_dir(super::marks::runs_dir()) else { return Vec::new() };
    let mut out = Vec::new();
    for run in runs.flatten() {
        let session = run.file_name().to_string_lossy().into_owned();
        let Ok(records) = std::fs::read_dir(records_dir(&session)) else { continue };
        for record in records.flatten() {
            let path = record.path().join("record.json");
            let Some(server) = read_record(&path) else { continue };
            let service = record.file_name().to_string_lossy().into_owned();
            let ports: Vec<String> = server.ports.values().map(|p| format!("127.0.0.1:{p}")).collect();
            let owned = Owned {
                id: service_id(&server),
                name: service.clone(),
                image: format!("local {}", server.program),
                state: if server.is_running() { "running" } else { "exited" }.to_string(),
                session: session.clone(),
                service,
                address: format!("{} pid {} {}", server.program, server.pid, ports.join(" ")),
                ..Owned::default()
            };
            out.push((owned, path));
        }
    }
    out.sort_by(|(a, _), (b, _)| (&a.session, &a.service).cmp(&(&b.session, &b.service)));
    out
}

/// Where the processes of `session` share the records of their local servers.
fn records_dir(session: &str) -> PathBuf {
    super::marks::run_dir(session).join("local")
}

fn read_record(path: &Path) -> Option<Server> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// Writes the record under a hidden name, then renames it: a reader never
/// sees half of one.
fn write_record(path: &Path, server: &Server) {
    let Ok(text) = serde_json::to_string(server) else { return };
    let hidden = path.with_extension(format!("{}.tmp", std::process::id()));
    if std::fs::write(&hidden, text).is_ok() {
        let _ = std::fs::rename(&hidden, path);
    }
}

fn start_error(name: &str, image: &str, reason: impl Into<String>) -> Error {
    Error::Start { service: name.to_string(), image: image.to_string(), reason: reason.into() }
}

/// Takes the service's lock (waiting while another process of the run
/// starts it), then attaches to the live server it recorded or starts one.
async fn start_or_attach(
    name: &str,
    def: GenericContainer,
    kind: &Kind,
    config: &Config,
    session: &str,
    shared: bool,
    started: Instant,
) -> Result<(RunningService, bool), Error> {
    let image = format!("local {}", def.image);
    let dir_name = dir_name(name, shared);
    let records = records_dir(session).join(&dir_name);
    crate::util::paths::create_runtime_dir()
        .and_then(|()| std::fs::create_dir_all(&records))
        .map_err(|e| start_error(name, &image, format!("could not make {}: {e}", records.display())))?;
    let lock = std::fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(records.join("lock"))
        .map_err(|e| start_error(name, &image, format!("could not open its lock: {e}")))?;
    let deadline = started + def.startup_timeout;
    let lock = loop {
        match lock.try_lock() {
            Ok(()) => break lock,
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => {
                return Err(start_error(name, &image, format!("another process of the run held its lock: {e}")));
            }
        }
    };
    let record = records.join("record.json");
    if let Some(server) = read_record(&record) {
        if server.ready && server.is_running() {
            drop(lock);
            return Ok((attached(name, def, server), false));
        }
        // A start cut short (its process was killed) or a server that died.
        let _ = tokio::task::spawn_blocking(move || stop_server(&server)).await;
        let _ = std::fs::remove_file(&record);
    }
    let dir = dirs::session_dir(session).join(&dir_name);
    let owner = (!shared).then(super::start::process_label);
    let launched = launch(name, &def, kind, config, &dir, owner, &record, deadline).await;
    let service = match launched {
        Ok(service) => service,
        Err(err) => {
            let _ = std::fs::remove_file(&record);
            let _ = tokio::task::spawn_blocking(move || process::remove_dir(&dir)).await;
            return Err(err);
        }
    };
    drop(lock);
    Ok((service, true))
}

/// The definition a local server is watched with: the built-ins' checks
/// that need a container (the volume cache's script) replaced by the login
/// or `PING` alone; no volume cache (the local engine has its own).
fn local_definition(mut def: GenericContainer, kind: &Kind) -> GenericContainer {
    match kind {
        Kind::Postgres => def.health_checks = vec![HealthCheck::postgres_query()],
        Kind::Redis => def.health_checks.retain(|c| matches!(c.probe, Probe::RedisPing { .. })),
        Kind::Command(_) => {}
    }
    def.volume_cache = None;
    def
}

/// The service a server another process of the run started is, from its record.
fn attached(name: &str, def: GenericContainer, server: Server) -> RunningService {
    let kind = kind_of(name, &def).unwrap_or(Kind::Command(Vec::new()));
    let mut def = local_definition(def, &kind);
    for (key, value) in def.env.iter_mut() {
        if let Some(theirs) = server.env.get(key) {
            value.clone_from(theirs);
        }
    }
    running(name, def, server.clone(), Arc::new(LocalEngine::attached(server)))
}

/// What the run calls a local server where it calls a container by its id
/// (ready marks, the run-wide pool of cloned databases, the report).
fn service_id(server: &Server) -> String {
    format!("{LOCAL_ID_PREFIX}{}-{}", server.pid, server.start)
}

/// How a local server's id begins.
pub(crate) const LOCAL_ID_PREFIX: &str = "local-";

/// Whether the local server of `id` ([`service_id`]) is known to be gone:
/// no process of its pid, or one that started at another time (the pid was
/// reused). An id of another shape is never judged gone.
pub(crate) fn server_gone(id: &str) -> bool {
    let Some((pid, start)) = id.strip_prefix(LOCAL_ID_PREFIX).and_then(|rest| rest.split_once('-')) else {
        return false;
    };
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else { return false };
    match crate::util::os::process_start(pid) {
        None => true,
        // Its start time was not known when it was recorded.
        Some(_) if start == 0 => false,
        Some(now) => now != start,
    }
}

/// Stops `server` and removes its files and what the run kept about it
/// (its databases cloned ahead).
fn stop_server(server: &Server) {
    process::stop(server, STOP_GRACE);
    let _ = std::fs::remove_dir_all(crate::rooms::run_pool::root().join(service_id(server)));
}

fn running(name: &str, def: GenericContainer, server: Server, engine: Arc<LocalEngine>) -> RunningService {
    RunningService {
        name: name.to_string(),
        image: format!("local {}", server.program),
        id: service_id(&server),
        ports: server.ports.clone(),
        definition: def,
        engine,
        host: Some("127.0.0.1".to_string()),
        existing: None,
    }
}

/// What a server is started from: its program and arguments, ports,
/// environment and user.
struct Launch {
    program: PathBuf,
    args: Vec<String>,
    ports: BTreeMap<u16, u16>,
    env: BTreeMap<String, String>,
    user: Option<(u32, u32)>,
    stop_signal: &'static str,
}

/// Makes the server's directory, starts the server (on another port if its
/// port was taken meanwhile), records it, and waits for its checks.
#[allow(clippy::too_many_arguments)]
async fn launch(
    name: &str,
    def: &GenericContainer,
    kind: &Kind,
    config: &Config,
    dir: &Path,
    owner: Option<String>,
    record: &Path,
    deadline: Instant,
) -> Result<RunningService, Error> {
    let image = format!("local {}", def.image);
    let fail = |reason: String| start_error(name, &image, reason);
    for shared in [dirs::base_dir(), dir.parent().map(Path::to_path_buf).unwrap_or_default()] {
        dirs::create_shared_dir(&shared).map_err(|e| fail(format!("could not make {}: {e}", shared.display())))?;
    }
    if dir.exists() {
        process::remove_dir(dir);
    }
    dirs::create_shared_dir(dir).map_err(|e| fail(format!("could not make {}: {e}", dir.display())))?;
    let def = local_definition(def.clone(), kind);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let plan = match kind {
            Kind::Postgres => prepare_postgres(name, &def, config, dir).await?,
            Kind::Redis => prepare_redis(&def)?,
            Kind::Command(cmd) => prepare_command(&def, cmd, dir)?,
        }
        .map_err(fail)?;
        let child = process::spawn(&plan.program, &plan.args, dir, &process::log_path(dir), &plan.env, plan.user)
            .map_err(|e| fail(format!("could not run {}: {e}", plan.program.display())))?;
        let pid = child.id();
        let server = Server {
            pid,
            start: crate::util::os::process_start(pid).unwrap_or(0),
            dir: dir.to_path_buf(),
            program: plan.program.to_string_lossy().into_owned(),
            stop_signal: plan.stop_signal.to_string(),
            ports: plan.ports.clone(),
            env: def.env.clone(),
            owner: owner.clone(),
            ready: false,
        };
        // Recorded before it is waited for: a process killed from here on
        // leaves a record the next one (or the sweep) stops it by.
        write_record(record, &server);
        if owner.is_some() {
            let records = record.parent().map(Path::to_path_buf).unwrap_or_default();
            OWN.lock().unwrap_or_else(|e| e.into_inner()).push((server.clone(), records));
        }
        let engine = Arc::new(LocalEngine::started(server.clone(), child));
        let service = running(name, def.clone(), server.clone(), engine);
        let ready = async {
            if *kind == Kind::Postgres {
                postgres_setup(&service, dir, deadline).await?;
            }
            crate::health::wait_ready(&service, deadline).await?;
            super::start::run_init_commands(&service).await
        }
        .await;
        match ready {
            Ok(()) => {
                write_record(record, &Server { ready: true, ..server });
                crate::util::say!("cleanroom: {name} runs on the local engine: {} (pid {pid})", service.image);
                return Ok(service);
            }
            Err(err) => {
                let taken = process::tail(&process::log_path(dir), 20).contains("ddress already in use");
                let stopped = server.clone();
                let _ = tokio::task::spawn_blocking(move || process::stop(&stopped, STOP_GRACE)).await;
                if taken && attempt < PORT_ATTEMPTS && Instant::now() < deadline {
                    let _ = dirs::create_shared_dir(dir);
                    continue;
                }
                return Err(err);
            }
        }
    }
}

type Prepared = Result<Launch, String>;

/// The Postgres cluster in `dir/data`: copied from the cache, else made by
/// `initdb` (and then cached), owned by the user the server runs as.
async fn prepare_postgres(name: &str, def: &GenericContainer, config: &Config, dir: &Path) -> Result<Prepared, Error> {
    let (def, config, dir, name) = (def.clone(), config.clone(), dir.to_path_buf(), name.to_string());
    tokio::task::spawn_blocking(move || prepare_postgres_blocking(&name, &def, &config, &dir))
        .await
        .map_err(|e| Error::Start { service: "postgres".into(), image: "local postgres".into(), reason: e.to_string() })
}

fn prepare_postgres_blocking(name: &str, def: &GenericContainer, config: &Config, dir: &Path) -> Prepared {
    let bin = binaries::postgres_dir(config.postgres_bin.as_deref(), &binaries::search_dirs())?;
    let user = process::unprivileged_user();
    let superuser = def.env.get("POSTGRES_USER").map_or("postgres", String::as_str);
    let data = dir.join("data");
    let socket = dir.join("run");
    let log = process::log_path(dir);
    if !data.exists() {
        let key = cluster_key(&bin, superuser, user)?;
        let cached = config.volume_cache && dirs::restore(&key, &data);
        let started = Instant::now();
        if !cached {
            make_owned_dir(&data, 0o700, user)?;
            process::run(&bin.join("initdb"), &args::initdb(&data, superuser), dir, &log, user)?;
            crate::metrics::cache_miss("volume");
            if config.volume_cache {
                if let Err(e) = dirs::fill(&key, &data) {
                    crate::metrics::alert(name, "cache_fill", format!("keeping the initialised cluster failed: {e}"));
                }
            }
        } else {
            crate::metrics::cache_hit("volume");
        }
        tracing::info!(service = name, cached, ms = crate::metrics::ms(started.elapsed()), "local cluster ready");
    }
    make_owned_dir(&socket, 0o755, user)?;
    let socket_file = socket.join(".s.PGSQL.65535");
    if socket_file.as_os_str().len() > crate::util::os::MAX_SOCKET_PATH {
        return Err(format!(
            "its socket path {} is too long for a Unix socket; use a shorter session id (CLEANROOM_SESSION)",
            socket_file.display()
        ));
    }
    let port = process::free_port().map_err(|e| format!("no free port on 127.0.0.1: {e}"))?;
    Ok(Launch {
        program: bin.join("postgres"),
        args: args::postgres(&data, port, &socket),
        ports: BTreeMap::from([(5432, port)]),
        env: BTreeMap::new(),
        user,
        stop_signal: "QUIT",
    })
}

/// The cache key of an initialised cluster: the Postgres build, its
/// superuser, the user it belongs to, and `initdb`'s arguments.
fn cluster_key(bin: &Path, superuser: &str, user: Option<(u32, u32)>) -> Result<String, String> {
    let out = std::process::Command::new(bin.join("postgres"))
        .arg("--version")
        .output()
        .map_err(|e| format!("could not run {}: {e}", bin.join("postgres").display()))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let major: String = version
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .and_then(|v| v.split('.').next())
        .unwrap_or("x")
        .to_string();
    let owner = user.map_or_else(crate::util::os::uid, |(uid, _)| uid);
    let identity = format!("{version}\n{superuser}\n{owner}\n{}", args::initdb(Path::new("-"), superuser).join(" "));
    Ok(format!("postgres-{major}-{}", crate::util::paths::short_hash(&identity)))
}

/// Makes `path` with `mode`, owned by `user` when the server runs as
/// another user than this process.
fn make_owned_dir(path: &Path, mode: u32, user: Option<(u32, u32)>) -> Result<(), String> {
    if let Err(e) = crate::util::os::create_dir_with_mode(path, mode) {
        if !path.is_dir() {
            return Err(format!("could not make {}: {e}", path.display()));
        }
    }
    let _ = crate::util::os::set_mode(path, mode);
    #[cfg(unix)]
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(|e| format!("could not hand {} to uid {uid}: {e}", path.display()))?;
    }
    #[cfg(windows)]
    let _ = user;
    Ok(())
}

fn prepare_redis(def: &GenericContainer) -> Result<Prepared, Error> {
    let plan = || -> Prepared {
        let program = binaries::redis_server(&binaries::search_dirs())?;
        let port = process::free_port().map_err(|e| format!("no free port on 127.0.0.1: {e}"))?;
        let password = def.env.get(REDIS_PASSWORD_ENV).map(String::as_str);
        let databases = crate::builtin::REDIS_DATABASES;
        Ok(Launch {
            args: args::redis(port, Path::new("."), databases, password),
            program,
            ports: BTreeMap::from([(6379, port)]),
            env: BTreeMap::new(),
            user: None,
            stop_signal: "TERM",
        })
    };
    Ok(plan())
}

fn prepare_command(def: &GenericContainer, cmd: &[String], dir: &Path) -> Result<Prepared, Error> {
    let plan = || -> Prepared {
        let program = binaries::program(&cmd[0], &binaries::path_dirs())?;
        let mut ports = BTreeMap::new();
        for port in &def.ports {
            let host = match def.fixed_ports.get(port) {
                Some(fixed) => *fixed,
                None => process::free_port().map_err(|e| format!("no free port on 127.0.0.1: {e}"))?,
            };
            ports.insert(*port, host);
        }
        let first = def.ports.first().copied();
        let mut env = def.env.clone();
        env.extend(args::local_env(&ports, first, dir));
        Ok(Launch {
            args: args::local_command(&cmd[1..], &ports, first, dir),
            program,
            ports,
            env,
            user: None,
            stop_signal: "TERM",
        })
    };
    Ok(plan())
}

/// What the official image's entrypoint does after `initdb`, over the
/// cluster's own socket (trusted): the run's password, stored as MD5 (see
/// `builtin::postgres_definition`), and the `POSTGRES_DB` database.
async fn postgres_setup(service: &RunningService, dir: &Path, deadline: Instant) -> Result<(), Error> {
    let env = |key: &str| service.env(key).map(str::to_string);
    let user = env("POSTGRES_USER").unwrap_or_else(|| "postgres".into());
    let password = env("POSTGRES_PASSWORD").unwrap_or_default();
    let db = env("POSTGRES_DB").unwrap_or_else(|| user.clone());
    let port = service.ports.get(&5432).copied().unwrap_or(5432);
    let mut config = tokio_postgres::Config::new();
    #[cfg(unix)]
    config.host_path(dir.join("run"));
    // Windows: no Unix socket; the local engine does not start there.
    #[cfg(windows)]
    config.host("127.0.0.1");
    config.port(port).user(&user).dbname("postgres").connect_timeout(Duration::from_secs(2));
    let client = loop {
        if let Some(code) = service.engine.exit_status(&service.id).await.ok().flatten() {
            return Err(Error::Exited {
                service: service.name.clone(),
                image: service.image.clone(),
                code,
                logs: process::tail(&process::log_path(dir), 20),
            });
        }
        match config.connect(tokio_postgres::NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                break client;
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(Error::Timeout {
                    service: service.name.clone(),
                    image: service.image.clone(),
                    check: "a login over its Unix socket".into(),
                    after: Duration::ZERO,
                    last: e.to_string(),
                    logs: process::tail(&process::log_path(dir), 20),
                });
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let ident = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let literal = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let sql = format!("ALTER ROLE {} PASSWORD {}", ident(&user), literal(&password));
    let fail = |what: &str, e: tokio_postgres::Error| {
        start_error(
            &service.name,
            &service.image,
            format!("{what} failed: {}", e.as_db_error().map_or(e.to_string(), |d| d.message().to_string())),
        )
    };
    client.batch_execute(&sql).await.map_err(|e| fail("setting the password", e))?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
        .await
        .map_err(|e| fail("looking for its database", e))?;
    if exists.is_none() {
        client
            .batch_execute(&format!("CREATE DATABASE {}", ident(&db)))
            .await
            .map_err(|e| fail("creating its database", e))?;
    }
    Ok(())
}

/// Stops the servers this process started for itself alone (no reaper), at
/// its exit.
pub(crate) fn stop_own() {
    let own: Vec<(Server, PathBuf)> = std::mem::take(&mut *OWN.lock().unwrap_or_else(|e| e.into_inner()));
    for (server, records) in own {
        stop_server(&server);
        let _ = std::fs::remove_dir_all(&records);
        // The run's directories go with the last of its processes' servers
        // (`remove_dir` removes only an empty one).
        for dir in
            [records.parent(), records.parent().and_then(Path::parent), server.dir.parent()].into_iter().flatten()
        {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Marks `session` as one that used Docker: its reaper removes its
/// containers at its end (and waits for an engine that is away); a run
/// that never did is not made to wait for one.
pub(crate) fn mark_docker_used(session: &str) {
    // Without a reaper nobody reads it.
    if crate::config::current().is_ok_and(|c| c.no_reaper) {
        return;
    }
    let dir = super::marks::run_dir(session);
    if !dir.join("docker").exists() && crate::util::paths::create_runtime_dir().is_ok() {
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join("docker"), b"");
    }
}

/// Whether `session` may have made something in Docker: a process of it
/// connected, or it runs on Docker (its mark may not have been written: a
/// full runtime directory), or its settings cannot be read.
pub(crate) fn may_have_used_docker(session: &str) -> bool {
    let docker_engine = crate::config::current().map_or(true, |c| c.engine == EngineChoice::Docker);
    docker_engine || super::marks::run_dir(session).join("docker").exists()
}

/// Stops every local server of `session` and removes its files: the end of
/// the run (its reaper), or of a run found dead.
pub(crate) fn remove_session(session: &str) {
    for entry in std::fs::read_dir(records_dir(session)).into_iter().flatten().flatten() {
        if let Some(server) = read_record(&entry.path().join("record.json")) {
            stop_server(&server);
        }
    }
    let _ = std::fs::remove_dir_all(records_dir(session));
    let dir = dirs::session_dir(session);
    if dir.exists() {
        process::remove_dir(&dir);
    }
}

/// Removes the local servers of runs that are provably over, never `me`'s:
/// a run whose reaper's lock nobody holds (it was killed), and servers of a
/// process without a reaper that is gone. Their records say which pid to
/// stop; on Linux whatever still works in their directories goes too.
pub(crate) fn sweep(me: &str) -> Vec<String> {
    let dead = dead_sessions(me);
    for session in &dead {
        remove_session(session);
    }
    for entry in std::fs::read_dir(dirs::base_dir()).into_iter().flatten().flatten() {
        let session = entry.file_name().to_string_lossy().into_owned();
        if session == me || !super::session::valid(&session) || dead.contains(&session) {
            continue;
        }
        for service in std::fs::read_dir(records_dir(&session)).into_iter().flatten().flatten() {
            let Some(server) = read_record(&service.path().join("record.json")) else { continue };
            let owner_gone = server
                .owner
                .as_deref()
                .is_some_and(|o| super::session::ProcessId::decode(o).is_none_or(|p| !p.is_alive()));
            if owner_gone {
                stop_server(&server);
                let _ = std::fs::remove_dir_all(service.path());
            }
        }
    }
    dead
}

/// The sessions, other than `me`, that left local servers here and whose
/// reaper's lock nobody holds any more.
pub(crate) fn dead_sessions(me: &str) -> Vec<String> {
    std::fs::read_dir(dirs::base_dir())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|s| s != me && super::session::valid(s))
        .filter(|s| super::liveness::session_state(s) == Some(false))
        .collect()
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::*;

        #[test]
        fn know_the_built_ins_by_their_checks_and_others_by_their_local_command() {
            let pg = crate::builtin::postgres_definition();
            assert_eq!(kind_of("postgres", &pg).unwrap(), Kind::Postgres);
            assert_eq!(kind_of("redis", &crate::builtin::redis_definition()).unwrap(), Kind::Redis);
            let web = GenericContainer::new("nginx:1").with_local_command(["python3", "-m", "http.server"]);
            assert!(matches!(kind_of("web", &web).unwrap(), Kind::Command(c) if c[0] == "python3"));
        }

        #[test]
        fn refuse_an_image_only_service_naming_the_fixes() {
            let err = kind_of("web", &GenericContainer::new("nginx:1")).unwrap_err().to_string();
            for needle in
                ["service `web`", "nginx:1", "with_local_command", "[services.web]", "CLEANROOM_ENGINE=docker"]
            {
                assert!(err.contains(needle), "{needle} in {err}");
            }
        }

        #[test]
        fn watch_a_local_postgres_by_its_login_alone() {
            let def = local_definition(crate::builtin::postgres_definition(), &Kind::Postgres);
            assert_eq!(def.health_checks, vec![HealthCheck::postgres_query()]);
            assert!(def.volume_cache.is_none());
        }

        #[test]
        fn judge_a_server_gone_by_its_pid_and_start_time() {
            let pid = std::process::id();
            let start = crate::util::os::process_start(pid).expect("this process runs");
            assert!(!server_gone(&format!("local-{pid}-{start}")), "this process is alive");
            assert!(server_gone(&format!("local-{pid}-{}", start + 1)), "the pid was reused");
            assert!(server_gone(&format!("local-{}-5", u32::MAX - 1)), "no such process");
            assert!(!server_gone(&format!("local-{pid}-0")), "start unknown: not judged");
            assert!(!server_gone("local-x"), "another shape is left alone");
            assert!(!server_gone("existing-15768cc1"));
        }

        #[test]
        fn give_a_server_of_one_process_a_directory_of_its_own() {
            assert_eq!(dir_name("postgres", true), "postgres");
            assert_eq!(dir_name("my/svc", false), format!("my_svc-{}", std::process::id()));
        }
    }
}
