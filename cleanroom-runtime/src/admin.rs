//! What the `cleanroom` command asks of the runtime: the containers
//! cleanroom made on this engine and whose run they belong to, removing those
//! of runs that are over, where reports are kept and how they read.
//! Everything here looks only at containers labelled `cleanroom.managed=true`.

use std::path::PathBuf;

use crate::backend::{Docker, MANAGED_LABEL, OWNER_LABEL, REUSE_LABEL, SERVICE_LABEL, SESSION_LABEL};
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

fn operation(operation: &str, reason: String) -> Error {
    Error::Operation { service: "docker".into(), operation: operation.into(), reason }
}

/// Every container labelled `cleanroom.managed=true`, oldest session first.
pub fn list() -> Result<Vec<ManagedContainer>, Error> {
    runtime()?.block_on(async {
        let docker = Docker::connect().await?;
        let listed = docker.list(&format!("{MANAGED_LABEL}=true")).await.map_err(|e| operation("listing containers", e))?;
        let now = crate::reaper::now_secs();
        let mut out: Vec<ManagedContainer> = listed
            .into_iter()
            .map(|c| {
                let label = |k: &str| c.labels.get(k).cloned().unwrap_or_default();
                let session = label(SESSION_LABEL);
                let run = if label(REUSE_LABEL) == "true" {
                    RunState::Reused
                } else if crate::reaper::is_orphan(&c.labels, c.created, now) {
                    RunState::Dead
                } else {
                    match crate::reaper::session_state(&session) {
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

/// Removes the containers, networks and volumes of every run that is over
/// (the rule the reaper applies when it starts), and returns those sessions.
/// Live runs and reused services are left alone.
pub fn prune() -> Result<Vec<String>, Error> {
    runtime()?.block_on(async {
        let docker = Docker::connect().await?;
        Ok(crate::reaper::sweep_orphans(&docker, "").await)
    })
}

/// Where reapers' locks and sockets, and reports, live: `$XDG_RUNTIME_DIR/cleanroom`,
/// else `/tmp/cleanroom-<uid>`.
pub fn runtime_dir() -> PathBuf {
    crate::reaper::runtime_dir()
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

/// Seconds since the epoch, now.
pub fn now() -> i64 {
    crate::reaper::now_secs()
}
