//! The orphan sweep: what runs that are provably over left behind, removed
//! by a reaper when it starts and by `cargo cleanroom prune`.

use std::time::Duration;

use super::heartbeat::{idle_remote_runs, idle_ttl};
use super::liveness::{is_orphan, run_over, socket_path};
use super::marks::{remove_stale_ready_marks, remove_stale_run_dirs};
use crate::docker::{is_mine, owner_labels, Docker, MANAGED_LABEL, REUSE_LABEL, SESSION_LABEL};
use crate::util::paths::runtime_dir;

/// Lock files of runs that ended more than this long ago are removed.
pub(super) const STALE_LOCK_AGE: Duration = Duration::from_secs(24 * 3600);

/// Removes every container, network and volume of `session`.
/// `Err` when the engine could not be asked or refused a removal: the caller
/// may try again.
pub(crate) async fn remove_session(docker: &Docker, session: &str) -> Result<(), String> {
    remove_run(docker, session, &owner_labels()).await
}

/// Removes every container, network and volume of `session` that carries
/// the owner labels `owner` (this user's, or those of a run of another
/// machine that went idle).
async fn remove_run(docker: &Docker, session: &str, owner: &[(&'static str, String)]) -> Result<(), String> {
    let mut labels = vec![(MANAGED_LABEL, "true"), (SESSION_LABEL, session)];
    labels.extend(owner.iter().map(|(k, v)| (*k, v.as_str())));
    let ids = docker.containers_labelled(&labels).await?;
    let removed = futures_util::future::join_all(ids.iter().map(|id| docker.remove(id))).await;
    for id in &ids {
        super::marks::forget_ready(id);
    }
    removed.into_iter().collect::<Result<Vec<()>, _>>()?;
    docker.remove_networks_and_volumes(&labels).await?;
    Ok(())
}

/// Removes what dead runs left behind (see [`is_orphan`]) and what runs of
/// other machines left once idle for `run.remote_idle_ttl` (see
/// [`heartbeat`](super::heartbeat)), never `me`'s; returns the sessions
/// removed.
pub(crate) async fn sweep_orphans(docker: &Docker, me: &str) -> Vec<String> {
    let mut dead = dead_sessions_here(docker, me).await;
    for session in &dead {
        let _ = remove_session(docker, session).await;
        let _ = std::fs::remove_file(socket_path(session));
    }
    for run in idle_remote_runs(docker, idle_ttl()).await {
        if remove_run(docker, &run.session, &run.owner).await.is_ok() && !dead.contains(&run.session) {
            dead.push(run.session);
        }
    }
    remove_stale_files(me);
    remove_stale_ready_marks(docker).await;
    dead
}

/// Removes the lock files and run directories of runs that are over (the
/// part of the sweep that needs no engine: a reaper whose engine is away,
/// or a run on the local engine or existing servers alone, still does it).
/// Local servers' records live in run directories: sweep those first.
pub(crate) fn remove_stale_files(me: &str) {
    remove_stale_locks(me);
    remove_stale_run_dirs(me);
}

/// The sessions, other than `me`, whose run is over but whose containers or
/// networks are still here: this owner's dead runs and other machines'
/// idle ones.
pub(crate) async fn dead_sessions(docker: &Docker, me: &str) -> Vec<String> {
    let mut dead = dead_sessions_here(docker, me).await;
    for run in idle_remote_runs(docker, idle_ttl()).await {
        if !dead.contains(&run.session) {
            dead.push(run.session);
        }
    }
    dead
}

/// This owner's sessions, other than `me`, whose run is provably over.
async fn dead_sessions_here(docker: &Docker, me: &str) -> Vec<String> {
    let Ok(all) = docker.containers_with_labels(&format!("{MANAGED_LABEL}=true")).await else { return Vec::new() };
    let mut dead: Vec<String> = Vec::new();
    for (_, labels, _) in &all {
        let Some(session) = labels.get(SESSION_LABEL) else { continue };
        if session != me && !dead.contains(session) && is_orphan(labels) {
            dead.push(session.clone());
        }
    }
    // A run may leave a network without containers (its reaper was killed
    // after removing them).
    if let Ok(networks) = docker.networks_with_labels(&format!("{MANAGED_LABEL}=true")).await {
        for (_, labels) in networks {
            let Some(session) = labels.get(SESSION_LABEL) else { continue };
            let reused = labels.get(REUSE_LABEL).is_some_and(|v| v == "true");
            let dead_here = is_mine(&labels) && run_over(session);
            if session != me && !reused && !dead.contains(session) && dead_here {
                dead.push(session.clone());
            }
        }
    }
    dead
}

/// Removes the lock files of runs that ended long ago (nobody holds them).
pub(super) fn remove_stale_locks(me: &str) {
    let Ok(entries) = std::fs::read_dir(runtime_dir()) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(session) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".lock")) else {
            continue;
        };
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > STALE_LOCK_AGE));
        if session != me && session != "reuse" && old && run_over(session) {
            let _ = std::fs::remove_file(&path);
        }
    }
}
