//! What the `cleanroom` command asks of the runtime: the containers
//! cleanroom made on this engine and whose run they belong to, removing those
//! of runs that are over, where reports are kept and how they read.
//! Everything here looks only at containers labelled `cleanroom.managed=true`.

use std::path::PathBuf;

use crate::docker::{Docker, OWNER_LABEL, REUSE_LABEL, SERVICE_LABEL, SESSION_LABEL};
use crate::engine::Provisioner;
use crate::error::Error;

/// Whether the run a container belongs to is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Its session's reaper holds its lock.
    Live,
    /// Its session's reaper is gone: `prune` removes it.
    Dead,
    /// Kept for reuse by later runs; removed after its TTL by the keeper.
    Reused,
    /// No lock file on this machine for it: another user's run, a run on
    /// another machine, or one made without a reaper.
    Unknown,
}

impl RunState {
    /// `live`, `dead`, `reused`, `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Live => "live",
            RunState::Dead => "dead",
            RunState::Reused => "reused",
            RunState::Unknown => "unknown",
        }
    }
}

/// A container cleanroom made.
#[derive(Debug, Clone)]
pub struct ManagedContainer {
    /// The container id.
    pub id: String,
    /// The container name.
    pub name: String,
    /// The image.
    pub image: String,
    /// Docker's state: created, running, exited, ...
    pub state: String,
    /// The `cleanroom.session` label.
    pub session: String,
    /// The `cleanroom.service` label.
    pub service: String,
    /// The `cleanroom.owner` label (a uid).
    pub owner: String,
    /// Seconds since the epoch.
    pub created: i64,
    /// Whether its run is still going.
    pub run: RunState,
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| Error::Operation {
        service: "cleanroom".into(),
        operation: "starting a runtime".into(),
        reason: e.to_string(),
    })
}

fn operation(operation: &str, reason: impl std::fmt::Display) -> Error {
    Error::Operation { service: "docker".into(), operation: operation.into(), reason: reason.to_string() }
}

/// A service of a run that no container engine runs: a local server, or one
/// on an existing server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceElsewhere {
    /// The run's session.
    pub session: String,
    /// The service's name.
    pub service: String,
    /// What runs it: `local` (a process of this machine) or `existing` (a
    /// server that was already running).
    pub engine: String,
    /// Where it is: the server's URL, password masked; a local server's
    /// program, pid and address.
    pub address: String,
    /// Whether its run is still going.
    pub run: RunState,
}

/// The services of this runtime directory's runs that no container engine
/// runs (local servers, existing servers), listed by their engines from the
/// runs' records (no container engine is asked).
pub fn list_elsewhere() -> Vec<ServiceElsewhere> {
    let engines: [Box<crate::run::start::Driver<'static>>; 2] =
        [Box::new(crate::run::local::LocalDriver), Box::new(crate::run::existing::ExistingDriver::default())];
    let Ok(runtime) = runtime() else { return Vec::new() };
    engines
        .iter()
        .flat_map(|engine| {
            let owned = runtime.block_on(engine.list_owned()).unwrap_or_default();
            owned.into_iter().map(move |o| (engine.kind(), o))
        })
        .map(|(kind, o)| {
            let run = match crate::run::liveness::session_state(&o.session) {
                Some(true) => RunState::Live,
                Some(false) => RunState::Dead,
                None => RunState::Unknown,
            };
            ServiceElsewhere {
                session: o.session,
                service: o.service,
                engine: kind.name().to_string(),
                address: o.address,
                run,
            }
        })
        .collect()
}

/// Every container labelled `cleanroom.managed=true`, oldest session first.
pub fn list() -> Result<Vec<ManagedContainer>, Error> {
    runtime()?.block_on(async {
        let docker = crate::run::start::DockerDriver::on(Docker::connect().await?);
        let listed = docker.list_owned().await.map_err(|e| operation("listing containers", e))?;

        let mut out: Vec<ManagedContainer> = listed
            .into_iter()
            .map(|c| {
                let label = |k: &str| c.labels.get(k).cloned().unwrap_or_default();
                let session = label(SESSION_LABEL);
                let run = if label(REUSE_LABEL) == "true" {
                    RunState::Reused
                } else if crate::run::liveness::is_orphan(&c.labels) {
                    RunState::Dead
                } else if !crate::docker::is_mine(&c.labels) {
                    // Another user's, machine's or runtime directory's run:
                    // its locks are not here to ask.
                    RunState::Unknown
                } else {
                    match crate::run::liveness::session_state(&session) {
                        Some(true) => RunState::Live,
                        Some(false) => RunState::Dead,
                        None => RunState::Unknown,
                    }
                };
                ManagedContainer {
                    service: label(SERVICE_LABEL),
                    owner: label(OWNER_LABEL),
                    session,
                    id: c.id,
                    name: c.name,
                    image: c.image,
                    state: c.state,
                    created: c.created,
                    run,
                }
            })
            .collect();
        out.sort_by(|a, b| (a.created, &a.session, &a.service).cmp(&(b.created, &b.session, &b.service)));
        Ok(out)
    })
}

/// `prune` leaves cache volumes used (or made) more recently than this.
pub const CACHE_IDLE: std::time::Duration = std::time::Duration::from_secs(120);

/// What `prune` removes besides the containers, networks and volumes of
/// runs that are over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneOptions {
    /// Only say what would be removed.
    pub dry_run: bool,
    /// Leave the volume cache alone.
    pub keep_caches: bool,
    /// Also remove reused services that no live run uses, before their TTL.
    pub reused: bool,
}

