//! Helpers for cleanroom's live tests: run this very test binary again as a
//! child process (so that process start and exit are real), and ask Docker,
//! not cleanroom, what happened.
//!
//! A live test picks a fresh session id, watches Docker's event stream for
//! that session, runs a selection of the binary's `#[ignore]`d child tests
//! with `CLEANROOM_SESSION` set, and then checks the events and what is left.
#![warn(missing_docs, rust_2018_idioms)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A session id no other test uses, so that Docker can be asked about this
/// test's containers alone while other tests run.
pub fn fresh_session(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("t-{tag}-{}-{}-{nanos:x}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

/// Whether the services of child runs are Docker's: `CLEANROOM_ENGINE` is
/// unset or `docker` (not the local engine, whose servers make no events),
/// and the built-in Postgres is not pointed at an existing server.
pub fn runs_on_docker() -> bool {
    std::env::var("CLEANROOM_ENGINE").map_or(true, |e| e.is_empty() || e == "docker") && existing_postgres().is_none()
}

/// The existing Postgres server the built-in service is pointed at
/// (`CLEANROOM_POSTGRES_URL`, docs/engines.md), if any.
pub fn existing_postgres() -> Option<String> {
    std::env::var("CLEANROOM_POSTGRES_URL").ok().filter(|u| !u.is_empty())
}

/// Held by the tests that make reused services (`CLEANROOM_REUSE`): those
/// of every definition share one owner session, `reuse-<uid>`, whose
/// starts some of them count. A file lock, as nextest runs each test in a
/// process of its own (and the binaries at once).
pub fn reuse_lock() -> std::fs::File {
    let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap());
    let path = std::env::temp_dir().join(format!("cleanroom-tests-reuse-{uid}.lock"));
    let file = std::fs::File::create(path).unwrap();
    file.lock().unwrap();
    file
}

/// Runs `docker` with `args` and returns its stdout; panics if it fails.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("the docker CLI runs");
    assert!(out.status.success(), "docker {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The engine's socket as the tests reach it: `DOCKER_HOST`'s path when it
/// is a Unix socket (Podman's, in the Podman runs of docs/environments.md),
/// else Docker's default.
pub fn engine_socket() -> std::path::PathBuf {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(std::path::PathBuf::from))
        .unwrap_or_else(|| "/var/run/docker.sock".into())
}

/// Ids of every container (running or not) of `session`.
pub fn session_containers(session: &str) -> Vec<String> {
    containers_of(session, &[])
}

/// Ids of the containers of `session` (running or not) that pass every one
/// of `filters` (`docker ps --filter`, e.g. `status=created`).
pub fn containers_of(session: &str, filters: &[&str]) -> Vec<String> {
    let session = format!("label=cleanroom.session={session}");
    let mut args = vec!["ps", "-aq", "--filter", &session];
    for filter in filters {
        args.extend(["--filter", filter]);
    }
    docker(&args).lines().map(str::to_string).collect()
}

/// Ids of the running containers of `session`'s service `service`.
pub fn service_containers(session: &str, service: &str) -> Vec<String> {
    docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=cleanroom.session={session}"),
        "--filter",
        &format!("label=cleanroom.service={service}"),
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

/// Ids of every network and volume of `session`.
pub fn session_networks_and_volumes(session: &str) -> Vec<String> {
    let filter = format!("label=cleanroom.session={session}");
    let mut out: Vec<String> =
        docker(&["network", "ls", "-q", "--filter", &filter]).lines().map(str::to_string).collect();
    out.extend(docker(&["volume", "ls", "-q", "--filter", &filter]).lines().map(str::to_string));
    out
}

/// The service label of the marker container that proves the stream is live.
const MARKER: &str = "__event-stream-marker";

/// Creates and removes a container of `session` that never runs: its
/// events prove that an event stream is live.
fn fire_marker(session: &str) {
    let id = docker(&[
        "create",
        "--label",
        "cleanroom.managed=true",
        "--label",
        &format!("cleanroom.session={session}"),
        "--label",
        &format!("cleanroom.service={MARKER}"),
        "cleanroom-offline/busybox:1.35",
        "true",
    ]);
    docker(&["rm", "-f", id.trim()]);
}

/// One container event of the session: what happened, to which service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `create`, `start`, `die`, `destroy`, ...
    pub action: String,
    /// The `cleanroom.service` label.
    pub service: String,
}

/// A live `docker events` stream of cleanroom's containers matching
/// `label`, each event with its session, made live with a marker container of
/// `marker_session` before it is returned.
struct Stream {
    child: Child,
    events: Arc<Mutex<Vec<(String, Event)>>>,
}

impl Stream {
    fn start(label: &str, marker_session: &str) -> Stream {
        let mut child = Command::new("docker")
            .args([
                "events",
                "--filter",
                "type=container",
                "--filter",
                &format!("label={label}"),
                "--format",
                "{{.Action}} {{index .Actor.Attributes \"cleanroom.service\"}} {{index .Actor.Attributes \"cleanroom.session\"}}",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker events runs");
        let events = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        {
            let events = events.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let mut parts = line.splitn(3, ' ');
                    let (action, service, session) =
                        (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                    // `exec_start: sh -c ...` and friends: keep the verb.
                    let action = action.split(':').next().unwrap_or(action).to_string();
                    events.lock().unwrap().push((session.to_string(), Event { action, service: service.to_string() }));
                }
            });
        }
        let stream = Stream { child, events };
        let deadline = Instant::now() + Duration::from_secs(20);
        // Again until its event is seen: the stream may not be connected yet
        // when the first one fires.
        while !stream.events.lock().unwrap().iter().any(|(s, e)| s == marker_session && e.service == MARKER) {
            fire_marker(marker_session);
            std::thread::sleep(Duration::from_millis(100));
            assert!(Instant::now() < deadline, "docker events never delivered the marker event");
        }
        stream
    }

    /// Events other than the marker's, with their sessions.
    fn events(&self) -> Vec<(String, Event)> {
        self.events.lock().unwrap().iter().filter(|(_, e)| e.service != MARKER).cloned().collect()
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Docker's live event stream for one session, started before the run it
/// watches (the engine replays only its last 256 events, so asking afterwards
/// with `--since` can undercount).
pub struct EventWatch {
    stream: Stream,
    session: String,
}

impl EventWatch {
    /// Starts watching `session` and returns once the stream is known to be
    /// live: a marker container (created, never started) has come through it.
    pub fn start(session: &str) -> EventWatch {
        EventWatch {
            stream: Stream::start(&format!("cleanroom.session={session}"), session),
            session: session.to_string(),
        }
    }

    /// Every container event so far.
    pub fn events(&self) -> Vec<Event> {
        self.stream.events().into_iter().map(|(_, e)| e).collect()
    }

    /// How many times a container of `service` was started.
    pub fn starts_of(&self, service: &str) -> usize {
        self.events().iter().filter(|e| e.action == "start" && e.service == service).count()
    }

    /// Services that had a container created, each once, in order.
    pub fn created_services(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for e in self.events() {
            if e.action == "create" && !out.contains(&e.service) {
                out.push(e.service);
            }
        }
        out
    }

    /// Waits until the event stream has shown `destroy` for every container
    /// it saw created (or `timeout` passes), so that counts are final.
    pub fn settle(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let ev = self.events();
            let created = ev.iter().filter(|e| e.action == "create").count();
            let destroyed = ev.iter().filter(|e| e.action == "destroy").count();
            if destroyed >= created || Instant::now() > deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The session watched.
    pub fn session(&self) -> &str {
        &self.session
    }
}

/// A run of this test binary as a child process.
#[derive(Debug)]
pub struct ChildRun {
    /// How it ended.
    pub output: Output,
    /// How long it took.
    pub elapsed: Duration,
}

impl ChildRun {
    /// stdout and stderr together.
    pub fn text(&self) -> String {
        format!("{}{}", String::from_utf8_lossy(&self.output.stdout), String::from_utf8_lossy(&self.output.stderr))
    }

    /// Whether the child exited with 0.
    pub fn passed(&self) -> bool {
        self.output.status.success()
    }
}

/// A command that runs this test binary with `args` in `session`.
pub fn child_command(session: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("the test binary knows its path"));
    cmd.args(args).env("CLEANROOM_SESSION", session).env("RUST_BACKTRACE", "0");
    cmd
}

/// Runs this test binary with `args` in `session` and waits for it.
pub fn run_child(session: &str, args: &[&str], env: &[(&str, &str)]) -> ChildRun {
    let mut cmd = child_command(session, args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let output = cmd.output().expect("the test binary runs as a child");
    ChildRun { output, elapsed: start.elapsed() }
}

/// How long a run's reaper may take to remove the run once its last process
/// is gone: the grace period, plus removal.
pub const REAPER_DEADLINE: Duration = Duration::from_secs(15);

/// Removes container `id` and waits until the engine has let go of it: a
/// removal that meets the engine's archive API still reading the container
/// (a reaper judging heartbeats) can leave it dead, "Removal In Progress"
/// (fuse-overlayfs: "directory not empty"), and a second removal takes it.
pub fn remove_container(id: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let _ = std::process::Command::new("docker").args(["rm", "-f", id]).output();
        let left = std::process::Command::new("docker")
            .args(["ps", "-aq", "--no-trunc", "--filter", &format!("id={id}")])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        if left.is_empty() || Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Asserts that nothing of `session` is left in Docker (containers,
/// networks, volumes) within [`REAPER_DEADLINE`] of the run's end.
pub fn assert_nothing_left(session: &str) {
    let deadline = Instant::now() + REAPER_DEADLINE;
    while Instant::now() < deadline
        && !(session_containers(session).is_empty() && session_networks_and_volumes(session).is_empty())
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let containers = session_containers(session);
    assert!(containers.is_empty(), "containers of session {session} outlived their run: {containers:?}");
    let rest = session_networks_and_volumes(session);
    assert!(rest.is_empty(), "networks or volumes of session {session} outlived their run: {rest:?}");
}

/// Every container event of every cleanroom session, with its session, from
/// a stream started before the runs it watches: for runs whose session id is
/// derived by cleanroom and so not known in advance.
pub struct AllSessionsWatch {
    stream: Stream,
}

impl AllSessionsWatch {
    /// Starts watching, and returns once the stream is live.
    pub fn start() -> AllSessionsWatch {
        AllSessionsWatch { stream: Stream::start("cleanroom.managed=true", &fresh_session("marker")) }
    }

    /// How many times a container of `service` was started in `session`.
    pub fn starts_of(&self, session: &str, service: &str) -> usize {
        self.stream.events().iter().filter(|(s, e)| s == session && e.action == "start" && e.service == service).count()
    }

    /// Every session that had a container of `service` started, in order.
    pub fn sessions_of(&self, service: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (s, e) in self.stream.events() {
            if e.action == "start" && e.service == service && !out.contains(&s) {
                out.push(s);
            }
        }
        out
    }
}

/// The session cleanroom derives for the processes of the nextest run
/// `run_id` (`NEXTEST_RUN_ID`).
pub fn nextest_session(run_id: &str) -> String {
    format!("nextest-{}", run_id.chars().filter(|c| c.is_ascii_alphanumeric()).take(24).collect::<String>())
}

/// The pid of the reaper serving `session`, if one runs.
pub fn reaper_pid(session: &str) -> Option<u32> {
    let needle = format!("CLEANROOM_REAPER={session}");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        if environ.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) {
            return Some(pid);
        }
    }
    None
}

/// Sends `signal` (`-KILL`, `-TERM`) to `pid`.
pub fn kill(signal: &str, pid: u32) {
    let status = Command::new("kill").args([signal, &pid.to_string()]).status().expect("kill runs");
    assert!(status.success(), "kill {signal} {pid} failed");
}

/// Starts this binary's `child::waits::until_killed` test (which prints
/// `cleanroom-test: READY` and then waits) in `session`, with `env`, and
/// returns once its body runs: its services are up and its reaper serves.
pub fn start_waiting(session: &str, env: &[(&str, &str)]) -> Child {
    let mut child = child_command(session, &["--ignored", "--exact", "child::waits::until_killed", "--nocapture"])
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the test binary runs");
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    assert!(lines.any(|l| l.is_ok_and(|l| l.contains("READY"))), "the waiting test of {session} started");
    child
}

/// Leaves a run of `session` behind the hard way: starts the waiting test
/// (see [`start_waiting`]), then `kill -9`s its reaper and its test process.
/// The process is stopped first: one whose reaper dies starts a replacement.
/// Afterwards nothing of that run is left to remove what it made.
pub fn kill_run_with_its_reaper(session: &str, env: &[(&str, &str)]) {
    let mut victim = start_waiting(session, env);
    let reaper = reaper_pid(session).expect("the run has a reaper");
    kill("-STOP", victim.id());
    kill("-KILL", reaper);
    kill("-KILL", victim.id());
    let _ = victim.wait();
}

/// Child tests for runs made by a live test: each `name` becomes an
/// `#[ignore]`d `#[cleanroom::test(postgres, redis)]` that writes to its
/// database and its Redis database. Expanded in the test binary, whose
/// dev-dependencies (`cleanroom`, `tokio_postgres`, `redis`) it uses.
#[macro_export]
macro_rules! postgres_and_redis_tests {
    ($reason:literal: $($name:ident)*) => {$(
        #[::cleanroom::test(postgres, redis)]
        #[ignore = $reason]
        async fn $name(postgres: ::cleanroom::Postgres, redis: ::cleanroom::Redis) {
            let (client, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            client.batch_execute("CREATE TABLE t (v int); INSERT INTO t VALUES (1)").await.unwrap();
            let mut cache = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
            // A room handed out twice, or unflushed, would hold the last test's key.
            let keys: i64 = redis::cmd("DBSIZE").query_async(&mut cache).await.unwrap();
            assert_eq!(keys, 0, "the test's Redis room is empty as it starts");
            let () = redis::AsyncCommands::set(&mut cache, "k", 1).await.unwrap();
        }
    )*};
}

/// Child tests that each write two rows to their Postgres room and count
/// them back: each `name` becomes an `#[ignore]`d
/// `#[cleanroom::test(postgres)]`. A test that kills the service between them
/// (the monitor and recovery tests) makes every later one depend on the
/// replacement.
#[macro_export]
macro_rules! postgres_tests {
    ($reason:literal: $($name:ident)*) => {$(
        #[::cleanroom::test(postgres)]
        #[ignore = $reason]
        async fn $name(postgres: ::cleanroom::Postgres) {
            let (client, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            client.batch_execute("CREATE TABLE t (v int); INSERT INTO t VALUES (1), (2)").await.unwrap();
            let n: i64 = client.query_one("SELECT count(*) FROM t", &[]).await.unwrap().get(0);
            assert_eq!(n, 2);
        }
    )*};
}
