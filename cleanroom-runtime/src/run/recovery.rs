//! Recovery: what the run does when the monitor reports that a service died,
//! turned unhealthy or crossed a limit. The monitor only reports; the
//! service's recovery policy, applied here, decides.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::registry::{Registry, RunningService, Source};
use super::start::backoff;
use crate::error::Error;
use crate::lifecycle::State;
use crate::monitor::Cause;
use crate::service::watch::{Recovery, ServiceFailure};

impl Registry {
    /// Starts the monitor of a service that became ready: it reports to
    /// [`Registry::recover`] while the service is the one tests get.
    pub(super) fn watch(&'static self, service: Arc<RunningService>) {
        let (name, id) = (service.name.clone(), service.id.clone());
        let (still_name, still_id) = (name.clone(), id.clone());
        crate::monitor::spawn(
            service,
            move || !crate::util::flags::shutting_down() && self.is_serving(&still_name, &still_id),
            move |cause| async move { self.recover(&name, &id, cause).await },
        );
    }

    /// A service died or turned unhealthy: records it, then replaces the
    /// container or gives up, as its recovery policy says. Tests that ask for
    /// the service meanwhile wait for the outcome. Several processes of a run
    /// may recover the same death at once: each removes the dead container by
    /// id, and Docker's unique container names let one create the replacement
    /// while the others attach to it.
    pub(crate) async fn recover(&'static self, name: &str, failed_id: &str, cause: Cause) {
        let Some(slot) = self.slot(name) else { return };
        let previous = {
            let mut serving = slot.serving.lock().unwrap_or_else(|e| e.into_inner());
            match serving.as_ref() {
                Some(s) if s.id == failed_id => serving.take().expect("checked"),
                // Already recovered (or never served): nothing to do.
                _ => return,
            }
        };
        // New callers wait from here on for the recovery's outcome.
        slot.outcome.send_replace(None);
        let unfilled = super::registry::FailUnfilled::new(name, &slot);
        crate::metrics::service(name, |m| {
            m.health = crate::metrics::Health::Unhealthy;
            if let Some(since) = m.ready_since.take() {
                m.uptime_ms += crate::metrics::ms(since.elapsed());
            }
        });
        let engine = previous.engine.clone();
        let ended = engine.ended(failed_id).await;
        let logs = match engine.logs(failed_id, Some(20)).await {
            Ok(l) if l.trim().is_empty() => "(no output)".to_string(),
            Ok(l) => l.trim_end().lines().map(|l| format!("  | {l}")).collect::<Vec<_>>().join("\n"),
            Err(e) => format!("(logs unavailable: {e})"),
        };
        let short = &failed_id[..failed_id.len().min(12)];
        let (kind, reason) = match &cause {
            Cause::Died { exit_code } => {
                let code =
                    ended.map(|e| e.code.to_string()).or_else(|| exit_code.clone()).unwrap_or_else(|| "?".into());
                if ended.is_some_and(|e| e.oom_killed) {
                    crate::metrics::service(name, |m| m.oom_killed = true);
                    ("oom", format!("its container {short} was killed for lack of memory (OOM, exit code {code})"))
                } else {
                    ("died", format!("its container {short} exited with code {code}"))
                }
            }
            Cause::Unhealthy { last } => (
                "unhealthy",
                format!(
                    "its container {short} failed its health checks {} times in a row: {last}",
                    crate::monitor::UNHEALTHY_AFTER
                ),
            ),
            Cause::Limit { what } => ("restart", format!("its container {short} crossed a limit: {what}")),
        };
        // Processes that attach from now on must not take it for ready.
        crate::run::marks::forget_ready(failed_id);
        let restarts = slot.restarts.load(Ordering::SeqCst);
        let failure = ServiceFailure {
            service: name.to_string(),
            container: failed_id.to_string(),
            reason: reason.clone(),
            logs: logs.clone(),
            restarts,
        };
        slot.failures.lock().unwrap_or_else(|e| e.into_inner()).push((failure.clone(), Instant::now()));
        crate::metrics::alert(name, kind, reason.clone());
        let _ = slot.transition(State::Failed);

        let refused = refusal(previous.definition.watch.recovery, &failure);
        if self.is_shutting_down() {
            // Its mark is gone: so must it be, or the run's next process
            // finds a dead container under the service's name.
            let _ = engine.remove(failed_id).await;
            return;
        }
        if let Some(policy) = refused {
            let _ = engine.remove(failed_id).await;
            unfilled.hand_over();
            slot.outcome.send_replace(Some(Err(Error::ServiceDied {
                service: name.to_string(),
                reason,
                policy,
                logs,
            })));
            return;
        }
        let _ = slot.transition(State::Restarting);
        let _ = engine.remove(failed_id).await;
        tokio::time::sleep(backoff(restarts + 1)).await;
        let began = Instant::now();
        let mut def = previous.definition.clone();
        def.rooms = previous.definition.rooms;
        let result = self.start(name, &slot, Source::Resolved(Box::new(def))).await;
        slot.restarts.fetch_add(1, Ordering::SeqCst);
        match &result {
            Ok(service) => {
                let here = service.id != failed_id
                    && crate::metrics::service(name, |m| m.starts.last().is_some_and(|p| p.created_here));
                if here {
                    crate::metrics::service(name, |m| m.restarts += 1);
                }
                crate::metrics::alert(
                    name,
                    "restarted",
                    format!(
                        "replaced by container {} in {:.2} s{}",
                        &service.id[..service.id.len().min(12)],
                        began.elapsed().as_secs_f64(),
                        if here { "" } else { " (another process of the run made it)" }
                    ),
                );
            }
            Err(e) => {
                let _ = slot.transition(State::Failed);
                crate::metrics::alert(name, "restart_failed", format!("could not replace it: {e}"));
            }
        }
        let result = result.map_err(|e| Error::ServiceDied {
            service: name.to_string(),
            reason: failure.reason.clone(),
            policy: format!("its replacement failed: {e}"),
            logs: failure.logs.clone(),
        });
        unfilled.hand_over();
        slot.outcome.send_replace(Some(result));
    }

