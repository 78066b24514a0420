//! What happened during the run: the summary each test process prints on
//! stderr when it exits, and the run's report, one JSON document per run
//! (field by field in `docs/report.md`, as a JSON Schema in
//! `docs/report.schema.json`).
//!
//! At exit every test process that ran a cleanroom test or knew a service
//! 1. builds its own [`Report`]: its tests and what each waited for, the
//!    services it knew (from [`crate::metrics`]) and its cache counters;
//! 2. prints the summary on stderr, as `run.report` (`CLEANROOM_REPORT`) says;
//! 3. gets its report merged into the run's, under an exclusive lock on the
//!    file, in `<runtime dir>/reports/<session>.json` (the newest
//!    [`KEPT_REPORTS`] runs are kept; `cleanroom report` prints the newest)
//!    and in `run.report_json` (`CLEANROOM_REPORT_JSON=path`) if that is
//!    set: by the run's reaper, which folds the parts its processes leave
//!    ([`parts`]), or by itself without one. A file of another session, or
//!    of another schema, is replaced.
//!
//! Merging is the same whether the processes ran one after another (`cargo
//! test`) or all at once (`cargo nextest run`): tests and processes are
//! appended; per service, containers and alerts are unioned, counts summed,
//! peaks and totals are maxima and means are weighted by their samples.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::catalog::TestDesc;
use crate::config::ReportMode;
use crate::metrics::{self, CacheCounter, Health, ServiceMetrics};

/// The version of the document's shape; docs/report.md says what changed.
pub(crate) const SCHEMA: u32 = 3;

/// The report of a run, or of one of its processes before it is merged in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Report {
    pub(crate) schema: u32,
    pub(crate) session: String,
    pub(crate) processes: Vec<Process>,
    pub(crate) services: Vec<ServiceEntry>,
    pub(crate) tests: Vec<Test>,
    pub(crate) caches: BTreeMap<String, CacheCounter>,
    /// What each cache layer (container, image, network, volume) holds and
    /// how it evicts, as the last process to write saw it.
    pub(crate) cache_layers: BTreeMap<String, CacheLayer>,
    pub(crate) overhead: Overhead,
}

/// One cache layer as a process saw it when it wrote its report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct CacheLayer {
    /// Its strategy: `lru`, `lfu`, `mru` or `ttl`.
    pub(crate) eviction: String,
    /// How many things it holds.
    pub(crate) entries: usize,
    /// Their size in bytes, where known (0 for containers and networks).
    pub(crate) bytes: u64,
}

/// One test process of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Process {
    pub(crate) pid: u32,
    /// Milliseconds since the Unix epoch.
    pub(crate) started_at_ms: u64,
    pub(crate) ended_at_ms: u64,
    /// How many cleanroom tests it ran.
    pub(crate) tests: usize,
    /// Services whose container it created.
    pub(crate) created: Vec<String>,
    /// Services it attached to.
    pub(crate) attached: Vec<String>,
    /// Where it got to before its first test, in order: the breakdown of
    /// its start (`util::clock::mark`).
    pub(crate) marks: Vec<Mark>,
}

/// A point a process reached, in microseconds from its start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Mark {
    pub(crate) at: String,
    pub(crate) micros: u64,
}

/// One service over the run: what its processes measured, merged.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct ServiceEntry {
    #[serde(flatten)]
    pub(crate) metrics: ServiceMetrics,
    /// The process that created its first container (`None`: none of this
    /// run did, it was reused from an earlier one).
    pub(crate) created_by_pid: Option<u32>,
    /// When processes of the run held it Ready, `[from, to]` in milliseconds
    /// since the epoch, overlaps joined; `uptime_ms` is their total length.
    pub(crate) ready_spans_ms: Vec<[u64; 2]>,
}

// By hand, because serde's `flatten` cannot read the metrics' `u128`s back.
impl<'de> Deserialize<'de> for ServiceEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut value = serde_json::Value::deserialize(d)?;
        let mut take = |key: &str| value.as_object_mut().and_then(|o| o.remove(key)).unwrap_or_default();
        let created_by_pid = serde_json::from_value(take("created_by_pid")).map_err(D::Error::custom)?;
        let ready_spans_ms: Option<Vec<[u64; 2]>> =
            serde_json::from_value(take("ready_spans_ms")).map_err(D::Error::custom)?;
        let metrics = serde_json::from_value(value).map_err(D::Error::custom)?;
        Ok(ServiceEntry { metrics, created_by_pid, ready_spans_ms: ready_spans_ms.unwrap_or_default() })
    }
}

