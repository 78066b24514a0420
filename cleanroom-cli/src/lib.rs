//! `cleanroom` (also `cargo cleanroom`): runs `cargo test` with configuration
//! overrides, lists and prunes cleanroom's containers, prints the last
//! run's report. See docs/configuration.md. The binaries `cargo-cleanroom`
//! and `cleanroom` both call [`run`].
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms, unreachable_pub)]
#![forbid(unsafe_code)]
// cleanroom_runtime::Error carries what a user needs to fix a failure (see
// the runtime's lib.rs); the CLI hands it on as it is.
#![allow(clippy::result_large_err)]

use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};
use cleanroom_runtime::{admin, Error, Layers, Origin, Overrides, SERVICE_SETTINGS, SETTINGS};

/// Exit codes scripts can rely on (docs/configuration.md lists them).
mod code {
    /// Docker answered with an error, or the runner could not be started.
    pub(crate) const FAILED: u8 = 1;
    /// The configuration (file, environment or flag) is invalid.
    pub(crate) const CONFIGURATION: u8 = 3;
    /// Docker is not reachable.
    pub(crate) const DOCKER_UNREACHABLE: u8 = 4;
    /// `report` found no report.
    pub(crate) const NO_REPORT: u8 = 5;
}

/// Integration tests against real containers: run them with overrides, see
/// and clean up what runs, read the last run's report.
#[derive(Debug, Parser)]
#[command(name = "cleanroom", bin_name = "cargo cleanroom", version)]
#[command(after_help = "Exit codes: 0 done, 1 Docker error or runner not started, 2 bad command line, \
3 invalid configuration, 4 Docker not reachable, 5 no report; `test` exits with the runner's code.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run `cargo test` (or `cargo nextest run`) with the flags below as
    /// CLEANROOM_* variables, which beat the environment and cleanroom.toml.
    ///
    /// Arguments after the flags go to cargo; after `--`, to the tests:
    /// `cargo cleanroom test --keep=always -p app -- --nocapture`.
    Test(TestArgs),
    /// Print every setting, its value and where the value came from.
    Config(OverrideFlags),
    /// List cleanroom's containers (session, service, state, age, owner,
    /// run) and this user's cache volumes (size, last use).
    Ls,
    /// Remove the containers, networks and volumes of runs that are over,
    /// and the volume cache; also their local servers, and what they left
    /// on the existing servers configured for postgres and redis
    /// (CLEANROOM_POSTGRES_URL, ...).
    ///
    /// A run is over when its reaper no longer holds its lock in the
    /// runtime directory. Live runs, cache volumes a container mounts or
    /// that were used in the last two minutes, and anything without the
    /// label cleanroom.managed=true are never touched; reused services only
    /// with --reused.
    Prune(PruneArgs),
    /// Print the last run's report: each service (image, time to Ready,
    /// memory, restarts, alerts), the per-test overhead, what each test
    /// waited for.
    Report(ReportArgs),
}

#[derive(Debug, Args)]
struct TestArgs {
    #[command(flatten)]
    overrides: OverrideFlags,
    /// Run `cargo nextest run` instead of `cargo test`.
    #[arg(long)]
    nextest: bool,
    /// Arguments for cargo (`-p app`, `--release`).
    #[arg(allow_hyphen_values = true, value_name = "CARGO ARGS")]
    cargo_args: Vec<String>,
    /// Arguments for the test binaries (after `--`).
    #[arg(last = true, value_name = "TEST ARGS")]
    test_args: Vec<String>,
}

