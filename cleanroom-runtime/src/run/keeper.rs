//! Reused services (`CLEANROOM_REUSE`): the claims runs leave on them, the
//! keeper that removes them once idle for their TTL, and what `prune
//! --reused` removes.

use std::fs::File;
use std::path::PathBuf;
use std::time::Duration;

use super::liveness::session_alive;
use crate::docker::{is_mine, owner_labels, Docker, MANAGED_LABEL, REUSE_LABEL, SESSION_LABEL};
use crate::util::paths::{runtime_dir, uid};

pub(super) fn reuse_dir() -> PathBuf {
    runtime_dir().join("reuse")
}

/// How many reused services this runtime directory knows of (alive or
/// waiting for their TTL).
pub(crate) fn reused_held() -> usize {
    std::fs::read_dir(reuse_dir()).into_iter().flatten().flatten().filter(|e| e.path().is_dir()).count()
}

/// Records that `session` uses the reused container `container_name`: a
/// file `reuse/<container>/<session>` whose age is the time since the
/// session last used it. The keeper removes a reused container once no live
/// session claims it and the newest claim is older than the TTL.
pub(crate) fn claim_reused(container_name: &str, session: &str, ttl: Duration) {
    let dir = reuse_dir().join(container_name);
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join(session), format!("{}\n", ttl.as_secs_f64()));
    }
}

/// Refreshes the claims of `session` when it ends, so that the TTL counts
/// from the end of the last run that used a reused container.
pub(super) fn touch_claims(session: &str) {
    let Ok(dirs) = std::fs::read_dir(reuse_dir()) else { return };
    for dir in dirs.flatten() {
        let claim = dir.path().join(session);
        if let Ok(ttl) = std::fs::read_to_string(&claim) {
            let _ = std::fs::write(&claim, ttl);
        }
    }
}

/// While reused containers exist, removes each one whose claims are all of
/// dead sessions and older than their TTL. One keeper per user: the first
/// reaper to finish with reused containers around stays on as the keeper.
pub(super) fn keep_reused(runtime: &tokio::runtime::Runtime, docker: &Docker) {
    let Ok(lock) =
        File::options().read(true).write(true).create(true).truncate(false).open(runtime_dir().join("reuse.lock"))
    else {
        return;
    };
    if lock.try_lock().is_err() {
        return;
    }
    let policy = crate::config::current().map(|c| c.caches.container).ok();
    loop {
        let Ok(dirs) = std::fs::read_dir(reuse_dir()) else { return };
        let mut remaining = 0;
        // Idle ones (no live run claims them) not yet past their TTL: the
        // container layer's cap decides among them.
        let mut idle: Vec<(crate::eviction::Item, std::path::PathBuf)> = Vec::new();
        for dir in dirs.flatten() {
            let container = dir.file_name().to_string_lossy().into_owned();
            let mut live = false;
            let mut expires: Option<std::time::SystemTime> = None;
            let (mut first, mut last, mut uses) = (i64::MAX, 0, 0);
            for claim in std::fs::read_dir(dir.path()).into_iter().flatten().flatten() {
                let session = claim.file_name().to_string_lossy().into_owned();
                if session_alive(&session) == Some(true) {
                    live = true;
                }
                let ttl = std::fs::read_to_string(claim.path())
                    .ok()
                    .and_then(|t| t.trim().parse::<f64>().ok())
                    .map(Duration::from_secs_f64)
                    .unwrap_or(crate::config::DEFAULT_REUSE_TTL);
                if let Ok(modified) = claim.metadata().and_then(|m| m.modified()) {
                    let at = modified + ttl;
                    expires = Some(expires.map_or(at, |e| e.max(at)));
                    let secs = epoch_secs(modified);
                    (first, last) = (first.min(secs), last.max(secs));
                }
                uses += 1;
            }
            let expired = expires.is_none_or(|at| std::time::SystemTime::now() >= at);
            if live || !expired {
                remaining += 1;
                if !live {
                    let item = crate::eviction::Item {
                        name: container,
                        created: first.min(last),
                        last_use: last,
                        uses,
                        size: 0,
                    };
                    idle.push((item, dir.path()));
                }
                continue;
            }
            runtime.block_on(remove_named(docker, &container));
            let _ = std::fs::remove_dir_all(dir.path());
        }
        if let Some(policy) = policy.filter(|p| p.cap.is_some()) {
            let items: Vec<_> = idle.iter().map(|(item, _)| item.clone()).collect();
            let now = crate::util::clock::now_secs();
            for name in crate::eviction::plan(&items, policy.eviction, None, policy.cap, now) {
                if let Some((_, dir)) = idle.iter().find(|(item, _)| item.name == name) {
                    runtime.block_on(remove_named(docker, &name));
                    let _ = std::fs::remove_dir_all(dir);
                    remaining -= 1;
                }
            }
        }
        if remaining == 0 {
            // The reused services' network, and the volumes cleanroom made
            // for them, go with the last of them.
            runtime.block_on(remove_reused_network(docker));
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Takes back the ready mark and the attach record of a reused container
/// that was removed: the next run with its definition names its container
/// the same, and would attach to the one that is gone.
fn forget(id: &str, name: &str) {
    super::marks::forget_ready(id);
    super::marks::forget_record(name);
}

/// Removes the container named `name`, if there is one.
async fn remove_named(docker: &Docker, name: &str) {
    if let Ok(Some(c)) = docker.inspect_named(name).await {
        let _ = docker.remove(&c.id).await;
        forget(&c.id, name);
    }
}

fn epoch_secs(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// This user's reused containers (by name) that no live run uses, whatever
/// their TTL: what `cleanroom prune --reused` removes.
pub(crate) async fn idle_reused(docker: &Docker) -> Vec<(String, String)> {
    let Ok(all) = docker.list(&format!("{REUSE_LABEL}=true")).await else { return Vec::new() };
    all.into_iter()
        .filter(|c| is_mine(&c.labels) && c.labels.get(MANAGED_LABEL).is_some_and(|v| v == "true"))
        .filter(|c| {
            let claims = std::fs::read_dir(reuse_dir().join(&c.name)).into_iter().flatten().flatten();
            !claims.into_iter().any(|claim| session_alive(&claim.file_name().to_string_lossy()) == Some(true))
        })
        .map(|c| (c.id, c.name))
        .collect()
}

/// Removes reused containers (ids and names from [`idle_reused`]), their
/// claims, and the reused services' network once none is left.
pub(crate) async fn remove_reused(docker: &Docker, containers: &[(String, String)]) {
    for (id, name) in containers {
        let _ = docker.remove(id).await;
        forget(id, name);
        let _ = std::fs::remove_dir_all(reuse_dir().join(name));
    }
    let still = docker.list(&format!("{REUSE_LABEL}=true")).await.map(|l| l.len()).unwrap_or(1);
    if still == 0 {
        // As the keeper does: the network, and the volumes cleanroom made
        // for reused services, go with the last of them.
        remove_reused_network(docker).await;
    }
}

/// Removes the network and volumes of this owner's reused services.
pub(super) async fn remove_reused_network(docker: &Docker) {
    let reuse_session = format!("reuse-{}", uid());
    let owner = owner_labels();
    let mut labels = vec![(MANAGED_LABEL, "true"), (SESSION_LABEL, reuse_session.as_str())];
    labels.extend(owner.iter().map(|(k, v)| (*k, v.as_str())));
    let _ = docker.remove_networks_and_volumes(&labels).await;
}
