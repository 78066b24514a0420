//! The results as markdown: the page `docs/benchmarks.md`, the table printed
//! at the end of a run, and the README's headline.

use std::fmt::Write;

use crate::cli::{Approach, Options, Runner};
use crate::stats::{median, range};
use crate::{Cell, Machine};

/// The size the headline and the ratio goals are stated at.
pub const HEADLINE_N: usize = 40;

const README_START: &str = "<!-- bench:headline:start -->";
const README_END: &str = "<!-- bench:headline:end -->";

fn find(cells: &[Cell], n: usize, runner: Runner, approach: Approach) -> Option<&Cell> {
    cells.iter().find(|c| c.n == n && c.runner == runner && c.approach == approach)
}

/// Median wall time of a cell's successful runs; `None` if any run failed.
pub fn wall(cell: &Cell) -> Option<f64> {
    if cell.samples.iter().any(|s| !s.ok) {
        return None;
    }
    median(&cell.samples.iter().map(|s| s.wall).collect::<Vec<_>>())
}

/// Median time of a cell's suite alone, without starting its servers
/// (`#[sqlx::test]`); `None` if any run failed or none was timed.
pub fn suite(cell: &Cell) -> Option<f64> {
    if cell.samples.iter().any(|s| !s.ok) {
        return None;
    }
    median_of(cell, |s| s.suite)
}

fn wall_at(cells: &[Cell], n: usize, runner: Runner, approach: Approach) -> Option<f64> {
    find(cells, n, runner, approach).and_then(wall)
}

fn seconds(s: Option<f64>) -> String {
    s.map_or("failed".to_string(), |s| format!("{s:.2} s"))
}

fn ms(v: Option<f64>) -> String {
    v.map_or("–".to_string(), |v| if v < 10.0 { format!("{v:.2} ms") } else { format!("{v:.0} ms") })
}

fn median_of(cell: &Cell, f: impl Fn(&crate::Sample) -> Option<f64>) -> Option<f64> {
    median(&cell.samples.iter().filter_map(f).collect::<Vec<_>>())
}

/// The table of every cell.
pub fn table(cells: &[Cell]) -> String {
    let mut out = String::from(
        "| N | runner | approach | wall (median) | min–max | suite only (median) | containers started | left over | fixture overhead p50 / p95 | first test |\n\
         |---:|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut sorted: Vec<&Cell> = cells.iter().collect();
    sorted.sort_by_key(|c| (c.n, c.runner, c.approach));
    for c in sorted {
        let walls: Vec<f64> = c.samples.iter().map(|s| s.wall).collect();
        let minmax = range(&walls).map_or("–".into(), |(a, b)| format!("{a:.2}–{b:.2}"));
        let started = median_of(c, |s| Some(s.started as f64)).map_or("–".into(), |v| format!("{v:.0}"));
        let left = c.samples.iter().map(|s| s.left).max().unwrap_or(0);
        let overhead = if c.approach.is_cleanroom() {
            format!(
                "{} / {}",
                ms(median_of(c, |s| s.overhead_ms.map(|o| o.0))),
                ms(median_of(c, |s| s.overhead_ms.map(|o| o.1)))
            )
        } else {
            "–".into()
        };
        let first = if c.approach.is_cleanroom() { ms(median_of(c, |s| s.first_test_ms)) } else { "–".into() };
        let suite = if c.approach.has_services() { seconds(suite(c)) } else { "–".into() };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {minmax} | {suite} | {started} | {left} | {overhead} | {first} |",
            c.n,
            c.runner.title(),
            c.approach.title(),
            seconds(wall(c)),
        );
    }
    out
}

/// One goal of the benchmark issue, checked against the measurements.
#[derive(Debug, Clone, PartialEq)]
pub struct Goal {
    pub text: String,
    /// `None` when a needed cell was not measured or failed.
    pub met: Option<bool>,
    pub measured: String,
}

