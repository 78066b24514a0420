//! Heartbeats: how a run on another machine that shares this engine (a
//! remote engine several CI machines use, a run inside a container) is
//! judged. Locks and processes prove a run alive or dead only on the machine
//! that holds them; from anywhere else a run is dead only once it has been
//! idle for `run.remote_idle_ttl`, measured on the **engine's** clock (so
//! that machines whose clocks disagree still agree) from its last heartbeat.
//!
//! The run's reaper (or, without one, each process for what it made) writes
//! the engine's time into [`HEARTBEAT_FILE`] in each of the run's containers
//! every [`interval`], through the engine's archive API (no shell needed). A
//! container with no heartbeat (a read-only root file system, or one that
//! was just made) counts from its creation, on the same clock.

use std::collections::HashMap;
use std::time::Duration;

use crate::docker::{
    Docker, HOST_LABEL, MANAGED_LABEL, OWNER_LABEL, REUSE_LABEL, RUNTIME_LABEL, SESSION_LABEL, TTL_LABEL,
};

/// Where a run's heartbeat is kept in each of its containers.
pub(crate) const HEARTBEAT_DIR: &str = "/";
/// The heartbeat's file name: the engine's time, seconds since the epoch.
pub(crate) const HEARTBEAT_NAME: &str = ".cleanroom-heartbeat";
/// [`HEARTBEAT_DIR`] and [`HEARTBEAT_NAME`] together.
pub(crate) const HEARTBEAT_FILE: &str = "/.cleanroom-heartbeat";

/// How often a run beats, for an idle TTL of `ttl`: six beats fit in it,
/// between once a second and once a minute.
pub(crate) fn interval(ttl: Duration) -> Duration {
    (ttl / 6).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// `run.remote_idle_ttl`, or its default when the configuration cannot be
/// read (a reaper must go on beating whatever the file says).
pub(crate) fn idle_ttl() -> Duration {
    crate::config::current().map_or(crate::config::DEFAULT_REMOTE_IDLE_TTL, |c| c.remote_idle_ttl)
}

/// Writes the engine's time into each container carrying `labels`; returns
/// how many took it.
pub(crate) async fn beat(docker: &Docker, labels: &[(&str, &str)]) -> usize {
    let Ok(now) = docker.engine_time().await else { return 0 };
    let Ok(ids) = docker.containers_labelled(labels).await else { return 0 };
    let body = format!("{now}\n");
    let writes = ids.iter().map(|id| docker.write_file(id, HEARTBEAT_DIR, HEARTBEAT_NAME, body.as_bytes()));
    futures_util::future::join_all(writes).await.into_iter().filter(Result::is_ok).count()
}

/// Without a reaper, a process beats for the containers it made itself
/// (those carrying its `cleanroom.process` label), on cleanroom's background
/// runtime, for as long as it lives. Started once.
pub(crate) fn beat_for_this_process(session: &str) {
    static STARTED: std::sync::Once = std::sync::Once::new();
    let session = session.to_string();
    STARTED.call_once(move || {
        crate::util::background::spawn_background(async move {
            let Some(me) = super::session::ProcessId::current().map(|p| p.encode()) else { return };
            let owner = crate::docker::owner_labels();
            let mut labels = vec![(MANAGED_LABEL, "true"), (SESSION_LABEL, session.as_str())];
            labels.push((crate::docker::PROCESS_LABEL, me.as_str()));
            labels.extend(owner.iter().map(|(k, v)| (*k, v.as_str())));
            let every = interval(idle_ttl());
            let mut docker = None;
            loop {
                if docker.is_none() {
                    docker = Docker::connect().await.ok();
                }
                if let Some(docker) = &docker {
                    let _ = tokio::time::timeout(BEAT_TIMEOUT, beat(docker, &labels)).await;
                }
                tokio::time::sleep(every).await;
            }
        });
    });
}

/// How long one round of heartbeats may take before it is given up (an
/// engine that hangs must not hold up what waits for the round).
pub(crate) const BEAT_TIMEOUT: Duration = Duration::from_secs(5);

/// A run made on another machine (or from inside another container) that
/// has been idle longer than its TTL: the labels that name its owner, so
/// that removing it removes only what that owner made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdleRun {
    pub(crate) session: String,
    pub(crate) owner: Vec<(&'static str, String)>,
}

/// One container of a run judged by heartbeat.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) id: String,
    pub(crate) labels: HashMap<String, String>,
    /// When the engine created it, on the engine's clock.
    pub(crate) created: i64,
}