/// Overrides of settings; each becomes its CLEANROOM_* variable.
#[derive(Debug, Args, Default)]
struct OverrideFlags {
    /// Read this configuration file instead of searching for cleanroom.toml.
    #[arg(long, value_name = "PATH")]
    config: Option<String>,
    /// Pull absent images (`missing`), every image once per run (`always`),
    /// or fail at once (`never`).
    #[arg(long, value_name = "POLICY")]
    pull: Option<String>,
    /// Keep test databases: `never`, `on-failure`, `always`.
    #[arg(long, value_name = "POLICY")]
    keep: Option<String>,
    /// Postgres databases cloned ahead of demand (0: off).
    #[arg(long, value_name = "N")]
    pool: Option<String>,
    /// Keep services running for the next run.
    #[arg(long, conflicts_with = "no_reuse")]
    reuse: bool,
    /// Do not keep services for the next run.
    #[arg(long)]
    no_reuse: bool,
    /// Seconds a reused service outlives the last run that used it.
    #[arg(long, value_name = "SECONDS")]
    reuse_ttl: Option<String>,
    /// Seconds a service may take to be Ready.
    #[arg(long, value_name = "SECONDS")]
    startup_timeout: Option<String>,
    /// Seconds the reaper waits for the next test process.
    #[arg(long, value_name = "SECONDS")]
    reaper_grace: Option<String>,
    /// No reaper: each process removes its own containers.
    #[arg(long)]
    no_reaper: bool,
    /// The summary each test process prints at exit: `quiet`, `full`, `off`.
    #[arg(long, value_name = "MODE")]
    report: Option<String>,
    /// Also write the run's report (one JSON document) to this file.
    #[arg(long, value_name = "PATH")]
    report_json: Option<String>,
    /// Put this before every image that names no registry (`localhost:5000/`).
    #[arg(long, value_name = "PREFIX")]
    image_prefix: Option<String>,
    /// Use IMAGE for SERVICE (repeatable).
    #[arg(long, value_name = "SERVICE=IMAGE")]
    image: Vec<String>,
    /// Set any setting with an environment variable, by its file key
    /// (`run.keep=always`, `services.postgres.memory=1g`; repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    set: Vec<String>,
}

impl OverrideFlags {
    /// The command line's layer: variable → (value, the flag that set it).
    fn overrides(&self) -> Result<Overrides, Error> {
        let mut out = Overrides::new();
        let mut put = |env: String, value: &str, flag: String| {
            out.insert(env, (value.to_string(), flag));
        };
        let flags: [(&Option<String>, &str, &str); 10] = [
            (&self.config, "CLEANROOM_CONFIG", "--config"),
            (&self.pull, "CLEANROOM_PULL", "--pull"),
            (&self.keep, "CLEANROOM_KEEP", "--keep"),
            (&self.pool, "CLEANROOM_POOL", "--pool"),
            (&self.reuse_ttl, "CLEANROOM_REUSE_TTL", "--reuse-ttl"),
            (&self.startup_timeout, "CLEANROOM_STARTUP_TIMEOUT", "--startup-timeout"),
            (&self.reaper_grace, "CLEANROOM_REAPER_GRACE", "--reaper-grace"),
            (&self.report, "CLEANROOM_REPORT", "--report"),
            (&self.report_json, "CLEANROOM_REPORT_JSON", "--report-json"),
            (&self.image_prefix, "CLEANROOM_IMAGE_PREFIX", "--image-prefix"),
        ];
        for (value, env, flag) in flags {
            if let Some(v) = value {
                put(env.into(), v, flag.into());
            }
        }
        if self.reuse || self.no_reuse {
            let flag = if self.reuse { "--reuse" } else { "--no-reuse" };
            put("CLEANROOM_REUSE".into(), if self.reuse { "1" } else { "0" }, flag.into());
        }
        if self.no_reaper {
            put("CLEANROOM_NO_REAPER".into(), "1", "--no-reaper".into());
        }
        for pair in &self.image {
            let (service, image) = split_pair(pair, "--image", "SERVICE=IMAGE")?;
            put(cleanroom_runtime::image_env_var(service), image, format!("--image {pair}"));
        }
        for pair in &self.set {
            let (key, value) = split_pair(pair, "--set", "KEY=VALUE")?;
            put(env_of(key)?, value, format!("--set {pair}"));
        }
        Ok(out)
    }
}

fn split_pair<'a>(pair: &'a str, flag: &str, shape: &str) -> Result<(&'a str, &'a str), Error> {
    pair.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| Error::Configuration { key: flag.into(), reason: format!("{pair:?} is not {shape}") })
}

/// The variable of a file key (`run.keep`, `services.web.memory`).
fn env_of(key: &str) -> Result<String, Error> {
    if let Some(s) = SETTINGS.iter().find(|s| s.key == Some(key)) {
        return Ok(s.env.expect("every run key has a variable").to_string());
    }
    if let Some((service, setting)) = key.strip_prefix("services.").and_then(|k| k.rsplit_once('.')) {
        if SERVICE_SETTINGS.iter().any(|s| s.key == Some(setting) && s.env.is_some()) {
            return Ok(cleanroom_runtime::service_env_var(service, setting));
        }
    }
    let mut allowed: Vec<String> = SETTINGS.iter().filter_map(|s| s.key.map(str::to_string)).collect();
    allowed.extend(
        SERVICE_SETTINGS
            .iter()
            .filter(|s| s.env.is_some())
            .filter_map(|s| s.key)
            .map(|k| format!("services.<name>.{k}")),
    );
    Err(Error::Configuration {
        key: format!("--set {key}"),
        reason: format!("unknown key, or one only cleanroom.toml can set; expected one of: {}", allowed.join(", ")),
    })
}

