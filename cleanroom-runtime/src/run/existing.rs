//! Services on existing servers (`CLEANROOM_POSTGRES_URL`,
//! `CLEANROOM_REDIS_URL`, `[services.<name>] url`): no container; the
//! service is the server, reached at its URL, and every process of the run
//! reaches it the same way.
//!
//! What the run makes there carries its [`Claim`]. The run leaves a record
//! of each server it used in its run directory (`existing/<service>`, in the
//! private runtime directory: the URL holds a password), so that its reaper
//! removes exactly what the run made once its last process is gone. The
//! first process of a run to use a server also removes what provably dead
//! runs of this owner left there (a run killed with its reaper), and what
//! runs of other owners left once their heartbeat on the server (a
//! `cleanroom_<tag>_run` database, refreshed on the server's clock) is older
//! than `run.remote_idle_ttl`; `cargo cleanroom prune --url` does the same
//! on demand.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::marks::{run_dir, RunMarks, Turn};
use super::registry::Registry;
use super::start::{StartRequest, Started};
use crate::engine::{EngineError, EngineFuture, EngineKind, Owned, Provisioner};
use crate::error::Error;
use crate::external::redis::DatabaseRange;
use crate::external::{Claim, Existing, ExistingServer, ServerKind, ServerUrl};
use crate::metrics::Phases;
use crate::service::definition::{GenericContainer, ServiceKind, REDIS_PASSWORD_ENV};
use crate::service::health::HealthCheck;
use crate::service::running::RunningService;

/// The existing server `name` is configured to use, if any.
pub(super) fn configured(name: &str) -> Result<Option<(ServerUrl, Option<DatabaseRange>)>, Error> {
    let overrides = crate::config::service_overrides(name)?;
    Ok(overrides.url.map(|url| (url, overrides.databases)))
}

/// The variable that names `name`'s URL, for messages.
fn url_key(name: &str) -> String {
    let upper: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    format!("CLEANROOM_{upper}_URL (or `url` in [services.{name}])")
}

impl Registry {
    /// `name` on the existing server at `url`: checked (it answers, the
    /// user may create databases, the Redis databases exist), recorded for
    /// the run's end, cleared of what dead runs of this owner left, and
    /// ready.
    pub(super) async fn start_existing(
        &'static self,
        name: &str,
        def: GenericContainer,
        url: ServerUrl,
        databases: Option<DatabaseRange>,
    ) -> Result<RunningService, Error> {
        let started = Instant::now();
        let kind = crate::builtin::spec_named(name).map(|s| &s.kind);
        let expected = match kind {
            Some(ServiceKind::Postgres) => ServerKind::Postgres,
            Some(ServiceKind::Redis) => ServerKind::Redis,
            _ => {
                return Err(Error::Configuration {
                    key: url_key(name),
                    reason: format!(
                        "`{name}` is a service defined by its image; an existing server can stand in only for \
                         `postgres` and `redis`: remove the URL to run {name} in a container"
                    ),
                })
            }
        };
        if url.kind != expected {
            return Err(Error::Configuration {
                key: url_key(name),
                reason: format!("{} is not a URL of a {name} server", url.masked()),
            });
        }
        if !def.init.is_empty() {
            return Err(Error::Configuration {
                key: url_key(name),
                reason: format!(
                    "{name} has init commands, which run inside its container; an existing server has none: \
                     drop them, or put the setup in its migrations"
                ),
            });
        }
        let databases = match (expected, databases) {
            (ServerKind::Redis, None) => {
                return Err(Error::Configuration {
                    key: url_key(name),
                    reason: format!(
                        "on an existing Redis cleanroom flushes only the logical databases you allow: set \
                         CLEANROOM_{}_DATABASES=first-last (or `databases` in [services.{name}]), e.g. 8-15 \
                         (a default Redis has 16: 0-15)",
                        name.to_ascii_uppercase()
                    ),
                })
            }
            (ServerKind::Redis, Some(range)) => Some(range),
            (ServerKind::Postgres, _) => None,
        };
        let session = self.session()?.to_string();
        let claim = Claim {
            session: session.clone(),
            owner: crate::docker::owner_key(),
            process: (!self.reaper_attached()).then(super::start::process_label),
        };
        let unusable = |reason: String| Error::Start { service: name.to_string(), image: url.masked(), reason };
        match expected {
            ServerKind::Postgres => {
                let client = crate::external::postgres::connect(&url).await.map_err(unusable)?;
                crate::external::postgres::check_privileges(&client, &url).await.map_err(unusable)?;
                // The run's first beat, before it makes anything there: from
                // another machine it is alive only while it beats.
                crate::external::postgres::beat(&client, &claim, super::heartbeat::idle_ttl())
                    .await
                    .map_err(unusable)?;
                if claim.process.is_some() {
                    beat_for_this_process(&url, &claim);
                }
            }
            ServerKind::Redis => {
                let range = databases.expect("checked above");
                crate::external::redis::check_range(&url, range).await.map_err(unusable)?;
            }
        }
        // The reaper learns from the record what to remove at the run's end;
        // a process without one removes its own, knowing its services.
        if claim.process.is_none() {
            record(&session, name, &url, databases)
                .map_err(|e| unusable(format!("cannot record it for the run's end: {e}")))?;
        }
        // Once per run and server: what dead runs of this owner left.
        if matches!(RunMarks::of(&session).claim(&format!("existing-sweep-{}", url.identity())), Ok(Turn::Mine)) {
            let removed = sweep(&url, databases, &session).await;
            if removed > 0 {
                crate::util::say!("cleanroom: removed {removed} leftovers of dead runs from {}", url.masked());
            }
        }
        let service = running(name, def, url, databases, claim, expected);
        health_check(&service, started).await?;
        Ok(service)
    }
}

