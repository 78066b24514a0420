//! What this process measured about its services while it ran: the phases of
//! each start, health, restarts, alerts, resource use, and cache counters.
//! The registry and the monitor write here; the report reads a [`snapshot`].

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// The health of a running service, as the background monitor last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Being started; not checked yet.
    #[default]
    Starting,
    /// The last checks passed.
    Healthy,
    /// Checks failed, or Docker reported the container unhealthy or dead.
    Unhealthy,
    /// Not known (no checks to run, or the monitor could not ask).
    Unknown,
}

/// Time spent in each phase of one start of a service, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Phases {
    /// Making sure the image is here (pulling it if allowed and needed).
    pub pull_ms: Option<f64>,
    /// Asking Docker to create and start the container.
    pub create_ms: Option<f64>,
    /// Reading the container's ports and state after it started.
    pub start_ms: Option<f64>,
    /// Waiting for the health checks to pass.
    pub health_ms: Option<f64>,
    /// Reading what the start found in the volume cache (built-in Postgres;
    /// the restore, cleaning and fill are part of the health phase; see
    /// docs/caches.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_ms: Option<f64>,
    /// Whether this process created the container (`false`: it attached to
    /// one another process of the run, or an earlier run, created).
    pub created_here: bool,
}

/// Something the user should know about: a death, a restart, a limit crossed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u128,
    /// `died`, `oom`, `unhealthy`, `restarted`, `restart_failed`,
    /// `memory`, `cpu`, `throttled`, `killed`, `startup_retry`.
    pub kind: String,
    /// What happened, in words.
    pub message: String,
}

/// Resource use from Docker's stats stream, aggregated over the samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    /// Samples taken.
    pub samples: u64,
    /// Highest CPU use, percent of one core (200 = two cores busy).
    pub cpu_peak_percent: f64,
    /// Mean CPU use over the samples, percent of one core.
    pub cpu_mean_percent: f64,
    /// Highest memory use, bytes.
    pub memory_peak_bytes: u64,
    /// Mean memory use over the samples, bytes.
    pub memory_mean_bytes: u64,
    /// The memory limit Docker reported, bytes (the host's memory when
    /// unlimited).
    pub memory_limit_bytes: u64,
    /// Bytes received over the network, in total.
    pub network_rx_bytes: u64,
    /// Bytes sent over the network, in total.
    pub network_tx_bytes: u64,
    /// Bytes read from block devices, in total.
    pub block_read_bytes: u64,
    /// Bytes written to block devices, in total.
    pub block_write_bytes: u64,
}

impl Resources {
    /// Folds one sample in.
    pub(crate) fn add(&mut self, cpu_percent: f64, memory: u64, limit: u64, net: (u64, u64), block: (u64, u64)) {
        let n = self.samples as f64;
        self.cpu_mean_percent = (self.cpu_mean_percent * n + cpu_percent) / (n + 1.0);
        self.memory_mean_bytes = ((self.memory_mean_bytes as f64 * n + memory as f64) / (n + 1.0)) as u64;
        self.samples += 1;
        self.cpu_peak_percent = self.cpu_peak_percent.max(cpu_percent);
        self.memory_peak_bytes = self.memory_peak_bytes.max(memory);
        self.memory_limit_bytes = limit;
        // Docker's counters are totals since the container started.
        self.network_rx_bytes = self.network_rx_bytes.max(net.0);
        self.network_tx_bytes = self.network_tx_bytes.max(net.1);
        self.block_read_bytes = self.block_read_bytes.max(block.0);
        self.block_write_bytes = self.block_write_bytes.max(block.1);
    }
}

/// Everything this process knows about one service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceMetrics {
    /// The service's name.
    pub name: String,
    /// The image it runs.
    pub image: String,
    /// The containers it ran in, oldest first (more than one after restarts).
    pub containers: Vec<String>,
    /// One entry per start (the first, then each restart).
    pub starts: Vec<Phases>,
    /// Milliseconds from asking for the service to its first Ready.
    pub time_to_ready_ms: Option<f64>,
    /// Times it was replaced after dying or turning unhealthy.
    pub restarts: u32,
    /// Background health checks that failed.
    pub health_check_failures: u32,
    /// The health the monitor last saw.
    pub health: Health,
    /// Whether Docker reported an out-of-memory kill.
    pub oom_killed: bool,
    /// What happened, in order.
    pub alerts: Vec<Alert>,
    /// Resource use while it ran.
    pub resources: Resources,
    /// Milliseconds it was Ready in this process, until the end (or its last
    /// death).
    pub uptime_ms: f64,
    #[serde(skip)]
    pub(crate) ready_since: Option<std::time::Instant>,
}

