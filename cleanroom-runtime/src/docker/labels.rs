//! The labels that mark what cleanroom owns, and the engine's filter for them.

use std::collections::HashMap;

/// The label every container, network and volume cleanroom creates carries.
pub const MANAGED_LABEL: &str = "cleanroom.managed";
/// The label that names the session (the run) that created it.
pub const SESSION_LABEL: &str = "cleanroom.session";
/// The label that names the service.
pub const SERVICE_LABEL: &str = "cleanroom.service";
/// The label with the hash of the service's full definition.
pub const DEFINITION_LABEL: &str = "cleanroom.definition";
/// The label with the uid of the user whose run created it.
pub const OWNER_LABEL: &str = "cleanroom.owner";
/// The label of a service kept for the next run (`CLEANROOM_REUSE`).
pub const REUSE_LABEL: &str = "cleanroom.reuse";
/// The label with the (hashed) machine whose run created it: a run on
/// another machine sharing the engine is never judged from this one.
pub const HOST_LABEL: &str = "cleanroom.host";
/// The label with the (hashed) runtime directory of the run that created
/// it: the directory whose locks say whether that run is alive.
pub const RUNTIME_LABEL: &str = "cleanroom.runtime";
/// The label of what a process without a reaper created (`pid:start`): it
/// belongs to that process alone, not to the other processes of its run.
pub const PROCESS_LABEL: &str = "cleanroom.process";
/// The label of a container the processes of a run share, with the process
/// that created it (`pid:start`). It says nothing about who removes it: the
/// processes waiting for it to run read it, to tell a creator still
/// starting it from one that ended between its create and its start.
pub const CREATOR_LABEL: &str = "cleanroom.creator";
/// The label with the `run.remote_idle_ttl` (seconds) of the run that
/// created a container: the run beats by it, so a judge on another machine,
/// whose own TTL may be shorter, waits at least that long (see
/// `run::heartbeat`).
pub const TTL_LABEL: &str = "cleanroom.remote-idle-ttl";

/// Who owns what this process creates: the user, the machine and the
/// runtime directory. Together with the session they decide what a reaper,
/// a sweep or `prune` may remove.
pub(crate) fn owner_labels() -> [(&'static str, String); 3] {
    owner_labels_for(&crate::util::paths::runtime_dir())
}

/// [`owner_labels`] of a process whose runtime directory is `runtime`.
pub(crate) fn owner_labels_for(runtime: &std::path::Path) -> [(&'static str, String); 3] {
    [
        (OWNER_LABEL, crate::util::paths::uid().to_string()),
        (HOST_LABEL, crate::util::paths::short_hash(&crate::util::paths::host_id())),
        (RUNTIME_LABEL, crate::util::paths::short_hash(&runtime.to_string_lossy())),
    ]
}

/// Whether the object with `labels` was made by this user, on this machine,
/// from this runtime directory: only then can this process's view of locks
/// and processes say whether its run is alive.
pub(crate) fn is_mine(labels: &HashMap<String, String>) -> bool {
    owner_labels().iter().all(|(key, value)| labels.get(*key) == Some(value))
}

/// A short key of [`owner_labels`], folded into the names of shared
/// containers and networks so that runs of other owners never meet them.
pub(crate) fn owner_key() -> String {
    let [(_, uid), (_, host), (_, runtime)] = owner_labels();
    crate::util::paths::short_hash(&format!("{uid}/{host}/{runtime}"))
}

/// The engine's filter for objects carrying every one of `labels`
/// (`key=value` or just `key`).
pub(crate) fn label_filters(labels: impl IntoIterator<Item = String>) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), labels.into_iter().collect())])
}
