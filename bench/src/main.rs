//! The benchmark harness: one command that runs the same workload five ways
//! (cleanroom, a container pair per test, a `static` singleton, `#[sqlx::test]`
//! against servers started before the suite, and the floor: plain tests on
//! those servers with no isolation) under `cargo test` and
//! `cargo nextest run`, at several suite sizes, cold and warm, and writes
//! `docs/benchmarks.md`, `docs/benchmarks.svg` and the README's headline.
//!
//! ```text
//! cargo run -p cleanroom-bench --release                 # the full matrix, docs rewritten
//! cargo run -p cleanroom-bench --release -- --quick      # one smoke cell per approach
//! cargo run -p cleanroom-bench --release -- --help
//! ```
//!
//! What is counted comes from Docker, not from the code under test: containers
//! started are `create` events carrying the cell's label, left-overs are the
//! containers still carrying it after the run.

mod chart;
mod cli;
mod docker;
mod render;
mod scale;
mod services;
mod stats;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cli::{Approach, Options, Runner};

/// One run of one cell.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Wall time of the whole runner invocation, in seconds; for an approach
    /// whose servers the harness starts (`#[sqlx::test]`), from the first
    /// `docker run` to the runner's exit.
    pub wall: f64,
    /// `#[sqlx::test]` only: the runner invocation alone, servers already
    /// ready, in seconds.
    pub suite: Option<f64>,
    /// Containers Docker created for the cell.
    pub started: usize,
    /// Containers of the cell still there once the runner had exited (after
    /// a settle period for cleanroom's reaper).
    pub left: usize,
    /// cleanroom only: per-test fixture acquisition, p50 and p95, milliseconds.
    pub overhead_ms: Option<(f64, f64)>,
    /// cleanroom only: time from a test process's start to its first test's
    /// body (services Ready, rooms made), median over processes,
    /// milliseconds.
    pub first_test_ms: Option<f64>,
    /// cleanroom only: where its processes got to before their first test,
    /// medians over processes in milliseconds from process start
    /// ([`stats::marks_from_report`]).
    pub marks: Vec<(String, f64)>,
    /// Whether the runner exited successfully.
    pub ok: bool,
}

/// All samples of one cell of the matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub n: usize,
    pub runner: Runner,
    pub approach: Approach,
    pub samples: Vec<Sample>,
}

/// What the machine is, for the record.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub cores: usize,
    pub memory_gib: f64,
    pub docker: String,
    pub kernel: String,
    pub rustc: String,
    pub images: (String, String),
    pub date: String,
    /// The 1-minute load average when the harness started and when it ended:
    /// other work on the machine shows here.
    pub load: (String, String),
    /// The `opt-level` the suites' builds give cleanroom's runtime (the
    /// workspace's `[profile.dev.package.cleanroom-test-runtime]`): the
    /// per-process times depend on it (docs/startup.md).
    pub runtime_opt_level: String,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("bench/ is inside the workspace").to_path_buf()
}

fn output(cmd: &mut Command) -> String {
    cmd.output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> Machine {
    let memory_kib: f64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().find(|l| l.starts_with("MemTotal:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0.0);
    let image = |s: &str| {
        let (name, tag) = cleanroom_bench::image(s);
        format!("{name}:{tag}")
    };
    Machine {
        cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        memory_gib: memory_kib / 1024.0 / 1024.0,
        docker: output(Command::new("docker").args(["version", "--format", "{{.Server.Version}}"])),
        kernel: output(Command::new("uname").args(["-sr"])),
        rustc: output(Command::new("rustc").arg("--version")),
        images: (image("postgres"), image("redis")),
        date: output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])),
        load: (load_average(), String::new()),
        runtime_opt_level: runtime_opt_level(
            &std::fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap_or_default(),
        ),
    }
}

