//! Watching a service while tests use it: Docker's events (a death, an
//! out-of-memory kill), its health checks repeated in the background, and
//! Docker's stats stream (CPU, memory, network, block I/O) with the actions
//! taken when a limit is crossed. A death or lasting ill health hands the
//! service to the registry's recovery.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::backend::StatSample;
use crate::health::HealthCheck;
use crate::metrics::{self, Health};
use crate::registry::{Registry, RunningService};

/// How many background health checks in a row must fail before a service
/// counts as Unhealthy.
pub(crate) const UNHEALTHY_AFTER: u32 = 3;

/// How many stats samples in a row (one a second) must be over a threshold
/// before cleanroom acts.
pub(crate) const SAMPLES_OVER_LIMIT: u32 = 3;

/// What cleanroom does when a running service dies or turns unhealthy.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Recovery {
    /// Replace it with a fresh container from the same definition, waiting
    /// 250 ms, 500 ms, 1 s… between attempts, at most `max_restarts` times per
    /// run in each test process. Tests that ask for it meanwhile wait.
    Automatic {
        /// Replacements allowed before cleanroom gives up.
        max_restarts: u32,
    },
    /// Do not replace it: tests that ask for it afterwards fail at once with
    /// the death and the container's last log lines.
    Manual,
    /// Ask the hook, with what happened, whether to replace it (as
    /// `Automatic` would, without its limit).
    Fallback(fn(&ServiceFailure) -> bool),
}

impl Default for Recovery {
    fn default() -> Self {
        Recovery::Automatic { max_restarts: 3 }
    }
}

/// What happened to a service, for [`Recovery::Fallback`] hooks and error
/// messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceFailure {
    /// The service's name.
    pub service: String,
    /// The container that failed.
    pub container: String,
    /// What happened, in words ("its container exited with code 137").
    pub reason: String,
    /// The container's last log lines.
    pub logs: String,
    /// Replacements so far in this process.
    pub restarts: u32,
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

/// What cleanroom does when a container's CPU or memory use stays over its
/// threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LimitAction {
    /// Say so (on stderr and in the report). The default.
    #[default]
    Alert,
    /// Halve the container's CPU limit while it runs (`docker update
    /// --cpus`); for memory, alert only.
    Throttle,
    /// Replace the container (through [`Recovery`]).
    Restart,
    /// Kill the container; its death then goes through [`Recovery`].
    Kill,
}

/// How a service is watched while it runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Watch {
    pub(crate) recovery: Recovery,
    pub(crate) health_interval: Duration,
    pub(crate) limit_action: LimitAction,
    /// Fraction of the CPU limit.
    pub(crate) cpu_threshold: f64,
    /// Fraction of the memory limit.
    pub(crate) memory_threshold: f64,
}

impl Default for Watch {
    fn default() -> Self {
        Watch {
            recovery: Recovery::default(),
            health_interval: Duration::from_secs(5),
            limit_action: LimitAction::Alert,
            cpu_threshold: 0.9,
            memory_threshold: 0.9,
        }
    }
}

/// Why the monitor hands a service to recovery.
#[derive(Debug, Clone)]
pub(crate) enum Cause {
    /// Docker reported the container's death.
    Died { exit_code: Option<String> },
    /// The background health checks failed too often.
    Unhealthy { last: String },
    /// A limit was crossed and the action is a restart.
    Limit { what: String },
}

/// Counts samples over a threshold and says when to act: once per crossing.
#[derive(Debug, Default)]
pub(crate) struct Threshold {
    over: u32,
    acted: bool,
}

impl Threshold {
    /// Feeds one sample; `true` when this sample completes a run of
    /// [`SAMPLES_OVER_LIMIT`] over the limit and nothing was done yet.
    pub(crate) fn feed(&mut self, over: bool) -> bool {
        if !over {
            *self = Threshold::default();
            return false;
        }
        self.over += 1;
        if self.over >= SAMPLES_OVER_LIMIT && !self.acted {
            self.acted = true;
            return true;
        }
        false
    }
}