    /// Waits, up to `limit`, until `name` is served again or its recovery
    /// gave up: a test that found its service dead returns only then, so
    /// that a short process (one test under nextest) does not end in the
    /// middle of the recovery, leaving the run's next process a half-made
    /// replacement.
    pub(crate) async fn recovery_done(&'static self, name: &str, limit: std::time::Duration) {
        let Some(slot) = self.slot(name) else { return };
        let mut outcome = slot.outcome.subscribe();
        let _ = tokio::time::timeout(limit, outcome.wait_for(Option::is_some)).await;
    }
}

/// Why `policy` does not replace the service after `failure`, or `None`
/// when it does.
pub(crate) fn refusal(policy: Recovery, failure: &ServiceFailure) -> Option<String> {
    let restarts = failure.restarts;
    match policy {
        Recovery::Manual => Some("recovery is manual".to_string()),
        Recovery::Automatic { max_restarts } if restarts >= max_restarts => {
            Some(format!("it was already replaced {restarts} time(s), the most its recovery allows"))
        }
        Recovery::Automatic { .. } => None,
        Recovery::Fallback(hook) => match std::panic::catch_unwind(|| hook(failure)) {
            Ok(true) => None,
            Ok(false) => Some("its fallback hook declined to replace it".to_string()),
            Err(_) => Some("its fallback hook panicked".to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::refusal;
        use crate::service::watch::{Recovery, ServiceFailure};

        fn failure(restarts: u32) -> ServiceFailure {
            ServiceFailure {
                service: "web".into(),
                container: "abc".into(),
                reason: "its container abc exited with code 137".into(),
                logs: String::new(),
                restarts,
            }
        }

        #[test]
        fn decide_by_each_policy_whether_to_replace() {
            let auto = Recovery::Automatic { max_restarts: 2 };
            assert_eq!(refusal(auto, &failure(0)), None);
            assert_eq!(refusal(auto, &failure(1)), None);
            assert_eq!(
                refusal(auto, &failure(2)).unwrap(),
                "it was already replaced 2 time(s), the most its recovery allows"
            );
            assert_eq!(refusal(Recovery::Manual, &failure(0)).unwrap(), "recovery is manual");
            fn only_exits(f: &ServiceFailure) -> bool {
                f.reason.contains("exited") && f.restarts < 1
            }
            assert_eq!(refusal(Recovery::Fallback(only_exits), &failure(0)), None);
            assert_eq!(
                refusal(Recovery::Fallback(only_exits), &failure(1)).unwrap(),
                "its fallback hook declined to replace it"
            );
            fn panics(_: &ServiceFailure) -> bool {
                panic!("no")
            }
            assert_eq!(refusal(Recovery::Fallback(panics), &failure(0)).unwrap(), "its fallback hook panicked");
        }
    }
}
