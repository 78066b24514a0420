//! The reaper: a small process outside the test processes that owns cleanup
//! for one run, the way Ryuk does for testcontainers in other languages, with
//! no image to pull.
//!
//! The test binary itself serves as the reaper: a test process that finds no
//! reaper for its session re-executes its own binary with `CLEANROOM_REAPER`
//! set, and cleanroom's process-start hook turns that process into the reaper
//! before libtest's `main` runs. It is detached from the test process's
//! process group and standard streams, so that neither Ctrl-C nor a runner
//! waiting for output holds on to it.
//!
//! Test processes connect to the reaper's Unix socket and hold the connection
//! for their whole life. A process that dies, even by SIGKILL, drops it. When
//! no process is connected any more and either the runner (the `cargo test`
//! or nextest process) has exited or a grace period has passed, the reaper
//! removes every container, network and volume of the session and exits.
//!
//! One reaper per session: it holds an exclusive lock on
//! `<runtime dir>/<session>.lock` for its whole life. That lock also tells
//! whether a session is alive: a reaper that starts sweeps away the containers
//! of sessions whose lock nobody holds (their reaper was killed), and leaves
//! live runs alone.

use super::keeper::{keep_reused, touch_claims};
use super::liveness::{live_clients, lock_path, register_client, socket_path};
use super::marks::run_dir;
use super::sweep::{remove_session, sweep_orphans};
use crate::util::os::socket::{self, Listener, Stream};
use crate::util::paths::{create_private_dir, create_runtime_dir};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::docker::Docker;
use crate::run::session::{ProcessId, Session};

/// The environment variable that turns a process into the reaper of a session.
pub(crate) const REAPER_ENV: &str = "CLEANROOM_REAPER";
/// The runner process the reaper watches, `pid:start`.
const RUNNER_ENV: &str = "CLEANROOM_REAPER_RUNNER";

/// A reaper nobody ever connects to gives up after this.
const FIRST_CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// The connection this process holds to its session's reaper.
static CONNECTION: Mutex<Option<Stream>> = Mutex::new(None);

/// Connects this process to its session's reaper, starting the reaper if
/// there is none. Holds the connection until the process ends; if the
/// reaper dies first (killed), this process starts a replacement at once
/// (see [`watch`]).
///
/// `register`: whether this process is registered among the run's clients
/// and its connection watched now ([`register_client`], [`watch`]); else
/// [`finish_attach`] does both soon after (an attaching process, once its
/// services are in its tests' hands: the connection already tells the
/// reaper it runs, and a reaper that dies meanwhile is noticed then, its
/// connection's end being still there to read).
pub(crate) fn attach(session: &Session, register: bool) -> Result<(), String> {
    let mut held = CONNECTION.lock().unwrap_or_else(|e| e.into_inner());
    if held.is_some() {
        return Ok(());
    }
    let stream = connect_or_start(session)?;
    let watched = stream.try_clone().ok();
    *held = Some(stream);
    if register {
        if let Some(watched) = watched {
            watch(watched, session.clone());
        }
        register_client(&session.id);
    } else {
        *UNFINISHED.lock().unwrap_or_else(|e| e.into_inner()) = watched.map(|w| (w, session.clone()));
    }
    Ok(())
}

/// The connection [`attach`] left for [`finish_attach`] to watch.
static UNFINISHED: Mutex<Option<(Stream, Session)>> = Mutex::new(None);

/// What `attach(session, false)` left for later: this process registered
/// among the run's clients, and its connection watched (a thread, which
/// would otherwise start while the process's tests wait).
pub(crate) fn finish_attach() {
    let Some((watched, session)) = UNFINISHED.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
    register_client(&session.id);
    watch(watched, session);
}

/// Whether this process holds a connection to its session's reaper.
pub(crate) fn attached() -> bool {
    CONNECTION.lock().unwrap_or_else(|e| e.into_inner()).is_some()
}

/// The mark a reaper that keeps the run's Postgres pools leaves in the
/// run's directory ([`KeepFn`]): a process that finds it hands the reaper
/// that work; one served by a reaper without it does the work itself.
fn keeper_mark(session: &str) -> std::path::PathBuf {
    run_dir(session).join("pool-keeper")
}

/// Whether the session's reaper keeps the run's Postgres pools.
pub(crate) fn keeps_pools(session: &str) -> bool {
    keeper_mark(session).exists()
}