/// Starts watching `service` on cleanroom's runtime, until the process ends
/// or the container is replaced.
pub(crate) fn spawn(registry: &'static Registry, service: Arc<RunningService>) {
    metrics::service(&service.name, |m| {
        m.health = Health::Healthy;
        m.ready_since = Some(Instant::now());
    });
    crate::registry::spawn_background(watch(registry, service));
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / 1024.0 / 1024.0)
}

async fn watch(registry: &'static Registry, service: Arc<RunningService>) {
    let name = service.name.clone();
    let id = service.id.clone();
    let watch = service.definition.watch;
    let limits = service.definition.limits;
    let checks: Vec<HealthCheck> = service.definition.health_checks.iter().filter(|c| c.repeats()).cloned().collect();

    let mut events = Box::pin(service.docker.container_events(&id));
    let mut stats = Box::pin(service.docker.stats(&id));
    let mut events_open = true;
    let mut stats_open = true;
    let mut health_tick =
        tokio::time::interval_at(tokio::time::Instant::now() + watch.health_interval, watch.health_interval);
    let mut still_ours = tokio::time::interval(Duration::from_millis(250));
    let mut failures_in_a_row = 0;
    let mut prev: Option<StatSample> = None;
    let (mut cpu_over, mut memory_over) = (Threshold::default(), Threshold::default());

    let cause = loop {
        tokio::select! {
            event = events.next(), if events_open => match event {
                Some(Ok((action, exit_code))) => match action.as_str() {
                    "oom" => {
                        metrics::service(&name, |m| m.oom_killed = true);
                        let limit = limits.memory.map(|b| format!(" (memory limit {})", mib(b))).unwrap_or_default();
                        metrics::alert(&name, "oom", format!("the kernel killed a process of container {} for lack of memory{limit}", short(&id)));
                    }
                    "die" => break Cause::Died { exit_code },
                    a if a.starts_with("health_status: unhealthy") => {
                        break Cause::Unhealthy { last: "Docker's own health check reported it unhealthy".into() }
                    }
                    _ => {}
                },
                // The engine closed the stream: the health tick still asks.
                Some(Err(_)) | None => events_open = false,
            },
            sample = stats.next(), if stats_open => match sample {
                Some(Ok(sample)) => {
                    if let Some(cpu) = prev.as_ref().and_then(|p| sample.cpu_percent_since(p)) {
                        metrics::service(&name, |m| m.resources.add(cpu, sample.memory, sample.memory_limit, sample.network, sample.block));
                        if let Some(cpus) = limits.cpus {
                            let limit = cpus * 100.0;
                            if cpu_over.feed(cpu > watch.cpu_threshold * limit) {
                                let what = format!("CPU use {cpu:.0}% is over {:.0}% of its limit of {cpus} CPUs", watch.cpu_threshold * 100.0);
                                if let Some(cause) = act(&service, watch.limit_action, "cpu", what).await {
                                    break cause;
                                }
                            }
                        }
                        if let Some(limit) = limits.memory {
                            if memory_over.feed(sample.memory as f64 > watch.memory_threshold * limit as f64) {
                                let what = format!("memory use {} is over {:.0}% of its limit of {}", mib(sample.memory), watch.memory_threshold * 100.0, mib(limit));
                                if let Some(cause) = act(&service, watch.limit_action, "memory", what).await {
                                    break cause;
                                }
                            }
                        }
                    }
                    prev = Some(sample);
                }
                Some(Err(_)) | None => stats_open = false,
            },
            _ = health_tick.tick() => {
                if !events_open {
                    if let Some(ended) = service.docker.ended(&id).await {
                        break Cause::Died { exit_code: Some(ended.code.to_string()) };
                    }
                }
                let mut failed = None;
                for check in &checks {
                    let budget = check.timeout.min(Duration::from_secs(5));
                    match tokio::time::timeout(budget, crate::health::probe::attempt(&service, check)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(reason)) => { failed = Some(format!("{check}: {reason}")); break; }
                        Err(_) => { failed = Some(format!("{check}: no answer within {budget:?}")); break; }
                    }
                }
                if registry.is_shutting_down() || !registry.is_serving(&name, &id) {
                    break_out(&name);
                    return;
                }
                match failed {
                    None => {
                        failures_in_a_row = 0;
                        metrics::service(&name, |m| m.health = Health::Healthy);
                    }
                    Some(last) => {
                        failures_in_a_row += 1;
                        metrics::service(&name, |m| { m.health_check_failures += 1; m.health = Health::Unhealthy; });
                        tracing::warn!(service = %name, failures = failures_in_a_row, "health check failed: {last}");
                        if failures_in_a_row >= UNHEALTHY_AFTER {
                            break Cause::Unhealthy { last };
                        }
                    }
                }
            },
            _ = still_ours.tick() => {
                if registry.is_shutting_down() || !registry.is_serving(&name, &id) {
                    break_out(&name);
                    return;
                }
            }
        }
    };
    if registry.is_shutting_down() || !registry.is_serving(&name, &id) {
        break_out(&name);
        return;
    }
    registry.recover(&name, &id, cause).await;
}

