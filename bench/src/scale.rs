//! `--scale`: the cleanroom suite at hundreds and a thousand tests under
//! `cargo test --test-threads 16`, to show that wall time grows linearly
//! with the suite, that the containers started stay two, and that the
//! Postgres container's memory and its databases stay bounded (the
//! databases of passed tests are dropped, the pool of clean ones is capped).
//!
//! The memory and the database count are sampled from the run's Postgres
//! container about once a second while the suite runs (`docker stats`, and
//! `psql` inside it): their peaks, not their last values.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The threads the scale runs use, as the issue states the run.
pub const THREADS: usize = 16;

/// One run of the scale suite.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScaleRun {
    pub n: usize,
    /// The whole `cargo test` invocation, seconds.
    pub wall: f64,
    /// Containers Docker created for the run (its `create` events).
    pub started: usize,
    /// Containers of the run still there 10 s after it ended.
    pub left: usize,
    /// The Postgres container's largest memory use seen, bytes.
    pub memory_peak: Option<u64>,
    /// The most databases seen on the run's Postgres at once.
    pub databases_peak: Option<u64>,
    pub ok: bool,
}

/// The libtest filters that select the first `n` tests (`n` a multiple of
/// 100 up to 1000).
pub fn filters(n: usize) -> Vec<String> {
    assert!(n.is_multiple_of(100) && (100..=1000).contains(&n), "scale sizes are multiples of 100 up to 1000, not {n}");
    (0..n / 100).map(|h| format!("s{h}")).collect()
}

/// The command line of one scale run.
pub fn command_line(n: usize) -> Vec<String> {
    let mut args: Vec<String> =
        ["cargo", "test", "-q", "-p", "cleanroom-bench", "--features", "suites", "--test", "scale", "--"]
            .map(String::from)
            .to_vec();
    args.push(format!("--test-threads={THREADS}"));
    args.extend(filters(n));
    args
}