/// The mark a reaper that also keeps the run's Redis pools leaves beside
/// [`keeper_mark`] (an earlier reaper keeps Postgres's only).
fn redis_keeper_mark(session: &str) -> std::path::PathBuf {
    run_dir(session).join("redis-keeper")
}

/// Whether the session's reaper keeps the run's Redis pools.
pub(crate) fn keeps_redis(session: &str) -> bool {
    redis_keeper_mark(session).exists()
}

/// Where the run's Redis pools are, one directory per server.
pub(crate) fn redis_pools(session: &str) -> std::path::PathBuf {
    run_dir(session).join("redispool")
}

/// Sends `pool <what>` to the reaper on this process's held connection: work
/// for the keeper of the run's pools. `false` when there is no connection or
/// the write failed (the caller does the work itself).
pub(crate) fn tell_keeper(what: &str) -> bool {
    // Not while the connection is being replaced (the reaper died): the
    // caller does the work itself rather than wait.
    let Ok(mut held) = CONNECTION.try_lock() else { return false };
    let Some(stream) = held.as_mut() else { return false };
    stream.write_all(format!("pool {}\n", what.replace('\n', " ")).as_bytes()).is_ok()
}

/// How long a process waits at exit for the reaper to fold the run's
/// report before it folds it itself.
const FOLD_TIMEOUT: Duration = Duration::from_secs(30);

/// Tells the session's reaper that this process's part of the report is
/// written (the report's `parts` module). The reaper answers at once, or, when
/// this was the last process it serves still to report, once it has folded
/// the parts into the run's documents; the answer lists what it could not
/// write, as lines to say.
pub(crate) fn hand_over_report(session: &str) -> Result<Vec<(std::path::PathBuf, String)>, String> {
    let path = socket_path(session);
    let mut stream = socket::connect(&path).map_err(|e| e.to_string())?;
    check_peer(&stream, &path)?;
    stream.set_read_timeout(Some(FOLD_TIMEOUT)).map_err(|e| e.to_string())?;
    stream.write_all(format!("report {}\n", std::process::id()).as_bytes()).map_err(|e| e.to_string())?;
    let mut said = Vec::new();
    for line in BufReader::new(stream).lines() {
        let line = line.map_err(|e| e.to_string())?;
        if line == "ok" {
            return Ok(said);
        }
        said.extend(parse_unwritten(&line));
    }
    Err("the reaper hung up before it answered".to_string())
}

/// A document the fold could not write, as the reaper tells the process
/// that reported last: `unwritten <path>\t<error>`, one line (a path or
/// an error with a line break in it has it replaced by a space).
fn unwritten_line(path: &std::path::Path, e: &std::io::Error) -> String {
    let flat = |s: String| s.replace(['\n', '\r', '\t'], " ");
    format!("unwritten {}\t{}\n", flat(path.display().to_string()), flat(e.to_string()))
}

/// The document and error of an [`unwritten_line`] (without its line end).
fn parse_unwritten(line: &str) -> Option<(std::path::PathBuf, String)> {
    let (path, error) = line.strip_prefix("unwritten ")?.split_once('\t')?;
    Some((path.into(), error.to_string()))
}

