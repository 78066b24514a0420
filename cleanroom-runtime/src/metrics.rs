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
    /// `memory`, `cpu`, `disk` (a disk throttle reached, or one nothing can
    /// watch), `disk_size` (a tmpfs nearly at its size cap), `throttled`,
    /// `killed`, `startup_retry`, `creator_gone` (the process making a
    /// shared service Ready ended mid-start; it was made again).
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
    /// Read operations on block devices, in total.
    pub block_read_ops: u64,
    /// Write operations on block devices, in total.
    pub block_write_ops: u64,
    /// The disk throttles it ran under (`None`: none), bytes and
    /// operations per second.
    pub disk_read_bps_limit: Option<u64>,
    /// See `disk_read_bps_limit`.
    pub disk_write_bps_limit: Option<u64>,
    /// See `disk_read_bps_limit`.
    pub disk_read_iops_limit: Option<u64>,
    /// See `disk_read_bps_limit`.
    pub disk_write_iops_limit: Option<u64>,
    /// The highest disk read rate between two stats samples, bytes per
    /// second: to read against `disk_read_bps_limit`.
    pub disk_read_bps_peak: u64,
    /// The highest disk write rate between two samples, bytes per second.
    pub disk_write_bps_peak: u64,
    /// The highest rate of read operations between two samples, per second.
    pub disk_read_iops_peak: u64,
    /// The highest rate of write operations between two samples, per second.
    pub disk_write_iops_peak: u64,
    /// The size cap of each tmpfs data directory (`with_disk_size`), bytes;
    /// `None`: no cap.
    pub disk_size_limit_bytes: Option<u64>,
    /// The most a capped tmpfs held when the monitor looked (on its health
    /// tick), bytes: to read against `disk_size_limit_bytes`.
    pub disk_size_peak_bytes: u64,
    /// How many times the monitor looked.
    pub disk_size_samples: u64,
}

impl Resources {
    /// Folds one sample in.
    pub(crate) fn add_sample(
        &mut self,
        cpu_percent: f64,
        memory: u64,
        limit: u64,
        net: (u64, u64),
        block: (u64, u64),
        block_ops: (u64, u64),
    ) {
        self.block_read_ops = self.block_read_ops.max(block_ops.0);
        self.block_write_ops = self.block_write_ops.max(block_ops.1);
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

    /// Folds in the disk rates between two samples: bytes read and written,
    /// then read and write operations, per second.
    pub(crate) fn add_disk_rates(&mut self, [read, write, read_ops, write_ops]: [f64; 4]) {
        let peak = |mine: &mut u64, rate: f64| *mine = (*mine).max(rate.round() as u64);
        peak(&mut self.disk_read_bps_peak, read);
        peak(&mut self.disk_write_bps_peak, write);
        peak(&mut self.disk_read_iops_peak, read_ops);
        peak(&mut self.disk_write_iops_peak, write_ops);
    }

    /// Folds in what the fullest capped tmpfs holds now, bytes.
    pub(crate) fn add_disk_size_sample(&mut self, used: u64) {
        self.disk_size_samples += 1;
        self.disk_size_peak_bytes = self.disk_size_peak_bytes.max(used);
    }
}

/// The network conditions a service's definition puts between each test and
/// it (`with_network_conditions`, docs/monitoring.md), to read the proxied
/// bytes against; a test that changes its own through its handle is not
/// shown.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkLimits {
    /// Added to every chunk of data, each way, milliseconds.
    pub latency_ms: f64,
    /// Up to this much more or less than the latency, milliseconds.
    pub jitter_ms: f64,
    /// Bytes per second from the tests to the service (`None`: unlimited).
    pub upload_bytes_per_sec: Option<u64>,
    /// Bytes per second from the service to the tests (`None`: unlimited).
    pub download_bytes_per_sec: Option<u64>,
    /// The share (0 to 1) of new connections reset as they arrive.
    pub reset_rate: f64,
}