/// One test and what it waited for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Test {
    pub(crate) name: String,
    /// The process that ran it.
    pub(crate) pid: u32,
    /// When its services were Ready and it began to resolve its parameters,
    /// in microseconds from its process's start.
    pub(crate) started_micros: Option<u64>,
    pub(crate) acquire: Vec<Acquire>,
}

/// What one test waited for one service's handle.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Acquire {
    pub(crate) service: String,
    /// From asking for the handle to having it: waiting for Ready and the room.
    pub(crate) micros: u64,
    /// The room alone.
    pub(crate) room_micros: u64,
}

/// Per-test overhead (the sum of a test's acquisitions) over the tests that
/// acquired anything.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Overhead {
    pub(crate) tests: usize,
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p95_ms: Option<f64>,
    pub(crate) max_ms: Option<f64>,
}

impl Test {
    fn overhead_ms(&self) -> Option<f64> {
        (!self.acquire.is_empty()).then(|| self.acquire.iter().map(|a| a.micros as f64).sum::<f64>() / 1000.0)
    }
}

impl ServiceEntry {
    fn name(&self) -> &str {
        &self.metrics.name
    }

    /// Whether something went wrong that the user should see even in quiet mode.
    fn had_trouble(&self) -> bool {
        let m = &self.metrics;
        m.restarts > 0
            || m.health_check_failures > 0
            || m.oom_killed
            || m.health == Health::Unhealthy
            || !m.alerts.is_empty()
    }

    /// Folds in what a later process measured about the same service.
    fn merge(&mut self, later: ServiceEntry) {
        let (a, b) = (&mut self.metrics, later.metrics);
        if a.image.is_empty() {
            a.image = b.image;
        }
        if a.engine.is_empty() {
            a.engine = b.engine;
        }
        for c in b.containers {
            if !a.containers.contains(&c) {
                a.containers.push(c);
            }
        }
        a.starts.extend(b.starts);
        // Time to Ready is the creating process's: the others waited for it
        // from whenever they happened to start.
        match (self.created_by_pid, later.created_by_pid) {
            (None, Some(pid)) => {
                self.created_by_pid = Some(pid);
                a.time_to_ready_ms = b.time_to_ready_ms.or(a.time_to_ready_ms);
            }
            (None, None) => a.time_to_ready_ms = a.time_to_ready_ms.or(b.time_to_ready_ms),
            (Some(_), _) => {}
        }
        a.restarts += b.restarts;
        a.health_check_failures += b.health_check_failures;
        if !matches!(b.health, Health::Starting | Health::Unknown) {
            a.health = b.health;
        }
        a.oom_killed |= b.oom_killed;
        for alert in b.alerts {
            if !a.alerts.iter().any(|x| x.kind == alert.kind && x.message == alert.message && x.at_ms == alert.at_ms) {
                a.alerts.push(alert);
            }
        }
        a.alerts.sort_by_key(|x| x.at_ms);
        let (r, s) = (&mut a.resources, b.resources);
        let n = r.samples + s.samples;
        if n > 0 {
            let weigh = |x: f64, y: f64| (x * r.samples as f64 + y * s.samples as f64) / n as f64;
            r.cpu_mean_percent = weigh(r.cpu_mean_percent, s.cpu_mean_percent);
            r.memory_mean_bytes = weigh(r.memory_mean_bytes as f64, s.memory_mean_bytes as f64).round() as u64;
        }
        r.samples = n;
        r.cpu_peak_percent = r.cpu_peak_percent.max(s.cpu_peak_percent);
        r.memory_peak_bytes = r.memory_peak_bytes.max(s.memory_peak_bytes);
        r.memory_limit_bytes = r.memory_limit_bytes.max(s.memory_limit_bytes);
        // Docker's counters are totals since the container started.
        r.network_rx_bytes = r.network_rx_bytes.max(s.network_rx_bytes);
        r.network_tx_bytes = r.network_tx_bytes.max(s.network_tx_bytes);
        r.block_read_bytes = r.block_read_bytes.max(s.block_read_bytes);
        r.block_write_bytes = r.block_write_bytes.max(s.block_write_bytes);
        r.block_read_ops = r.block_read_ops.max(s.block_read_ops);
        r.block_write_ops = r.block_write_ops.max(s.block_write_ops);
        r.disk_read_bps_limit = r.disk_read_bps_limit.or(s.disk_read_bps_limit);
        r.disk_write_bps_limit = r.disk_write_bps_limit.or(s.disk_write_bps_limit);
        r.disk_read_iops_limit = r.disk_read_iops_limit.or(s.disk_read_iops_limit);
        r.disk_write_iops_limit = r.disk_write_iops_limit.or(s.disk_write_iops_limit);
        r.disk_read_bps_peak = r.disk_read_bps_peak.max(s.disk_read_bps_peak);
        r.disk_write_bps_peak = r.disk_write_bps_peak.max(s.disk_write_bps_peak);
        r.disk_read_iops_peak = r.disk_read_iops_peak.max(s.disk_read_iops_peak);
        r.disk_write_iops_peak = r.disk_write_iops_peak.max(s.disk_write_iops_peak);
        r.disk_size_limit_bytes = r.disk_size_limit_bytes.or(s.disk_size_limit_bytes);
        r.disk_size_peak_bytes = r.disk_size_peak_bytes.max(s.disk_size_peak_bytes);
        r.disk_size_samples += s.disk_size_samples;
        a.performance.merge(b.performance);
        self.ready_spans_ms.extend(later.ready_spans_ms);
        self.ready_spans_ms = join_spans(std::mem::take(&mut self.ready_spans_ms));
        self.metrics.uptime_ms = self.ready_spans_ms.iter().map(|[from, to]| (to - from) as f64).sum();
    }
}

