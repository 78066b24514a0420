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

/// How long the stats samples in a row must have been over a threshold
/// before cleanroom acts: three of Docker's samples (one a second), or one of
/// Podman's (one every five seconds, each an average over its five).
pub(crate) const OVER_LIMIT_FOR: Duration = Duration::from_millis(2500);

/// One disk rate against its throttle: which way, the rate now, the limit,
/// its run of samples, and how to show it.
type DiskRate<'a> = (&'a str, f64, Option<u64>, &'a mut Threshold, &'a dyn Fn(f64) -> String);

/// A disk throttle counts as reached at this share of its rate: the kernel
/// holds the service at the limit, so it is never over it.
const DISK_AT_LIMIT: f64 = 0.8;

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

/// Adds up how long samples have been over a threshold and says when to
/// act: once per crossing.
#[derive(Debug, Default)]
pub(crate) struct Threshold {
    over_for: Duration,
    acted: bool,
}

impl Threshold {
    /// Feeds one sample, which covers `span` (the time since the one
    /// before); `true` when the samples in a row over the limit have covered
    /// [`OVER_LIMIT_FOR`] and nothing was done yet.
    pub(crate) fn feed(&mut self, over: bool, span: Duration) -> bool {
        if !over {
            *self = Threshold::default();
            return false;
        }
        self.over_for += span;
        if self.over_for >= OVER_LIMIT_FOR && !self.acted {
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
    let capped = size_capped(&service).map(|(_, bytes)| bytes);
    let conditions = service.definition.network.as_ref().map(network_limits);
    metrics::service(&service.name, |m| {
        m.health = Health::Healthy;
        m.ready_since = Some(Instant::now());
        m.resources.disk_size_limit_bytes = capped;
        m.performance.network_conditions = conditions;
    });
    crate::util::background::spawn_background(async move {
        if let Some(cause) = watch(&service, &still_serving).await {
            report(cause).await;
        }
    });
}

/// What to say when the engine counts no disk operations but the service
/// has operation throttles: they hold, but nothing can watch them.
fn ops_uncounted(read_iops: Option<u64>, write_iops: Option<u64>) -> Option<String> {
    let limits: Vec<String> = [(read_iops, "read"), (write_iops, "write")]
        .into_iter()
        .filter_map(|(limit, way)| limit.map(|n| format!("{way} {n} operations/s")))
        .collect();
    (!limits.is_empty()).then(|| {
        format!(
            "disk operation limits ({}) are applied but not watched: the engine's stats count no disk operations \
             (Podman's Docker API, and Docker on cgroup v2, leave them out)",
            limits.join(", ")
        )
    })
}

/// The definition's network conditions as the report shows them.
fn network_limits(c: &crate::proxy::NetworkConditions) -> metrics::NetworkLimits {
    metrics::NetworkLimits {
        latency_ms: metrics::ms(c.latency),
        jitter_ms: metrics::ms(c.jitter),
        upload_bytes_per_sec: c.upload,
        download_bytes_per_sec: c.download,
        reset_rate: c.reset_rate,
    }
}

/// The tmpfs directories of a container whose size is capped, and the cap:
/// what the health tick samples. `None` when nothing is capped, or the
/// service runs in no container (the local and existing engines have no
/// tmpfs of their own).
fn size_capped(service: &RunningService) -> Option<(Vec<String>, u64)> {
    let def = &service.definition;
    let bytes = def.disk_size?;
    let docker = service.engine.kind() == crate::engine::EngineKind::Docker;
    (docker && !def.tmpfs.is_empty()).then(|| (def.tmpfs.keys().cloned().collect(), bytes))
}

/// The most any of the filesystems in `df -Pk`'s output holds, bytes;
/// `None` when it lists none.
fn df_used_bytes(stdout: &str) -> Option<u64> {
    stdout
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(2)?.parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .max()
}

/// What the fullest capped tmpfs holds now, asked of the container (`df`,
/// one short exec); `None` when it could not be read.
async fn tmpfs_used(service: &RunningService, paths: &[String]) -> Option<u64> {
    let cmd: Vec<String> = ["df", "-Pk"].into_iter().map(str::to_string).chain(paths.iter().cloned()).collect();
    let out = service.engine.exec(&service.id, &cmd).await.ok()?;
    if out.exit_code != 0 {
        return None;
    }
    df_used_bytes(&out.stdout)
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / 1024.0 / 1024.0)
}

fn kib(bytes: u64) -> String {
    format!("{:.0} KiB", bytes as f64 / 1024.0)
}

/// The shortest health interval the monitor keeps to.
const SHORTEST_HEALTH_INTERVAL: Duration = Duration::from_millis(10);

/// The background checks' clock, first tick one interval from now. A
/// definition built in code may ask for any interval; tokio's refuses zero,
/// and a busy loop is no check.
fn health_tick(asked: Duration) -> tokio::time::Interval {
    let every = asked.max(SHORTEST_HEALTH_INTERVAL);
    tokio::time::interval_at(tokio::time::Instant::now() + every, every)
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
    let mut health_tick = health_tick(watch.health_interval);
    let mut still_ours = tokio::time::interval(Duration::from_millis(250));
    let mut failures_in_a_row = 0;
    let mut prev: Option<(StatSample, Instant)> = None;
    let (mut cpu_over, mut memory_over) = (Threshold::default(), Threshold::default());
    let (mut read_over, mut write_over) = (Threshold::default(), Threshold::default());
    let (mut read_ops_over, mut write_ops_over) = (Threshold::default(), Threshold::default());
    let mut said_ops_uncounted = false;
    let capped = size_capped(service);
    let mut size_over = Threshold::default();
    let mut size_sampled: Option<Instant> = None;

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
                    let span = prev.as_ref().map(|(_, at)| at.elapsed()).unwrap_or_default();
                    if !sample.block_ops_counted && !said_ops_uncounted {
                        said_ops_uncounted = true;
                        if let Some(what) = ops_uncounted(limits.disk.read_iops, limits.disk.write_iops) {
                            metrics::alert(&name, "disk", what);
                        }
                    }
                    if let Some((before, _)) = &prev {
                        // Disk bandwidth since the last sample, against the throttles.
                        let secs = span.as_secs_f64().max(0.001);
                        let rate = |now: u64, then: u64| now.saturating_sub(then) as f64 / secs;
                        let disk = limits.disk;
                        let mib_s = |x: f64| format!("{}/s", mib(x as u64));
                        let ops_s = |x: f64| format!("{x:.0} operations/s");
                        let now = [
                            rate(sample.block.0, before.block.0),
                            rate(sample.block.1, before.block.1),
                            rate(sample.block_ops.0, before.block_ops.0),
                            rate(sample.block_ops.1, before.block_ops.1),
                        ];
                        metrics::service(&name, |m| m.resources.add_disk_rates(now));
                        let rates: [DiskRate<'_>; 4] = [
                            ("reads", now[0], disk.read_bps, &mut read_over, &mib_s),
                            ("writes", now[1], disk.write_bps, &mut write_over, &mib_s),
                            ("reads", now[2], disk.read_iops, &mut read_ops_over, &ops_s),
                            ("writes", now[3], disk.write_iops, &mut write_ops_over, &ops_s),
                        ];
                        let mut crossed = None;
                        for (way, now, limit, over, shown) in rates {
                            let Some(limit) = limit else { continue };
                            if over.feed(now >= DISK_AT_LIMIT * limit as f64, span) && crossed.is_none() {
                                crossed = Some(format!(
                                    "disk {way} at {}, at its limit of {} (throttled)",
                                    shown(now),
                                    shown(limit as f64)
                                ));
                            }
                        }
                        if let Some(what) = crossed {
                            if let Some(cause) = act(service, watch.limit_action, "disk", what).await {
                                break cause;
                            }
                        }
                    }
                    if let Some(cpu) = prev.as_ref().and_then(|(p, _)| sample.cpu_percent_since(p)) {
                        metrics::service(&name, |m| m.resources.add_sample(cpu, sample.memory, sample.memory_limit, sample.network, sample.block, sample.block_ops));
                        if let Some(cpus) = limits.cpus {
                            let limit = cpus * 100.0;
                            if cpu_over.feed(cpu > watch.cpu_threshold * limit, span) {
                                let what = format!("CPU use {cpu:.0}% is over {:.0}% of its limit of {cpus} CPUs", watch.cpu_threshold * 100.0);
                                if let Some(cause) = act(service, watch.limit_action, "cpu", what).await {
                                    break cause;
                                }
                            }
                        }
                        if let Some(limit) = limits.memory {
                            if memory_over.feed(sample.memory as f64 > watch.memory_threshold * limit as f64, span) {
                                let what = format!("memory use {} is over {:.0}% of its limit of {}", mib(sample.memory), watch.memory_threshold * 100.0, mib(limit));
                                if let Some(cause) = act(service, watch.limit_action, "memory", what).await {
                                    break cause;
                                }
                            }
                        }
                    }
                    prev = Some((sample, Instant::now()));
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
                    let asked = Instant::now();
                    match tokio::time::timeout(budget, crate::health::probe::attempt(service, check)).await {
                        Ok(Ok(())) => {
                            // A probe's round trip is the service's latency as a client sees it.
                            let ms = crate::metrics::ms(asked.elapsed());
                            metrics::service(&name, |m| m.performance.add_latency(ms));
                        }
                        Ok(Err(reason)) => { failed = Some(format!("{check}: {reason}")); break; }
                        Err(_) => { failed = Some(format!("{check}: no answer within {budget:?}")); break; }
                    }
                }
                if failed.is_none() {
                    crate::health::perf::read_into_metrics(service).await;
                }
                if let Some((paths, limit)) = &capped {
                    if let Some(used) = tmpfs_used(service, paths).await {
                        metrics::service(&name, |m| m.resources.add_disk_size_sample(used));
                        let span = size_sampled.map_or(watch.health_interval, |at| at.elapsed());
                        size_sampled = Some(Instant::now());
                        // A tmpfs is memory: the memory fraction says when it is nearly full.
                        if size_over.feed(used as f64 > watch.memory_threshold * *limit as f64, span) {
                            let what = format!(
                                "tmpfs use {} is over {:.0}% of its size cap of {} ({})",
                                kib(used),
                                watch.memory_threshold * 100.0,
                                kib(*limit),
                                paths.join(", ")
                            );
                            if let Some(cause) = act(service, watch.limit_action, "disk_size", what).await {
                                break cause;
                            }
                        }
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

        const SECOND: Duration = Duration::from_secs(1);

        #[test]
        fn act_once_per_crossing_after_three_samples_over_the_threshold() {
            let mut t = Threshold::default();
            assert!(!t.feed(true, SECOND));
            assert!(!t.feed(true, SECOND));
            assert!(t.feed(true, SECOND), "the third sample in a row acts");
            assert!(!t.feed(true, SECOND), "once per crossing");
            assert!(!t.feed(false, SECOND));
            assert!(!t.feed(true, SECOND));
            assert!(!t.feed(true, SECOND));
            assert!(t.feed(true, SECOND), "a new crossing acts again");
        }

        #[test]
        fn not_take_a_spike_for_a_crossing() {
            let mut t = Threshold::default();
            for over in [true, true, false, true, true, false] {
                assert!(!t.feed(over, SECOND));
            }
        }

        #[test]
        fn act_on_one_sample_that_covers_five_seconds() {
            // Podman's stats stream: one sample every five seconds.
            let mut t = Threshold::default();
            assert!(t.feed(true, 5 * SECOND));
            assert!(!t.feed(true, 5 * SECOND), "once per crossing");
        }

        #[test]
        fn say_which_operation_limits_go_unwatched() {
            assert_eq!(ops_uncounted(None, None), None, "no operation limits: nothing to say");
            let said = ops_uncounted(Some(20), Some(30)).unwrap();
            assert!(said.starts_with("disk operation limits (read 20 operations/s, write 30 operations/s)"), "{said}");
            assert!(said.contains("Podman"), "{said}");
        }

        #[test]
        fn keep_to_a_usable_health_interval_whatever_the_definition_asks() {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
            runtime.block_on(async {
                for asked in [Duration::ZERO, Duration::from_nanos(1), Duration::from_millis(9)] {
                    let tick = health_tick(asked);
                    assert_eq!(tick.period(), SHORTEST_HEALTH_INTERVAL, "{asked:?}");
                }
                assert_eq!(health_tick(5 * SECOND).period(), 5 * SECOND);
            });
        }

        #[test]
        fn read_the_fullest_filesystem_from_df() {
            let out = "Filesystem     1024-blocks  Used Available Capacity Mounted on\n\
                       tmpfs                 1024   960        64      94% /scratch\n\
                       tmpfs                 1024    12      1012       2% /other\n";
            assert_eq!(df_used_bytes(out), Some(960 * 1024));
            assert_eq!(df_used_bytes("Filesystem 1024-blocks Used Available Capacity Mounted on\n"), None);
            assert_eq!(df_used_bytes("df: /scratch: No such file or directory\n"), None);
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
