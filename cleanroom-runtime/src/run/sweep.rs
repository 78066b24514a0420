//! The orphan sweep: what runs that are provably over left behind, removed
//! by a reaper when it starts and by `cargo cleanroom prune`.

use std::time::Duration;

use super::liveness::{is_orphan, session_alive, socket_path};
use super::marks::{remove_stale_ready_marks, remove_stale_run_dirs};
use crate::docker::{is_mine, owner_labels, Docker, MANAGED_LABEL, REUSE_LABEL, SESSION_LABEL};
use crate::util::paths::runtime_dir;

/// Lock files of runs that ended more than this long ago are removed.
pub(super) const STALE_LOCK_AGE: Duration = Duration::from_secs(24 * 3600);

/// Removes every container, network and volume of `session`.
/// `Err` when the engine could not be asked or refused a removal: the caller
/// may try again.
pub(crate) async fn remove_session(docker: &Docker, session: &str) -> Result<(), String> {
    let owner = owner_labels();
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

/// Removes what dead runs left behind (see [`is_orphan`]), never `me`'s;
/// returns the sessions removed.
pub(crate) async fn sweep_orphans(docker: &Docker, me: &str) -> Vec<String> {
    let dead = dead_sessions(docker, me).await;
    for session in &dead {
        let _ = remove_session(docker, session).await;
        let _ = std::fs::remove_file(socket_path(session));
    }
    remove_stale_locks(me);
    remove_stale_run_dirs(me);
    remove_stale_ready_marks(docker).await;
    dead
}

/// The sessions, other than `me`, whose run is over but whose containers or
/// networks are still here.
pub(crate) async fn dead_sessions(docker: &Docker, me: &str) -> Vec<String> {
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
            let dead_here = is_mine(&labels) && session_alive(session) == Some(false);
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
        if session != me && session != "reuse" && old && session_alive(session) == Some(false) {
            let _ = std::fs::remove_file(&path);
        }
    }
}