#[derive(Debug, Args)]
struct PruneArgs {
    /// Print what would be removed; remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// Leave the volume cache (initialised Postgres clusters) alone.
    #[arg(long)]
    keep_caches: bool,
    /// Also remove reused services (CLEANROOM_REUSE) that no live run uses,
    /// without waiting for their TTL.
    #[arg(long)]
    reused: bool,
    /// Prune an existing server instead (`postgres://…` or `redis://…`):
    /// drop the databases and flush the Redis rooms that dead runs of yours
    /// left there. Nothing without cleanroom's mark is touched.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// With a Redis `--url`: the logical databases cleanroom may use, as
    /// CLEANROOM_REDIS_DATABASES says (`8-15`).
    #[arg(long, value_name = "FIRST-LAST", requires = "url")]
    databases: Option<String>,
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// Print the report as stored: one JSON document for the whole run
    /// (docs/report.md).
    #[arg(long)]
    json: bool,
    /// The report of this session instead of the newest.
    #[arg(long, value_name = "ID")]
    session: Option<String>,
}

/// The command: parses `std::env::args()`, runs, returns the exit code.
pub fn run() -> ExitCode {
    // While this is the only thread: follow docker contexts like the docker CLI.
    cleanroom_runtime::export_docker_host();
    let mut args: Vec<String> = std::env::args().collect();
    // `cargo cleanroom x` runs `cargo-cleanroom cleanroom x`.
    if args.get(1).is_some_and(|a| a == "cleanroom") {
        args.remove(1);
    }
    let cli = Cli::parse_from(args);
    if let Command::Test(args) = &cli.command {
        if let Some(message) = misspelt_own_flag(&args.cargo_args) {
            // As clap reports its own usage errors: exit 2.
            Cli::command().error(clap::error::ErrorKind::UnknownArgument, message).exit();
        }
    }
    let result = match cli.command {
        Command::Test(args) => test(args),
        Command::Config(flags) => config(&flags),
        Command::Ls => ls(),
        Command::Prune(args) => prune(&args),
        Command::Report(args) => report(&args),
    };
    result.unwrap_or_else(|e| {
        eprintln!("cleanroom: {e}");
        ExitCode::from(match e {
            Error::Configuration { .. } => code::CONFIGURATION,
            Error::DockerUnavailable { .. } => code::DOCKER_UNREACHABLE,
            _ => code::FAILED,
        })
    })
}

/// The layers with the command line on top, checked as a test process would.
fn layers(flags: &OverrideFlags) -> Result<Layers, Error> {
    let layers = Layers::load(flags.overrides()?)?;
    layers.config()?;
    for service in flags.image.iter().chain(&flags.set).filter_map(|p| service_of(p)) {
        layers.service(service)?;
    }
    Ok(layers)
}

fn service_of(pair: &str) -> Option<&str> {
    let (key, _) = pair.split_once('=')?;
    match key.strip_prefix("services.") {
        Some(rest) => rest.rsplit_once('.').map(|(s, _)| s),
        None if !key.contains('.') => Some(key),
        None => None,
    }
}

fn test(args: TestArgs) -> Result<ExitCode, Error> {
    layers(&args.overrides)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(&cargo);
    cmd.args(runner_args(&args));
    for (env, (value, _)) in args.overrides.overrides()? {
        cmd.env(env, value);
    }
    let status = cmd.status().map_err(|e| Error::Operation {
        service: "cleanroom".into(),
        operation: format!("running {cargo}"),
        reason: e.to_string(),
    })?;
    Ok(match status.code() {
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(code::FAILED)),
        None => ExitCode::from(code::FAILED),
    })
}