/// How a service answered while the run went on: the round trip of its
/// health probes (its latency as a client sees it), and, for the built-in
/// servers, their own counts of work between the first and the last time
/// cleanroom read them (docs/report.md).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Performance {
    /// Health probes timed.
    pub latency_samples: u64,
    /// Their mean round trip, milliseconds.
    pub latency_mean_ms: f64,
    /// Their slowest round trip, milliseconds.
    pub latency_max_ms: f64,
    /// What `operations` counts: `transactions` (Postgres: commits and
    /// rollbacks, in every database), `commands` (Redis), or empty for a
    /// service whose counters cleanroom cannot read.
    pub unit: String,
    /// Operations between the first and the last reading.
    pub operations: u64,
    /// `operations` per second over that time (throughput; for Postgres,
    /// whose every statement outside a transaction block is one, queries
    /// per second).
    pub operations_per_sec: f64,
    /// Rows the server handled meanwhile (Postgres: returned, fetched,
    /// inserted, updated, deleted; Redis: key lookups, hits and misses).
    pub rows: u64,
    /// `rows` per second.
    pub rows_per_sec: f64,
    /// Bytes tests sent through their network-conditions proxies
    /// (`handle.network()`), summed over the handles and processes.
    pub proxied_sent_bytes: u64,
    /// Bytes tests received through them.
    pub proxied_received_bytes: u64,
    /// The conditions the definition puts on those proxies (`None`: it has
    /// none).
    pub network_conditions: Option<NetworkLimits>,
    /// The first reading of the server's counters.
    pub first: Option<Counters>,
    /// The last reading.
    pub last: Option<Counters>,
    /// What the databases this process dropped had counted: a dropped
    /// database's row leaves `pg_stat_database`, so its work is added back
    /// to this process's readings.
    #[serde(skip)]
    pub(crate) retired: Counters,
}

/// One reading of a server's counters (totals since it started).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counters {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Transactions (Postgres) or commands (Redis) so far.
    pub operations: u64,
    /// Rows (Postgres) or key lookups (Redis) so far.
    pub rows: u64,
}

impl Performance {
    /// Folds in one health probe's round trip.
    pub(crate) fn add_latency(&mut self, ms: f64) {
        let n = self.latency_samples as f64;
        self.latency_mean_ms = (self.latency_mean_ms * n + ms) / (n + 1.0);
        self.latency_samples += 1;
        self.latency_max_ms = self.latency_max_ms.max(ms);
    }

    /// Remembers the counts of a database about to be dropped.
    pub(crate) fn retire(&mut self, operations: u64, rows: u64) {
        self.retired.operations += operations;
        self.retired.rows += rows;
    }

    /// Folds in one reading of the server's counters.
    pub(crate) fn read(&mut self, unit: &str, c: Counters) {
        self.unit = unit.to_string();
        if self.first.is_none_or(|f| c.at_ms < f.at_ms) {
            self.first = Some(c);
        }
        if self.last.is_none_or(|l| c.at_ms >= l.at_ms) {
            self.last = Some(c);
        }
        self.derive();
    }

    /// Folds in what another process measured of the same service.
    pub(crate) fn merge(&mut self, other: Performance) {
        let n = self.latency_samples + other.latency_samples;
        if n > 0 {
            self.latency_mean_ms = (self.latency_mean_ms * self.latency_samples as f64
                + other.latency_mean_ms * other.latency_samples as f64)
                / n as f64;
        }
        self.latency_samples = n;
        self.latency_max_ms = self.latency_max_ms.max(other.latency_max_ms);
        self.proxied_sent_bytes += other.proxied_sent_bytes;
        self.proxied_received_bytes += other.proxied_received_bytes;
        if self.network_conditions.is_none() {
            self.network_conditions = other.network_conditions;
        }
        for c in [other.first, other.last].into_iter().flatten() {
            self.read(&other.unit, c);
        }
    }

