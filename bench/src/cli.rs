//! The harness's command line.

use std::path::PathBuf;

pub const HELP: &str = "\
cleanroom-bench: the same workload with cleanroom, a container pair per test,
a static singleton and #[sqlx::test] (against a Postgres and a Redis started
with docker run, as CI services), under cargo test and cargo nextest run.

USAGE:
    cargo run -p cleanroom-bench --release -- [OPTIONS]

OPTIONS:
    --reps R            repetitions of each cell, interleaved (default 3)
    --sizes LIST        suite sizes, multiples of 10 up to 160 (default 10,40,160)
    --runners LIST      cargo-test,nextest (default both)
    --approaches LIST   cleanroom,cleanroom-warm,cleanroom-local,per-test,
                        singleton,sqlx-test,floor
                        (default all; floor: the workload in plain
                        #[tokio::test]s on one shared database, no isolation,
                        servers started before the suite, what no framework
                        can beat)
    --quick             one repetition of N=10 under cargo test, no warm cell,
                        docs untouched (the CI smoke run): one cell for each
                        of cleanroom, per-test, singleton and sqlx-test
    --scale LIST        instead of the matrix: the cleanroom suite at these sizes
                        (multiples of 100 up to 1000, e.g. 200,500,1000) under
                        cargo test --test-threads=16, --reps times each: wall
                        time, containers started, the Postgres container's peak
                        memory and databases; writes docs/benchmarks-scale.md
    --no-docs           print the table only; do not rewrite docs/benchmarks.md,
                        docs/benchmarks.svg and the README's headline
    --from-log FILE     run nothing: rebuild the table, page and chart from the
                        progress lines an earlier (interrupted) run printed on
                        stderr
    -h, --help          this text

The images are cleanroom's: CLEANROOM_POSTGRES_IMAGE and CLEANROOM_REDIS_IMAGE
or the defaults, the same for every approach. Exit status: 0 when every
run passed and cleanroom left nothing, 1 otherwise, 2 on bad usage or when
Docker does not answer.
";

/// A test runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Runner {
    CargoTest,
    Nextest,
}

impl Runner {
    pub fn title(self) -> &'static str {
        match self {
            Runner::CargoTest => "cargo test",
            Runner::Nextest => "cargo nextest run",
        }
    }
    pub fn slug(self) -> &'static str {
        match self {
            Runner::CargoTest => "cargo-test",
            Runner::Nextest => "nextest",
        }
    }
}

/// A way of giving tests their containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Approach {
    /// cleanroom, services started for the run.
    Cleanroom,
    /// cleanroom with `CLEANROOM_REUSE=1`, services kept from a previous run.
    CleanroomWarm,
    /// cleanroom with `CLEANROOM_ENGINE=local`: Postgres and Redis run from
    /// this machine's binaries, no container engine.
    CleanroomLocal,
    /// testcontainers-rs, a container pair per test.
    PerTest,
    /// testcontainers-rs, a `static` pair per test process.
    Singleton,
    /// `#[sqlx::test]`, against a Postgres and a Redis the harness starts
    /// with `docker run` before the suite (a CI job's `services:`).
    SqlxTest,
    /// The floor: plain `#[tokio::test]`s on the servers the harness starts,
    /// every test in one shared database, no isolation and no framework;
    /// its suite alone is what the runner and the workload cost by
    /// themselves.
    Floor,
}