/// Sorted spans with every overlap joined.
fn join_spans(mut spans: Vec<[u64; 2]>) -> Vec<[u64; 2]> {
    spans.sort();
    let mut out: Vec<[u64; 2]> = Vec::new();
    for [from, to] in spans {
        match out.last_mut() {
            Some(last) if from <= last[1] => last[1] = last[1].max(to),
            _ => out.push([from, to]),
        }
    }
    out
}

/// The nearest-rank percentile `p` (0–100) of sorted `values`.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted.get(rank.min(sorted.len()).checked_sub(1)?).copied()
}

impl Report {
    /// One process's report from what it recorded: `services` from the
    /// metrics, times in milliseconds since the epoch.
    pub(crate) fn of_process(
        session: &str,
        process: (u32, u64, u64),
        tests: Vec<Test>,
        services: Vec<ServiceMetrics>,
        caches: BTreeMap<String, CacheCounter>,
    ) -> Report {
        let (pid, started_at_ms, now_ms) = process;
        let mut services: Vec<ServiceEntry> = services
            .into_iter()
            .map(|m| ServiceEntry {
                created_by_pid: m.starts.first().filter(|s| s.created_here).map(|_| pid),
                ready_spans_ms: if m.uptime_ms > 0.0 {
                    vec![[now_ms.saturating_sub(m.uptime_ms.round() as u64), now_ms]]
                } else {
                    Vec::new()
                },
                metrics: m,
            })
            .collect();
        // A service a test used is in the report even before anything was
        // measured about it.
        for a in tests.iter().flat_map(|t| &t.acquire) {
            if !services.iter().any(|s| s.name() == a.service) {
                let metrics = ServiceMetrics { name: a.service.clone(), ..Default::default() };
                services.push(ServiceEntry { metrics, ..Default::default() });
            }
        }
        services.sort_by(|a, b| a.name().cmp(b.name()));
        let (created, attached): (Vec<&ServiceEntry>, Vec<&ServiceEntry>) =
            services.iter().partition(|s| s.created_by_pid.is_some());
        let names = |v: Vec<&ServiceEntry>| v.into_iter().map(|s| s.name().to_string()).collect();
        let process = Process {
            pid,
            started_at_ms,
            ended_at_ms: now_ms,
            tests: tests.len(),
            created: names(created),
            attached: names(attached),
            marks: Vec::new(),
        };
        let mut report = Report {
            schema: SCHEMA,
            session: session.to_string(),
            processes: vec![process],
            services,
            tests,
            caches,
            cache_layers: BTreeMap::new(),
            overhead: Overhead::default(),
        };
        report.overhead = report.compute_overhead();
        report
    }

    fn compute_overhead(&self) -> Overhead {
        let mut all: Vec<f64> = self.tests.iter().filter_map(Test::overhead_ms).collect();
        all.sort_by(f64::total_cmp);
        Overhead {
            tests: all.len(),
            p50_ms: percentile(&all, 50.0),
            p95_ms: percentile(&all, 95.0),
            max_ms: all.last().copied(),
        }
    }

    /// Folds in the report of other processes of the same run. Merging the
    /// same process twice changes nothing.
    pub(crate) fn merge(&mut self, other: Report) {
        let known = |p: &Process| self.processes.iter().any(|q| q.pid == p.pid && q.started_at_ms == p.started_at_ms);
        if !other.processes.is_empty() && other.processes.iter().all(known) {
            return;
        }
        self.processes.extend(other.processes);
        self.tests.extend(other.tests);
        for service in other.services {
            match self.services.iter_mut().find(|s| s.name() == service.name()) {
                Some(mine) => mine.merge(service),
                None => self.services.push(service),
            }
        }
        self.services.sort_by(|a, b| a.name().cmp(b.name()));
        for (name, c) in other.caches {
            let mine = self.caches.entry(name).or_default();
            mine.hits += c.hits;
            mine.misses += c.misses;
        }
        // What the layers hold is a reading, not a count: the later one.
        self.cache_layers.extend(other.cache_layers);
        self.overhead = self.compute_overhead();
    }