/// What `prune` removed (or, on a dry run, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Sessions of runs that are over.
    pub sessions: Vec<String>,
    /// Names of reused containers.
    pub reused: Vec<String>,
    /// Names of cache volumes.
    pub caches: Vec<String>,
    /// What went from the existing servers configured for the built-in
    /// services (`CLEANROOM_POSTGRES_URL`, …): databases and Redis rooms,
    /// each with its run's session.
    pub existing: Vec<String>,
}

/// Removes the containers, networks and volumes of every run that is over
/// (the rule the reaper applies when it starts), this user's cache volumes
/// that no container mounts and nobody used for [`CACHE_IDLE`] (unless
/// `keep_caches`), and with `reused` the
/// reused services no live run uses. Live runs are left alone.
pub fn prune(options: PruneOptions) -> Result<Pruned, Error> {
    runtime()?.block_on(async {
        // Each engine sweeps its own (docs/engines.md): the local engine's
        // servers first, as the Docker sweep removes the run directories
        // their records are in; then the existing servers configured here.
        let docker = Docker::connect().await;
        let mut engines: Vec<Box<crate::run::start::Driver<'static>>> = vec![Box::new(crate::run::local::LocalDriver)];
        engines.extend(
            crate::run::existing::configured_servers()
                .into_iter()
                .map(|e| Box::new(e) as Box<crate::run::start::Driver<'static>>),
        );
        let mut pruned = Pruned::default();
        let mut elsewhere = Vec::new();
        for engine in &engines {
            let swept = engine.sweep_dead("", options.dry_run).await;
            match engine.kind() {
                crate::engine::EngineKind::Local => elsewhere.extend(swept.unwrap_or_default()),
                _ => match swept {
                    Ok(removed) => pruned.existing.extend(removed),
                    Err(e) => crate::util::say!("cleanroom: {e}"),
                },
            }
        }
        let docker = match docker {
            Ok(docker) => docker,
            // A machine on the local engine alone has no Docker to prune.
            Err(_) if crate::config::current().is_ok_and(|c| c.engine != crate::config::EngineChoice::Docker) => {
                return Ok(Pruned { sessions: elsewhere, ..pruned });
            }
            Err(e) => return Err(e.into()),
        };
        let containers = crate::run::start::DockerDriver::on(docker.clone());
        pruned.sessions = containers.sweep_dead("", options.dry_run).await.unwrap_or_default();
        for session in elsewhere {
            if !pruned.sessions.contains(&session) {
                pruned.sessions.push(session);
            }
        }
        if options.reused {
            let idle = crate::run::keeper::idle_reused(&docker).await;
            if !options.dry_run {
                crate::run::keeper::remove_reused(&docker, &idle).await;
            }
            pruned.reused = idle.into_iter().map(|(_, name)| name).collect();
        }
        if !options.keep_caches {
            let in_use = crate::cache::volumes_in_use(&docker).await;
            let entries = crate::cache::entries(&docker).await.map_err(|e| operation("listing volumes", e))?;
            let now = crate::util::clock::now_secs();
            // A run that starts now may be about to mount a volume it just
            // used (or one another run just made): only idle ones go.
            let idle =
                |e: &crate::cache::Entry| now - e.last_use >= CACHE_IDLE.as_secs() as i64 && !in_use.contains(&e.name);
            for entry in entries.into_iter().filter(idle) {
                if options.dry_run || crate::cache::remove(&docker, &entry.name).await.is_ok() {
                    pruned.caches.push(entry.name);
                }
            }
        }
        Ok(pruned)
    })
}

/// What `prune --url` found on an existing server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrunedServer {
    /// What dead runs of this user, machine and runtime directory left:
    /// removed (or, on a dry run, to be removed).
    pub removed: Vec<String>,
    /// What stays, and why: a live run's, or another owner's.
    pub kept: Vec<String>,
}