/// Existing servers as a start's engine: `server` is the one configured for
/// the service being started (`None` for listing).
#[derive(Debug, Default)]
pub(crate) struct ExistingDriver {
    pub(crate) server: Option<(ServerUrl, Option<DatabaseRange>)>,
}

impl<'s> Provisioner<StartRequest<'s>, Started, Error> for ExistingDriver {
    fn kind(&self) -> EngineKind {
        EngineKind::Existing
    }

    /// Every process reaches the server itself, and checks it: there is
    /// nothing another process made to attach to.
    fn attach<'a>(&'a self, _request: &'a StartRequest<'s>) -> EngineFuture<'a, Result<Option<Started>, Error>> {
        Box::pin(async { Ok(None) })
    }

    /// Nothing to create: the server is checked, recorded for the run's end,
    /// swept, and ready.
    fn create<'a>(&'a self, request: &'a StartRequest<'s>) -> EngineFuture<'a, Result<Started, Error>> {
        Box::pin(async move {
            let Some((url, databases)) = self.server.clone() else {
                return Err(Error::Configuration {
                    key: url_key(request.name),
                    reason: format!("no existing server is configured for {}", request.name),
                });
            };
            let service = request.registry.start_existing(request.name, request.def.clone(), url, databases).await?;
            let phases = Phases { start_ms: Some(crate::metrics::ms(request.started.elapsed())), ..Phases::default() };
            Ok(Started { service, phases })
        })
    }

    /// The servers this runtime directory's runs recorded (what they made
    /// there is on the server, under their claims: `prune --url` lists it).
    fn list_owned(&self) -> EngineFuture<'_, Result<Vec<Owned>, EngineError>> {
        Box::pin(async {
            Ok(recorded_runs()
                .into_iter()
                .map(|(session, service, address)| Owned {
                    id: format!("{session}/{service}"),
                    name: service.clone(),
                    image: address.clone(),
                    state: "running".to_string(),
                    session,
                    service,
                    address,
                    ..Owned::default()
                })
                .collect())
        })
    }

    /// The server is not cleanroom's and stays: what the run `id` names
    /// (`<session>/<service>`, as listed) made on it goes — its databases,
    /// templates and Redis rooms, by the run's claim.
    fn remove_owned<'a>(&'a self, id: &'a str) -> EngineFuture<'a, Result<(), EngineError>> {
        Box::pin(async move {
            let Some((session, service)) = id.split_once('/') else { return Ok(()) };
            remove_recorded(session, service).await.map(drop).map_err(|e| EngineError::new("remove", None, e))
        })
    }

    /// On the configured server, what this owner's dead runs and other
    /// owners' runs idle past `run.remote_idle_ttl` left ([`prune_server`]);
    /// nothing without a server.
    fn sweep_dead<'a>(&'a self, _me: &'a str, dry_run: bool) -> EngineFuture<'a, Result<Vec<String>, EngineError>> {
        Box::pin(async move {
            let Some((url, databases)) = &self.server else { return Ok(Vec::new()) };
            let found = prune_server(url, *databases, dry_run).await;
            found.map(|p| p.removed).map_err(|e| EngineError::new("prune", None, format!("{}: {e}", url.masked())))
        })
    }
}