/// The monitor stops watching: the uptime so far is counted.
fn break_out(name: &str) {
    metrics::service(name, |m| {
        if let Some(since) = m.ready_since.take() {
            m.uptime_ms += metrics::ms(since.elapsed());
        }
    });
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Does what `action` says about a crossed limit; a cause when the service
/// must be recovered.
async fn act(service: &RunningService, action: LimitAction, kind: &str, what: String) -> Option<Cause> {
    let name = &service.name;
    metrics::alert(name, kind, what.clone());
    match action {
        LimitAction::Alert => None,
        LimitAction::Throttle if kind == "cpu" => {
            let current = service.docker.nano_cpus(&service.id).await.unwrap_or(0);
            let current = if current > 0 {
                current
            } else {
                service.definition.limits.cpus.map_or(1_000_000_000, |c| (c * 1e9) as i64)
            };
            let lower = (current / 2).max(10_000_000);
            match service.docker.set_nano_cpus(&service.id, lower).await {
                Ok(()) => metrics::alert(
                    name,
                    "throttled",
                    format!("CPU limit lowered from {:.2} to {:.2} CPUs", current as f64 / 1e9, lower as f64 / 1e9),
                ),
                Err(e) => metrics::alert(name, "throttled", format!("could not lower the CPU limit: {e}")),
            }
            None
        }
        LimitAction::Throttle => None,
        LimitAction::Restart => Some(Cause::Limit { what }),
        LimitAction::Kill => {
            match service.docker.kill(&service.id).await {
                Ok(()) => metrics::alert(name, "killed", format!("container {} killed: {what}", short(&service.id))),
                Err(e) => {
                    metrics::alert(name, "killed", format!("could not kill container {}: {e}", short(&service.id)))
                }
            }
            // Its death arrives as an event and goes through recovery.
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_threshold_acts_once_per_crossing_after_three_samples() {
        let mut t = Threshold::default();
        assert!(!t.feed(true));
        assert!(!t.feed(true));
        assert!(t.feed(true), "the third sample in a row acts");
        assert!(!t.feed(true), "once per crossing");
        assert!(!t.feed(false));
        assert!(!t.feed(true));
        assert!(!t.feed(true));
        assert!(t.feed(true), "a new crossing acts again");
    }

    #[test]
    fn a_spike_is_not_a_crossing() {
        let mut t = Threshold::default();
        for over in [true, true, false, true, true, false] {
            assert!(!t.feed(over));
        }
    }

    #[test]
    fn cpu_percent_comes_from_two_samples() {
        let a = StatSample { cpu_total: 1_000, system_total: 10_000, online_cpus: 2, ..Default::default() };
        let b = StatSample { cpu_total: 6_000, system_total: 20_000, online_cpus: 2, ..Default::default() };
        assert_eq!(b.cpu_percent_since(&a), Some(100.0), "half the host's time on two cores is one core");
        assert_eq!(a.cpu_percent_since(&b), None, "counters only grow");
    }

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
    fn each_policy_decides_whether_to_replace() {
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

    #[test]
    fn the_default_recovery_is_automatic_and_bounded() {
        assert!(matches!(Recovery::default(), Recovery::Automatic { max_restarts: 3 }));
        assert_eq!(Watch::default().limit_action, LimitAction::Alert);
    }
}