/// The `opt-level` a workspace manifest gives cleanroom's runtime in test
/// builds: its `[profile.dev.package.cleanroom-test-runtime]` table's, else
/// the dev profile's, else 0 (Cargo's default).
fn runtime_opt_level(manifest: &str) -> String {
    let mut table = "";
    let (mut dev, mut runtime) = (None, None);
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            table = line;
            continue;
        }
        let Some(value) = line.strip_prefix("opt-level").and_then(|v| v.trim_start().strip_prefix('=')) else {
            continue;
        };
        let value = value.split('#').next().unwrap_or("").trim().trim_matches('"').to_string();
        match table {
            "[profile.dev.package.cleanroom-test-runtime]" => runtime = Some(value),
            "[profile.dev]" => dev = Some(value),
            _ => {}
        }
    }
    runtime.or(dev).unwrap_or_else(|| "0".to_string())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(String::from))
        .unwrap_or_default()
}

/// Builds the suites so that no cell pays for compilation.
fn build(opts: &Options) -> Result<(), String> {
    let mut cargo = Command::new("cargo");
    cargo.current_dir(workspace_root()).args([
        "test",
        "-q",
        "-p",
        "cleanroom-bench",
        "--features",
        "suites",
        "--no-run",
    ]);
    run_quiet(&mut cargo, "building the suites")?;
    if opts.runners.contains(&Runner::Nextest) {
        let mut list = Command::new("cargo");
        list.current_dir(workspace_root()).args(["nextest", "list", "-p", "cleanroom-bench", "--features", "suites"]);
        run_quiet(&mut list, "listing the suites with cargo nextest (is cargo-nextest installed?)")?;
    }
    Ok(())
}