/// Where cleanroom's test processes spend their time before their first
/// test: for each cleanroom cell at its largest N, the median over runs of
/// each mark's median over processes (cleanroom's report,
/// `processes[].marks`, and the first test's body), in the order reached.
/// Empty when no run recorded marks.
pub fn breakdown(cells: &[Cell]) -> String {
    let mut columns: Vec<(&Cell, Vec<(String, f64)>)> = Vec::new();
    for cell in cells.iter().filter(|c| c.approach.is_cleanroom()) {
        let largest =
            cells.iter().filter(|c| c.approach == cell.approach && c.runner == cell.runner).map(|c| c.n).max();
        if Some(cell.n) != largest {
            continue;
        }
        let mut labels: Vec<String> = Vec::new();
        for sample in &cell.samples {
            for (label, _) in &sample.marks {
                if !labels.contains(label) {
                    labels.push(label.clone());
                }
            }
        }
        let medians: Vec<(String, f64)> = labels
            .into_iter()
            .filter_map(|label| {
                let values: Vec<f64> = cell
                    .samples
                    .iter()
                    .filter_map(|s| s.marks.iter().find(|(l, _)| *l == label).map(|(_, v)| *v))
                    .collect();
                Some((label, median(&values)?))
            })
            .collect();
        if !medians.is_empty() {
            columns.push((cell, medians));
        }
    }
    if columns.is_empty() {
        return String::new();
    }
    let mut rows: Vec<(String, f64)> = Vec::new();
    for (_, medians) in &columns {
        for (label, v) in medians {
            if !rows.iter().any(|(l, _)| l == label) {
                rows.push((label.clone(), *v));
            }
        }
    }
    rows.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut out = String::from("| from process start to | ");
    let titles: Vec<String> =
        columns.iter().map(|(c, _)| format!("{} · {}, N={}", c.approach.title(), c.runner.title(), c.n)).collect();
    out.push_str(&titles.join(" | "));
    out.push_str(" |\n|---|");
    out.push_str(&"---:|".repeat(columns.len()));
    out.push('\n');
    for (label, _) in &rows {
        let values: Vec<String> =
            columns.iter().map(|(_, medians)| ms(medians.iter().find(|(l, _)| l == label).map(|(_, v)| *v))).collect();
        let _ = writeln!(out, "| {label} | {} |", values.join(" | "));
    }
    out
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? / b?)
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("not measured".into(), |r| format!("{r:.2}×"))
}