/// Long flags of `cargo test` and `cargo nextest run` that are near one of
/// `test`'s own: always handed to cargo.
const RUNNER_FLAGS: &[&str] = &[
    "all",
    "all-features",
    "all-targets",
    "bench",
    "benches",
    "bin",
    "bins",
    "color",
    "config",
    "doc",
    "example",
    "examples",
    "exclude",
    "features",
    "frozen",
    "future-incompat-report",
    "ignore-rust-version",
    "jobs",
    "keep-going",
    "lib",
    "locked",
    "manifest-path",
    "message-format",
    "no-capture",
    "no-default-features",
    "no-fail-fast",
    "no-run",
    "offline",
    "package",
    "partition",
    "profile",
    "quiet",
    "release",
    "retries",
    "run-ignored",
    "target",
    "target-dir",
    "test",
    "test-threads",
    "tests",
    "timings",
    "verbose",
    "workspace",
];

/// Why a cargo argument of `cargo cleanroom test` is refused: a long flag
/// that is not cargo's or nextest's and is a misspelling of one of `test`'s
/// own (`--reuce`, `--no_reaper`), which cargo would otherwise reject with
/// a message that does not name the flag meant.
fn misspelt_own_flag(cargo_args: &[String]) -> Option<String> {
    let command = Cli::command();
    let test = command.find_subcommand("test").expect("`test` is a subcommand");
    let own: Vec<&str> = test.get_arguments().filter_map(|arg| arg.get_long()).collect();
    // What follows a `--` is the tests' (clap may leave it among cargo's).
    for arg in cargo_args.iter().take_while(|arg| *arg != "--") {
        let Some(name) = arg.strip_prefix("--").map(|flag| flag.split('=').next().unwrap_or(flag)) else { continue };
        if name.is_empty() || own.contains(&name) || RUNNER_FLAGS.contains(&name) {
            continue;
        }
        let written = name.replace('_', "-");
        let nearest = own.iter().map(|flag| (distance(&written, flag), *flag)).min();
        if let Some((_, flag)) = nearest.filter(|(d, flag)| *d <= 2 && *d <= flag.len() / 2) {
            return Some(format!(
                "unknown flag `--{name}` for `cargo cleanroom test`: did you mean `--{flag}`? \
                 (flags for cargo follow cleanroom's; arguments for the tests go after `--`)"
            ));
        }
    }
    None
}

/// The Levenshtein distance between `a` and `b`.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// What cargo is given: `test` (or `nextest run`), the cargo arguments,
/// then `--` and the test arguments if there are any.
fn runner_args(args: &TestArgs) -> Vec<String> {
    let mut out: Vec<String> = if args.nextest { vec!["nextest".into(), "run".into()] } else { vec!["test".into()] };
    out.extend(args.cargo_args.iter().cloned());
    if !args.test_args.is_empty() {
        out.push("--".into());
        out.extend(args.test_args.iter().cloned());
    }
    out
}

fn origin(origin: &Origin, name: &str) -> String {
    match origin {
        Origin::Default => "default".into(),
        Origin::File(_) => format!("file: {name}"),
        Origin::Env => format!("environment: {name}"),
        Origin::CommandLine => format!("command line: {name}"),
    }
}