/// `123.4MiB / 23.5GiB` (docker stats' memory column): the first amount, in
/// bytes.
pub fn parse_memory(text: &str) -> Option<u64> {
    let used = text.split('/').next()?.trim();
    let split = used.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = used.split_at(split);
    let number: f64 = number.trim().parse().ok()?;
    let factor = match unit.trim() {
        "B" => 1.0,
        "KiB" | "kB" | "KB" => 1024.0,
        "MiB" | "MB" => 1024.0 * 1024.0,
        "GiB" | "GB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((number * factor) as u64)
}

fn docker(args: &[&str]) -> Option<String> {
    let out = Command::new("docker").args(args).stderr(Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Samples the run's Postgres container until stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    peaks: Arc<Mutex<(Option<u64>, Option<u64>)>>,
    thread: std::thread::JoinHandle<()>,
}

impl Sampler {
    fn start(session: &str) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peaks = Arc::new(Mutex::new((None, None)));
        let (s, p, session) = (stop.clone(), peaks.clone(), session.to_string());
        let thread = std::thread::spawn(move || {
            let service = format!("label=cleanroom.session={session}");
            while !s.load(Ordering::SeqCst) {
                let id = docker(&["ps", "-q", "--filter", &service, "--filter", "label=cleanroom.service=postgres"])
                    .and_then(|ids| ids.lines().next().map(str::to_string));
                if let Some(id) = id {
                    let memory = docker(&["stats", "--no-stream", "--format", "{{.MemUsage}}", &id])
                        .and_then(|m| parse_memory(&m));
                    let count = r#"psql -U "$POSTGRES_USER" -d postgres -Atc "SELECT count(*) FROM pg_database""#;
                    let databases =
                        docker(&["exec", &id, "sh", "-c", count]).and_then(|c| c.lines().last()?.trim().parse().ok());
                    let mut peaks = p.lock().unwrap();
                    peaks.0 = peaks.0.max(memory);
                    peaks.1 = peaks.1.max(databases);
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        Sampler { stop, peaks, thread }
    }

    fn finish(self) -> (Option<u64>, Option<u64>) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
        *self.peaks.lock().unwrap()
    }
}

/// Runs the scale suite once with `n` tests in session `session`, its log
/// in `log`.
pub fn run(n: usize, session: &str, log: &std::path::Path, root: &std::path::Path) -> ScaleRun {
    let argv = command_line(n);
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).current_dir(root).stdin(Stdio::null());
    for var in ["CLEANROOM_REUSE", "CLEANROOM_ENGINE", "CLEANROOM_REPORT_JSON"] {
        cmd.env_remove(var);
    }
    // The harness's own definitions (see the matrix's cells).
    cmd.env("CLEANROOM_SESSION", session).env("CLEANROOM_STARTUP_TIMEOUT", "61.25");
    let file = std::fs::File::create(log).expect("log file");
    cmd.stdout(file.try_clone().expect("log file")).stderr(file);
    let label = format!("cleanroom.session={session}");
    let creations = crate::docker::Creations::watch(&label, log.with_extension("created"));
    let sampler = Sampler::start(session);
    let start = Instant::now();
    let ok = cmd.status().is_ok_and(|s| s.success());
    let wall = start.elapsed().as_secs_f64();
    let (memory_peak, databases_peak) = sampler.finish();
    let started = creations.finish().len();
    let left = crate::docker::settle(&label, Duration::from_secs(10));
    crate::docker::remove(&left);
    if !ok {
        eprintln!("  FAILED: {} (log: {})", argv.join(" "), log.display());
    }
    ScaleRun { n, wall, started, left: left.len(), memory_peak, databases_peak, ok }
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or("–".to_string(), |b| format!("{:.0} MiB", b as f64 / (1024.0 * 1024.0)))
}

/// The table of the scale runs (one row per run, in order), and what each
/// further test cost between sizes.
pub fn table(runs: &[ScaleRun]) -> String {
    let mut out = String::from(
        "| N | wall | per test | containers started | left over | Postgres memory (peak) | databases (peak) |\n\
         |---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in runs {
        let wall = if r.ok { format!("{:.2} s", r.wall) } else { "failed".to_string() };
        let per = if r.ok { format!("{:.1} ms", r.wall * 1000.0 / r.n as f64) } else { "–".to_string() };
        let databases = r.databases_peak.map_or("–".to_string(), |d| d.to_string());
        out.push_str(&format!(
            "| {} | {wall} | {per} | {} | {} | {} | {databases} |\n",
            r.n,
            r.started,
            r.left,
            mib(r.memory_peak)
        ));
    }
    let mut sizes: Vec<usize> = runs.iter().filter(|r| r.ok).map(|r| r.n).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let median_at =
        |n: usize| crate::stats::median(&runs.iter().filter(|r| r.ok && r.n == n).map(|r| r.wall).collect::<Vec<_>>());
    let steps: Vec<String> = sizes
        .windows(2)
        .filter_map(|w| {
            let (a, b) = (median_at(w[0])?, median_at(w[1])?);
            Some(format!("{}→{}: {:.1} ms", w[0], w[1], (b - a) * 1000.0 / (w[1] - w[0]) as f64))
        })
        .collect();
    if !steps.is_empty() {
        out.push_str(&format!("\nEach further test, between sizes (median walls): {}.\n", steps.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::*;

        #[test]
        fn select_whole_hundreds_of_the_thousand() {
            assert_eq!(filters(300), ["s0", "s1", "s2"]);
            assert_eq!(filters(1000).len(), 10);
            let argv = command_line(200);
            assert!(argv.ends_with(&["--test-threads=16".to_string(), "s0".to_string(), "s1".to_string()]));
            assert!(argv.contains(&"scale".to_string()));
        }

        #[test]
        fn read_docker_stats_memory_column() {
            assert_eq!(parse_memory("123.5MiB / 23.5GiB"), Some(129_499_136));
            assert_eq!(parse_memory("1.5GiB / 2GiB"), Some(1_610_612_736));
            assert_eq!(parse_memory("512KiB / 1GiB"), Some(524_288));
            assert_eq!(parse_memory("-- / --"), None);
        }

        #[test]
        fn show_each_further_tests_cost_between_sizes() {
            let run = |n: usize, wall: f64| ScaleRun { n, wall, started: 2, ok: true, ..ScaleRun::default() };
            let text = table(&[run(200, 5.0), run(500, 9.8), run(1000, 17.8)]);
            assert!(text.contains("| 200 | 5.00 s | 25.0 ms | 2 | 0 | – | – |"), "{text}");
            assert!(text.contains("200→500: 16.0 ms, 500→1000: 16.0 ms"), "{text}");
            let failed = ScaleRun { n: 1000, ok: false, ..ScaleRun::default() };
            assert!(table(&[failed]).contains("| 1000 | failed | – |"));
        }
    }
}