    fn derive(&mut self) {
        let (Some(f), Some(l)) = (self.first, self.last) else { return };
        // A server that restarted counts from zero again: no delta then.
        self.operations = l.operations.saturating_sub(f.operations);
        self.rows = l.rows.saturating_sub(f.rows);
        let secs = l.at_ms.saturating_sub(f.at_ms) as f64 / 1000.0;
        let rate = |n: u64| if secs > 0.0 { (n as f64 / secs * 10.0).round() / 10.0 } else { 0.0 };
        (self.operations_per_sec, self.rows_per_sec) = (rate(self.operations), rate(self.rows));
    }
}

/// Everything this process knows about one service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceMetrics {
    /// The service's name.
    pub name: String,
    /// The image it runs (on an existing server: its URL, password masked).
    pub image: String,
    /// What ran it: `docker`, `local` (binaries on this machine) or
    /// `existing` (a server that was already running).
    pub engine: String,
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
    /// How it answered: latency, and the server's own counts of work.
    pub performance: Performance,
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
            r.add_sample(50.0, 100, 1000, (10, 20), (0, 5), (0, 1));
            r.add_sample(150.0, 300, 1000, (30, 25), (0, 9), (0, 2));
            assert_eq!(r.samples, 2);
            assert_eq!(r.cpu_peak_percent, 150.0);
            assert_eq!(r.cpu_mean_percent, 100.0);
            assert_eq!((r.memory_peak_bytes, r.memory_mean_bytes, r.memory_limit_bytes), (300, 200, 1000));
            assert_eq!((r.network_rx_bytes, r.network_tx_bytes, r.block_write_bytes), (30, 25, 9));
        }

        #[test]
        fn keep_the_peak_disk_rates_and_the_fullest_tmpfs() {
            let mut r = Resources::default();
            r.add_disk_rates([100.4, 2048.0, 3.0, 40.0]);
            r.add_disk_rates([50.0, 4096.6, 1.0, 20.0]);
            assert_eq!(
                (r.disk_read_bps_peak, r.disk_write_bps_peak, r.disk_read_iops_peak, r.disk_write_iops_peak),
                (100, 4097, 3, 40)
            );
            r.add_disk_size_sample(700);
            r.add_disk_size_sample(300);
            assert_eq!((r.disk_size_peak_bytes, r.disk_size_samples), (700, 2));
        }

        #[test]
        fn derive_throughput_from_the_first_and_last_readings() {
            let at = |at_ms, operations, rows| Counters { at_ms, operations, rows };
            let mut p = Performance::default();
            p.read("transactions", at(10_000, 100, 1_000));
            p.read("transactions", at(12_000, 350, 1_900));
            p.read("transactions", at(11_000, 200, 1_200));
            assert_eq!((p.operations, p.rows), (250, 900), "last minus first, whatever the order they came in");
            assert_eq!((p.operations_per_sec, p.rows_per_sec), (125.0, 450.0));
            p.add_latency(2.0);
            p.add_latency(4.0);
            assert_eq!((p.latency_samples, p.latency_mean_ms, p.latency_max_ms), (2, 3.0, 4.0));

            // Another process read earlier and later, and timed one probe.
            let mut other = Performance::default();
            other.read("transactions", at(9_000, 50, 900));
            other.read("transactions", at(14_000, 450, 2_100));
            other.add_latency(9.0);
            p.merge(other);
            assert_eq!((p.operations, p.operations_per_sec), (400, 80.0));
            assert_eq!((p.latency_samples, p.latency_mean_ms, p.latency_max_ms), (3, 5.0, 9.0));
        }

        #[test]
        fn count_nothing_across_a_restart_or_from_one_reading() {
            let mut p = Performance::default();
            p.read("commands", Counters { at_ms: 1_000, operations: 500, rows: 0 });
            assert_eq!((p.operations, p.operations_per_sec), (0, 0.0));
            p.read("commands", Counters { at_ms: 2_000, operations: 20, rows: 0 });
            assert_eq!(p.operations, 0, "the server restarted: its counters went back");
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
