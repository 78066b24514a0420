//! Watching a service while tests use it: Docker's events (a death, an
//! out-of-memory kill), its health checks repeated in the background, and
//! Docker's stats stream (CPU, memory, network, block I/O) with the actions
//! taken when a limit is crossed. A death or lasting ill health hands the
//! service to whoever started the monitor (the run layer), which decides,
//! by the service's recovery policy, what happens next: the monitor only
//! reports what it saw.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::engine::StatSample;
use crate::metrics::{self, Health};
use crate::service::health::HealthCheck;
use crate::service::running::RunningService;
use crate::service::watch::LimitAction;

/// How many background health checks in a row must fail before a service
/// counts as Unhealthy.
pub(crate) const UNHEALTHY_AFTER: u32 = 3;

/// How long a process has lived with a service before its monitor opens the
/// engine's event and stats streams.
const STREAMS_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// How many stats samples in a row (one a second) must be over a threshold
/// before cleanroom acts.
pub(crate) const SAMPLES_OVER_LIMIT: u32 = 3;

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

/// Starts watching `service` on cleanroom's runtime for as long as
/// `still_serving` says it is the container tests get; what it sees that
/// needs a decision goes to `report`.
pub(crate) fn spawn<R, F>(
    service: Arc<RunningService>,
    still_serving: impl Fn() -> bool + Send + Sync + 'static,
    report: R,
) where
    R: FnOnce(Cause) -> F + Send + 'static,
    F: std::future::Future<Output = ()> + Send,
{
    metrics::service(&service.name, |m| {
        m.health = Health::Healthy;
        m.ready_since = Some(Instant::now());
    });
    crate::util::background::spawn_background(async move {
        if let Some(cause) = watch(&service, &still_serving).await {
            report(cause).await;
        }
    });
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / 1024.0 / 1024.0)
}

/// Watches until something needs a decision (`Some`) or the service is no
/// longer this monitor's (`None`).
async fn watch(service: &Arc<RunningService>, still_serving: &(impl Fn() -> bool + Sync)) -> Option<Cause> {
    let name = service.name.clone();
    let id = service.id.clone();
    let watch = service.definition.watch;
    let limits = service.definition.limits;
    let checks: Vec<HealthCheck> = service.definition.health_checks.iter().filter(|c| c.repeats()).cloned().collect();

    // A process that runs one test (most under nextest) is gone before this:
    // it never opens the engine's streams. One that lives on asks once
    // whether the container ended meanwhile, then watches its events.
    tokio::time::sleep(STREAMS_AFTER).await;
    if !still_serving() {
        break_out(&name);
        return None;
    }
    if let Some(ended) = service.engine.ended(&id).await {
        return Some(Cause::Died { exit_code: Some(ended.code.to_string()) });
    }

    let mut events = Box::pin(service.engine.events(&id));
    let mut stats = Box::pin(service.engine.stats(&id));
    let mut events_open = true;
    let mut stats_open = true;
    let mut health_tick =
        // A definition built in code may ask for any interval; tokio's
        // refuses zero, and a busy loop is no check.
        {
            let every = watch.health_interval.max(Duration::from_millis(10));
            tokio::time::interval_at(tokio::time::Instant::now() + every, every)
        };
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
                                if let Some(cause) = act(service, watch.limit_action, "cpu", what).await {
                                    break cause;
                                }
                            }
                        }
                        if let Some(limit) = limits.memory {
                            if memory_over.feed(sample.memory as f64 > watch.memory_threshold * limit as f64) {
                                let what = format!("memory use {} is over {:.0}% of its limit of {}", mib(sample.memory), watch.memory_threshold * 100.0, mib(limit));
                                if let Some(cause) = act(service, watch.limit_action, "memory", what).await {
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
                    if let Some(ended) = service.engine.ended(&id).await {
                        break Cause::Died { exit_code: Some(ended.code.to_string()) };
                    }
                }
                let mut failed = None;
                for check in &checks {
                    let budget = check.timeout.min(Duration::from_secs(5));
                    match tokio::time::timeout(budget, crate::health::probe::attempt(service, check)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(reason)) => { failed = Some(format!("{check}: {reason}")); break; }
                        Err(_) => { failed = Some(format!("{check}: no answer within {budget:?}")); break; }
                    }
                }
                if !still_serving() {
                    break_out(&name);
                    return None;
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
                if !still_serving() {
                    break_out(&name);
                    return None;
                }
            }
        }
    };
    if !still_serving() {
        break_out(&name);
        return None;
    }
    Some(cause)
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
            let current = service.engine.cpu_limit(&service.id).await.unwrap_or(0);
            let current = if current > 0 {
                current
            } else {
                service.definition.limits.cpus.map_or(1_000_000_000, |c| (c * 1e9) as i64)
            };
            let lower = (current / 2).max(10_000_000);
            match service.engine.set_cpu_limit(&service.id, lower).await {
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
            match service.engine.kill(&service.id).await {
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
    use crate::engine::StatSample;

    mod should {
        use super::*;

        #[test]
        fn act_once_per_crossing_after_three_samples_over_the_threshold() {
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
        fn not_take_a_spike_for_a_crossing() {
            let mut t = Threshold::default();
            for over in [true, true, false, true, true, false] {
                assert!(!t.feed(over));
            }
        }

        #[test]
        fn compute_the_cpu_percent_from_two_samples() {
            let a = StatSample { cpu_total: 1_000, system_total: 10_000, online_cpus: 2, ..Default::default() };
            let b = StatSample { cpu_total: 6_000, system_total: 20_000, online_cpus: 2, ..Default::default() };
            assert_eq!(b.cpu_percent_since(&a), Some(100.0), "half the host's time on two cores is one core");
            assert_eq!(a.cpu_percent_since(&b), None, "counters only grow");
        }
    }
}