/// Connects to the session's reaper, starting one if none answers.
fn connect_or_start(session: &Session) -> Result<Stream, String> {
    // Checked before anything in it is trusted: a directory another user
    // made could hold a socket of theirs posing as this run's reaper.
    create_runtime_dir().map_err(|e| e.to_string())?;
    let path = socket_path(&session.id);
    // A socket that did not fit in the runtime directory lives under /tmp,
    // checked the same way.
    if let Some(dir) = path.parent() {
        create_private_dir(dir).map_err(|e| e.to_string())?;
    }
    let greet = |mut stream: Stream| -> Result<Stream, String> {
        check_peer(&stream, &path)?;
        stream.write_all(format!("attach {}\n", std::process::id()).as_bytes()).map_err(|e| e.to_string())?;
        Ok(stream)
    };
    if let Ok(stream) = socket::connect(&path) {
        return greet(stream);
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this test binary to start the reaper: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.env(REAPER_ENV, &session.id)
        .env_remove("CLEANROOM_SESSION")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // Out of the runner's process group: a Ctrl-C that stops the run does
    // not stop the reaper that cleans up after it.
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    // Windows: out of the runner's job object too, which nextest ends when a
    // test times out and cargo's ends with cargo; a job that forbids it
    // refuses the spawn, which is then made without.
    #[cfg(windows)]
    std::os::windows::process::CommandExt::creation_flags(
        &mut cmd,
        CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW | CREATE_BREAKAWAY_FROM_JOB,
    );
    if let Some(runner) = session.runner {
        cmd.env(RUNNER_ENV, runner.encode());
    }
    let mut child = spawn_reaper(&mut cmd).map_err(|e| format!("cannot start the reaper: {e}"))?;
    // A new reaper may first wait for the run's previous one to finish
    // removing (its grace period ran out while the runner still ran).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut starts = 1;
    loop {
        if let Ok(stream) = socket::connect(&path) {
            // Reaped by whoever outlives it; a reaper that lost the race for
            // the lock exits at once and is collected here.
            std::thread::spawn(move || {
                let _ = child.wait();
            });
            return greet(stream);
        }
        // A reaper that exits without serving saw the lock held by one that
        // was dying (a killed reaper lets go of its lock a moment after the
        // signal): start another while the run has none.
        if matches!(child.try_wait(), Ok(Some(_))) && starts < MAX_STARTS {
            child = spawn_reaper(&mut cmd).map_err(|e| format!("cannot start the reaper: {e}"))?;
            starts += 1;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(format!("the reaper did not open {} within 30 s", path.display()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// How many reapers one attach starts at most.
const MAX_STARTS: u32 = 5;

/// Waits on the connection to the reaper, which sends nothing: it ends only
/// when the reaper does. A reaper that dies while this process runs (killed,
/// or its machine's OOM killer) would leave the run with nobody to remove
/// it: this process starts a replacement and connects to it. The
/// replacement also finds the run's other processes in their registrations.
fn watch(mut stream: Stream, session: Session) {
    std::thread::spawn(move || {
        let mut sink = [0u8; 16];
        while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
        if crate::util::flags::shutting_down() {
            return;
        }
        let mut held = CONNECTION.lock().unwrap_or_else(|e| e.into_inner());
        match connect_or_start(&session) {
            Ok(stream) => {
                if let Ok(watched) = stream.try_clone() {
                    watch(watched, session.clone());
                }
                *held = Some(stream);
                register_client(&session.id);
            }
            Err(reason) => {
                crate::util::say!("cleanroom: the reaper of session {} died and no replacement started ({reason}); what this run made may outlive it: `cargo cleanroom prune` removes it", session.id);
            }
        }
    });
}

/// The process at the other end of the reaper's socket must be this user's:
/// a reaper is trusted with the run's containers.
fn check_peer(stream: &Stream, path: &std::path::Path) -> Result<(), String> {
    socket::check_server(stream).map_err(|e| format!("{}: {e}; it is not your reaper", path.display()))
}

/// Windows's `CREATE_NEW_PROCESS_GROUP`, `CREATE_NO_WINDOW` and
/// `CREATE_BREAKAWAY_FROM_JOB` process creation flags.
#[cfg(windows)]
const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;
#[cfg(windows)]
const CREATE_NO_WINDOW: u32 = 0x0800_0000;
#[cfg(windows)]
const CREATE_BREAKAWAY_FROM_JOB: u32 = 0x0100_0000;

/// Spawns the reaper; on Windows, where a job that forbids breaking away
/// refuses the spawn (access denied), once more without leaving the job.
fn spawn_reaper(cmd: &mut Command) -> std::io::Result<std::process::Child> {
    match cmd.spawn() {
        #[cfg(windows)]
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            std::os::windows::process::CommandExt::creation_flags(cmd, CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW);
            cmd.spawn()
        }
        spawned => spawned,
    }
}

/// `run.reaper_grace`; a configuration the test processes reject cannot
/// stop the reaper from cleaning up, so it falls back to the default.
fn grace() -> Duration {
    crate::config::current().map_or(crate::config::DEFAULT_REAPER_GRACE, |c| c.reaper_grace)
}

/// The reaper process: serves one session, then exits. Called before `main`,
/// with what folds the run's report (the report's `parts::fold`).
pub(crate) fn run(session: String, fold: FoldFn, keep: KeepFn, finish_keeping: FinishFn) -> ! {
    // The id names files to remove: one that could leave the runtime
    // directory is never served.
    if !crate::run::session::valid(&session) {
        std::process::exit(2);
    }
    let code = match serve(&session, fold, keep, finish_keeping) {
        Ok(()) => 0,
        Err(_) => 1,
    };
    std::process::exit(code)
}

fn serve(session: &str, fold: FoldFn, keep: KeepFn, finish_keeping: FinishFn) -> Result<(), String> {
    create_runtime_dir().map_err(|e| e.to_string())?;
    let lock = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(lock_path(session))
        .map_err(|e| e.to_string())?;
    if lock.try_lock().is_err() {
        // Another reaper serves this session, or is finishing with it (its
        // grace period ran out while the runner still runs): wait for it, so
        // that processes arriving now find a reaper once it is done.
        if socket::connect(&socket_path(session)).is_ok() {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            std::thread::sleep(Duration::from_millis(20));
            if lock.try_lock().is_ok() {
                break;
            }
            if Instant::now() > deadline || socket::connect(&socket_path(session)).is_ok() {
                return Ok(());
            }
        }
    }
    let socket = socket_path(session);
    if let Some(dir) = socket.parent() {
        create_private_dir(dir).map_err(|e| e.to_string())?;
    }
    let _ = std::fs::remove_file(&socket);
    // Before the socket: a process that connects finds the mark.
    if std::fs::create_dir_all(run_dir(session)).is_ok() {
        let _ = std::fs::write(keeper_mark(session), b"");
        let _ = std::fs::write(redis_keeper_mark(session), b"");
    }
    let listener = Listener::bind(&socket).map_err(|e| e.to_string())?;
    let runner = std::env::var(RUNNER_ENV).ok().and_then(|r| ProcessId::decode(&r));

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    // An engine that does not answer now may answer by the time the run is
    // over: the reaper serves its clients either way, and asks again then.
    // Local servers of dead runs first: the Docker sweep removes the run
    // directories their records are in.
    let _ = super::local::sweep(session);
    let mut docker = runtime.block_on(Docker::connect()).ok();
    match &docker {
        Some(docker) => drop(runtime.block_on(sweep_orphans(docker, session))),
        None => super::sweep::remove_stale_files(session),
    }

    let connected = Arc::new(AtomicUsize::new(0));
    let ever = Arc::new(AtomicBool::new(false));
    let last_change = Arc::new(Mutex::new(Instant::now()));
    let folds = Arc::new(Folds::with(session, fold));
    let gate = Gate::default();
    let serve = |listener: Listener| {
        serve_connections(
            listener,
            gate.clone(),
            connected.clone(),
            ever.clone(),
            last_change.clone(),
            folds.clone(),
            keep,
        )
    };
    serve(listener);
    let started = Instant::now();
    let grace = grace();
    // Other machines sharing this engine judge the run by its heartbeat.
    let beat_every = super::heartbeat::interval(super::heartbeat::idle_ttl());
    let mut last_beat: Option<Instant> = None;
    let owner = crate::docker::owner_labels();
    let mut run_labels = vec![(crate::docker::MANAGED_LABEL, "true"), (crate::docker::SESSION_LABEL, session)];
    run_labels.extend(owner.iter().map(|(k, v)| (*k, v.as_str())));
    let mut last_try = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(50));
        if docker.is_none() {
            docker = reconnect(&runtime, session, &mut last_try, beat_every);
        }
        if let Some(docker) = &docker {
            if last_beat.is_none_or(|t| t.elapsed() >= beat_every) {
                let beat = super::heartbeat::beat(docker, &run_labels);
                let _ = runtime.block_on(async { tokio::time::timeout(super::heartbeat::BEAT_TIMEOUT, beat).await });
                last_beat = Some(Instant::now());
            }
        }
        super::existing::heartbeat(&runtime, session);
        if connected.load(Ordering::SeqCst) > 0 {
            continue;
        }
        // Processes of the run that connected to a reaper before this one
        // (killed since) hold no connection here, but are registered.
        if live_clients(session) > 0 {
            ever.store(true, Ordering::SeqCst);
            *last_change.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
            continue;
        }
        if !ever.load(Ordering::SeqCst) {
            if started.elapsed() > FIRST_CONNECTION_TIMEOUT {
                break;
            }
            continue;
        }
        let idle = last_change.lock().unwrap_or_else(|e| e.into_inner()).elapsed();
        let runner_done = runner.is_none_or(|r| !r.is_alive());
        if !(runner_done || idle >= grace) {
            continue;
        }
        // Stop taking connections before removing: the socket's file goes,
        // so a process that arrives from now on starts a reaper of its own,
        // which waits for this one's lock. One that connected just before
        // must not lose its containers: accepted meanwhile, it is counted and
        // the run goes on ([`Gate::finish_if_idle`]).
        let _ = std::fs::remove_file(&socket);
        std::thread::sleep(Duration::from_millis(20));
        if gate.finish_if_idle(&connected) {
            break;
        }
        if let Ok(again) = Listener::bind(&socket) {
            serve(again);
        }
    }
    // What the keeper holds on servers that outlive the run (reused ones)
    // goes back before the run's end: no process of the run is left.
    finish_keeping();
    // Parts nobody waited for: of processes killed before they reported
    // theirs, or left by a reaper killed before it folded them.
    let _ = folds.fold();
    // What the run made on existing servers, engine or not.
    runtime.block_on(super::existing::remove_run(session));
    super::local::remove_session(session);
    // A run on the local engine that never connected to Docker has nothing
    // there, and does not wait for an engine that is away.
    let docker = match docker.take() {
        Some(docker) => Some(docker),
        None if super::local::may_have_used_docker(session) => Some(reach_engine(&runtime)?),
        None => None,
    };
    if let Some(docker) = &docker {
        // An engine that drops out now is asked again, for ENGINE_RETRY: what
        // the run made must not outlive it because the engine was away a moment.
        let _ = ask_again(ENGINE_RETRY, Duration::from_secs(1), || runtime.block_on(remove_session(docker, session)));
        // The run's containers are gone, so its cache volumes are free to go too.
        if let Ok(config) = crate::config::current() {
            runtime.block_on(crate::cache::evict_at_run_end(docker, &config.caches));
        }
    }
    let _ = std::fs::remove_dir_all(run_dir(session));
    touch_claims(session);
    // The lock file stays: a reaper that starts after this one takes the same
    // file, so there is never a second lock for one session.
    drop(lock);
    if let Some(docker) = &docker {
        keep_reused(&runtime, docker);
    }
    Ok(())
}

/// An engine that was away when the reaper started is asked again, at most
/// once every `every` (the heartbeat interval): once it answers, the run
/// beats and what dead runs left is swept, as at a start with the engine
/// there. Until then other machines sharing the engine would take the run
/// for idle.
fn reconnect(
    runtime: &tokio::runtime::Runtime,
    session: &str,
    last_try: &mut Instant,
    every: Duration,
) -> Option<Docker> {
    if last_try.elapsed() < every {
        return None;
    }
    *last_try = Instant::now();
    let docker = runtime.block_on(Docker::connect()).ok()?;
    drop(runtime.block_on(sweep_orphans(&docker, session)));
    Some(docker)
}

/// How long a reaper whose run is over keeps asking an engine that does not
/// answer before it gives up (the next run's sweep removes what is left).
const ENGINE_RETRY: Duration = Duration::from_secs(120);

/// Connects to the engine, asking again every second for [`ENGINE_RETRY`].
fn reach_engine(runtime: &tokio::runtime::Runtime) -> Result<Docker, String> {
    ask_again(ENGINE_RETRY, Duration::from_secs(1), || runtime.block_on(Docker::connect())).map_err(|e| e.to_string())
}

/// Calls `ask` until it succeeds, once every `every`, for at most `within`:
/// then gives up with its last error.
fn ask_again<T, E>(within: Duration, every: Duration, mut ask: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    let deadline = Instant::now() + within;
    loop {
        match ask() {
            Ok(done) => return Ok(done),
            Err(e) if Instant::now() + every > deadline => return Err(e),
            Err(_) => std::thread::sleep(every),
        }
    }
}

/// The reaper's side of the run's report: which processes it serves have
/// still to hand over their part, and the folding of the parts.
struct Folds {
    session: String,
    /// Processes connected (by pid, as they said when they attached) that
    /// have not handed over their part of the report.
    unreported: Mutex<Vec<u32>>,
    /// Parts were handed over that no fold has taken yet.
    dirty: AtomicBool,
    /// One fold at a time.
    folding: Mutex<()>,
    /// What a fold does: the report's `parts::fold` (given by the caller:
    /// the report sits above the run).
    fold: FoldFn,
}

pub(crate) type FoldFn = fn(&str) -> Vec<(std::path::PathBuf, std::io::Error)>;

/// What the reaper does with a `pool <what>` line a process sends on its
/// held connection: the keeper of the run's Postgres pools (in the rooms
/// layer, handed in by the process-start hook).
pub(crate) type KeepFn = fn(&str);

/// What the reaper does once no process it serves is left, before the
/// run's containers go: the keeper gives back what it holds on servers that
/// outlive the run (in the rooms layer, handed in like [`KeepFn`]).
pub(crate) type FinishFn = fn();

impl Folds {
    fn with(session: &str, fold: FoldFn) -> Folds {
        Folds {
            session: session.to_string(),
            unreported: Mutex::new(Vec::new()),
            dirty: AtomicBool::new(false),
            folding: Mutex::new(()),
            fold,
        }
    }

    fn attached(&self, pid: u32) {
        self.unreported.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
    }

    /// Takes `pid` off the processes still to report; whether none is left.
    fn done(&self, pid: u32) -> bool {
        let mut unreported = self.unreported.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = unreported.iter().position(|p| *p == pid) {
            unreported.swap_remove(i);
        }
        unreported.is_empty()
    }

    /// A process handed over its part: folds now if it was the last one
    /// still to report (and answers after), else leaves it for later.
    /// Returns the lines to send back, ending in `ok`.
    fn reported(&self, pid: u32) -> String {
        self.dirty.store(true, Ordering::SeqCst);
        let mut answer = String::new();
        if self.done(pid) {
            for (path, e) in self.fold() {
                answer.push_str(&unwritten_line(&path, &e));
            }
        }
        answer.push_str("ok\n");
        answer
    }

    /// A connection of a process ended: if it never reported (killed), the
    /// parts of the others may have been waiting for it.
    fn hung_up(&self, pid: u32) {
        if self.done(pid) && self.dirty.load(Ordering::SeqCst) {
            let _ = self.fold();
        }
    }

    fn fold(&self) -> Vec<(std::path::PathBuf, std::io::Error)> {
        let _one = self.folding.lock().unwrap_or_else(|e| e.into_inner());
        self.dirty.store(false, Ordering::SeqCst);
        (self.fold)(&self.session)
    }
}

/// Whether the reaper has decided to finish. A connection its listeners
/// accept is counted before that decision, and keeps the run going, or
/// turned away after it (its process then starts a reaper of its own, which
/// waits for this one's lock): never taken in and then left to lose its
/// containers. Over TCP a client that read the socket's file before it went
/// can still connect to the old listener: it is turned away too.
#[derive(Clone, Default)]
struct Gate(Arc<Mutex<bool>>);

impl Gate {
    /// Counts a connection just accepted, unless the reaper is finishing:
    /// whether it was counted.
    fn admit(&self, connected: &AtomicUsize) -> bool {
        let finished = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if *finished {
            return false;
        }
        connected.fetch_add(1, Ordering::SeqCst);
        true
    }

    /// Finishes if no connection is counted, in one step with [`Gate::admit`]:
    /// whether it did.
    fn finish_if_idle(&self, connected: &AtomicUsize) -> bool {
        let mut finished = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if connected.load(Ordering::SeqCst) == 0 {
            *finished = true;
        }
        *finished
    }
}

/// Accepts test processes and counts them until each connection ends (those
/// `gate` admits). A process says `attach <pid>` and holds its connection
/// for its life; at its exit it opens another to say `report <pid>` (its
/// part of the report is written) and waits for the answer.
fn serve_connections(
    listener: Listener,
    gate: Gate,
    connected: Arc<AtomicUsize>,
    ever: Arc<AtomicBool>,
    last_change: Arc<Mutex<Instant>>,
    folds: Arc<Folds>,
    keep: KeepFn,
) {
    std::thread::spawn(move || {
        loop {
            let Ok(incoming) = listener.accept() else { continue };
            // Counted at once, before the handshake: the reaper must not
            // judge the run over while a process is connecting. Turned away
            // when it is finishing: the client starts a reaper of its own,
            // which waits for this one's lock.
            if !gate.admit(&connected) {
                drop(incoming);
                continue;
            }
            let (connected, ever, last_change, folds) =
                (connected.clone(), ever.clone(), last_change.clone(), folds.clone());
            std::thread::spawn(move || {
                let Ok(stream) = incoming.trusted() else {
                    connected.fetch_sub(1, Ordering::SeqCst);
                    return;
                };
                ever.store(true, Ordering::SeqCst);
                let mut reader = BufReader::new(&stream);
                let mut first = String::new();
                let _ = reader.read_line(&mut first);
                let said = first.trim().split_once(' ').map(|(what, pid)| (what, pid.parse::<u32>().ok()));
                match said {
                    Some(("report", Some(pid))) => {
                        let answer = folds.reported(pid);
                        let _ = (&stream).write_all(answer.as_bytes());
                    }
                    Some(("attach", Some(pid))) => {
                        folds.attached(pid);
                        // Held until the test process ends, however it ends;
                        // what it says meanwhile is work for the pools' keeper.
                        let mut line = String::new();
                        while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
                            if let Some(what) = line.trim_end().strip_prefix("pool ") {
                                keep(what);
                            }
                            line.clear();
                        }
                        folds.hung_up(pid);
                    }
                    _ => {
                        let mut sink = [0u8; 64];
                        while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
                    }
                }
                *last_change.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                connected.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::{parse_unwritten, Folds};
        use std::sync::atomic::{AtomicUsize, Ordering};

        // One counter per test: tests run at once.
        static FOLDED: AtomicUsize = AtomicUsize::new(0);
        static FOLDED_AFTER_A_DEATH: AtomicUsize = AtomicUsize::new(0);

        fn count(_: &str) -> Vec<(std::path::PathBuf, std::io::Error)> {
            FOLDED.fetch_add(1, Ordering::SeqCst);
            Vec::new()
        }

        fn no_fold(_: &str) -> Vec<(std::path::PathBuf, std::io::Error)> {
            Vec::new()
        }

        /// Waits up to 5 s for `connected` to read `n`.
        fn until_connected(connected: &AtomicUsize, n: usize) -> usize {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while connected.load(Ordering::SeqCst) != n && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            connected.load(Ordering::SeqCst)
        }

        /// The engine away when the run ends: the reaper asks again once
        /// every interval, and gives up once the next try would fall past
        /// its time (two minutes, [`super::super::ENGINE_RETRY`], as
        /// docs/reliability.md says); an engine that answers in time is
        /// taken at once.
        #[test]
        fn ask_an_engine_that_is_away_again_until_its_time_is_up_then_give_up() {
            use super::super::{ask_again, ENGINE_RETRY};
            use std::time::{Duration, Instant};
            assert_eq!(ENGINE_RETRY, Duration::from_secs(120));
            let (within, every) = (Duration::from_millis(300), Duration::from_millis(20));

            let mut asked = 0;
            let began = Instant::now();
            let away: Result<(), &str> = ask_again(within, every, || {
                asked += 1;
                Err("engine away")
            });
            let took = began.elapsed();
            assert_eq!(away, Err("engine away"));
            assert!(took >= within - every && took < within + Duration::from_secs(2), "gave up after {took:?}");
            assert!((2..=16).contains(&asked), "asked {asked} times in {took:?}, every {every:?}");

            let mut asked = 0;
            let back = ask_again(within, every, || {
                asked += 1;
                if asked < 3 {
                    Err("engine away")
                } else {
                    Ok(asked)
                }
            });
            assert_eq!(back, Ok(3));
        }

        /// A process that connected just before the reaper's socket file
        /// went, and is accepted after, keeps the run going; once the reaper
        /// has finished, a connection (a TCP client that read the file
        /// before it went) is turned away, not taken in uncounted.
        #[cfg(unix)]
        #[test]
        fn count_a_connection_taken_before_it_finishes_and_turn_away_one_after() {
            use super::super::{serve_connections, Gate};
            use crate::util::os::socket::Listener;
            use std::io::{Read, Write};
            use std::sync::atomic::AtomicBool;
            use std::sync::{Arc, Mutex};
            let dir = std::env::temp_dir().join(format!("cleanroom-gate-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let (gate, connected) = (Gate::default(), Arc::new(AtomicUsize::new(0)));
            let serve = |path: &std::path::Path| {
                serve_connections(
                    Listener::bind(path).unwrap(),
                    gate.clone(),
                    connected.clone(),
                    Arc::new(AtomicBool::new(false)),
                    Arc::new(Mutex::new(std::time::Instant::now())),
                    Arc::new(Folds::with("gate", no_fold)),
                    |_| {},
                )
            };
            let socket = dir.join("reaper.sock");
            serve(&socket);
            let mut early = std::os::unix::net::UnixStream::connect(&socket).unwrap();
            early.write_all(b"attach 1\n").unwrap();
            std::fs::remove_file(&socket).unwrap();
            assert_eq!(until_connected(&connected, 1), 1, "a connection accepted after the file went is counted");
            assert!(!gate.finish_if_idle(&connected), "it keeps the run going");
            drop(early);
            assert_eq!(until_connected(&connected, 0), 0);
            assert!(gate.finish_if_idle(&connected), "with no connection left the reaper finishes");
            // Another listener of the same reaper (a rebound socket, or the
            // TCP listener a late client still reaches).
            let again = dir.join("again.sock");
            serve(&again);
            let mut late = std::os::unix::net::UnixStream::connect(&again).unwrap();
            let _ = late.write_all(b"attach 2\n");
            late.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
            let mut byte = [0u8; 1];
            // Closed at once: an end of file, or a reset (what it wrote was unread).
            let read = late.read(&mut byte);
            assert!(
                matches!(&read, Ok(0)) || matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
                "turned away: the connection is closed at once, not held: {read:?}"
            );
            assert_eq!(connected.load(Ordering::SeqCst), 0, "and never counted");
            let _ = std::fs::remove_dir_all(&dir);
        }

        fn count_after_a_death(_: &str) -> Vec<(std::path::PathBuf, std::io::Error)> {
            FOLDED_AFTER_A_DEATH.fetch_add(1, Ordering::SeqCst);
            Vec::new()
        }

        fn unwritable(_: &str) -> Vec<(std::path::PathBuf, std::io::Error)> {
            vec![("/nowhere/r.json".into(), std::io::Error::other("no such directory"))]
        }

        #[test]
        fn fold_the_report_once_the_last_process_still_to_report_has_and_only_then() {
            let folds = Folds::with("s", count);
            let before = FOLDED.load(Ordering::SeqCst);
            folds.attached(1);
            folds.attached(2);
            folds.attached(3);
            assert_eq!(folds.reported(1), "ok\n");
            folds.hung_up(1);
            assert_eq!(folds.reported(2), "ok\n");
            assert_eq!(FOLDED.load(Ordering::SeqCst), before, "3 is still to report");
            assert_eq!(folds.reported(3), "ok\n");
            assert_eq!(FOLDED.load(Ordering::SeqCst), before + 1, "3 was the last: its answer waited for the fold");
            folds.hung_up(2);
            folds.hung_up(3);
            assert_eq!(FOLDED.load(Ordering::SeqCst), before + 1, "nothing was left to fold");
        }

        #[test]
        fn fold_what_others_handed_over_when_the_last_process_dies_without_reporting() {
            let folds = Folds::with("s", count_after_a_death);
            let before = FOLDED_AFTER_A_DEATH.load(Ordering::SeqCst);
            folds.attached(1);
            folds.attached(2);
            folds.reported(1);
            folds.hung_up(1);
            assert_eq!(FOLDED_AFTER_A_DEATH.load(Ordering::SeqCst), before);
            folds.hung_up(2);
            assert_eq!(
                FOLDED_AFTER_A_DEATH.load(Ordering::SeqCst),
                before + 1,
                "2 was killed: 1's part is folded anyway"
            );
        }

        #[test]
        fn tell_the_last_process_what_could_not_be_written() {
            let folds = Folds::with("s", unwritable);
            folds.attached(7);
            let answer = folds.reported(7);
            let (first, rest) = answer.split_once('\n').unwrap();
            assert_eq!(
                parse_unwritten(first),
                Some(("/nowhere/r.json".into(), "no such directory".to_string())),
                "{answer}"
            );
            assert_eq!(rest, "ok\n", "{answer}");
        }
    }
}