    /// `text` (the run's file as it is) with `self` merged in; a file that
    /// is empty, unreadable, of another schema or of another session is
    /// replaced.
    fn merged_into(&self, text: &str) -> Report {
        match serde_json::from_str::<Report>(text.trim()) {
            Ok(mut run) if run.schema == SCHEMA && run.session == self.session => {
                run.merge(self.clone());
                run
            }
            _ => self.clone(),
        }
    }

    /// Reads a stored report: this schema, or schema 1 (JSON Lines, one
    /// document per process), which is converted.
    pub(crate) fn parse(text: &str) -> Option<Report> {
        if let Ok(report) = serde_json::from_str::<Report>(text.trim()) {
            if report.schema >= 2 {
                return Some(report);
            }
        }
        #[derive(Deserialize)]
        struct Legacy {
            pid: u32,
            session: String,
            tests: Vec<Test>,
        }
        let mut run: Option<Report> = None;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let legacy: Legacy = serde_json::from_str(line).ok()?;
            let tests = legacy.tests.into_iter().map(|t| Test { pid: legacy.pid, ..t }).collect();
            let report = Report::of_process(&legacy.session, (legacy.pid, 0, 0), tests, Vec::new(), BTreeMap::new());
            match &mut run {
                Some(run) => run.merge(report),
                None => run = Some(report),
            }
        }
        run
    }
}

/// Whose summary is printed: one process's at its exit, or the whole run's
/// (`cleanroom report`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Process,
    Run,
}

fn duration(ms: f64) -> String {
    match ms {
        ms if ms < 1.0 => format!("{:.0} µs", ms * 1000.0),
        ms if ms < 100.0 => format!("{ms:.1} ms"),
        ms if ms < 1000.0 => format!("{ms:.0} ms"),
        ms if ms < 60_000.0 => format!("{:.2} s", ms / 1000.0),
        ms => {
            let secs = (ms / 1000.0).round() as u64;
            format!("{} min {:02} s", secs / 60, secs % 60)
        }
    }
}

