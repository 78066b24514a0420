//! Whether a run is alive, as this process can prove it: its reaper holds
//! its lock here, or its registered processes run. Only what this owner made
//! is judged (docs/reliability.md).

use std::fs::File;
use std::path::PathBuf;

use super::marks::run_dir;
use super::session::ProcessId;
use crate::docker::{is_mine, MANAGED_LABEL, PROCESS_LABEL, REUSE_LABEL, SESSION_LABEL};
use crate::util::paths::runtime_dir;

/// The reaper's socket: in the runtime directory, hashed or under `/tmp`
/// when the path would be too long for a socket address (macOS).
pub(super) fn socket_path(session: &str) -> PathBuf {
    crate::util::paths::socket_path(session)
}

pub(super) fn lock_path(session: &str) -> PathBuf {
    runtime_dir().join(format!("{session}.lock"))
}

/// Where the processes of a run register themselves (`pid:start`), so that
/// a reaper that replaces a killed one knows every process still running,
/// not only those that connect to it.
pub(super) fn clients_dir(session: &str) -> PathBuf {
    run_dir(session).join("clients")
}

/// Registers this process as a client of `session`'s run.
pub(super) fn register_client(session: &str) {
    let Some(me) = ProcessId::current() else { return };
    let dir = clients_dir(session);
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join(me.encode()), b"");
    }
}

/// Takes this process's registration back, at its exit.
pub(crate) fn unregister_client(session: &str) {
    if let Some(me) = ProcessId::current() {
        let _ = std::fs::remove_file(clients_dir(session).join(me.encode()));
    }
}

/// How many registered clients of `session` still run; the registrations
/// of those that are gone (killed without unregistering) are removed.
pub(super) fn live_clients(session: &str) -> usize {
    let mut live = 0;
    for entry in std::fs::read_dir(clients_dir(session)).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        match ProcessId::decode(&name) {
            Some(p) if p.is_alive() => live += 1,
            _ => {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    live
}

/// Whether the session's reaper is alive: somebody holds its lock.
pub(super) fn session_alive(session: &str) -> Option<bool> {
    let file = File::options().read(true).write(true).open(lock_path(session)).ok()?;
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            Some(false)
        }
        Err(_) => Some(true),
    }
}

/// Whether `session`'s run is provably over here: its lock exists and
/// nobody holds it, and none of the processes registered with its reaper
/// runs. The lock alone is not enough: while a killed reaper is being
/// replaced nobody holds it, yet the run's processes still use what it made.
pub(super) fn run_over(session: &str) -> bool {
    session_alive(session) == Some(false) && live_clients(session) == 0
}

/// Whether a container of `session` provably belongs to no live run.
///
/// Only what this user made on this machine from this runtime directory is
/// judged ([`is_mine`]): another user's, another machine's (an engine shared
/// by several) or another runtime directory's run cannot be proven dead from
/// here, so it is never swept from here. Of ours, a container a process
/// without a reaper made is dead when that process is; any other is dead when
/// its session's lock exists here, nobody holds it and no registered process
/// of the run is alive ([`run_over`]) — never because no lock is here. Reused containers belong to no run: the keeper removes them
/// after their TTL.
pub(crate) fn is_orphan(labels: &std::collections::HashMap<String, String>) -> bool {
    let Some(session) = labels.get(SESSION_LABEL) else { return false };
    if labels.get(MANAGED_LABEL).is_none_or(|v| v != "true") || labels.get(REUSE_LABEL).is_some_and(|v| v == "true") {
        return false;
    }
    if !is_mine(labels) {
        return false;
    }
    if let Some(process) = labels.get(PROCESS_LABEL) {
        return ProcessId::decode(process).is_some_and(|p| !p.is_alive());
    }
    run_over(session)
}

/// Whether `session`'s reaper runs (`Some(true)`), ran and is gone
/// (`Some(false)`), or left no lock file here (`None`).
pub(crate) fn session_state(session: &str) -> Option<bool> {
    session_alive(session)
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::*;
        use crate::docker::{owner_labels, OWNER_LABEL};
        use crate::util::paths::create_runtime_dir;

        fn labels(pairs: &[(&str, String)]) -> std::collections::HashMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
        }

        fn ours(session: &str) -> Vec<(&'static str, String)> {
            let mut l = vec![(MANAGED_LABEL, "true".to_string()), (SESSION_LABEL, session.to_string())];
            l.extend(owner_labels());
            l
        }

        #[test]
        fn never_judge_a_run_of_another_owner() {
            // Its lock file here is stale and nobody holds it; still not ours.
            let session = format!("t-foreign-{}", std::process::id());
            create_runtime_dir().unwrap();
            std::fs::write(lock_path(&session), b"").unwrap();
            for (key, value) in [
                (OWNER_LABEL, "4242".to_string()),
                (crate::docker::HOST_LABEL, "0badc0de".to_string()),
                (crate::docker::RUNTIME_LABEL, "0badc0de".to_string()),
            ] {
                let mut l = labels(&ours(&session));
                l.insert(key.to_string(), value);
                assert!(!is_orphan(&l), "{key} differs: not ours to judge");
            }
            assert!(is_orphan(&labels(&ours(&session))), "ours, and its lock is free: dead");
            let _ = std::fs::remove_file(lock_path(&session));
        }

        #[test]
        fn never_take_a_run_whose_registered_process_runs_for_a_dead_one() {
            // Its reaper was killed and is not replaced yet: nobody holds the
            // lock, but this process (registered) still uses the run.
            let session = format!("t-between-reapers-{}", std::process::id());
            create_runtime_dir().unwrap();
            std::fs::write(lock_path(&session), b"").unwrap();
            register_client(&session);
            assert!(!is_orphan(&labels(&ours(&session))), "a registered process of the run is alive");
            assert!(!run_over(&session));
            unregister_client(&session);
            assert!(is_orphan(&labels(&ours(&session))), "once it is gone, the run is over");
            let _ = std::fs::remove_dir_all(run_dir(&session));
            let _ = std::fs::remove_file(lock_path(&session));
        }

        #[test]
        fn never_take_a_missing_lock_for_a_dead_run() {
            let session = format!("t-nolock-{}", std::process::id());
            assert!(!is_orphan(&labels(&ours(&session))));
        }

        #[test]
        fn judge_a_reaperless_container_by_its_process() {
            let session = format!("t-proc-{}", std::process::id());
            let mut l = labels(&ours(&session));
            let me = crate::run::session::ProcessId::of(std::process::id()).unwrap();
            l.insert(PROCESS_LABEL.to_string(), me.encode());
            assert!(!is_orphan(&l), "its process runs");
            l.insert(PROCESS_LABEL.to_string(), format!("{}:1", me.pid));
            assert!(is_orphan(&l), "a process of that pid that started at another time is not it");
        }
    }
}