/// The existing servers configured for the built-in services, as engines
/// to sweep (`cargo cleanroom prune` without `--url`).
pub(crate) fn configured_servers() -> Vec<ExistingDriver> {
    ["postgres", "redis"]
        .into_iter()
        .filter_map(|name| configured(name).ok().flatten())
        .map(|server| ExistingDriver { server: Some(server) })
        .collect()
}

/// The running service for the server at `url`.
fn running(
    name: &str,
    mut def: GenericContainer,
    url: ServerUrl,
    databases: Option<DatabaseRange>,
    claim: Claim,
    kind: ServerKind,
) -> RunningService {
    let (port, check) = match kind {
        ServerKind::Postgres => {
            def.env.insert("POSTGRES_USER".into(), crate::external::postgres::user(&url).to_string());
            def.env.insert("POSTGRES_PASSWORD".into(), url.password.clone().unwrap_or_default());
            def.env.insert("POSTGRES_DB".into(), crate::external::postgres::database(&url).to_string());
            (5432, HealthCheck::postgres_query())
        }
        ServerKind::Redis => {
            def.env.remove(REDIS_PASSWORD_ENV);
            if let Some(password) = &url.password {
                def.env.insert(REDIS_PASSWORD_ENV.into(), password.clone());
            }
            (6379, HealthCheck::redis_ping(6379))
        }
    };
    def.health_checks = vec![check];
    def.volume_cache = None;
    def.image = url.masked();
    RunningService {
        name: name.to_string(),
        image: url.masked(),
        id: format!("existing-{}", url.identity()),
        ports: BTreeMap::from([(port, url.port)]),
        definition: def,
        engine: Arc::new(ExistingServer { address: url.masked() }),
        host: Some(url.host.clone()),
        existing: Some(Existing { url, claim, databases }),
    }
}

/// The server answers its check.
async fn health_check(service: &RunningService, started: Instant) -> Result<(), Error> {
    let deadline = started + service.definition.startup_timeout;
    crate::health::wait_ready(service, deadline).await
}

/// Where the run's record of `name`'s server lives.
fn record_path(session: &str, name: &str) -> std::path::PathBuf {
    run_dir(session).join("existing").join(name)
}

/// Records the server for the run's end: its URL, and the Redis databases.
fn record(session: &str, name: &str, url: &ServerUrl, databases: Option<DatabaseRange>) -> std::io::Result<()> {
    let path = record_path(session, name);
    if path.exists() {
        return Ok(());
    }
    let dir = path.parent().expect("a record has a directory");
    std::fs::create_dir_all(dir)?;
    let kind = match url.kind {
        ServerKind::Postgres => "postgres",
        ServerKind::Redis => "redis",
    };
    let text = format!("{kind}\n{}\n{}\n", raw_url(url), databases.map(DatabaseRange::encode).unwrap_or_default());
    let partial = dir.join(format!(".{name}.{}", std::process::id()));
    {
        use std::io::Write;
        let mut file =
            crate::util::os::open_with_mode(std::fs::OpenOptions::new().write(true).create(true).truncate(true), 0o600)
                .open(&partial)?;
        file.write_all(text.as_bytes())?;
    }
    std::fs::rename(&partial, &path)
}

/// The URL with its password, for the record only.
fn raw_url(url: &ServerUrl) -> String {
    let scheme = match url.kind {
        ServerKind::Postgres => "postgres",
        ServerKind::Redis => "redis",
    };
    let enc = crate::util::percent::encode;
    let auth = match (&url.user, &url.password) {
        (None, None) => String::new(),
        (user, None) => format!("{}@", enc(user.as_deref().unwrap_or(""))),
        (user, Some(p)) => format!("{}:{}@", enc(user.as_deref().unwrap_or("")), enc(p)),
    };
    let host = if url.host.contains(':') { format!("[{}]", url.host) } else { url.host.clone() };
    let db = url.database.as_deref().map(|d| format!("/{}", enc(d))).unwrap_or_default();
    format!("{scheme}://{auth}{host}:{}{db}", url.port)
}