fn run_quiet(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed:\n{}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// Test-name filters that select the first `n` tests (`t000`…): every suite
/// has 160 tests named with three digits, so `t00` selects ten of them.
pub fn filters(n: usize) -> Vec<String> {
    assert!(n.is_multiple_of(10) && (10..=160).contains(&n), "suite sizes are multiples of 10 up to 160, not {n}");
    (0..n / 10).map(|d| format!("t{d:02}")).collect()
}

/// The command line of one cell (without environment).
pub fn command_line(runner: Runner, approach: Approach, n: usize) -> Vec<String> {
    let mut args: Vec<String> = match runner {
        Runner::CargoTest => ["cargo", "test", "-q"].map(String::from).to_vec(),
        Runner::Nextest => ["cargo", "nextest", "run", "--no-fail-fast"].map(String::from).to_vec(),
    };
    args.extend(["-p", "cleanroom-bench", "--features", "suites", "--test", approach.suite()].map(String::from));
    if runner == Runner::CargoTest {
        args.push("--".into());
    }
    args.extend(filters(n));
    args
}

struct Bench {
    /// Unique per harness run, so that its labels are its own.
    id: String,
    logs: PathBuf,
    /// Reused containers created by warm cells, removed at the end.
    reused: Vec<String>,
}

impl Bench {
    fn cell_env(&self, cmd: &mut Command, approach: Approach, label: &str, report: &Path) {
        for var in [
            "CLEANROOM_SESSION",
            "CLEANROOM_REUSE",
            "CLEANROOM_REUSE_TTL",
            "CLEANROOM_REPORT_JSON",
            "CLEANROOM_BENCH_CELL",
            "CLEANROOM_ENGINE",
            "DATABASE_URL",
            "REDIS_URL",
        ] {
            cmd.env_remove(var);
        }
        match approach {
            Approach::Cleanroom | Approach::CleanroomWarm | Approach::CleanroomLocal => {
                cmd.env("CLEANROOM_SESSION", label).env("CLEANROOM_REPORT_JSON", report);
                if approach == Approach::CleanroomLocal {
                    cmd.env("CLEANROOM_ENGINE", "local");
                }
                // A definition of the harness's own (the startup timeout is
                // part of it), so reused services of the user's are never
                // attached to nor removed.
                cmd.env("CLEANROOM_STARTUP_TIMEOUT", "61.25");
                if approach == Approach::CleanroomWarm {
                    cmd.env("CLEANROOM_REUSE", "1").env("CLEANROOM_REUSE_TTL", "1800");
                }
            }
            Approach::PerTest | Approach::Singleton | Approach::SqlxTest | Approach::Floor => {
                cmd.env("CLEANROOM_BENCH_CELL", label);
            }
        }
    }

    /// Starts the servers of an approach that needs them before its suite
    /// (`#[sqlx::test]`, the floor) and points the suite at them.
    fn start_services(
        approach: Approach,
        label: &str,
        cmd: &mut Command,
    ) -> Result<Option<services::Services>, String> {
        if !approach.has_services() {
            return Ok(None);
        }
        let started = services::Services::start(label, approach == Approach::Floor)?;
        cmd.env("DATABASE_URL", &started.database_url).env("REDIS_URL", &started.redis_url);
        Ok(Some(started))
    }

    /// Runs one cell once and measures it.
    fn run(&mut self, runner: Runner, approach: Approach, n: usize, tag: &str) -> Sample {
        let label_value = format!("{}-{tag}", self.id);
        let label = match approach {
            Approach::Cleanroom | Approach::CleanroomWarm | Approach::CleanroomLocal => {
                format!("cleanroom.session={label_value}")
            }
            _ => format!("{}={label_value}", cleanroom_bench::BENCH_LABEL),
        };
        let report = self.logs.join(format!("{label_value}.report.jsonl"));
        let log = self.logs.join(format!("{label_value}.log"));
        let argv = command_line(runner, approach, n);
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]).current_dir(workspace_root()).stdin(Stdio::null());
        self.cell_env(&mut cmd, approach, &label_value, &report);
        let log_file = std::fs::File::create(&log).expect("log file");
        cmd.stdout(log_file.try_clone().expect("log file")).stderr(log_file);

        let creations = docker::Creations::watch(&label, self.logs.join(format!("{label_value}.created")));
        let reuses = (approach == Approach::CleanroomWarm)
            .then(|| docker::Creations::watch("cleanroom.reuse=true", self.logs.join(format!("{label_value}.reused"))));
        // The wall time counts starting the servers and waiting for them;
        // removing them afterwards (the end of a CI job) is not counted.
        let start = Instant::now();
        let (status, suite) = match Self::start_services(approach, &label, &mut cmd) {
            Ok(servers) => {
                let suite_start = Instant::now();
                let status = cmd.status().map_err(|e| e.to_string());
                let suite = suite_start.elapsed().as_secs_f64();
                if let Some(servers) = servers {
                    servers.remove();
                }
                (status, approach.has_services().then_some(suite))
            }
            Err(e) => (Err(format!("starting the servers for the suite: {e}")), None),
        };
        let wall = start.elapsed().as_secs_f64();
        let ok = matches!(status, Ok(s) if s.success());
        if !ok {
            eprintln!("  FAILED: {} (log: {})", argv.join(" "), log.display());
            if let Err(e) = &status {
                eprintln!("    {e}");
            }
            if let Ok(text) = std::fs::read_to_string(&log) {
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                for line in tail.iter().rev() {
                    eprintln!("    {line}");
                }
            }
        }

        let mut created = creations.finish();
        if let Some(reuses) = reuses {
            let reused = reuses.finish();
            self.reused.extend(reused.iter().cloned());
            created.extend(reused);
        }
        let left = docker::settle(&label, Duration::from_secs(10));
        docker::remove(&left);

        let text = std::fs::read_to_string(&report).unwrap_or_default();
        let (overhead_ms, first_test_ms) = stats::from_report(&text);
        let marks = stats::marks_from_report(&text);
        Sample { wall, suite, started: created.len(), left: left.len(), overhead_ms, first_test_ms, marks, ok }
    }

    /// Starts the reused services once, so that every warm cell attaches.
    fn warm_up(&mut self) -> Result<(), String> {
        let sample = self.run(Runner::CargoTest, Approach::CleanroomWarm, 10, "warmup");
        if sample.ok {
            Ok(())
        } else {
            Err("the warm-up run (cleanroom with CLEANROOM_REUSE=1) failed; see the log above".into())
        }
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        // The reused services the warm cells kept: the harness's own (by id,
        // from its own events), removed now rather than after their TTL.
        docker::remove(&self.reused);
        docker::remove_idle_reuse_networks();
    }
}