/// Removes from the existing server at `url` (`postgres://…` or
/// `redis://…`) the databases and Redis rooms that provably dead runs of
/// this user, machine and runtime directory left there (a run killed with
/// its reaper): the rule a starting run applies. `databases` is the Redis
/// range cleanroom may use (`8-15`). Nothing without cleanroom's mark is
/// touched.
pub fn prune_server(url: &str, databases: Option<&str>, dry_run: bool) -> Result<PrunedServer, Error> {
    let kind = if url.trim_start().starts_with("redis") {
        crate::external::ServerKind::Redis
    } else {
        crate::external::ServerKind::Postgres
    };
    let bad = |key: &str, reason: String| Error::Configuration { key: key.to_string(), reason };
    let url = crate::external::ServerUrl::parse(kind, url).map_err(|r| bad("--url", r))?;
    let databases =
        databases.map(crate::external::redis::DatabaseRange::parse).transpose().map_err(|r| bad("--databases", r))?;
    let found = runtime()?
        .block_on(crate::run::existing::prune_server(&url, databases, dry_run))
        .map_err(|e| operation("pruning an existing server", e))?;
    Ok(PrunedServer { removed: found.removed, kept: found.kept })
}

/// A cache volume (docs/caches.md).
#[derive(Debug, Clone)]
pub struct CacheVolume {
    /// The volume's name.
    pub name: String,
    /// The service it serves (`postgres`).
    pub service: String,
    /// Its size in bytes, as last measured (0: not known).
    pub size: u64,
    /// Seconds since the epoch of its last use.
    pub last_use: i64,
    /// Whether a container mounts it now.
    pub in_use: bool,
}

/// This user's cache volumes, least recently used first.
pub fn caches() -> Result<Vec<CacheVolume>, Error> {
    runtime()?.block_on(async {
        let docker = Docker::connect().await?;
        let in_use = crate::cache::volumes_in_use(&docker).await;
        let mut out: Vec<CacheVolume> = crate::cache::entries(&docker)
            .await
            .map_err(|e| operation("listing volumes", e))?
            .into_iter()
            .map(|e| CacheVolume {
                in_use: in_use.contains(&e.name),
                service: e.service,
                size: e.size,
                last_use: e.last_use,
                name: e.name,
            })
            .collect();
        out.sort_by_key(|c| (c.last_use, c.name.clone()));
        Ok(out)
    })
}

/// The labels that say who made a container, network or volume: the user,
/// the (hashed) machine and the (hashed) runtime directory. Only what
/// carries this process's values is ever judged, and removed, from here.
pub fn owner_labels() -> Vec<(String, String)> {
    crate::docker::owner_labels().into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// [`owner_labels`] of a process whose runtime directory is
/// `<xdg_runtime_dir>/cleanroom` (`XDG_RUNTIME_DIR` set to `xdg_runtime_dir`).
pub fn owner_labels_in(xdg_runtime_dir: &std::path::Path) -> Vec<(String, String)> {
    crate::docker::owner_labels_for(&xdg_runtime_dir.join("cleanroom"))
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// Where reapers' locks and sockets, and reports, live: `$XDG_RUNTIME_DIR/cleanroom`,
/// else `/tmp/cleanroom-<uid>`.
pub fn runtime_dir() -> PathBuf {
    crate::util::paths::runtime_dir()
}

/// Folds into their runs' documents the parts of reports still waiting for
/// their reaper (one killed before it folded them, or a run still going):
/// `cargo cleanroom report` calls it before it reads.
pub fn settle_reports() {
    crate::report::parts::fold_all();
}

/// The reports of recent runs (`<runtime dir>/reports/<session>.json`, one
/// document per run; `.jsonl` from versions that wrote schema 1), newest
/// first.
pub fn reports() -> Vec<PathBuf> {
    crate::report::reports()
}

/// A stored report (either schema) as people read it: the run's summary with
/// every service, then each test and what it waited for. `None` when `text`
/// is not a report.
pub fn render_report(text: &str) -> Option<String> {
    crate::report::render(text)
}

/// A size as the report prints it (`61.6 MiB`).
pub fn format_bytes(bytes: u64) -> String {
    crate::report::bytes(bytes)
}

/// Seconds since the epoch, now.
pub fn now() -> i64 {
    crate::util::clock::now_secs()
}