/// Every run of this runtime directory that recorded an existing server:
/// `(session, service, the server's address with its password masked)`.
pub(crate) fn recorded_runs() -> Vec<(String, String, String)> {
    let Ok(runs) = std::fs::read_dir(super::marks::runs_dir()) else { return Vec::new() };
    let mut out = Vec::new();
    for run in runs.flatten() {
        let session = run.file_name().to_string_lossy().into_owned();
        let Ok(services) = std::fs::read_dir(run.path().join("existing")) else { continue };
        for service in services.flatten() {
            let name = service.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let text = std::fs::read_to_string(service.path()).unwrap_or_default();
            let mut lines = text.lines();
            let kind = match lines.next() {
                Some("redis") => ServerKind::Redis,
                _ => ServerKind::Postgres,
            };
            let address = lines.next().and_then(|u| ServerUrl::parse(kind, u).ok()).map(|u| u.masked());
            out.push((session.clone(), name, address.unwrap_or_else(|| "?".into())));
        }
    }
    out.sort();
    out
}

/// The servers a run recorded.
fn recorded(session: &str) -> Vec<(ServerUrl, Option<DatabaseRange>)> {
    let Ok(entries) = std::fs::read_dir(run_dir(session).join("existing")) else { return Vec::new() };
    entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| read_record(&e.path()))
        .collect()
}

/// The server one service of a run recorded (its kind, URL and Redis range).
fn read_record(path: &std::path::Path) -> Option<(ServerUrl, Option<DatabaseRange>)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let kind = match lines.next()? {
        "postgres" => ServerKind::Postgres,
        "redis" => ServerKind::Redis,
        _ => return None,
    };
    let url = ServerUrl::parse(kind, lines.next()?).ok()?;
    let databases = lines.next().and_then(|r| DatabaseRange::parse(r).ok());
    Some((url, databases))
}

/// Removes from the server that `service` of `session` recorded what that
/// run made there (this owner's run only); returns how many databases went.
async fn remove_recorded(session: &str, service: &str) -> Result<usize, String> {
    if !super::session::valid(session) || service.starts_with('.') || service.contains('/') {
        return Ok(0);
    }
    let Some((url, databases)) = read_record(&run_dir(session).join("existing").join(service)) else { return Ok(0) };
    remove_this_owners_run(session, &url, databases).await
}

/// Removes from one server what this owner's run `session` made there, by
/// its claim and, for a clone never marked, by its tag in the name.
async fn remove_this_owners_run(
    session: &str,
    url: &ServerUrl,
    databases: Option<DatabaseRange>,
) -> Result<usize, String> {
    let owner = crate::docker::owner_key();
    let tag =
        crate::external::postgres::run_tag(&Claim { session: session.into(), owner: owner.clone(), process: None });
    let doomed = |c: &Claim| c.session == session && c.owner == owner;
    remove_from(url, databases, false, doomed, std::slice::from_ref(&tag)).await
}

/// Removes what `doomed` claims from one server; returns how many
/// databases it dropped or flushed.
async fn remove_from(
    url: &ServerUrl,
    databases: Option<DatabaseRange>,
    free_too: bool,
    doomed: impl Fn(&Claim) -> bool,
    tags: &[String],
) -> Result<usize, String> {
    match (url.kind, databases) {
        (ServerKind::Postgres, _) => {
            crate::external::postgres::remove_claimed(url, doomed, tags).await.map(|d| d.len())
        }
        (ServerKind::Redis, Some(range)) => {
            crate::external::redis::remove_claimed(url, range, free_too, doomed).await.map(|d| d.len())
        }
        (ServerKind::Redis, None) => Ok(0),
    }
}

/// At the run's end (its reaper): removes what the run made on every
/// existing server it used.
pub(crate) async fn remove_run(session: &str) {
    for (url, databases) in recorded(session) {
        if let Err(e) = remove_this_owners_run(session, &url, databases).await {
            crate::util::say!("cleanroom: {e}; `cargo cleanroom prune --url '{}'` removes it later", url.masked());
        }
    }
}

/// At the exit of a process without a reaper: removes what it made on the
/// existing servers of `services`.
pub(crate) async fn remove_own(services: &[Arc<RunningService>]) {
    let owner = crate::docker::owner_key();
    let me = super::start::process_label();
    let servers: Vec<(ServerUrl, Option<DatabaseRange>)> =
        services.iter().filter_map(|s| s.existing.as_ref()).map(|e| (e.url.clone(), e.databases)).collect();
    if servers.is_empty() {
        return;
    }
    // Clones on their way first: what this process made is all there
    // before it is removed.
    crate::rooms::release_pooled().await;
    for (url, databases) in servers {
        let doomed = |c: &Claim| c.owner == owner && c.process.as_deref() == Some(me.as_str());
        if let Err(e) = remove_from(&url, databases, false, doomed, &[]).await {
            crate::util::say!("cleanroom: {e}; `cargo cleanroom prune --url '{}'` removes it later", url.masked());
        }
    }
}