fn main() {
    let opts = match cli::parse(std::env::args().skip(1)) {
        Ok(cli::Parsed::Run(opts)) => opts,
        Ok(cli::Parsed::Help) => {
            print!("{}", cli::HELP);
            return;
        }
        Err(e) => {
            eprintln!("cleanroom-bench: {e}\n\n{}", cli::HELP);
            std::process::exit(2);
        }
    };
    std::process::exit(match run(opts) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("cleanroom-bench: {e}");
            2
        }
    });
}

/// One progress line of a run (`[  3/48] container per test  cargo test  N=40  285.04 s  started  80  left   0`,
/// `… suite 4.20 s` for `#[sqlx::test]`), back into its cell and sample;
/// `None` for any other line.
pub fn parse_progress(line: &str) -> Option<(usize, Runner, Approach, Sample)> {
    let rest = line.trim_start().strip_prefix('[')?.split_once(']')?.1.trim_start();
    // Longest titles first: "cleanroom, warm (reuse)" starts with "cleanroom".
    let mut approaches = Approach::ALL;
    approaches.sort_by_key(|a| std::cmp::Reverse(a.title().len()));
    let approach = approaches.into_iter().find(|a| rest.starts_with(a.title()))?;
    let rest = rest[approach.title().len()..].trim_start();
    let runner = [Runner::Nextest, Runner::CargoTest].into_iter().find(|r| rest.starts_with(r.title()))?;
    let words: Vec<&str> = rest[runner.title().len()..].split_whitespace().collect();
    let n = words.first()?.strip_prefix("N=")?.parse().ok()?;
    let wall = words.get(1)?.parse().ok()?;
    let after = |key: &str| words.iter().position(|w| *w == key).and_then(|i| words.get(i + 1));
    let started = after("started")?.parse().ok()?;
    let left = after("left")?.parse().ok()?;
    let overhead_ms = after("p50").zip(after("p95")).and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
    let first_test_ms = after("first").and_then(|v| v.parse().ok());
    let suite = after("suite").and_then(|v| v.parse().ok());
    Some((
        n,
        runner,
        approach,
        Sample {
            wall,
            suite,
            started,
            left,
            overhead_ms,
            first_test_ms,
            marks: Vec::new(),
            ok: !line.contains("FAILED"),
        },
    ))
}

/// The line a run prints about its machine, which `--from-log` reads back.
const MACHINE_RECORD: &str = "cleanroom-bench: machine:";

fn machine_record(m: &Machine) -> String {
    format!(
        "{MACHINE_RECORD} cores={}\tmemory_gib={:.1}\tdocker={}\tkernel={}\trustc={}\timages={} {}\tdate={}\truntime_opt_level={}",
        m.cores, m.memory_gib, m.docker, m.kernel, m.rustc, m.images.0, m.images.1, m.date, m.runtime_opt_level
    )
}