/// Checks the goals that the measured cells allow.
pub fn goals(cells: &[Cell]) -> Vec<Goal> {
    use Approach::*;
    use Runner::*;
    let mut sizes: Vec<usize> = cells.iter().map(|c| c.n).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let mut goals = Vec::new();
    let n = HEADLINE_N;

    // The ratio a/b at every size where both cells were measured (`None`
    // inside when one of them failed).
    let ratios = |a: (Runner, Approach), b: (Runner, Approach)| -> Vec<(usize, Option<f64>)> {
        sizes
            .iter()
            .filter(|&&k| find(cells, k, a.0, a.1).is_some() && find(cells, k, b.0, b.1).is_some())
            .map(|&k| (k, ratio(wall_at(cells, k, a.0, a.1), wall_at(cells, k, b.0, b.1))))
            .collect()
    };
    let vs_singleton = ratios((CargoTest, Cleanroom), (CargoTest, Singleton));
    if !vs_singleton.is_empty() {
        goals.push(Goal {
            text: "`cargo test`: cleanroom ≤ 1.15× the static singleton".into(),
            met: Some(vs_singleton.iter().all(|(_, r)| r.is_some_and(|r| r <= 1.15))),
            measured: vs_singleton
                .iter()
                .map(|(k, r)| format!("N={k}: {}", fmt_ratio(*r)))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    for runner in [CargoTest, Nextest] {
        let local = ratios((runner, CleanroomLocal), (runner, Cleanroom));
        if !local.is_empty() {
            goals.push(Goal {
                text: format!(
                    "{}: the local engine faster than Docker's cold start (no container to create)",
                    runner.title()
                ),
                met: Some(local.iter().all(|(_, r)| r.is_some_and(|r| r < 1.0))),
                measured: local
                    .iter()
                    .map(|(k, r)| format!("N={k}: {} of Docker's time", fmt_ratio(*r)))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    let speedup = |runner, base| ratio(wall_at(cells, n, runner, base), wall_at(cells, n, runner, Cleanroom));
    if let Some(r) = speedup(CargoTest, PerTest) {
        goals.push(Goal {
            text: format!("`cargo test`: ≥ 8× faster than a container per test at N = {n}"),
            met: Some(r >= 8.0),
            measured: format!("{r:.1}× faster"),
        });
    }
    // One goal for nextest against cargo test: judged against the floor
    // where the floor was measured, else at every size.
    let nextest_vs_test = ratios((Nextest, Cleanroom), (CargoTest, Cleanroom));
    let per_size = nextest_vs_test.iter().map(|(k, r)| format!("N={k}: {}", fmt_ratio(*r))).collect::<Vec<_>>();
    match nextest_against_the_floor(cells, &sizes) {
        Some(mut goal) => {
            goal.measured = format!("{}; {}", per_size.join(", "), goal.measured);
            goals.push(goal);
        }
        None if !nextest_vs_test.is_empty() => goals.push(Goal {
            text: "`cargo nextest run`: cleanroom ≤ 1.5× its own `cargo test` time".into(),
            met: Some(nextest_vs_test.iter().all(|(_, r)| r.is_some_and(|r| r <= 1.5))),
            measured: per_size.join(", "),
        }),
        None => {}
    }
    if let (Some(a), Some(b)) = (speedup(Nextest, PerTest), speedup(Nextest, Singleton)) {
        goals.push(Goal {
            text: format!("`cargo nextest run`: ≥ 5× faster than both baselines at N = {n}"),
            met: Some(a >= 5.0 && b >= 5.0),
            measured: format!("{a:.1}× faster than a container per test, {b:.1}× faster than the singleton"),
        });
    }
    for runner in [CargoTest, Nextest] {
        let started: Vec<(usize, f64)> = sizes
            .iter()
            .filter_map(|&k| {
                find(cells, k, runner, Cleanroom).and_then(|c| median_of(c, |s| Some(s.started as f64))).map(|v| (k, v))
            })
            .collect();
        if started.len() >= 2 {
            goals.push(Goal {
                text: format!("{}: cleanroom's containers started constant in N", runner.title()),
                met: Some(started.iter().all(|(_, v)| *v == started[0].1)),
                measured: started.iter().map(|(k, v)| format!("N={k}: {v:.0}")).collect::<Vec<_>>().join(", "),
            });
        }
    }
    // Growth with N: what each extra test costs cleanroom beyond what it
    // costs the singleton (the same workload with no isolation at all),
    // against cleanroom's own per-test fixture overhead.
    if let (Some(&lo), Some(&hi)) = (sizes.first(), sizes.last()) {
        if hi > lo {
            let slope = |a| {
                Some(
                    (wall_at(cells, hi, CargoTest, a)? - wall_at(cells, lo, CargoTest, a)?) / (hi - lo) as f64 * 1000.0,
                )
            };
            let overhead =
                find(cells, hi, CargoTest, Cleanroom).and_then(|c| median_of(c, |s| s.overhead_ms.map(|o| o.0)));
            if let (Some(cr), Some(single), Some(over)) = (slope(Cleanroom), slope(Singleton), overhead) {
                // Two test threads by default: a test's overhead costs the
                // run at most the overhead itself.
                let extra = cr - single;
                goals.push(Goal {
                    text: "`cargo test`: wall time grows by no more than the per-test overhead times N".into(),
                    met: Some(extra <= over.max(1.0)),
                    measured: format!(
                        "each extra test costs cleanroom {cr:.0} ms of wall time and the singleton {single:.0} ms: {extra:.1} ms more, against a fixture overhead p50 of {over:.2} ms"
                    ),
                });
            }
        }
    }
    for runner in [CargoTest, Nextest] {
        let first: Vec<f64> = cells
            .iter()
            .filter(|c| c.runner == runner && c.approach == CleanroomWarm)
            .filter_map(|c| median_of(c, |s| s.first_test_ms))
            .collect();
        if let Some(worst) = first.iter().copied().reduce(f64::max) {
            goals.push(Goal {
                text: format!("warm (reuse), {}: first test within 300 ms of cleanroom time", runner.title()),
                met: Some(worst < 300.0),
                measured: format!("at most {worst:.0} ms from process start to the first test"),
            });
        }
    }
    // A process of `cargo nextest run` that attaches to its run's services:
    // the median over a run's processes (the first, which creates them, is
    // one of N).
    let per_process: Vec<(usize, f64)> = cells
        .iter()
        .filter(|c| c.runner == Nextest && c.approach == Cleanroom)
        .filter_map(|c| Some((c.n, median_of(c, |s| s.first_test_ms)?)))
        .collect();
    if !per_process.is_empty() {
        goals.push(Goal {
            text: "`cargo nextest run`: a test process's first test body within 2 ms of its start (the median over \
                   the run's processes)"
                .into(),
            met: Some(per_process.iter().all(|(_, ms)| *ms <= 2.0)),
            measured: per_process.iter().map(|(k, ms)| format!("N={k}: {ms:.2} ms")).collect::<Vec<_>>().join(", "),
        });
    }
    if let Some(goal) = faster_than_sqlx(cells, &sizes) {
        goals.push(goal);
    }
    let leaks: usize =
        cells.iter().filter(|c| c.approach.is_cleanroom()).flat_map(|c| &c.samples).map(|s| s.left).sum();
    if cells.iter().any(|c| c.approach.is_cleanroom()) {
        goals.push(Goal {
            text: "cleanroom leaves nothing behind".into(),
            met: Some(leaks == 0),
            measured: format!("{leaks} container(s) left over in all cleanroom runs"),
        });
    }
    goals
}

/// At the largest size where cleanroom and the floor were both measured
/// under both runners: whether nextest stays within 1.5× `cargo test` for
/// cleanroom, or the process-per-test model alone (the floor's own ratio,
/// servers already running, no framework) already exceeds it; and in either
/// case how far cleanroom is from the floor under nextest, in all and per
/// test.
fn nextest_against_the_floor(cells: &[Cell], sizes: &[usize]) -> Option<Goal> {
    use Approach::{Cleanroom, Floor};
    use Runner::{CargoTest, Nextest};
    let k = *sizes.iter().rev().find(|&&k| {
        [CargoTest, Nextest]
            .iter()
            .all(|&r| find(cells, k, r, Cleanroom).is_some() && find(cells, k, r, Floor).is_some())
    })?;
    let floor_at = |r| find(cells, k, r, Floor).and_then(suite);
    let (cr_test, cr_next) = (wall_at(cells, k, CargoTest, Cleanroom), wall_at(cells, k, Nextest, Cleanroom));
    let (fl_test, fl_next) = (floor_at(CargoTest), floor_at(Nextest));
    let text = format!(
        "`cargo nextest run` at N = {k}: cleanroom ≤ 1.5× its `cargo test` time, or nextest's process per test \
         alone (the floor) is over 1.5×"
    );
    let (Some(cr_ratio), Some(fl_ratio)) = (ratio(cr_next, cr_test), ratio(fl_next, fl_test)) else {
        return Some(Goal { text, met: None, measured: "a run failed".into() });
    };
    let (cr_next, fl_next) = (cr_next.unwrap_or_default(), fl_next.unwrap_or_default());
    let distance = cr_next - fl_next;
    Some(Goal {
        text,
        met: Some(cr_ratio <= 1.5 || fl_ratio > 1.5),
        measured: format!(
            "cleanroom {cr_ratio:.2}× ({} under nextest, {} under cargo test); the floor, servers already running \
             and no framework, {fl_ratio:.2}× on its own ({} and {}): nextest costs the floor {} over cargo test \
             before any framework. Under nextest cleanroom is {} from the floor, {:.0} ms per test, which include \
             starting its two containers",
            seconds(Some(cr_next)),
            seconds(cr_test),
            seconds(Some(fl_next)),
            seconds(fl_test),
            seconds(fl_test.map(|t| fl_next - t)),
            seconds(Some(distance)),
            distance / k as f64 * 1000.0,
        ),
    })
}

/// cleanroom against `#[sqlx::test]` (whose wall time counts starting its
/// servers), under each runner at every size both were measured at: the
/// speed-ups, each cell's times, and the cells where cleanroom was not
/// faster, by name and numbers.
fn faster_than_sqlx(cells: &[Cell], sizes: &[usize]) -> Option<Goal> {
    let (mut parts, mut slower, mut complete) = (Vec::new(), Vec::new(), true);
    for runner in [Runner::CargoTest, Runner::Nextest] {
        let pairs: Vec<(usize, &Cell, &Cell)> = sizes
            .iter()
            .filter_map(|&k| {
                Some((k, find(cells, k, runner, Approach::Cleanroom)?, find(cells, k, runner, Approach::SqlxTest)?))
            })
            .collect();
        if pairs.is_empty() {
            complete = false;
            parts.push(format!("{}: not measured", runner.title()));
            continue;
        }
        let each: Vec<String> = pairs
            .iter()
            .map(|&(k, cr, sx)| {
                let (cr_wall, sx_wall) = (wall(cr), wall(sx));
                match ratio(sx_wall, cr_wall) {
                    Some(r) => {
                        if r <= 1.0 {
                            slower.push(format!(
                                "{} N={k} (cleanroom {}, `#[sqlx::test]` {}, its suite alone {})",
                                runner.title(),
                                seconds(cr_wall),
                                seconds(sx_wall),
                                seconds(suite(sx))
                            ));
                        }
                        format!(
                            "N={k}: {r:.2}× ({} against {}, suite alone {})",
                            seconds(cr_wall),
                            seconds(sx_wall),
                            seconds(suite(sx))
                        )
                    }
                    None => {
                        complete = false;
                        format!("N={k}: a run failed")
                    }
                }
            })
            .collect();
        parts.push(format!("{}: {}", runner.title(), each.join(", ")));
    }
    if parts.iter().all(|p| p.ends_with("not measured")) {
        return None;
    }
    let mut measured = format!(
        "`#[sqlx::test]`'s wall time divided by cleanroom's (in brackets: cleanroom's wall time against \
         `#[sqlx::test]`'s, which counts its `docker run`s and the wait, and `#[sqlx::test]`'s suite alone) — {}",
        parts.join("; ")
    );
    if !slower.is_empty() {
        measured.push_str(&format!(". cleanroom is **not faster** at: {}", slower.join("; ")));
    }
    Some(Goal {
        text: "cleanroom faster than `#[sqlx::test]` under both runners at every N".into(),
        met: if !slower.is_empty() {
            Some(false)
        } else if complete {
            Some(true)
        } else {
            None
        },
        measured,
    })
}

fn headline(cells: &[Cell]) -> String {
    let mut out = format!("| N = {HEADLINE_N}, wall time | cargo test | cargo nextest run |\n|---|---:|---:|\n");
    for approach in Approach::ALL {
        let cell = |r| {
            let whole = seconds(wall_at(cells, HEADLINE_N, r, approach));
            match find(cells, HEADLINE_N, r, approach).filter(|_| approach.has_services()).and_then(suite) {
                Some(alone) => format!("{whole} (suite alone {alone:.2} s)"),
                None => whole,
            }
        };
        if find(cells, HEADLINE_N, Runner::CargoTest, approach).is_none()
            && find(cells, HEADLINE_N, Runner::Nextest, approach).is_none()
        {
            continue;
        }
        let _ = writeln!(out, "| {} | {} | {} |", approach.title(), cell(Runner::CargoTest), cell(Runner::Nextest));
    }
    out
}

pub fn machine_line(m: &Machine) -> String {
    let runtime = match m.runtime_opt_level.as_str() {
        "" | "not recorded" => "the opt-level of cleanroom's runtime in the suites not recorded".to_string(),
        level => format!("cleanroom's runtime built at opt-level {level} in the suites"),
    };
    format!(
        "{} cores, {:.1} GiB memory, Docker {}, {}, {}; images `{}` and `{}`; {runtime}; load average {} at the start, \
         {} at the end",
        m.cores, m.memory_gib, m.docker, m.kernel, m.rustc, m.images.0, m.images.1, m.load.0, m.load.1
    )
}

/// How many times each cell ran: `3 time(s)`, or, for a page rebuilt from
/// logs whose cells ran different numbers of times, `1–4 time(s) (the
/// table says which)`.
fn repetitions(cells: &[Cell], reps: usize) -> String {
    let counts = cells.iter().map(|c| c.samples.len());
    match (counts.clone().min(), counts.max()) {
        (Some(min), Some(max)) if min != max => {
            format!("{min}–{max} time(s) (the table's min–max says which ran more than once)")
        }
        _ => format!("{reps} time(s)"),
    }
}

/// The whole page.
pub fn markdown(m: &Machine, opts: &Options, cells: &[Cell]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Benchmarks\n\n\
         <!-- Written by `cargo run -p cleanroom-bench --release`: edit bench/src/render.rs, not this file. -->\n\n\
         The same 20-insert, 20-SET workload per test, written five ways (see [`bench/`](../bench)), run under \
         `cargo test` and `cargo nextest run` on one machine {}, each cell {}, interleaved.\n\n\
         **Machine:** {} ({}).\n",
        match &opts.from_log {
            Some(log) => format!(
                "(this page rebuilt with `--from-log {}`, the progress lines of earlier runs)",
                log.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
            ),
            None => "in one run".to_string(),
        },
        repetitions(cells, opts.reps),
        machine_line(m),
        m.date
    );
    let _ = writeln!(out, "## Headline\n\n{}", headline(cells));
    let _ = writeln!(out, "![Wall time against suite size](benchmarks.svg)\n");
    let _ = writeln!(out, "## Goals\n");
    for g in goals(cells) {
        let mark = match g.met {
            Some(true) => "met",
            Some(false) => "**not met**",
            None => "not measured",
        };
        let _ = writeln!(out, "- {} — {mark}: {}", g.text, g.measured);
    }
    let _ = writeln!(out, "\n## Every cell\n\n{}", table(cells));
    let breakdown = breakdown(cells);
    if !breakdown.is_empty() {
        let _ = writeln!(
            out,
            "## Where a test process's time goes\n\n\
             Before its first test, from the process's start, in milliseconds: the median over the processes of a \
             run, then over the runs (cleanroom's report, `processes[].marks`; docs/report.md says what each mark \
             is). Under nextest every test is a process of its own, so this is paid per test.\n\n{breakdown}"
        );
    }
    out.push_str(
        "## What is measured\n\n\
         - **The approaches.** *cleanroom*: `#[cleanroom::test(postgres, redis)]`, services started once per run, a \
         fresh database and Redis DB per test. *cleanroom, warm*: the same with `CLEANROOM_REUSE=1`, services kept \
         from an earlier run (the harness warms them once before the matrix). *Container per test*: \
         testcontainers-rs with testcontainers-modules' `Postgres` and `Redis`, both started (concurrently) in every \
         test. *Static singleton*: testcontainers-rs' blocking API behind a `static OnceLock`, one pair per test \
         process, never stopped. *`#[sqlx::test]`*: `#[sqlx::test(migrations = false)] async fn t(pool: PgPool)`, \
         sqlx 0.9, a database per test created by sqlx on a Postgres that, like a CI job's `services:`, the harness \
         starts before the suite with `docker run -d` (Postgres and Redis at once, published on 127.0.0.1, Postgres \
         with `fsync=off` as the baselines') and waits for until Postgres accepts a login and Redis answers PING \
         (probed every 100 ms, finer than a CI health check); the tests share that Redis, keys named by test. \
         *Floor*: the same servers, started the same way but with Postgres asking no password (a debug build's \
         SCRAM login costs each connection tens of milliseconds, which cleanroom's MD5 logins do not pay either), \
         and plain `#[tokio::test]`s that connect and run the workload in the one shared database, tables and \
         keys named by test: no isolation and no framework, so its suite alone is what the runner and the \
         workload cost by themselves. All use the same images.\n\
         - **Wall time**: the whole `cargo test -p cleanroom-bench --features suites --test <suite> -- <filters>` or \
         `cargo nextest run …` invocation, with everything built beforehand. For `#[sqlx::test]` it also counts \
         the two `docker run`s and the wait until both servers answer; removing them afterwards is not counted. \
         **Suite only** (`#[sqlx::test]` and the floor): the runner invocation by itself, servers already up.\n\
         - **Containers started**: Docker's `create` events carrying the cell's label (`cleanroom.session` for \
         cleanroom, `cleanroom.bench` for the baselines), from `docker events`, not from the code under test.\n\
         - **Left over**: containers still carrying the label 10 s after the runner exited (cleanroom's reaper \
         removes its run's within that time). The harness removes the baselines' leftovers afterwards. For \
         `#[sqlx::test]` the harness removes both servers once the runner exits, so 0 containers are left: the \
         databases sqlx left on the server (none when every test passes) went with it.\n\
         - **Fixture overhead**: from cleanroom's own report (`CLEANROOM_REPORT_JSON`): the time each test waited \
         for its services and rooms. **First test**: the time from a test process's start to the body of its first \
         test (its services Ready and its rooms made), the median over processes.\n\n\
         Rerun: `cargo run -p cleanroom-bench --release` (add `-- --help` for a smaller matrix). Point it at other \
         images with `CLEANROOM_POSTGRES_IMAGE` and `CLEANROOM_REDIS_IMAGE`.\n",
    );
    out
}

/// The README with its headline block (between the bench markers) replaced,
/// or `None` when the README has no markers.
pub fn readme_headline(readme: &str, m: &Machine, cells: &[Cell]) -> Option<String> {
    let start = readme.find(README_START)? + README_START.len();
    let end = readme[start..].find(README_END)? + start;
    let block = format!(
        "\n{}\nMeasured by `cargo run -p cleanroom-bench --release` on {} ({}); every cell, the goals and the chart: \
         [docs/benchmarks.md](docs/benchmarks.md).\n",
        headline(cells),
        machine_line(m),
        m.date
    );
    Some(format!("{}{block}{}", &readme[..start], &readme[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Sample;

    fn cell(n: usize, runner: Runner, approach: Approach, walls: &[f64], started: usize) -> Cell {
        let cleanroom = approach.is_cleanroom();
        Cell {
            n,
            runner,
            approach,
            samples: walls
                .iter()
                .map(|&wall| Sample {
                    wall,
                    started,
                    left: if approach == Approach::Singleton { started } else { 0 },
                    suite: approach.has_services().then_some(wall - 2.0),
                    overhead_ms: cleanroom.then_some((0.5, 20.0)),
                    first_test_ms: cleanroom.then_some(if approach == Approach::CleanroomWarm { 40.0 } else { 900.0 }),
                    marks: if cleanroom {
                        vec![("init thread".into(), 0.1), ("reaper attached".into(), wall / 10.0)]
                    } else {
                        Vec::new()
                    },
                    ok: true,
                })
                .collect(),
        }
    }

    fn matrix() -> Vec<Cell> {
        use Approach::*;
        use Runner::*;
        vec![
            cell(10, CargoTest, Cleanroom, &[3.0, 3.2, 2.9], 2),
            cell(40, CargoTest, Cleanroom, &[4.0, 4.1, 3.9], 2),
            cell(10, CargoTest, Singleton, &[3.0, 3.0, 3.0], 2),
            cell(40, CargoTest, Singleton, &[3.9, 3.8, 4.0], 2),
            cell(40, CargoTest, PerTest, &[45.0, 44.0, 46.0], 80),
            cell(40, Nextest, Cleanroom, &[5.0, 5.5, 5.2], 2),
            cell(40, Nextest, PerTest, &[50.0, 51.0, 52.0], 80),
            cell(40, Nextest, Singleton, &[20.0, 21.0, 22.0], 80),
            cell(40, Nextest, CleanroomWarm, &[1.5, 1.6, 1.4], 0),
            cell(10, CargoTest, SqlxTest, &[6.0, 6.2, 5.8], 2),
            cell(40, CargoTest, SqlxTest, &[9.0, 9.5, 8.8], 2),
            cell(40, Nextest, SqlxTest, &[5.0, 5.1, 4.9], 2),
        ]
    }

    fn sqlx_goal(cells: &[Cell]) -> Option<Goal> {
        goals(cells).into_iter().find(|g| g.text.contains("`#[sqlx::test]`"))
    }

    mod should {
        use super::*;

        #[test]
        fn give_the_table_a_row_per_cell_with_medians_and_ranges() {
            let t = table(&matrix());
            assert_eq!(t.lines().count(), 2 + 12);
            assert!(
                t.contains(
                    "| 40 | cargo test | cleanroom | 4.00 s | 3.90–4.10 | – | 2 | 0 | 0.50 ms / 20 ms | 900 ms |"
                ),
                "{t}"
            );
            assert!(
                t.contains(
                    "| 40 | cargo nextest run | static singleton | 21.00 s | 20.00–22.00 | – | 80 | 80 | – | – |"
                ),
                "{t}"
            );
            assert!(
                t.contains("| 40 | cargo test | #[sqlx::test] | 9.00 s | 8.80–9.50 | 7.00 s | 2 | 0 | – | – |"),
                "the suite alone beside the whole: {t}"
            );
        }

        #[test]
        fn check_goals_against_the_numbers() {
            let goals = goals(&matrix());
            let get = |prefix: &str| {
                goals.iter().find(|g| g.text.starts_with(prefix)).unwrap_or_else(|| panic!("{prefix}: {goals:#?}"))
            };
            let single = get("`cargo test`: cleanroom ≤ 1.15×");
            assert_eq!(single.met, Some(true));
            assert_eq!(single.measured, "N=10: 1.00×, N=40: 1.03×");
            let per_test = get("`cargo test`: ≥ 8×");
            assert_eq!((per_test.met, per_test.measured.as_str()), (Some(true), "11.2× faster"));
            let nextest = get("`cargo nextest run`: cleanroom ≤ 1.5×");
            assert_eq!(nextest.met, Some(true), "{nextest:?}");
            let both = get("`cargo nextest run`: ≥ 5×");
            assert_eq!(both.met, Some(false), "the singleton is only 4.0× slower: {both:?}");
            assert_eq!(get("warm (reuse), cargo nextest run").met, Some(true));
            let per_process = get("`cargo nextest run`: a test process's first test body within 2 ms");
            assert_eq!(per_process.met, Some(false), "900 ms in every cold cell: {per_process:?}");
            assert_eq!(per_process.measured, "N=40: 900.00 ms", "the one size measured under nextest");
            assert_eq!(get("cargo test: cleanroom's containers started").met, Some(true));
            assert_eq!(get("cleanroom leaves nothing").met, Some(true));
        }

        #[test]
        fn compare_cleanroom_with_sqlx_at_every_size_and_name_where_it_is_not_faster() {
            let goal = sqlx_goal(&matrix()).expect("a goal against #[sqlx::test]");
            assert_eq!(goal.text, "cleanroom faster than `#[sqlx::test]` under both runners at every N");
            assert_eq!(goal.met, Some(false), "{goal:?}");
            assert!(
                goal.measured.contains(
                    "cargo test: N=10: 2.00× (3.00 s against 6.00 s, suite alone 4.00 s), \
                     N=40: 2.25× (4.00 s against 9.00 s, suite alone 7.00 s); cargo nextest run: N=40: 0.96×"
                ),
                "{goal:?}"
            );
            assert!(
                goal.measured.ends_with(
                    "cleanroom is **not faster** at: cargo nextest run N=40 (cleanroom 5.20 s, `#[sqlx::test]` 5.00 s, \
                     its suite alone 3.00 s)"
                ),
                "{goal:?}"
            );
        }

        #[test]
        fn meet_the_sqlx_goal_only_when_faster_everywhere_under_both_runners() {
            let mut cells = matrix();
            let nextest_sqlx =
                cells.iter_mut().find(|c| c.runner == Runner::Nextest && c.approach == Approach::SqlxTest);
            for s in &mut nextest_sqlx.unwrap().samples {
                s.wall = 12.0;
            }
            let goal = sqlx_goal(&cells).unwrap();
            assert_eq!(goal.met, Some(true), "{goal:?}");
            assert!(!goal.measured.contains("not faster"), "{goal:?}");

            let cargo_test_only: Vec<Cell> = cells.iter().filter(|c| c.runner == Runner::CargoTest).cloned().collect();
            let goal = sqlx_goal(&cargo_test_only).unwrap();
            assert_eq!(goal.met, None, "one runner is not both: {goal:?}");
            assert!(goal.measured.ends_with("cargo nextest run: not measured"), "{goal:?}");

            cells.iter_mut().find(|c| c.approach == Approach::SqlxTest).unwrap().samples[0].ok = false;
            let goal = sqlx_goal(&cells).unwrap();
            assert_eq!(goal.met, None, "a failed run proves nothing: {goal:?}");
            assert!(goal.measured.contains("N=10: a run failed"), "{goal:?}");

            let no_sqlx: Vec<Cell> = matrix().into_iter().filter(|c| c.approach != Approach::SqlxTest).collect();
            assert_eq!(sqlx_goal(&no_sqlx), None, "no claim without a measurement");
        }

        #[test]
        fn measure_nextest_against_the_floor_at_the_largest_size_with_both() {
            use Approach::*;
            use Runner::*;
            let floor_goal = |cells: &[Cell]| goals(cells).into_iter().find(|g| g.text.contains("the floor"));
            assert_eq!(floor_goal(&matrix()), None, "no claim without the floor measured");
            let mut cells = matrix();
            // Suite alone = wall - 2 s: the floor takes 3 s under cargo test, 6 s under nextest (2.00×).
            cells.push(cell(40, CargoTest, Floor, &[5.0], 2));
            cells.push(cell(40, Nextest, Floor, &[8.0], 2));
            let goal = floor_goal(&cells).expect("a goal against the floor");
            assert!(goal.text.starts_with("`cargo nextest run` at N = 40:"), "{goal:?}");
            assert_eq!(goal.met, Some(true), "the floor alone is over 1.5×: {goal:?}");
            let one = goals(&cells)
                .iter()
                .filter(|g| g.text.starts_with("`cargo nextest run`") && g.text.contains("1.5×"))
                .count();
            assert_eq!(one, 1, "one goal for nextest against cargo test, judged against the floor");
            assert!(goal.measured.starts_with("N=40: 1.30×; cleanroom 1.30×"), "every size's ratio first: {goal:?}");
            assert!(
                goal.measured.contains(
                    "cleanroom 1.30× (5.20 s under nextest, 4.00 s under cargo test); the floor, servers already \
                     running and no framework, 2.00× on its own (6.00 s and 3.00 s): nextest costs the floor 3.00 s"
                ),
                "{goal:?}"
            );
            assert!(
                goal.measured.ends_with(
                    "cleanroom is -0.80 s from the floor, -20 ms per test, which include starting its two containers"
                ),
                "{goal:?}"
            );

            // A floor within 1.5× and cleanroom over it: not met.
            for c in cells.iter_mut().filter(|c| c.approach == Floor && c.runner == Nextest) {
                c.samples[0].wall = 6.0;
                c.samples[0].suite = Some(4.0);
            }
            for c in cells.iter_mut().filter(|c| c.approach == Cleanroom && c.runner == Nextest) {
                c.samples.iter_mut().for_each(|s| s.wall = 7.0);
            }
            let goal = floor_goal(&cells).unwrap();
            assert_eq!(goal.met, Some(false), "{goal:?}");
            assert!(
                goal.measured.contains("Under nextest cleanroom is 3.00 s from the floor, 75 ms per test"),
                "{goal:?}"
            );
        }

        #[test]
        fn break_down_each_cleanroom_cell_at_its_largest_size() {
            let text = breakdown(&matrix());
            let header = text.lines().next().unwrap();
            assert!(header.contains("cleanroom · cargo nextest run, N=40"), "{text}");
            assert!(text.contains("| reaper attached | 0.40 ms | 0.52 ms | 0.15 ms |"), "medians over runs: {text}");
            assert!(!header.contains("N=10"), "only the largest size: {text}");
            assert!(!header.contains("container per test"), "cleanroom's cells only: {text}");
            let order: Vec<&str> = text.lines().skip(2).map(|l| l.split(" | ").next().unwrap()).collect();
            assert_eq!(order, ["| init thread", "| reaper attached"], "{text}");
            assert!(breakdown(&[]).is_empty());
        }

        #[test]
        fn never_count_a_failed_run_as_a_time() {
            let mut cells = matrix();
            cells[1].samples[0].ok = false;
            assert_eq!(wall(&cells[1]), None);
            assert!(table(&cells).contains("| 40 | cargo test | cleanroom | failed |"));
            let goals = goals(&cells);
            assert!(goals.iter().all(|g| !g.text.starts_with("`cargo test`: ≥ 8×")), "no speed-up from a failed cell");
        }

        #[test]
        fn replace_the_readme_headline_between_its_markers_only() {
            let readme = format!("intro\n{README_START}\nold\n{README_END}\nrest\n");
            let m = Machine { cores: 2, memory_gib: 23.4, docker: "27.0".into(), ..Machine::default() };
            let new = readme_headline(&readme, &m, &matrix()).unwrap();
            assert!(new.starts_with("intro\n<!-- bench:headline:start -->\n| N = 40"), "{new}");
            assert!(new.ends_with("<!-- bench:headline:end -->\nrest\n"), "{new}");
            assert!(!new.contains("old"));
            assert!(new.contains("| cleanroom | 4.00 s | 5.20 s |"), "{new}");
            assert!(
                new.contains("| #[sqlx::test] | 9.00 s (suite alone 7.00 s) | 5.00 s (suite alone 3.00 s) |"),
                "{new}"
            );
            assert_eq!(readme_headline("no markers", &m, &matrix()), None);
        }
    }
}