pub(crate) fn bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = b as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `HH:MM:SS` (UTC) of milliseconds since the epoch.
fn clock(at_ms: u128) -> String {
    let secs = (at_ms / 1000) % 86_400;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs % 3600 / 60, secs % 60)
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl Report {
    fn ready_phrase(&self, s: &ServiceEntry, scope: Scope) -> String {
        let ready =
            s.metrics.time_to_ready_ms.map_or("Ready in -".to_string(), |ms| format!("Ready in {}", duration(ms)));
        let how = match (scope, s.created_by_pid) {
            (Scope::Process, Some(_)) => "started here".to_string(),
            (Scope::Process, None) => "attached".to_string(),
            (Scope::Run, Some(pid)) => format!("started by pid {pid}"),
            (Scope::Run, None) => "reused, not started by this run".to_string(),
        };
        format!("{ready} ({how})")
    }

    /// The summary, one string per line, without a prefix; empty when
    /// `mode` says to print nothing.
    pub(crate) fn summary(&self, mode: ReportMode, scope: Scope) -> Vec<String> {
        let troubled: Vec<&ServiceEntry> = self.services.iter().filter(|s| s.had_trouble()).collect();
        let worth_a_line = !self.processes.iter().all(|p| p.created.is_empty())
            || self.tests.len() > 1
            || scope == Scope::Run
            || self.not_started() > 0;
        match mode {
            ReportMode::Off => return Vec::new(),
            ReportMode::Quiet if troubled.is_empty() && !worth_a_line => return Vec::new(),
            _ => {}
        }
        if self.tests.is_empty() && self.services.is_empty() {
            return Vec::new();
        }
        let mut lines = vec![self.headline(&troubled, mode, scope)];
        let shown: Vec<&ServiceEntry> = match mode {
            ReportMode::Full => self.services.iter().collect(),
            _ => troubled,
        };
        let rows: Vec<[String; 4]> = shown
            .iter()
            .map(|s| {
                let m = &s.metrics;
                let memory = if m.resources.samples > 0 { bytes(m.resources.memory_peak_bytes) } else { "-".into() };
                let image = if m.image.is_empty() { "-".to_string() } else { m.image.clone() };
                [m.name.clone(), image, self.ready_phrase(s, scope), format!("peak memory {memory}")]
            })
            .collect();
        let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
        let widths = [width(0), width(1), width(2), width(3)];
        for (s, row) in shown.iter().zip(&rows) {
            let m = &s.metrics;
            let cells: Vec<String> = row.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
            lines.push(format!("  {}  restarts {}", cells.join("  "), m.restarts));
            if mode == ReportMode::Full {
                lines.push(format!("    {}", details(m)));
            }
            for alert in &m.alerts {
                lines.push(format!("    ! {} {}: {}", clock(alert.at_ms), alert.kind, alert.message));
            }
            if s.had_trouble() && m.alerts.is_empty() {
                let health = serde_json::to_value(m.health)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                lines.push(format!(
                    "    ! {} failed; last seen {health}{}",
                    count(m.health_check_failures as usize, "health check", "health checks"),
                    if m.oom_killed { "; killed for lack of memory" } else { "" }
                ));
            }
        }
        if mode == ReportMode::Full && !self.caches.is_empty() {
            let caches: Vec<String> = self
                .caches
                .iter()
                .map(|(name, c)| {
                    let mut text = format!(
                        "{name} {} / {}",
                        count(c.hits as usize, "hit", "hits"),
                        count(c.misses as usize, "miss", "misses")
                    );
                    if c.hits + c.misses > 0 {
                        text.push_str(&format!(" ({:.0}%)", 100.0 * c.hits as f64 / (c.hits + c.misses) as f64));
                    }
                    text
                })
                .collect();
            lines.push(format!("  caches: {}", caches.join(", ")));
        }
        if mode == ReportMode::Full && !self.cache_layers.is_empty() {
            let layers: Vec<String> = self
                .cache_layers
                .iter()
                .map(|(layer, l)| {
                    let size = if l.bytes > 0 { format!(", {}", bytes(l.bytes)) } else { String::new() };
                    format!("{layer} {}{size} ({})", count(l.entries, "held", "held"), l.eviction)
                })
                .collect();
            lines.push(format!("  cache layers: {}", layers.join(", ")));
        }
        lines
    }

    fn headline(&self, troubled: &[&ServiceEntry], mode: ReportMode, scope: Scope) -> String {
        let mut parts = Vec::new();
        let tests = count(self.tests.len(), "test", "tests");
        parts.push(match scope {
            Scope::Process => tests,
            Scope::Run => {
                format!("session {}: {tests} in {}", self.session, count(self.processes.len(), "process", "processes"))
            }
        });
        if mode != ReportMode::Full && !self.services.is_empty() {
            let ready: Vec<String> = self
                .services
                .iter()
                .map(|s| match s.metrics.time_to_ready_ms {
                    Some(ms) if s.created_by_pid.is_some() => format!("{} Ready in {}", s.name(), duration(ms)),
                    Some(ms) => format!("{} attached in {}", s.name(), duration(ms)),
                    None => s.name().to_string(),
                })
                .collect();
            parts.push(ready.join(", "));
        }
        if let (Some(p50), Some(p95)) = (self.overhead.p50_ms, self.overhead.p95_ms) {
            parts.push(format!("overhead per test p50 {}, p95 {}", duration(p50), duration(p95)));
        }
        let not_started = self.not_started();
        if not_started > 0 {
            parts.push(format!(
                "{} failed to start: a service it needs never became Ready (its error is in the test's output)",
                match (not_started, self.tests.len()) {
                    (1, 1) => "the test".to_string(),
                    (n, all) if n == all => format!("all {n} tests"),
                    (n, all) => format!("{n} of {all} tests"),
                }
            ));
        }
        match troubled {
            // Nothing to say of the services is no all-clear when tests
            // never ran.
            [] if not_started > 0 => {}
            [] => parts.push("no alerts".to_string()),
            t => parts.push(format!("trouble with {}", t.iter().map(|s| s.name()).collect::<Vec<_>>().join(", "))),
        }
        parts.join("; ")
    }

    /// How many tests failed before their body ran: a service they need
    /// never became Ready.
    fn not_started(&self) -> usize {
        self.tests.iter().filter(|t| t.started_micros.is_none()).count()
    }

    /// The tests and what each waited for, one row per acquisition.
    pub(crate) fn tests_table(&self) -> Vec<String> {
        let width = self.tests.iter().map(|t| t.name.len()).max().unwrap_or(4).max(4);
        let mut lines = vec![format!("{:<width$}  {:<10}  {:>10}  {:>10}", "TEST", "SERVICE", "WAIT ms", "ROOM ms")];
        for test in &self.tests {
            if test.acquire.is_empty() {
                lines.push(format!("{:<width$}  {:<10}  {:>10}  {:>10}", test.name, "-", "-", "-"));
            }
            for a in &test.acquire {
                let ms = |micros: u64| format!("{:.1}", micros as f64 / 1000.0);
                lines.push(format!(
                    "{:<width$}  {:<10}  {:>10}  {:>10}",
                    test.name,
                    a.service,
                    ms(a.micros),
                    ms(a.room_micros)
                ));
            }
        }
        lines
    }
}