/// Hit and miss counts of one cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheCounter {
    /// Served from the cache.
    pub hits: u64,
    /// Had to be made.
    pub misses: u64,
}

#[derive(Default)]
struct Metrics {
    services: BTreeMap<String, ServiceMetrics>,
    caches: BTreeMap<&'static str, CacheCounter>,
}

static METRICS: Mutex<Option<Metrics>> = Mutex::new(None);

fn with<T>(f: impl FnOnce(&mut Metrics) -> T) -> T {
    let mut guard = METRICS.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(Metrics::default))
}

/// Changes what is known about `service` (created on first use).
pub(crate) fn service<T>(name: &str, f: impl FnOnce(&mut ServiceMetrics) -> T) -> T {
    with(|m| {
        let entry = m
            .services
            .entry(name.to_string())
            .or_insert_with(|| ServiceMetrics { name: name.to_string(), ..Default::default() });
        f(entry)
    })
}

/// Records an alert for `service` and tells the user on stderr at once.
pub(crate) fn alert(name: &str, kind: &str, message: impl Into<String>) {
    let message = message.into();
    crate::util::say!("cleanroom: {name}: {message}");
    let at_ms = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    service(name, |s| s.alerts.push(Alert { at_ms, kind: kind.to_string(), message }));
}

/// Counts a hit of `cache`.
pub(crate) fn cache_hit(cache: &'static str) {
    with(|m| m.caches.entry(cache).or_default().hits += 1);
}

/// Counts a miss of `cache`.
pub(crate) fn cache_miss(cache: &'static str) {
    with(|m| m.caches.entry(cache).or_default().misses += 1);
}

/// Milliseconds of a duration, for the report.
pub(crate) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// What is known now, uptimes brought up to date.
pub(crate) fn snapshot() -> (Vec<ServiceMetrics>, BTreeMap<&'static str, CacheCounter>) {
    with(|m| {
        let services = m
            .services
            .values()
            .map(|s| {
                let mut s = s.clone();
                if let Some(since) = s.ready_since {
                    s.uptime_ms += ms(since.elapsed());
                }
                s
            })
            .collect();
        (services, m.caches.clone())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    mod should {
        use super::*;

        #[test]
        fn keep_the_peaks_means_and_totals_of_resources() {
            let mut r = Resources::default();
            r.add(50.0, 100, 1000, (10, 20), (0, 5));
            r.add(150.0, 300, 1000, (30, 25), (0, 9));
            assert_eq!(r.samples, 2);
            assert_eq!(r.cpu_peak_percent, 150.0);
            assert_eq!(r.cpu_mean_percent, 100.0);
            assert_eq!((r.memory_peak_bytes, r.memory_mean_bytes, r.memory_limit_bytes), (300, 200, 1000));
            assert_eq!((r.network_rx_bytes, r.network_tx_bytes, r.block_write_bytes), (30, 25, 9));
        }

        #[test]
        fn count_cache_hits_and_misses() {
            cache_hit("test-cache");
            cache_hit("test-cache");
            cache_miss("test-cache");
            let (_, caches) = snapshot();
            assert_eq!(caches["test-cache"], CacheCounter { hits: 2, misses: 1 });
        }

        #[test]
        fn record_alerts_in_order() {
            alert("metrics-test", "died", "exited with 137");
            alert("metrics-test", "restarted", "replaced");
            let (services, _) = snapshot();
            let s = services.iter().find(|s| s.name == "metrics-test").unwrap();
            let kinds: Vec<&str> = s.alerts.iter().map(|a| a.kind.as_str()).collect();
            assert_eq!(kinds, ["died", "restarted"]);
        }
    }
}