/// How often a run refreshes its heartbeat on an existing Postgres: three
/// times within `run.remote_idle_ttl`, so that a late beat or two does not
/// make a live run look idle.
fn beat_interval() -> Duration {
    (super::heartbeat::idle_ttl() / 3).max(Duration::from_secs(1))
}

/// The reaper's heartbeat on the existing Postgres servers its run
/// recorded: called from its loop as often as it likes, it beats every
/// [`beat_interval`] (bounded by [`BEAT_TIMEOUT`](super::heartbeat::BEAT_TIMEOUT)
/// a round, so that a server that hangs does not hold the reaper up).
pub(crate) fn heartbeat(runtime: &tokio::runtime::Runtime, session: &str) {
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    {
        let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < beat_interval()) {
            return;
        }
        *last = Some(Instant::now());
    }
    let claim = Claim { session: session.to_string(), owner: crate::docker::owner_key(), process: None };
    let servers: Vec<ServerUrl> =
        recorded(session).into_iter().map(|(url, _)| url).filter(|u| u.kind == ServerKind::Postgres).collect();
    if servers.is_empty() {
        return;
    }
    let beats = async {
        for url in &servers {
            if let Ok(client) = crate::external::postgres::connect(url).await {
                let _ = crate::external::postgres::beat(&client, &claim, super::heartbeat::idle_ttl()).await;
            }
        }
    };
    let _ = runtime.block_on(async { tokio::time::timeout(super::heartbeat::BEAT_TIMEOUT, beats).await });
}

/// Without a reaper, each process beats for the run on the server at `url`
/// for as long as it lives (once per server), on cleanroom's background
/// runtime; it stops once the process's teardown begins, which removes
/// what carries its claim.
fn beat_for_this_process(url: &ServerUrl, claim: &Claim) {
    static BEATING: Mutex<Vec<String>> = Mutex::new(Vec::new());
    {
        let mut beating = BEATING.lock().unwrap_or_else(|e| e.into_inner());
        if beating.contains(&url.identity()) {
            return;
        }
        beating.push(url.identity());
    }
    let (url, claim) = (url.clone(), claim.clone());
    crate::util::background::spawn_background(async move {
        loop {
            tokio::time::sleep(beat_interval()).await;
            if crate::util::flags::shutting_down() {
                return;
            }
            let beat = async {
                if let Ok(client) = crate::external::postgres::connect(&url).await {
                    let _ = crate::external::postgres::beat(&client, &claim, super::heartbeat::idle_ttl()).await;
                }
            };
            let _ = tokio::time::timeout(super::heartbeat::BEAT_TIMEOUT, beat).await;
        }
    });
}

/// The runs of other owners (another machine, user or runtime directory,
/// whose locks cannot be asked from here) among `beats` whose last beat is
/// more than `ttl` before `now`, both on the server's clock; a run that
/// beats by a longer TTL of its own is given that one. A run without a beat
/// is never among them, nor one of this owner's (its lock says).
pub(crate) fn idle_runs(beats: &[(Claim, i64, u64)], now: i64, ttl: Duration, owner: &str) -> Vec<Claim> {
    let mut idle: Vec<Claim> = Vec::new();
    for (claim, _, _) in beats.iter().filter(|(c, _, _)| c.owner != owner) {
        // A run's processes may each have beaten under their own claim
        // (without a reaper): the run is idle only if its latest beat is.
        let runs = || beats.iter().filter(|(c, _, _)| c.session == claim.session && c.owner == claim.owner);
        let latest = runs().map(|(_, b, _)| *b).max().unwrap_or(i64::MAX);
        let own = runs().map(|(_, _, t)| *t).max().unwrap_or(0);
        let run = Claim { session: claim.session.clone(), owner: claim.owner.clone(), process: None };
        if super::heartbeat::past_ttl(now, latest, ttl, own) && !idle.contains(&run) {
            idle.push(run);
        }
    }
    idle
}