/// The second line of a service in the full summary.
fn details(m: &ServiceMetrics) -> String {
    let phase = |name: &str, ms: Option<f64>| ms.map(|ms| format!("{name} {}", duration(ms)));
    let phases: Vec<String> = m
        .starts
        .iter()
        .filter(|p| p.created_here)
        .flat_map(|p| {
            [
                phase("pull", p.pull_ms),
                phase("create", p.create_ms),
                phase("start", p.start_ms),
                phase("health", p.health_ms),
                phase("volume cache", p.cache_ms),
            ]
        })
        .flatten()
        .collect();
    let r = &m.resources;
    let mut parts =
        vec![if phases.is_empty() { "phases -".to_string() } else { format!("phases {}", phases.join(", ")) }];
    parts.push(format!("{} failed", count(m.health_check_failures as usize, "health check", "health checks")));
    if r.samples > 0 {
        let percent = |p: f64| if p < 10.0 { format!("{p:.1}%") } else { format!("{p:.0}%") };
        parts.push(format!("cpu peak {} mean {}", percent(r.cpu_peak_percent), percent(r.cpu_mean_percent)));
        parts.push(format!("memory mean {}", bytes(r.memory_mean_bytes)));
        parts.push(format!("net {} in / {} out", bytes(r.network_rx_bytes), bytes(r.network_tx_bytes)));
        let mut disk = format!("disk {} read / {} written", bytes(r.block_read_bytes), bytes(r.block_write_bytes));
        if r.block_read_ops + r.block_write_ops > 0 {
            disk.push_str(&format!(" in {} / {} operations", r.block_read_ops, r.block_write_ops));
        }
        let rates = disk_rates(r);
        if !rates.is_empty() {
            disk.push_str(&format!(" (peak {})", rates.join(", ")));
        }
        parts.push(disk);
    } else {
        parts.push("no resource samples".to_string());
    }
    if let Some(cap) = r.disk_size_limit_bytes {
        parts.push(if r.disk_size_samples > 0 {
            format!("tmpfs peak {} of its size cap {}", bytes(r.disk_size_peak_bytes), bytes(cap))
        } else {
            format!("tmpfs size cap {} (not sampled)", bytes(cap))
        });
    }
    let perf = &m.performance;
    if perf.latency_samples > 0 {
        parts.push(format!(
            "latency mean {} max {} ({})",
            duration(perf.latency_mean_ms),
            duration(perf.latency_max_ms),
            count(perf.latency_samples as usize, "probe", "probes")
        ));
    }
    if perf.first.is_some() && !perf.unit.is_empty() {
        let rows = if perf.unit == "commands" { "key lookups" } else { "rows" };
        parts.push(format!(
            "{} {}, {}/s; {} {rows}, {}/s",
            perf.operations, perf.unit, perf.operations_per_sec, perf.rows, perf.rows_per_sec
        ));
    }
    if perf.proxied_sent_bytes + perf.proxied_received_bytes > 0 || perf.network_conditions.is_some() {
        let mut proxied = format!(
            "through tests' network proxies {} sent / {} received",
            bytes(perf.proxied_sent_bytes),
            bytes(perf.proxied_received_bytes)
        );
        if let Some(c) = &perf.network_conditions {
            proxied.push_str(&format!(" ({})", network_conditions(c)));
        }
        parts.push(proxied);
    }
    parts.push(format!("up {}", duration(m.uptime_ms)));
    parts.join("; ")
}

/// Each disk rate's peak between two samples, beside its throttle where it
/// has one: `write peak 1.0 MiB/s of limit 1.0 MiB/s`. Rates never seen and
/// never limited are left out.
fn disk_rates(r: &crate::metrics::Resources) -> Vec<String> {
    // `true`: bytes per second; `false`: operations per second.
    let shown = |in_bytes: bool, n: u64| if in_bytes { format!("{}/s", bytes(n)) } else { format!("{n} operations/s") };
    let rates = [
        ("read", true, r.disk_read_bps_peak, r.disk_read_bps_limit),
        ("write", true, r.disk_write_bps_peak, r.disk_write_bps_limit),
        ("read", false, r.disk_read_iops_peak, r.disk_read_iops_limit),
        ("write", false, r.disk_write_iops_peak, r.disk_write_iops_limit),
    ];
    rates
        .into_iter()
        .filter(|(_, _, peak, limit)| *peak > 0 || limit.is_some())
        .map(|(way, in_bytes, peak, limit)| {
            let shown = |n: u64| shown(in_bytes, n);
            match limit {
                Some(limit) => format!("{way} {} of limit {}", shown(peak), shown(limit)),
                None => format!("{way} {}", shown(peak)),
            }
        })
        .collect()
}