/// The machine a log's run recorded ([`machine_record`]); what it did not
/// record reads "not recorded".
fn machine_from_log(text: &str) -> Machine {
    let unknown = || "not recorded".to_string();
    let mut m = Machine {
        docker: unknown(),
        kernel: unknown(),
        rustc: unknown(),
        images: (unknown(), unknown()),
        date: unknown(),
        runtime_opt_level: unknown(),
        ..Machine::default()
    };
    let Some(record) = text.lines().find_map(|l| l.strip_prefix(MACHINE_RECORD)) else { return m };
    for field in record.trim().split('\t') {
        let Some((key, value)) = field.split_once('=') else { continue };
        let value = value.to_string();
        match key {
            "cores" => m.cores = value.parse().unwrap_or(0),
            "memory_gib" => m.memory_gib = value.parse().unwrap_or(0.0),
            "docker" => m.docker = value,
            "kernel" => m.kernel = value,
            "rustc" => m.rustc = value,
            "images" => {
                if let Some((pg, redis)) = value.split_once(' ') {
                    m.images = (pg.to_string(), redis.to_string());
                }
            }
            "date" => m.date = value,
            "runtime_opt_level" => m.runtime_opt_level = value,
            _ => {}
        }
    }
    m
}

/// The cells of an earlier run, from its progress lines.
fn cells_from_log(text: &str) -> Vec<Cell> {
    let mut cells: Vec<Cell> = Vec::new();
    for (n, runner, approach, sample) in text.lines().filter_map(parse_progress) {
        match cells.iter_mut().find(|c| c.n == n && c.runner == runner && c.approach == approach) {
            Some(c) => c.samples.push(sample),
            None => cells.push(Cell { n, runner, approach, samples: vec![sample] }),
        }
    }
    cells
}

/// Writes the page, the chart and the README's headline.
fn write_docs(dir: &Path, machine: &Machine, opts: &Options, cells: &[Cell]) -> Result<(), String> {
    let markdown = render::markdown(machine, opts, cells);
    let md = dir.join("benchmarks.md");
    let svg = dir.join("benchmarks.svg");
    std::fs::write(&md, &markdown).map_err(|e| format!("writing {}: {e}", md.display()))?;
    chart::draw(&svg, cells).map_err(|e| format!("drawing {}: {e}", svg.display()))?;
    let readme = workspace_root().join("README.md");
    if let Ok(text) = std::fs::read_to_string(&readme) {
        if let Some(updated) = render::readme_headline(&text, machine, cells) {
            std::fs::write(&readme, updated).map_err(|e| format!("writing {}: {e}", readme.display()))?;
        }
    }
    eprintln!("cleanroom-bench: wrote {}, {} and the README's headline", md.display(), svg.display());
    Ok(())
}

/// `--scale`: the scale suite at `sizes`, `--reps` times each, interleaved;
/// `Ok(false)` when a run failed, started more than two containers or left
/// one.
fn run_scale(opts: &Options, sizes: &[usize], id: &str, machine: &mut Machine) -> Result<bool, String> {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"));
    let logs = target.join("cleanroom-bench").join(id);
    std::fs::create_dir_all(&logs).map_err(|e| format!("creating {}: {e}", logs.display()))?;
    let mut runs = Vec::new();
    for rep in 0..opts.reps {
        for &n in sizes {
            let session = format!("{id}-scale-{n}-r{rep}");
            let run = scale::run(n, &session, &logs.join(format!("{session}.log")), &workspace_root());
            eprintln!(
                "[scale] N={n:<4} {:>7.2} s  started {}  left {}  postgres peak {} MiB, {} databases{}",
                run.wall,
                run.started,
                run.left,
                run.memory_peak.map_or("?".into(), |b| (b / (1024 * 1024)).to_string()),
                run.databases_peak.map_or("?".into(), |d| d.to_string()),
                if run.ok { "" } else { "  FAILED" }
            );
            runs.push(run);
        }
    }
    machine.load.1 = load_average();
    let table = scale::table(&runs);
    println!("{table}");
    if let Some(dir) = &opts.write_docs {
        let page = format!(
            "# Benchmarks at scale\n\n\
             <!-- Written by `cargo run -p cleanroom-bench --release -- --scale {}`: edit bench/src/scale.rs, not \
             this file. -->\n\n\
             The cleanroom suite of docs/benchmarks.md (20 inserts and 20 SETs per test, a fresh database and Redis \
             DB each) at {} tests under `cargo test --test-threads={}`, each size {} time(s). The Postgres \
             container's memory (`docker stats`) and its number of databases (`pg_database`, the template and \
             the pool of clean ones included) are sampled about once a second while the suite runs; their peaks \
             are shown.\n\n**Machine:** {} ({}).\n\n{table}",
            sizes.iter().map(usize::to_string).collect::<Vec<_>>().join(","),
            sizes.iter().map(usize::to_string).collect::<Vec<_>>().join(", "),
            scale::THREADS,
            opts.reps,
            render::machine_line(machine),
            machine.date,
        );
        let path = dir.join("benchmarks-scale.md");
        std::fs::write(&path, page).map_err(|e| format!("writing {}: {e}", path.display()))?;
        eprintln!("cleanroom-bench: wrote {}", path.display());
    }
    Ok(runs.iter().all(|r| r.ok && r.started <= 2 && r.left == 0))
}