/// Whether `claim` belongs to one of the `idle` runs.
fn is_idle(claim: &Claim, idle: &[Claim]) -> bool {
    idle.iter().any(|run| run.session == claim.session && run.owner == claim.owner)
}

/// The runs of other owners on the Postgres at `url` idle for longer than
/// `run.remote_idle_ttl` by the server's clock; none when it cannot be
/// asked (nothing is removed on a guess).
async fn idle_foreign_runs(url: &ServerUrl) -> Vec<Claim> {
    if url.kind != ServerKind::Postgres {
        // Redis leases expire on the server's clock by themselves (`PX`),
        // and rooms nobody leases are swept as free.
        return Vec::new();
    }
    let Ok(client) = crate::external::postgres::connect(url).await else { return Vec::new() };
    let (Ok(beats), Ok(now)) =
        (crate::external::postgres::heartbeats(&client).await, crate::external::postgres::server_now(&client).await)
    else {
        return Vec::new();
    };
    idle_runs(&beats, now, super::heartbeat::idle_ttl(), &crate::docker::owner_key())
}

/// Whether `claim`'s run provably left what it made behind: only this
/// owner's runs are judged, by the same rule as their containers
/// ([`is_orphan`](super::liveness::is_orphan)). Other owners' runs are
/// judged by their heartbeat ([`idle_runs`]).
pub(crate) fn is_dead(claim: &Claim, me: &str) -> bool {
    if claim.owner != crate::docker::owner_key() || claim.session == me {
        return false;
    }
    match &claim.process {
        Some(process) => crate::run::session::ProcessId::decode(process).is_some_and(|p| !p.is_alive()),
        None => super::liveness::session_state(&claim.session) == Some(false),
    }
}

/// Removes from one server what dead runs of this owner left, and the
/// Redis rooms nobody leases; returns how many databases went.
pub(crate) async fn sweep(url: &ServerUrl, databases: Option<DatabaseRange>, me: &str) -> usize {
    let idle = idle_foreign_runs(url).await;
    let mut tags = dead_tags(me);
    tags.extend(idle.iter().map(crate::external::postgres::run_tag));
    remove_from(url, databases, true, |c| is_dead(c, me) || is_idle(c, &idle), &tags).await.unwrap_or(0)
}

/// The tags of this owner's runs whose reaper is provably gone (their lock
/// is here and nobody holds it): what they made but never marked goes too.
fn dead_tags(me: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(crate::util::paths::runtime_dir()) else { return Vec::new() };
    let owner = crate::docker::owner_key();
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".lock")).map(str::to_string))
        .filter(|session| session != me && super::liveness::session_state(session) == Some(false))
        .map(|session| crate::external::postgres::run_tag(&Claim { session, owner: owner.clone(), process: None }))
        .collect()
}

/// What `cargo cleanroom prune --url` found on one server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ServerPrune {
    /// What dead runs of this owner left: removed (or, on a dry run, to be).
    pub(crate) removed: Vec<String>,
    /// What stays: live runs' work, and other owners'.
    pub(crate) kept: Vec<String>,
}