impl Approach {
    pub const ALL: [Approach; 7] = [
        Approach::Cleanroom,
        Approach::CleanroomWarm,
        Approach::CleanroomLocal,
        Approach::PerTest,
        Approach::Singleton,
        Approach::SqlxTest,
        Approach::Floor,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Approach::Cleanroom => "cleanroom",
            Approach::CleanroomWarm => "cleanroom, warm (reuse)",
            Approach::CleanroomLocal => "cleanroom, local binaries",
            Approach::PerTest => "container per test",
            Approach::Singleton => "static singleton",
            Approach::SqlxTest => "#[sqlx::test]",
            Approach::Floor => "floor: no isolation, no framework",
        }
    }
    pub fn slug(self) -> &'static str {
        match self {
            Approach::Cleanroom => "cleanroom",
            Approach::CleanroomWarm => "cleanroom-warm",
            Approach::CleanroomLocal => "cleanroom-local",
            Approach::PerTest => "per-test",
            Approach::Singleton => "singleton",
            Approach::SqlxTest => "sqlx-test",
            Approach::Floor => "floor",
        }
    }
    /// The test target that holds this approach's suite.
    pub fn suite(self) -> &'static str {
        match self {
            Approach::Cleanroom | Approach::CleanroomWarm | Approach::CleanroomLocal => "cleanroom",
            Approach::PerTest => "per_test",
            Approach::Singleton => "singleton",
            Approach::SqlxTest => "sqlx_test",
            Approach::Floor => "floor",
        }
    }
    /// Whether the harness starts this approach's servers before the suite
    /// (and so measures the suite alone as well as the whole).
    pub fn has_services(self) -> bool {
        matches!(self, Approach::SqlxTest | Approach::Floor)
    }
    pub fn is_cleanroom(self) -> bool {
        matches!(self, Approach::Cleanroom | Approach::CleanroomWarm | Approach::CleanroomLocal)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub reps: usize,
    pub sizes: Vec<usize>,
    pub runners: Vec<Runner>,
    pub approaches: Vec<Approach>,
    /// Where to write benchmarks.md and benchmarks.svg (and whether to
    /// update the README), `None` to print only.
    pub write_docs: Option<PathBuf>,
    /// Rebuild from an earlier run's progress lines instead of running.
    pub from_log: Option<PathBuf>,
    /// Run the scale suite at these sizes instead of the matrix.
    pub scale: Option<Vec<usize>>,
}

#[derive(Debug, PartialEq)]
pub enum Parsed {
    Run(Options),
    Help,
}

fn list<T>(value: &str, flag: &str, one: impl Fn(&str) -> Option<T>, allowed: &str) -> Result<Vec<T>, String> {
    let items: Result<Vec<T>, String> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| one(s).ok_or_else(|| format!("{flag}: {s:?} is not one of {allowed}")))
        .collect();
    let items = items?;
    if items.is_empty() {
        return Err(format!("{flag} needs at least one of {allowed}"));
    }
    Ok(items)
}

pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(|root| root.join("docs"));
    let mut opts = Options {
        reps: 3,
        sizes: vec![10, 40, 160],
        runners: vec![Runner::CargoTest, Runner::Nextest],
        approaches: Approach::ALL.to_vec(),
        write_docs: docs,
        from_log: None,
        scale: None,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value =
            |flag: &str| inline.clone().or_else(|| args.next()).ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--quick" => {
                opts.reps = 1;
                opts.sizes = vec![10];
                opts.runners = vec![Runner::CargoTest];
                opts.approaches = vec![Approach::Cleanroom, Approach::PerTest, Approach::Singleton, Approach::SqlxTest];
                opts.write_docs = None;
            }
            "--no-docs" => opts.write_docs = None,
            "--from-log" => opts.from_log = Some(PathBuf::from(value("--from-log")?)),
            "--reps" => {
                let v = value("--reps")?;
                opts.reps = v
                    .parse()
                    .ok()
                    .filter(|&r| r > 0)
                    .ok_or_else(|| format!("--reps: {v:?} is not a count of at least 1"))?;
            }
            "--sizes" => {
                let v = value("--sizes")?;
                opts.sizes = list(
                    &v,
                    "--sizes",
                    |s| s.parse().ok().filter(|n| n % 10 == 0 && (10..=160).contains(n)),
                    "10, 20, … 160",
                )?;
            }
            "--scale" => {
                let v = value("--scale")?;
                opts.scale = Some(list(
                    &v,
                    "--scale",
                    |s| s.parse().ok().filter(|n| n % 100 == 0 && (100..=1000).contains(n)),
                    "100, 200, … 1000",
                )?);
            }
            "--runners" => {
                let v = value("--runners")?;
                opts.runners = list(
                    &v,
                    "--runners",
                    |s| [Runner::CargoTest, Runner::Nextest].into_iter().find(|r| r.slug() == s),
                    "cargo-test, nextest",
                )?;
            }
            "--approaches" => {
                let v = value("--approaches")?;
                opts.approaches = list(
                    &v,
                    "--approaches",
                    |s| Approach::ALL.into_iter().find(|a| a.slug() == s),
                    "cleanroom, cleanroom-warm, cleanroom-local, per-test, singleton, sqlx-test, floor",
                )?;
            }
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok(Parsed::Run(opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_scale_sizes_in_hundreds_up_to_a_thousand() {
        assert_eq!(options(&["--scale", "200,500,1000"]).scale, Some(vec![200, 500, 1000]));
        assert!(parse_args(&["--scale", "250"]).unwrap_err().contains("100, 200, … 1000"));
        assert!(parse_args(&["--scale", "1100"]).unwrap_err().contains("100, 200, … 1000"));
        assert_eq!(options(&[]).scale, None);
    }

    fn parse_args(args: &[&str]) -> Result<Parsed, String> {
        parse(args.iter().map(|s| s.to_string()))
    }

    fn options(args: &[&str]) -> Options {
        match parse_args(args) {
            Ok(Parsed::Run(o)) => o,
            other => panic!("{other:?}"),
        }
    }

    mod should {
        use super::*;

        #[test]
        fn default_to_the_full_matrix() {
            let o = options(&[]);
            assert_eq!((o.reps, o.sizes.as_slice()), (3, &[10, 40, 160][..]));
            assert_eq!(o.runners.len(), 2);
            assert_eq!(o.approaches, Approach::ALL);
            assert!(o.approaches.contains(&Approach::SqlxTest), "the documented full run includes #[sqlx::test]");
            assert!(o.write_docs.unwrap().ends_with("docs"));
        }

        #[test]
        fn run_one_cold_cell_per_approach_and_leave_docs_alone_when_quick() {
            let o = options(&["--quick"]);
            assert_eq!((o.reps, o.sizes.as_slice(), o.runners.as_slice()), (1, &[10][..], &[Runner::CargoTest][..]));
            assert_eq!(
                o.approaches,
                [Approach::Cleanroom, Approach::PerTest, Approach::Singleton, Approach::SqlxTest],
                "one cold cell each, no warm cell"
            );
            assert_eq!(o.write_docs, None);
        }

        #[test]
        fn name_sqlx_test_by_its_slug_and_run_its_own_suite() {
            let o = options(&["--approaches", "cleanroom,sqlx-test"]);
            assert_eq!(o.approaches, [Approach::Cleanroom, Approach::SqlxTest]);
            assert_eq!((Approach::SqlxTest.title(), Approach::SqlxTest.suite()), ("#[sqlx::test]", "sqlx_test"));
            assert!(Approach::SqlxTest.has_services() && !Approach::SqlxTest.is_cleanroom());
            assert!(Approach::ALL.iter().filter(|a| a.has_services()).eq([&Approach::SqlxTest, &Approach::Floor]));
        }

        #[test]
        fn check_lists_and_values() {
            let o = options(&[
                "--sizes=10,40",
                "--runners",
                "nextest",
                "--approaches",
                "cleanroom,singleton",
                "--reps",
                "5",
            ]);
            assert_eq!(o.sizes, [10, 40]);
            assert_eq!(o.runners, [Runner::Nextest]);
            assert_eq!(o.approaches, [Approach::Cleanroom, Approach::Singleton]);
            assert_eq!(o.reps, 5);
            assert_eq!(parse_args(&["--sizes", "15"]).unwrap_err(), "--sizes: \"15\" is not one of 10, 20, … 160");
            assert_eq!(
                parse_args(&["--runners", "make"]).unwrap_err(),
                "--runners: \"make\" is not one of cargo-test, nextest"
            );
            assert_eq!(
                parse_args(&["--approaches", "sqlx"]).unwrap_err(),
                "--approaches: \"sqlx\" is not one of cleanroom, cleanroom-warm, cleanroom-local, per-test, singleton, sqlx-test, floor"
            );
            assert_eq!(parse_args(&["--reps", "0"]).unwrap_err(), "--reps: \"0\" is not a count of at least 1");
            assert_eq!(parse_args(&["--reps"]).unwrap_err(), "--reps needs a value");
            assert_eq!(parse_args(&["--fast"]).unwrap_err(), "unknown option \"--fast\"");
            assert_eq!(parse_args(&["-h"]).unwrap(), Parsed::Help);
        }
    }
}