/// Runs the matrix; `Ok(false)` when a cell failed or cleanroom left something.
fn run(opts: Options) -> Result<bool, String> {
    let mut machine = machine();
    if let Some(log) = &opts.from_log {
        let text = std::fs::read_to_string(log).map_err(|e| format!("reading {}: {e}", log.display()))?;
        let cells = cells_from_log(&text);
        if cells.is_empty() {
            return Err(format!("{} has no progress lines of a run", log.display()));
        }
        let mut opts = opts.clone();
        opts.reps = cells.iter().map(|c| c.samples.len()).max().unwrap_or(0);
        // Not this machine's: the log's, as its run recorded it; its load
        // was not recorded.
        machine = machine_from_log(&text);
        machine.load = ("not recorded (the page was rebuilt from a run's log)".into(), "not recorded".into());
        println!("{}", render::table(&cells));
        if let Some(dir) = &opts.write_docs {
            write_docs(dir, &machine, &opts, &cells)?;
        }
        return Ok(true);
    }
    if machine.docker.is_empty() {
        return Err("Docker does not answer (`docker version` failed): start it, or set DOCKER_HOST".into());
    }
    eprintln!(
        "cleanroom-bench: {} cores, {:.1} GiB, Docker {}; images {} and {}",
        machine.cores, machine.memory_gib, machine.docker, machine.images.0, machine.images.1
    );
    // For a log of this run: `--from-log` reads the machine back from it.
    eprintln!("{}", machine_record(&machine));
    eprintln!("cleanroom-bench: building the suites");
    build(&opts)?;

    let id = format!("bench{}", std::process::id());
    if let Some(sizes) = opts.scale.clone() {
        return run_scale(&opts, &sizes, &id, &mut machine);
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"));
    let logs = target.join("cleanroom-bench").join(&id);
    std::fs::create_dir_all(&logs).map_err(|e| format!("creating {}: {e}", logs.display()))?;
    let mut bench = Bench { id, logs, reused: Vec::new() };

    if opts.approaches.contains(&Approach::CleanroomWarm) {
        eprintln!("cleanroom-bench: warming up the reused services");
        bench.warm_up()?;
    }

    let mut cells: Vec<Cell> = Vec::new();
    for &n in &opts.sizes {
        for &runner in &opts.runners {
            for &approach in &opts.approaches {
                cells.push(Cell { n, runner, approach, samples: Vec::new() });
            }
        }
    }
    let total = cells.len() * opts.reps;
    let mut done = 0;
    for rep in 0..opts.reps {
        // Interleaved: every repetition visits every cell, in an order
        // rotated per repetition, so drift of the machine hits all equally.
        let count = cells.len();
        for k in 0..count {
            let i = (k + rep * 3) % count;
            let (n, runner, approach) = (cells[i].n, cells[i].runner, cells[i].approach);
            done += 1;
            let tag = format!("{}-{}-{}-r{rep}", approach.slug(), runner.slug(), n);
            let sample = bench.run(runner, approach, n, &tag);
            eprintln!(
                "[{done:>3}/{total}] {:<22} {:<16} N={n:<3} {:>7.2} s  started {:>3}  left {:>3}{}",
                approach.title(),
                runner.title(),
                sample.wall,
                sample.started,
                sample.left,
                sample
                    .overhead_ms
                    .map(|(p50, p95)| format!("  overhead p50 {p50:.2} ms p95 {p95:.2} ms"))
                    .unwrap_or_default()
                    + &sample.first_test_ms.map(|f| format!("  first {f:.1} ms")).unwrap_or_default()
                    + &sample.suite.map(|s| format!("  suite {s:.2} s")).unwrap_or_default()
                    + if sample.ok { "" } else { "  FAILED" }
            );
            cells[i].samples.push(sample);
        }
    }
    drop(bench);
    machine.load.1 = load_average();

    println!("{}", render::table(&cells));
    println!("{}", render::breakdown(&cells));
    if let Some(dir) = &opts.write_docs {
        write_docs(dir, &machine, &opts, &cells)?;
    }

    let failed: Vec<String> = cells
        .iter()
        .filter(|c| c.samples.iter().any(|s| !s.ok))
        .map(|c| format!("{} / {} / N={}", c.approach.title(), c.runner.title(), c.n))
        .collect();
    let leaked: Vec<String> = cells
        .iter()
        .filter(|c| c.approach.is_cleanroom() && c.samples.iter().any(|s| s.left > 0))
        .map(|c| format!("{} / {} / N={}", c.approach.title(), c.runner.title(), c.n))
        .collect();
    for f in &failed {
        eprintln!("cleanroom-bench: a run failed: {f}");
    }
    for l in &leaked {
        eprintln!("cleanroom-bench: cleanroom left containers behind: {l}");
    }
    Ok(failed.is_empty() && leaked.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    mod should {
        use super::*;

        #[test]
        fn read_progress_lines_back_into_cells() {
            let log = "cleanroom-bench: building the suites
[  1/48] cleanroom              cargo test       N=10     6.28 s  started   2  left   0  overhead p50 8.74 ms p95 140.32 ms
[  2/48] cleanroom, warm (reuse) cargo nextest run N=40     2.12 s  started   0  left   0  overhead p50 52.81 ms p95 107.71 ms  first 31.5 ms
[  3/48] container per test     cargo test       N=10    44.72 s  started  20  left   0
[ 27/48] container per test     cargo test       N=10    40.00 s  started  20  left   0
[ 28/48] #[sqlx::test]          cargo nextest run N=160   21.40 s  started   2  left   0  suite 18.35 s
[ 29/48] #[sqlx::test]          cargo test       N=10     4.10 s  started   2  left   0  suite 1.02 s  FAILED
";
            let cells = cells_from_log(log);
            assert_eq!(cells.len(), 5);
            assert_eq!((cells[0].n, cells[0].runner, cells[0].approach), (10, Runner::CargoTest, Approach::Cleanroom));
            assert_eq!(cells[0].samples[0].overhead_ms, Some((8.74, 140.32)));
            assert_eq!(
                (cells[1].approach, cells[1].runner, cells[1].n),
                (Approach::CleanroomWarm, Runner::Nextest, 40)
            );
            assert_eq!(cells[1].samples[0].first_test_ms, Some(31.5));
            assert_eq!(cells[2].samples.iter().map(|s| s.wall).collect::<Vec<_>>(), [44.72, 40.0]);
            assert_eq!(cells[2].samples[0].started, 20);
            assert_eq!((cells[3].approach, cells[3].runner, cells[3].n), (Approach::SqlxTest, Runner::Nextest, 160));
            assert_eq!((cells[3].samples[0].wall, cells[3].samples[0].suite), (21.4, Some(18.35)));
            assert!(cells[3].samples[0].ok);
            assert_eq!(cells[4].samples[0].suite, Some(1.02));
            assert!(!cells[4].samples[0].ok, "a failed run reads back as failed");
            assert_eq!(cells[0].samples[0].suite, None, "only #[sqlx::test] times its suite alone");
            assert_eq!(parse_progress("cleanroom-bench: wrote docs"), None);
        }

        #[test]
        fn read_the_machine_back_from_the_log_its_run_printed_or_say_it_was_not_recorded() {
            let m = Machine {
                cores: 2,
                memory_gib: 23.6,
                docker: "20.10.24".into(),
                kernel: "Linux 6.18".into(),
                rustc: "rustc 1.95.0 (59807616e 2026-04-14)".into(),
                images: ("postgres:17-alpine".into(), "redis:7-alpine".into()),
                date: "2026-11-27 16:59 UTC".into(),
                load: ("0.5".into(), String::new()),
                runtime_opt_level: "2".into(),
            };
            let log =
                format!("cleanroom-bench: 2 cores\n{}\ncleanroom-bench: building the suites\n", machine_record(&m));
            let back = machine_from_log(&log);
            assert_eq!(render::machine_line(&back), render::machine_line(&Machine { load: back.load.clone(), ..m }));
            assert_eq!((back.date.as_str(), back.runtime_opt_level.as_str()), ("2026-11-27 16:59 UTC", "2"));
            let unknown = machine_from_log("[  1/48] cleanroom ...");
            assert_eq!((unknown.kernel.as_str(), unknown.date.as_str()), ("not recorded", "not recorded"));
            assert_eq!(unknown.runtime_opt_level, "not recorded");
        }

        #[test]
        fn read_the_runtimes_opt_level_from_the_workspace_manifest() {
            let manifest =
                "[profile.dev]\ndebug = 1\n\n[profile.dev.package.cleanroom-test-runtime]\nopt-level = 2 # fast\n";
            assert_eq!(runtime_opt_level(manifest), "2");
            assert_eq!(runtime_opt_level("[profile.dev]\nopt-level = \"s\"\n"), "s", "the dev profile's own");
            assert_eq!(
                runtime_opt_level("[profile.release]\nopt-level = 3\n[profile.dev.package.other]\nopt-level = 1\n"),
                "0",
                "neither the release profile's nor another crate's"
            );
            let ours = std::fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
            assert_eq!(runtime_opt_level(&ours), "2", "this workspace's, as docs/startup.md says");
        }

        #[test]
        fn filter_the_first_n_tests_by_prefix() {
            assert_eq!(filters(10), ["t00"]);
            assert_eq!(filters(40), ["t00", "t01", "t02", "t03"]);
            assert_eq!(filters(160).len(), 16);
            assert_eq!(filters(160).last().unwrap(), "t15");
        }

        #[test]
        #[should_panic(expected = "multiples of 10")]
        fn refuse_to_filter_sizes_the_suites_do_not_have() {
            filters(25);
        }

        #[test]
        fn put_filters_in_command_lines_where_each_runner_expects_them() {
            assert_eq!(
                command_line(Runner::CargoTest, Approach::PerTest, 10).join(" "),
                "cargo test -q -p cleanroom-bench --features suites --test per_test -- t00"
            );
            assert_eq!(
                command_line(Runner::Nextest, Approach::CleanroomWarm, 20).join(" "),
                "cargo nextest run --no-fail-fast -p cleanroom-bench --features suites --test cleanroom t00 t01"
            );
            assert_eq!(
                command_line(Runner::CargoTest, Approach::SqlxTest, 10).join(" "),
                "cargo test -q -p cleanroom-bench --features suites --test sqlx_test -- t00"
            );
        }
    }
}