/// Removes from the server at `url` what dead runs of this owner left (only
/// lists it with `dry_run`), and says what it leaves and why.
pub(crate) async fn prune_server(
    url: &ServerUrl,
    databases: Option<DatabaseRange>,
    dry_run: bool,
) -> Result<ServerPrune, String> {
    let mut found = ServerPrune::default();
    let why = |c: &Claim| {
        if c.owner != crate::docker::owner_key() {
            "another user's, machine's or runtime directory's run that beat within run.remote_idle_ttl, or never beat"
        } else {
            "a live run"
        }
    };
    let idle = idle_foreign_runs(url).await;
    let goes = |c: &Claim| is_dead(c, "") || is_idle(c, &idle);
    let mut tags = dead_tags("");
    tags.extend(idle.iter().map(crate::external::postgres::run_tag));
    match url.kind {
        ServerKind::Postgres => {
            let client = crate::external::postgres::connect(url).await?;
            for (name, claim) in crate::external::postgres::named(&client).await? {
                let Some(claim) = claim else {
                    if tags.iter().any(|t| crate::external::postgres::tagged(&name, t)) {
                        found.removed.push(format!("database {name} (a dead run's, never marked)"));
                    }
                    continue;
                };
                if goes(&claim) {
                    found.removed.push(format!("database {name} (session {})", claim.session));
                } else {
                    found.kept.push(format!("database {name} (session {}: {})", claim.session, why(&claim)));
                }
            }
        }
        ServerKind::Redis => {
            let range = databases.ok_or_else(|| {
                "a Redis server needs --databases first-last: the logical databases cleanroom may flush".to_string()
            })?;
            let (_, holders) = crate::external::redis::holders(url, range).await?;
            for (db, holder) in range.rooms().zip(holders) {
                match holder.as_deref().and_then(Claim::decode) {
                    Some(claim) if goes(&claim) => {
                        found.removed.push(format!("logical database {db} (session {})", claim.session))
                    }
                    Some(claim) => {
                        found.kept.push(format!("logical database {db} (session {}: {})", claim.session, why(&claim)))
                    }
                    None => {}
                }
            }
        }
    }
    if !dry_run {
        remove_from(url, databases, true, goes, &tags).await?;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::raw_url;
        use crate::external::{ServerKind, ServerUrl};

        fn claim(session: &str, owner: &str, process: Option<&str>) -> crate::external::Claim {
            crate::external::Claim { session: session.into(), owner: owner.into(), process: process.map(Into::into) }
        }

        const TTL: std::time::Duration = std::time::Duration::from_secs(600);

        #[test]
        fn judge_another_owners_run_idle_only_once_its_beat_is_older_than_the_ttl() {
            use super::super::idle_runs;
            let now = 100_000;
            let beats =
                [(claim("old", "elsewhere", None), now - 601, 0), (claim("fresh", "elsewhere", None), now - 599, 0)];
            let idle = idle_runs(&beats, now, TTL, "me");
            assert_eq!(idle, [claim("old", "elsewhere", None)]);
        }

        #[test]
        fn give_a_run_that_beats_by_a_longer_ttl_that_ttl() {
            use super::super::idle_runs;
            let now = 100_000;
            let short = std::time::Duration::from_secs(30);
            // It beats every 600 s (a third of its 1800 s): 599 s of silence
            // is no sign of death to a judge whose TTL is 30 s.
            assert!(idle_runs(&[(claim("s", "elsewhere", None), now - 599, 1800)], now, short, "me").is_empty());
            let gone = [(claim("s", "elsewhere", None), now - 1801, 1800)];
            assert_eq!(idle_runs(&gone, now, short, "me"), [claim("s", "elsewhere", None)]);
            let quick = [(claim("s", "elsewhere", None), now - 599, 10)];
            assert!(idle_runs(&quick, now, TTL, "me").is_empty(), "its shorter TTL never shortens the judge's");
        }

        #[test]
        fn never_judge_this_owners_runs_by_their_beat() {
            let now = 100_000;
            assert!(super::super::idle_runs(&[(claim("s", "me", None), 0, 0)], now, TTL, "me").is_empty());
        }

        #[test]
        fn keep_a_run_whose_latest_process_beat_recently() {
            use super::super::idle_runs;
            let now = 100_000;
            let beats = [
                (claim("s", "elsewhere", Some("1:1")), now - 5_000, 0),
                (claim("s", "elsewhere", Some("2:2")), now - 10, 0),
            ];
            assert!(idle_runs(&beats, now, TTL, "me").is_empty(), "its second process still beats");
            let gone = [(claim("s", "elsewhere", Some("1:1")), now - 5_000, 0)];
            assert_eq!(idle_runs(&gone, now, TTL, "me"), [claim("s", "elsewhere", None)]);
        }

        #[test]
        fn doom_every_claim_of_an_idle_run_and_nothing_of_its_namesakes() {
            let idle = [claim("s", "elsewhere", None)];
            assert!(super::super::is_idle(&claim("s", "elsewhere", Some("1:1")), &idle));
            assert!(!super::super::is_idle(&claim("s", "another", None), &idle), "same session, other owner");
            assert!(!super::super::is_idle(&claim("t", "elsewhere", None), &idle));
        }

        #[test]
        fn record_a_url_that_reads_back_the_same() {
            for (kind, text) in [
                (ServerKind::Postgres, "postgres://app:p%40ss%3Aw@db:5544/main"),
                (ServerKind::Redis, "redis://:secret@[::1]:7000/3"),
                (ServerKind::Redis, "redis://127.0.0.1:6379"),
            ] {
                let url = ServerUrl::parse(kind, text).unwrap();
                assert_eq!(ServerUrl::parse(kind, &raw_url(&url)).unwrap(), url, "{text}");
            }
        }
    }
}