/// Whether `labels` name a run of another machine: made by cleanroom, part
/// of a run (not a reused service, which the keeper judges), with a host
/// label that is not this machine's.
pub(crate) fn is_remote(labels: &HashMap<String, String>) -> bool {
    let mine = crate::util::paths::short_hash(&crate::util::paths::host_id());
    labels.get(MANAGED_LABEL).is_some_and(|v| v == "true")
        && labels.contains_key(SESSION_LABEL)
        && labels.get(REUSE_LABEL).is_none_or(|v| v != "true")
        && labels.get(HOST_LABEL).is_some_and(|h| *h != mine)
}

/// The runs among `containers` whose every container last beat (or, with
/// no heartbeat, was created) more than `ttl` before `now`, all times on the
/// engine's clock; `heartbeats` holds each container's last beat. A run that
/// says it beats by a longer TTL (its containers' [`TTL_LABEL`]) is given
/// that one: it may beat only once a minute, and a judge with a shorter TTL
/// must not take that for silence.
pub(crate) fn idle_runs(
    containers: &[Seen],
    heartbeats: &HashMap<String, i64>,
    now: i64,
    ttl: Duration,
) -> Vec<IdleRun> {
    let mut last: Vec<(IdleRun, i64, u64)> = Vec::new();
    for c in containers.iter().filter(|c| is_remote(&c.labels)) {
        let own_ttl = c.labels.get(TTL_LABEL).and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
        let owner: Vec<(&'static str, String)> = [OWNER_LABEL, HOST_LABEL, RUNTIME_LABEL]
            .into_iter()
            .map(|k| (k, c.labels.get(k).cloned().unwrap_or_default()))
            .collect();
        let run = IdleRun { session: c.labels[SESSION_LABEL].clone(), owner };
        let seen = heartbeats.get(&c.id).copied().unwrap_or(c.created);
        match last.iter_mut().find(|(r, _, _)| *r == run) {
            Some((_, t, longest)) => {
                *t = (*t).max(seen);
                *longest = (*longest).max(own_ttl);
            }
            None => last.push((run, seen, own_ttl)),
        }
    }
    last.into_iter().filter(|(_, t, own_ttl)| past_ttl(now, *t, ttl, *own_ttl)).map(|(r, _, _)| r).collect()
}

/// The one rule for a run of another machine, whether judged by its
/// containers here or by its beats on an existing server: it is idle when
/// its latest sign of life (`latest`, seconds) is older at `now` than the
/// longer of the judge's TTL and the longest TTL its own processes beat by
/// (`own`: their `TTL_LABEL`, or `ttl=` in their beats). A run never waits
/// longer between beats than its own TTL allows, so a judge with a shorter
/// TTL cannot take it for idle.
pub(crate) fn past_ttl(now: i64, latest: i64, judge: Duration, own: u64) -> bool {
    now.saturating_sub(latest) > i64::try_from(judge.as_secs().max(own)).unwrap_or(i64::MAX)
}

/// The runs of other machines on this engine that have been idle longer
/// than `ttl` (see the module's documentation).
pub(crate) async fn idle_remote_runs(docker: &Docker, ttl: Duration) -> Vec<IdleRun> {
    let Ok(listed) = docker.list(&format!("{MANAGED_LABEL}=true")).await else { return Vec::new() };
    let seen: Vec<Seen> = listed
        .into_iter()
        .filter(|c| is_remote(&c.labels))
        .map(|c| Seen { id: c.id, labels: c.labels, created: c.created })
        .collect();
    if seen.is_empty() {
        return Vec::new();
    }
    let Ok(now) = docker.engine_time().await else { return Vec::new() };
    let reads = seen.iter().map(|c| async move {
        let beat = docker.read_file(&c.id, HEARTBEAT_FILE).await.ok().flatten();
        let beat = beat.and_then(|b| String::from_utf8(b).ok()).and_then(|t| t.trim().parse::<i64>().ok());
        beat.map(|b| (c.id.clone(), b))
    });
    let heartbeats: HashMap<String, i64> = futures_util::future::join_all(reads).await.into_iter().flatten().collect();
    idle_runs(&seen, &heartbeats, now, ttl)
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::*;

        fn container(id: &str, session: &str, host: &str, created: i64) -> Seen {
            let labels = [
                (MANAGED_LABEL, "true"),
                (SESSION_LABEL, session),
                (OWNER_LABEL, "1000"),
                (HOST_LABEL, host),
                (RUNTIME_LABEL, "00000000"),
            ];
            Seen {
                id: id.into(),
                labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                created,
            }
        }

        const TTL: Duration = Duration::from_secs(600);

        #[test]
        fn never_judge_this_machines_runs_by_heartbeat() {
            let mine = crate::util::paths::short_hash(&crate::util::paths::host_id());
            let old = [container("a", "s", &mine, 0)];
            assert!(idle_runs(&old, &HashMap::new(), 1_000_000, TTL).is_empty());
        }

        #[test]
        fn sweep_a_remote_run_only_once_every_container_is_idle() {
            let run = [container("a", "s", "0badc0de", 0), container("b", "s", "0badc0de", 0)];
            let now = 10_000;
            let beats = HashMap::from([("a".to_string(), now - 700), ("b".to_string(), now - 100)]);
            assert!(idle_runs(&run, &beats, now, TTL).is_empty(), "b beat 100 s ago");
            let beats = HashMap::from([("a".to_string(), now - 700), ("b".to_string(), now - 601)]);
            let idle = idle_runs(&run, &beats, now, TTL);
            assert_eq!(idle.len(), 1);
            assert_eq!(idle[0].session, "s");
            assert!(idle[0].owner.contains(&(HOST_LABEL, "0badc0de".to_string())));
        }

        #[test]
        fn count_a_container_without_heartbeat_from_its_creation() {
            let now = 10_000;
            assert!(idle_runs(&[container("a", "s", "0badc0de", now - 30)], &HashMap::new(), now, TTL).is_empty());
            assert_eq!(idle_runs(&[container("a", "s", "0badc0de", now - 900)], &HashMap::new(), now, TTL).len(), 1);
        }

        #[test]
        fn keep_runs_of_two_owners_with_one_session_id_apart() {
            let mut other = container("b", "s", "0badc0de", 0);
            other.labels.insert(OWNER_LABEL.to_string(), "1001".to_string());
            let now = 10_000;
            let beats = HashMap::from([("a".to_string(), now - 900), ("b".to_string(), now)]);
            let idle = idle_runs(&[container("a", "s", "0badc0de", 0), other], &beats, now, TTL);
            assert_eq!(idle.len(), 1, "{idle:?}");
            assert!(idle[0].owner.contains(&(OWNER_LABEL, "1000".to_string())));
        }

        #[test]
        fn give_a_run_that_beats_by_a_longer_ttl_that_ttl() {
            let mut slow = container("a", "s", "0badc0de", 0);
            slow.labels.insert(TTL_LABEL.to_string(), "1800".to_string());
            let now = 10_000;
            // It beats once a minute by its own 30 minutes: 59 s of silence
            // is no sign of death to a judge whose TTL is 30 s.
            let beats = HashMap::from([("a".to_string(), now - 59)]);
            let short = Duration::from_secs(30);
            assert!(idle_runs(std::slice::from_ref(&slow), &beats, now, short).is_empty());
            let beats = HashMap::from([("a".to_string(), now - 1801)]);
            assert_eq!(idle_runs(std::slice::from_ref(&slow), &beats, now, short).len(), 1);
            // A shorter TTL of its own never shortens the judge's.
            slow.labels.insert(TTL_LABEL.to_string(), "10".to_string());
            let beats = HashMap::from([("a".to_string(), now - 59)]);
            assert_eq!(idle_runs(&[slow], &beats, now, short).len(), 1);
            let quick = container("b", "s", "0badc0de", 0);
            let beats = HashMap::from([("b".to_string(), now - 59)]);
            assert!(idle_runs(&[quick], &beats, now, Duration::from_secs(600)).is_empty());
        }

        #[test]
        fn leave_reused_services_to_the_keeper() {
            let mut reused = container("a", "s", "0badc0de", 0);
            reused.labels.insert(REUSE_LABEL.to_string(), "true".to_string());
            assert!(idle_runs(&[reused], &HashMap::new(), 1_000_000, TTL).is_empty());
        }

        #[test]
        fn beat_six_times_within_the_ttl() {
            assert_eq!(interval(Duration::from_secs(1800)), Duration::from_secs(60));
            assert_eq!(interval(Duration::from_secs(60)), Duration::from_secs(10));
            assert_eq!(interval(Duration::from_secs(3)), Duration::from_secs(1));
        }
    }
}