/// The definition's network conditions, as the limits to read the proxied
/// bytes against.
fn network_conditions(c: &crate::metrics::NetworkLimits) -> String {
    let mut said = Vec::new();
    if c.latency_ms > 0.0 || c.jitter_ms > 0.0 {
        said.push(format!("latency {} ± {}", duration(c.latency_ms), duration(c.jitter_ms)));
    }
    let rate = |limit: Option<u64>| limit.map_or("unlimited".to_string(), |b| format!("{}/s", bytes(b)));
    said.push(format!("upload {}, download {}", rate(c.upload_bytes_per_sec), rate(c.download_bytes_per_sec)));
    if c.reset_rate > 0.0 {
        said.push(format!("{:.0}% of connections reset", c.reset_rate * 100.0));
    }
    said.join(", ")
}

/// How long one test waited for one service's handle (its room included).
#[derive(Debug, Clone)]
pub(crate) struct Acquisition {
    pub(crate) service: &'static str,
    /// From asking for the handle to having it, waiting for Ready included.
    pub(crate) elapsed: std::time::Duration,
    /// The part spent making the test's room, once the service was Ready.
    pub(crate) room: std::time::Duration,
}

static TESTS: Mutex<Vec<Test>> = Mutex::new(Vec::new());

pub(crate) fn record_test(desc: &TestDesc, acquisitions: Vec<Acquisition>, started: Option<Duration>) {
    let acquire = acquisitions
        .into_iter()
        .map(|a| Acquire {
            service: a.service.to_string(),
            micros: a.elapsed.as_micros() as u64,
            room_micros: a.room.as_micros() as u64,
        })
        .collect();
    let test = Test {
        name: desc.test_name(),
        pid: std::process::id(),
        started_micros: started.map(|d| d.as_micros() as u64),
        acquire,
    };
    TESTS.lock().unwrap_or_else(|e| e.into_inner()).push(test);
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// This process's report, now.
fn this_process(session: &str) -> Report {
    let tests = TESTS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let (services, caches) = metrics::snapshot();
    let now = now_ms();
    let started =
        crate::util::clock::PROCESS_START.get().map_or(now, |t| now.saturating_sub(t.elapsed().as_millis() as u64));
    let caches = caches.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    let mut report = Report::of_process(session, (std::process::id(), started, now), tests, services, caches);
    report.processes[0].marks =
        crate::util::clock::marks().into_iter().map(|(at, micros)| Mark { at, micros }).collect();
    report.cache_layers = cache_layers();
    report
}

/// What each cache layer holds now, from the records in the runtime
/// directory, with its strategy.
fn cache_layers() -> BTreeMap<String, CacheLayer> {
    let policies = crate::config::current().map(|c| c.caches).ok();
    let held = crate::cache::held(crate::run::keeper::reused_held());
    held.into_iter()
        .map(|(layer, entries, bytes)| {
            let eviction = policies.map(|p| match layer {
                "container" => p.container.eviction,
                "image" => p.image.eviction,
                "network" => p.network.eviction,
                _ => p.volume.eviction,
            });
            let eviction = eviction.map_or("", crate::eviction::Eviction::name).to_string();
            (layer.to_string(), CacheLayer { eviction, entries, bytes })
        })
        .collect()
}

/// Where the report of `session` is kept: `<runtime dir>/reports/<session>.json`.
pub(crate) fn session_report_path(session: &str) -> PathBuf {
    reports_dir().join(format!("{session}.json"))
}

pub(crate) fn reports_dir() -> PathBuf {
    crate::util::paths::runtime_dir().join("reports")
}

/// How many runs' reports are kept in the runtime directory.
const KEPT_REPORTS: usize = 20;

/// Prints this process's summary and returns its part of the run's report,
/// or `None` when it has nothing to report (it ran no cleanroom test and
/// knew no service).
pub(crate) fn at_exit(session: &str) -> Option<parts::Part> {
    let report = this_process(session);
    if report.tests.is_empty() && report.services.is_empty() {
        return None;
    }
    let config = crate::config::current().ok();
    let mode = config.map_or(ReportMode::Quiet, |c| c.report);
    for line in report.summary(mode, Scope::Process) {
        crate::util::say!("cleanroom: {line}");
    }
    Some(parts::Part { report_json: config.and_then(|c| c.report_json.clone()), report })
}

/// Hands `part` to the run's reaper's fold: writes it beside the run's
/// document, where the reaper finds it ([`parts`]). `false` when it could
/// not be written; the caller then merges it itself.
pub(crate) fn leave_for_fold(session: &str, part: &parts::Part) -> bool {
    crate::util::paths::create_runtime_dir().is_ok() && parts::write_part(session, part).is_ok()
}

/// Folds the parts of `session`, saying on stderr what could not be written.
pub(crate) fn fold_and_say(session: &str) {
    for (path, e) in parts::fold(session) {
        say_unwritten(&path, &e);
    }
}

/// Merges `part` into its run's documents in this process (a run without a
/// reaper, or a reaper that did not answer): in the runtime directory and in
/// `run.report_json` if set.
pub(crate) fn merge_at_exit(session: &str, part: &parts::Part) {
    if crate::util::paths::create_runtime_dir().is_ok() && std::fs::create_dir_all(reports_dir()).is_ok() {
        let _ = merge_into_file(&session_report_path(session), &part.report);
        remove_old_reports();
    }
    if let Some(path) = &part.report_json {
        if let Err(e) = merge_into_file(path, &part.report) {
            say_unwritten(path, &e);
        }
    }
}

/// Says that the document at `path` could not be written, unless it is
/// the runtime directory's (which `cargo cleanroom report` folds later).
pub(crate) fn say_unwritten(path: &Path, e: &dyn std::fmt::Display) {
    if path.starts_with(reports_dir()) {
        return;
    }
    crate::util::say!(
        "cleanroom: could not write the report to {} (run.report_json / CLEANROOM_REPORT_JSON): {e}",
        path.display()
    );
}

/// Merges `report` into the run's document at `path` ([`merge_many_into_file`]).
pub(crate) fn merge_into_file(path: &Path, report: &Report) -> std::io::Result<()> {
    merge_many_into_file(path, &[report])
}

/// Merges `reports` into the run's document at `path`: under an exclusive
/// lock on the file, read it, merge, write a temporary file beside it and
/// rename it over the old one, so that a reader never sees half a document.
pub(crate) fn merge_many_into_file(path: &Path, reports: &[&Report]) -> std::io::Result<()> {
    let Some((first, rest)) = reports.split_first() else { return Ok(()) };
    let merge = |text: &str| -> std::io::Result<()> {
        let mut merged = first.merged_into(text);
        for later in rest {
            merged.merge((*later).clone());
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        let json = serde_json::to_string(&merged).map_err(std::io::Error::other)?;
        let written = std::fs::write(&tmp, format!("{json}\n")).and_then(|()| std::fs::rename(&tmp, path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    };
    #[cfg(unix)]
    {
        use std::io::Read;
        use std::os::unix::fs::MetadataExt;
        let identity = |m: std::fs::Metadata| (m.dev(), m.ino());
        // A process that waited for the lock may find the file replaced by
        // the one that held it: then it locks the new file.
        for _ in 0..1000 {
            let file = File::options().read(true).write(true).create(true).truncate(false).open(path)?;
            // The reaper already needs Rust 1.89 for `File::try_lock`.
            #[allow(clippy::incompatible_msrv)]
            file.lock()?;
            if std::fs::metadata(path).ok().map(identity) != Some(identity(file.metadata()?)) {
                continue;
            }
            let mut text = String::new();
            (&file).read_to_string(&mut text)?;
            return merge(&text);
        }
        Err(std::io::Error::other("the file kept being replaced while waiting for its lock"))
    }
    // Windows: std cannot tell a replaced file from its successor, and its
    // locks keep other handles from reading; a lock file beside the
    // document, never replaced, is held instead.
    #[cfg(windows)]
    {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let lock = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path.with_file_name(format!(".{name}.lock")))?;
        #[allow(clippy::incompatible_msrv)]
        lock.lock()?;
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        merge(&text)
    }
}

/// The reports in the runtime directory, newest first (`.jsonl`: schema 1).
pub(crate) fn reports() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(reports_dir()) else { return Vec::new() };
    let mut files: Vec<(SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json" || x == "jsonl"))
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    files.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
    files.into_iter().map(|(_, p)| p).collect()
}

fn remove_old_reports() {
    for old in reports().into_iter().skip(KEPT_REPORTS) {
        let _ = std::fs::remove_file(&old);
        if let Some(session) = old.file_stem().and_then(|s| s.to_str()) {
            let _ = std::fs::remove_dir_all(parts::parts_dir(session));
        }
    }
}

/// A stored report as `cleanroom report` prints it: the run's full summary,
/// then every test and what it waited for.
pub(crate) fn render(text: &str) -> Option<String> {
    let report = Report::parse(text)?;
    let mut lines = report.summary(ReportMode::Full, Scope::Run);
    lines.push(String::new());
    lines.extend(report.tests_table());
    Some(lines.join("\n") + "\n")
}

pub(crate) mod parts;

#[cfg(test)]
mod tests;