fn config(flags: &OverrideFlags) -> Result<ExitCode, Error> {
    let layers = layers(flags)?;
    match layers.file() {
        Some(path) => println!("# file: {}", path.display()),
        None => println!("# file: none (no cleanroom.toml found; {} names one)", cleanroom_runtime::CONFIG_ENV),
    }
    for s in SETTINGS {
        let name = s.key.or(s.env).unwrap_or_default();
        match layers.value(name) {
            Some((value, from, given)) => println!("{name} = {value}  ({})", origin(&from, &given)),
            None => println!("{name} = {}  (default)", s.default.replace('`', "")),
        }
    }
    let mut services = layers.file_services();
    for service in flags.image.iter().chain(&flags.set).filter_map(|p| service_of(p)) {
        if !services.iter().any(|s| s == service) {
            services.push(service.to_string());
        }
    }
    for service in services {
        layers.service(&service)?;
        for s in SERVICE_SETTINGS.iter().filter_map(|s| s.key) {
            if let Some((value, from, given)) = layers.service_value(&service, s) {
                println!("services.{service}.{s} = {value}  ({})", origin(&from, &given));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn age(seconds: i64) -> String {
    match seconds.max(0) {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

fn ls() -> Result<ExitCode, Error> {
    // Services on existing servers are known from the runs' records: they
    // are listed whether or not a container engine answers.
    let elsewhere = admin::list_elsewhere();
    let (containers, unreachable) = match admin::list() {
        Ok(containers) => (containers, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    if let (Some(e), true) = (&unreachable, elsewhere.is_empty()) {
        return Err(e.clone());
    }
    let now = admin::now();
    let mut rows: Vec<[String; 8]> = containers
        .iter()
        .map(|c| {
            [
                c.session.clone(),
                c.service.clone(),
                "docker".to_string(),
                c.state.clone(),
                c.run.as_str().to_string(),
                age(now - c.created),
                c.owner.clone(),
                c.name.clone(),
            ]
        })
        .collect();
    rows.extend(elsewhere.iter().map(|s| {
        [
            s.session.clone(),
            s.service.clone(),
            s.engine.clone(),
            "-".to_string(),
            s.run.as_str().to_string(),
            "-".to_string(),
            "-".to_string(),
            s.address.clone(),
        ]
    }));
    let header = ["SESSION", "SERVICE", "ENGINE", "STATE", "RUN", "AGE", "OWNER", "NAME"].map(String::from);
    print_table(&header, &rows);
    // What other engines run is listed; the containers could not be.
    if let Some(e) = unreachable {
        return Err(e);
    }
    let caches = admin::caches().unwrap_or_default();
    if !caches.is_empty() {
        println!();
        let rows: Vec<[String; 5]> = caches
            .iter()
            .map(|c| {
                [
                    c.name.clone(),
                    c.service.clone(),
                    size(c.size),
                    age(now - c.last_use),
                    if c.in_use { "yes" } else { "no" }.to_string(),
                ]
            })
            .collect();
        print_table(&["CACHE VOLUME", "SERVICE", "SIZE", "LAST USE", "IN USE"].map(String::from), &rows);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table<const N: usize>(header: &[String; N], rows: &[[String; N]]) {
    let mut widths = header.clone().map(|h| h.len());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    for row in std::iter::once(header).chain(rows) {
        let line: Vec<String> = row.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", line.join("  ").trim_end());
    }
}

fn prune(args: &PruneArgs) -> Result<ExitCode, Error> {
    if let Some(url) = &args.url {
        let found = admin::prune_server(url, args.databases.as_deref(), args.dry_run)?;
        let verb = if args.dry_run { "would remove" } else { "removed" };
        if found.removed.is_empty() {
            println!("nothing to prune on that server: no dead run of yours left anything there");
        }
        for what in &found.removed {
            println!("{verb} {what}");
        }
        for what in &found.kept {
            println!("kept {what}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let pruned = admin::prune(admin::PruneOptions {
        dry_run: args.dry_run,
        keep_caches: args.keep_caches,
        reused: args.reused,
    })?;
    let verb = if args.dry_run { "would remove" } else { "removed" };
    if pruned.sessions.is_empty() && pruned.reused.is_empty() && pruned.caches.is_empty() && pruned.existing.is_empty()
    {
        println!("nothing to prune: every run with containers is live (or not this machine's)");
    }
    for session in &pruned.sessions {
        println!("{verb} session {session}");
    }
    for name in &pruned.reused {
        println!("{verb} reused service {name}");
    }
    for name in &pruned.caches {
        println!("{verb} cache volume {name}");
    }
    for what in &pruned.existing {
        println!("{verb} {what}");
    }
    Ok(ExitCode::SUCCESS)
}

/// A cache volume's size; `?` when no fill has measured it yet.
fn size(bytes: u64) -> String {
    if bytes == 0 {
        "?".to_string()
    } else {
        admin::format_bytes(bytes)
    }
}

fn report(args: &ReportArgs) -> Result<ExitCode, Error> {
    admin::settle_reports();
    let reports = admin::reports();
    let path = match &args.session {
        Some(s) => reports.into_iter().find(|p| p.file_stem().is_some_and(|f| f == s.as_str())),
        None => reports.into_iter().next(),
    };
    let Some(path) = path else {
        eprintln!(
            "cleanroom: no report{} in {}; reports are written there by every test run",
            args.session.as_deref().map(|s| format!(" of session {s}")).unwrap_or_default(),
            admin::runtime_dir().join("reports").display()
        );
        return Ok(ExitCode::from(code::NO_REPORT));
    };
    let text = std::fs::read_to_string(&path).map_err(|e| Error::Operation {
        service: "cleanroom".into(),
        operation: format!("reading {}", path.display()),
        reason: e.to_string(),
    })?;
    if args.json {
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    println!("# {}", path.display());
    match admin::render_report(&text) {
        Some(summary) => print!("{summary}"),
        None => {
            eprintln!("cleanroom: {} is not a cleanroom report; `--json` prints it as it is", path.display());
            return Ok(ExitCode::from(code::NO_REPORT));
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> TestArgs {
        match Cli::try_parse_from(["cleanroom", "test"].iter().chain(args)).unwrap().command {
            Command::Test(t) => t,
            other => panic!("{other:?}"),
        }
    }

    mod should {
        use super::*;

        #[test]
        fn hand_cargo_its_arguments_and_the_tests_theirs() {
            let t = parse(&["--reuse", "--keep=always", "-p", "app", "--release", "--", "--nocapture", "db::"]);
            assert_eq!(runner_args(&t), ["test", "-p", "app", "--release", "--", "--nocapture", "db::"]);
            assert_eq!(runner_args(&parse(&["--", "--exact", "x"])), ["test", "--", "--exact", "x"]);
            assert_eq!(runner_args(&parse(&["--nextest", "-p", "a"])), ["nextest", "run", "-p", "a"]);
            assert_eq!(runner_args(&parse(&[])), ["test"]);
        }

        #[test]
        fn turn_flags_into_variables_named_after_their_flag() {
            let t = parse(&[
                "--reuse",
                "--keep=always",
                "--image",
                "postgres=pg:15",
                "--set",
                "services.my-web.cpus=2",
                "--no-reaper",
            ]);
            let o = t.overrides.overrides().unwrap();
            let get = |k: &str| o.get(k).map(|(v, f)| (v.as_str(), f.as_str()));
            assert_eq!(get("CLEANROOM_REUSE"), Some(("1", "--reuse")));
            assert_eq!(get("CLEANROOM_KEEP"), Some(("always", "--keep")));
            assert_eq!(get("CLEANROOM_POSTGRES_IMAGE"), Some(("pg:15", "--image postgres=pg:15")));
            assert_eq!(get("CLEANROOM_MY_WEB_CPUS"), Some(("2", "--set services.my-web.cpus=2")));
            assert_eq!(get("CLEANROOM_NO_REAPER"), Some(("1", "--no-reaper")));
            assert_eq!(o.len(), 5);
        }

        #[test]
        fn refuse_a_misspelling_of_its_own_flags_naming_the_one_meant() {
            let refused = |args: &[&str]| misspelt_own_flag(&parse(args).cargo_args);
            let message = refused(&["--reuce"]).unwrap();
            assert!(message.starts_with("unknown flag `--reuce` for `cargo cleanroom test`: did you mean `--reuse`?"));
            assert!(refused(&["-p", "app", "--kep=always"]).unwrap().contains("did you mean `--keep`?"));
            assert!(refused(&["--no_reaper"]).unwrap().contains("did you mean `--no-reaper`?"));
            assert!(refused(&["--imag-prefix", "x/"]).unwrap().contains("did you mean `--image-prefix`?"));
        }

        #[test]
        fn hand_cargo_its_own_flags_and_flags_unlike_cleanrooms() {
            let refused = |args: &[&str]| misspelt_own_flag(&parse(args).cargo_args);
            for args in [
                &["--test", "signup"][..],
                &["--tests", "--release", "--lib", "--bins", "--jobs", "2", "--locked"],
                &["--no-fail-fast", "--target-dir", "t", "--features", "x", "--workspace"],
                &["--frobnicate"],
                &["-p", "app", "--", "--nocapture", "--reuce"],
            ] {
                assert_eq!(refused(args), None, "{args:?}");
            }
        }

        #[test]
        fn measure_edits_between_flags() {
            assert_eq!(distance("reuce", "reuse"), 1);
            assert_eq!(distance("kep", "keep"), 1);
            assert_eq!(distance("test", "set"), 2);
            assert_eq!(distance("", "abc"), 3);
        }

        #[test]
        fn refuse_keys_only_the_file_can_set() {
            let err = env_of("services.web.env").unwrap_err().to_string();
            assert!(err.contains("--set services.web.env: unknown key, or one only cleanroom.toml can set"), "{err}");
            assert!(split_pair("novalue", "--image", "SERVICE=IMAGE")
                .unwrap_err()
                .to_string()
                .contains("is not SERVICE=IMAGE"));
        }
    }
}
