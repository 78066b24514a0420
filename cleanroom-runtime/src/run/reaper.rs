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

use crate::util::paths::{create_runtime_dir, runtime_dir, uid};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::docker::{is_mine, owner_labels, Docker, MANAGED_LABEL, PROCESS_LABEL, REUSE_LABEL, SESSION_LABEL};
use crate::run::session::{ProcessId, Session};

/// The environment variable that turns a process into the reaper of a session.
pub(crate) const REAPER_ENV: &str = "CLEANROOM_REAPER";
/// The runner process the reaper watches, `pid:start`.
const RUNNER_ENV: &str = "CLEANROOM_REAPER_RUNNER";

/// A reaper nobody ever connects to gives up after this.
const FIRST_CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Lock files of runs that ended more than this long ago are removed.
const STALE_LOCK_AGE: Duration = Duration::from_secs(24 * 3600);

fn socket_path(session: &str) -> PathBuf {
    runtime_dir().join(format!("{session}.sock"))
}

fn lock_path(session: &str) -> PathBuf {
    runtime_dir().join(format!("{session}.lock"))
}

/// The connection this process holds to its session's reaper.
static CONNECTION: Mutex<Option<UnixStream>> = Mutex::new(None);

/// Connects this process to its session's reaper, starting the reaper if
/// there is none. Holds the connection until the process ends.
pub(crate) fn attach(session: &Session) -> Result<(), String> {
    let mut held = CONNECTION.lock().unwrap_or_else(|e| e.into_inner());
    if held.is_some() {
        return Ok(());
    }
    // Checked before anything in it is trusted: a directory another user
    // made could hold a socket of theirs posing as this run's reaper.
    create_runtime_dir().map_err(|e| e.to_string())?;
    let path = socket_path(&session.id);
    let greet = |mut stream: UnixStream| -> Result<UnixStream, String> {
        check_peer(&stream, &path)?;
        stream.write_all(format!("attach {}\n", std::process::id()).as_bytes()).map_err(|e| e.to_string())?;
        Ok(stream)
    };
    if let Ok(stream) = UnixStream::connect(&path) {
        *held = Some(greet(stream)?);
        register_client(&session.id);
        return Ok(());
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this test binary to start the reaper: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.env(REAPER_ENV, &session.id)
        .env_remove("CLEANROOM_SESSION")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    if let Some(runner) = session.runner {
        cmd.env(RUNNER_ENV, runner.encode());
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot start the reaper: {e}"))?;
    // A new reaper may first wait for the run's previous one to finish
    // removing (its grace period ran out while the runner still ran).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(stream) = UnixStream::connect(&path) {
            *held = Some(greet(stream)?);
            register_client(&session.id);
            // Reaped by whoever outlives it; a reaper that lost the race for
            // the lock exits at once and is collected here.
            std::thread::spawn(move || {
                let _ = child.wait();
            });
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(format!("the reaper did not open {} within 30 s", path.display()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Where the processes of a run register themselves (`pid:start`), so that
/// a reaper that replaces a killed one knows every process still running,
/// not only those that connect to it.
fn clients_dir(session: &str) -> PathBuf {
    run_dir(session).join("clients")
}

/// Registers this process as a client of `session`'s run.
fn register_client(session: &str) {
    let Some(me) = ProcessId::of(std::process::id()) else { return };
    let dir = clients_dir(session);
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join(me.encode()), b"");
    }
}

/// Takes this process's registration back, at its exit.
pub(crate) fn unregister_client(session: &str) {
    if let Some(me) = ProcessId::of(std::process::id()) {
        let _ = std::fs::remove_file(clients_dir(session).join(me.encode()));
    }
}

/// How many registered clients of `session` still run; the registrations
/// of those that are gone (killed without unregistering) are removed.
fn live_clients(session: &str) -> usize {
    let mut live = 0;
    for entry in std::fs::read_dir(clients_dir(session)).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        match ProcessId::decode(&name) {
            Some(p) if p.is_alive() => live += 1,
            _ => {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    live
}

/// The process at the other end of the reaper's socket must be this user's:
/// a reaper is trusted with the run's containers.
fn check_peer(stream: &UnixStream, path: &std::path::Path) -> Result<(), String> {
    let peer = rustix::net::sockopt::socket_peercred(stream)
        .map_err(|e| format!("cannot tell who serves {}: {e}", path.display()))?;
    let (theirs, mine) = (peer.uid.as_raw(), uid());
    if theirs != mine {
        return Err(format!(
            "{} is served by a process of uid {theirs}, not of yours (uid {mine}); it is not your reaper",
            path.display()
        ));
    }
    Ok(())
}

fn ready_dir() -> PathBuf {
    runtime_dir().join("ready")
}

/// Records that the container `id` passed its health checks.
pub(crate) fn mark_ready(id: &str) {
    if std::fs::create_dir_all(ready_dir()).is_ok() {
        let _ = std::fs::write(ready_dir().join(id), b"");
    }
}

/// Whether a process of this user saw the container `id` pass its checks.
pub(crate) fn seen_ready(id: &str) -> bool {
    ready_dir().join(id).exists()
}

/// Removes the ready marks of containers that no longer exist.
/// Removes the ready marks and run pools (`rooms::run_pool`) of containers
/// that no longer exist.
async fn remove_stale_ready_marks(docker: &Docker) {
    let Ok(live) = docker.containers_with_labels(&format!("{MANAGED_LABEL}=true")).await else { return };
    let gone = |id: &str| !live.iter().any(|(live_id, _, _)| live_id == id);
    for entry in std::fs::read_dir(ready_dir()).into_iter().flatten().flatten() {
        if gone(&entry.file_name().to_string_lossy()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    for entry in std::fs::read_dir(crate::rooms::run_pool::root()).into_iter().flatten().flatten() {
        if gone(&entry.file_name().to_string_lossy()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn runs_dir() -> PathBuf {
    runtime_dir().join("runs")
}

/// Files the processes of one run share (its [`RunMarks`]); removed with
/// the run.
pub(crate) fn run_dir(session: &str) -> PathBuf {
    runs_dir().join(session)
}

/// Work one process of a run does for all of them: pulling an image under
/// `run.pull = always`, creating the run's network. Each piece of work has a
/// mark `runs/<session>/<hash of its key>`; the process that creates the
/// mark does the work and then writes the outcome into it, the others wait
/// for that outcome. The run's reaper removes the marks.
#[derive(Debug)]
pub(crate) struct RunMarks {
    dir: PathBuf,
}

/// What [`RunMarks::claim`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Turn {
    /// This process does the work, then calls [`RunMarks::finish`].
    Mine,
    /// Another process did it already, or is doing it.
    Theirs,
}

impl RunMarks {
    /// The marks of `session`.
    pub(crate) fn of(session: &str) -> RunMarks {
        RunMarks { dir: run_dir(session) }
    }

    #[cfg(test)]
    fn at(dir: PathBuf) -> RunMarks {
        RunMarks { dir }
    }

    fn mark(&self, key: &str) -> PathBuf {
        use std::hash::{Hash, Hasher};
        // Keys hold image references, with `/` and `:`; a hash is a safe
        // file name.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        self.dir.join(format!("{:016x}", h.finish()))
    }

    /// Claims the work `key` (`pull <image>`, `network <name>`): exactly one
    /// caller of a run gets `Mine` (the file system's create-if-absent
    /// decides, across processes too).
    pub(crate) fn claim(&self, key: &str) -> std::io::Result<Turn> {
        std::fs::create_dir_all(&self.dir)?;
        match File::options().write(true).create_new(true).open(self.mark(key)) {
            Ok(mut f) => {
                f.write_all(format!("busy {}\n", std::process::id()).as_bytes())?;
                Ok(Turn::Mine)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(Turn::Theirs),
            Err(e) => Err(e),
        }
    }

    /// Records the outcome of this process's work `key`.
    pub(crate) fn finish(&self, key: &str, outcome: &Result<(), impl std::fmt::Display>) {
        let text = match outcome {
            Ok(()) => "done\n".to_string(),
            Err(reason) => format!("failed {}\n", reason.to_string().replace('\n', " ")),
        };
        let _ = std::fs::write(self.mark(key), text);
    }

    /// The outcome of another process's work `key`, once there is one;
    /// `None` if that process is gone without one (this one does the work
    /// instead, after taking the mark over).
    pub(crate) async fn outcome(&self, key: &str) -> Option<Result<(), String>> {
        let mark = self.mark(key);
        loop {
            let text = std::fs::read_to_string(&mark).unwrap_or_default();
            if text.starts_with("done") {
                return Some(Ok(()));
            }
            if let Some(reason) = text.strip_prefix("failed ") {
                return Some(Err(reason.trim_end().to_string()));
            }
            let worker = text.strip_prefix("busy ").and_then(|p| p.trim().parse::<u32>().ok());
            // The mark is written right after it is created; an empty one
            // is being written now.
            if worker.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()) {
                let _ = std::fs::write(&mark, format!("busy {}\n", std::process::id()));
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[cfg(test)]
    fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes the shared files of runs that are over, and of runs without a
/// reaper that ended long ago.
fn remove_stale_run_dirs(me: &str) {
    let Ok(entries) = std::fs::read_dir(runs_dir()) else { return };
    for entry in entries.flatten() {
        let session = entry.file_name().to_string_lossy().into_owned();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > STALE_LOCK_AGE));
        let over = match session_alive(&session) {
            Some(alive) => !alive,
            None => old,
        };
        if session != me && over {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn reuse_dir() -> PathBuf {
    runtime_dir().join("reuse")
}

/// Records that `session` uses the reused container `container_name`: a
/// file `reuse/<container>/<session>` whose age is the time since the
/// session last used it. The keeper removes a reused container once no live
/// session claims it and the newest claim is older than the TTL.
pub(crate) fn claim_reused(container_name: &str, session: &str, ttl: Duration) {
    let dir = reuse_dir().join(container_name);
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join(session), format!("{}\n", ttl.as_secs_f64()));
    }
}

/// Refreshes the claims of `session` when it ends, so that the TTL counts
/// from the end of the last run that used a reused container.
fn touch_claims(session: &str) {
    let Ok(dirs) = std::fs::read_dir(reuse_dir()) else { return };
    for dir in dirs.flatten() {
        let claim = dir.path().join(session);
        if let Ok(ttl) = std::fs::read_to_string(&claim) {
            let _ = std::fs::write(&claim, ttl);
        }
    }
}

/// While reused containers exist, removes each one whose claims are all of
/// dead sessions and older than their TTL. One keeper per user: the first
/// reaper to finish with reused containers around stays on as the keeper.
fn keep_reused(runtime: &tokio::runtime::Runtime, docker: &Docker) {
    let Ok(lock) =
        File::options().read(true).write(true).create(true).truncate(false).open(runtime_dir().join("reuse.lock"))
    else {
        return;
    };
    if lock.try_lock().is_err() {
        return;
    }
    loop {
        let Ok(dirs) = std::fs::read_dir(reuse_dir()) else { return };
        let mut remaining = 0;
        for dir in dirs.flatten() {
            let container = dir.file_name().to_string_lossy().into_owned();
            let mut live = false;
            let mut expires: Option<std::time::SystemTime> = None;
            for claim in std::fs::read_dir(dir.path()).into_iter().flatten().flatten() {
                let session = claim.file_name().to_string_lossy().into_owned();
                if session_alive(&session) == Some(true) {
                    live = true;
                }
                let ttl = std::fs::read_to_string(claim.path())
                    .ok()
                    .and_then(|t| t.trim().parse::<f64>().ok())
                    .map(Duration::from_secs_f64)
                    .unwrap_or(crate::config::DEFAULT_REUSE_TTL);
                if let Ok(modified) = claim.metadata().and_then(|m| m.modified()) {
                    let at = modified + ttl;
                    expires = Some(expires.map_or(at, |e| e.max(at)));
                }
            }
            let expired = expires.is_none_or(|at| std::time::SystemTime::now() >= at);
            if live || !expired {
                remaining += 1;
                continue;
            }
            runtime.block_on(async {
                if let Ok(Some(c)) = docker.inspect_named(&container).await {
                    let _ = docker.remove(&c.id).await;
                }
            });
            let _ = std::fs::remove_dir_all(dir.path());
        }
        if remaining == 0 {
            // The reused services' network, and the volumes cleanroom made
            // for them, go with the last of them.
            runtime.block_on(remove_reused_network(docker));
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Whether the session's reaper is alive: somebody holds its lock.
fn session_alive(session: &str) -> Option<bool> {
    let file = File::options().read(true).write(true).open(lock_path(session)).ok()?;
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            Some(false)
        }
        Err(_) => Some(true),
    }
}

/// `run.reaper_grace`; a configuration the test processes reject cannot
/// stop the reaper from cleaning up, so it falls back to the default.
fn grace() -> Duration {
    crate::config::current().map_or(crate::config::DEFAULT_REAPER_GRACE, |c| c.reaper_grace)
}

/// The reaper process: serves one session, then exits. Called before `main`.
pub(crate) fn run(session: String) -> ! {
    // The id names files to remove: one that could leave the runtime
    // directory is never served.
    if !crate::run::session::valid(&session) {
        std::process::exit(2);
    }
    let code = match serve(&session) {
        Ok(()) => 0,
        Err(_) => 1,
    };
    std::process::exit(code)
}

fn serve(session: &str) -> Result<(), String> {
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
        if UnixStream::connect(socket_path(session)).is_ok() {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            std::thread::sleep(Duration::from_millis(20));
            if lock.try_lock().is_ok() {
                break;
            }
            if Instant::now() > deadline || UnixStream::connect(socket_path(session)).is_ok() {
                return Ok(());
            }
        }
    }
    let socket = socket_path(session);
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).map_err(|e| e.to_string())?;
    let runner = std::env::var(RUNNER_ENV).ok().and_then(|r| ProcessId::decode(&r));

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    // An engine that does not answer now may answer by the time the run is
    // over: the reaper serves its clients either way, and asks again then.
    let mut docker = runtime.block_on(Docker::connect()).ok();
    if let Some(docker) = &docker {
        let _ = runtime.block_on(sweep_orphans(docker, session));
    }

    let connected = Arc::new(AtomicUsize::new(0));
    let ever = Arc::new(AtomicBool::new(false));
    let last_change = Arc::new(Mutex::new(Instant::now()));
    serve_connections(listener, connected.clone(), ever.clone(), last_change.clone());
    let started = Instant::now();
    let grace = grace();
    loop {
        std::thread::sleep(Duration::from_millis(50));
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
        // Stop taking connections before removing: a process that arrives
        // from now on starts a reaper of its own, which waits for this one's
        // lock. One that connected just before must not lose its containers.
        let _ = std::fs::remove_file(&socket);
        std::thread::sleep(Duration::from_millis(20));
        if connected.load(Ordering::SeqCst) == 0 {
            break;
        }
        if let Ok(again) = UnixListener::bind(&socket) {
            serve_connections(again, connected.clone(), ever.clone(), last_change.clone());
        }
    }
    let docker = match docker.take() {
        Some(docker) => docker,
        None => reach_engine(&runtime)?,
    };
    runtime.block_on(remove_session(&docker, session));
    // The run's containers are gone, so its cache volumes are free to go too.
    if let Ok(config) = crate::config::current() {
        runtime.block_on(crate::cache::evict(&docker, config.cache_ttl, config.cache_size));
    }
    let _ = std::fs::remove_dir_all(run_dir(session));
    touch_claims(session);
    // The lock file stays: a reaper that starts after this one takes the same
    // file, so there is never a second lock for one session.
    drop(lock);
    keep_reused(&runtime, &docker);
    Ok(())
}

/// How long a reaper whose run is over keeps asking an engine that does not
/// answer before it gives up (the next run's sweep removes what is left).
const ENGINE_RETRY: Duration = Duration::from_secs(120);

/// Connects to the engine, asking again every second for [`ENGINE_RETRY`].
fn reach_engine(runtime: &tokio::runtime::Runtime) -> Result<Docker, String> {
    let deadline = Instant::now() + ENGINE_RETRY;
    loop {
        match runtime.block_on(Docker::connect()) {
            Ok(docker) => return Ok(docker),
            Err(e) if Instant::now() > deadline => return Err(e.to_string()),
            Err(_) => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}

/// Accepts test processes and counts them until each connection ends.
fn serve_connections(
    listener: UnixListener,
    connected: Arc<AtomicUsize>,
    ever: Arc<AtomicBool>,
    last_change: Arc<Mutex<Instant>>,
) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            connected.fetch_add(1, Ordering::SeqCst);
            ever.store(true, Ordering::SeqCst);
            let (connected, last_change) = (connected.clone(), last_change.clone());
            std::thread::spawn(move || {
                // Held until the test process ends, however it ends.
                let mut sink = [0u8; 64];
                while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
                *last_change.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                connected.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
}

/// Removes every container, network and volume of `session`.
pub(crate) async fn remove_session(docker: &Docker, session: &str) {
    let owner = owner_labels();
    let mut labels = vec![(MANAGED_LABEL, "true"), (SESSION_LABEL, session)];
    labels.extend(owner.iter().map(|(k, v)| (*k, v.as_str())));
    if let Ok(ids) = docker.containers_labelled(&labels).await {
        futures_util::future::join_all(ids.iter().map(|id| docker.remove(id))).await;
    }
    let _ = docker.remove_networks_and_volumes(&labels).await;
}

/// Whether a container of `session` provably belongs to no live run.
///
/// Only what this user made on this machine from this runtime directory is
/// judged ([`is_mine`]): another user's, another machine's (an engine shared
/// by several) or another runtime directory's run cannot be proven dead from
/// here, so it is never swept from here. Of ours, a container a process
/// without a reaper made is dead when that process is; any other is dead when
/// its session's lock exists here and nobody holds it — never because no
/// lock is here. Reused containers belong to no run: the keeper removes them
/// after their TTL.
pub(crate) fn is_orphan(labels: &std::collections::HashMap<String, String>) -> bool {
    let Some(session) = labels.get(SESSION_LABEL) else { return false };
    if labels.get(MANAGED_LABEL).is_none_or(|v| v != "true") || labels.get(REUSE_LABEL).is_some_and(|v| v == "true") {
        return false;
    }
    if !is_mine(labels) {
        return false;
    }
    if let Some(process) = labels.get(PROCESS_LABEL) {
        return ProcessId::decode(process).is_some_and(|p| !p.is_alive());
    }
    session_alive(session) == Some(false)
}

/// Whether `session`'s reaper runs (`Some(true)`), ran and is gone
/// (`Some(false)`), or left no lock file here (`None`).
pub(crate) fn session_state(session: &str) -> Option<bool> {
    session_alive(session)
}

/// Removes what dead runs left behind (see [`is_orphan`]), never `me`'s;
/// returns the sessions removed.
pub(crate) async fn sweep_orphans(docker: &Docker, me: &str) -> Vec<String> {
    let dead = dead_sessions(docker, me).await;
    for session in &dead {
        remove_session(docker, session).await;
        let _ = std::fs::remove_file(socket_path(session));
    }
    remove_stale_locks(me);
    remove_stale_run_dirs(me);
    remove_stale_ready_marks(docker).await;
    dead
}

/// The sessions, other than `me`, whose run is over but whose containers or
/// networks are still here.
pub(crate) async fn dead_sessions(docker: &Docker, me: &str) -> Vec<String> {
    let Ok(all) = docker.containers_with_labels(&format!("{MANAGED_LABEL}=true")).await else { return Vec::new() };
    let mut dead: Vec<String> = Vec::new();
    for (_, labels, _) in &all {
        let Some(session) = labels.get(SESSION_LABEL) else { continue };
        if session != me && !dead.contains(session) && is_orphan(labels) {
            dead.push(session.clone());
        }
    }
    // A run may leave a network without containers (its reaper was killed
    // after removing them).
    if let Ok(networks) = docker.networks_with_labels(&format!("{MANAGED_LABEL}=true")).await {
        for (_, labels) in networks {
            let Some(session) = labels.get(SESSION_LABEL) else { continue };
            let reused = labels.get(REUSE_LABEL).is_some_and(|v| v == "true");
            let dead_here = is_mine(&labels) && session_alive(session) == Some(false);
            if session != me && !reused && !dead.contains(session) && dead_here {
                dead.push(session.clone());
            }
        }
    }
    dead
}

/// This user's reused containers (by name) that no live run uses, whatever
/// their TTL: what `cleanroom prune --reused` removes.
pub(crate) async fn idle_reused(docker: &Docker) -> Vec<(String, String)> {
    let Ok(all) = docker.list(&format!("{REUSE_LABEL}=true")).await else { return Vec::new() };
    all.into_iter()
        .filter(|c| is_mine(&c.labels) && c.labels.get(MANAGED_LABEL).is_some_and(|v| v == "true"))
        .filter(|c| {
            let claims = std::fs::read_dir(reuse_dir().join(&c.name)).into_iter().flatten().flatten();
            !claims.into_iter().any(|claim| session_alive(&claim.file_name().to_string_lossy()) == Some(true))
        })
        .map(|c| (c.id, c.name))
        .collect()
}

/// Removes reused containers (ids and names from [`idle_reused`]), their
/// claims, and the reused services' network once none is left.
pub(crate) async fn remove_reused(docker: &Docker, containers: &[(String, String)]) {
    for (id, name) in containers {
        let _ = docker.remove(id).await;
        let _ = std::fs::remove_dir_all(reuse_dir().join(name));
    }
    let still = docker.list(&format!("{REUSE_LABEL}=true")).await.map(|l| l.len()).unwrap_or(1);
    if still == 0 {
        // As the keeper does: the network, and the volumes cleanroom made
        // for reused services, go with the last of them.
        remove_reused_network(docker).await;
    }
}

/// Removes the network and volumes of this owner's reused services.
async fn remove_reused_network(docker: &Docker) {
    let reuse_session = format!("reuse-{}", uid());
    let owner = owner_labels();
    let mut labels = vec![(MANAGED_LABEL, "true"), (SESSION_LABEL, reuse_session.as_str())];
    labels.extend(owner.iter().map(|(k, v)| (*k, v.as_str())));
    let _ = docker.remove_networks_and_volumes(&labels).await;
}

/// Removes the lock files of runs that ended long ago (nobody holds them).
fn remove_stale_locks(me: &str) {
    let Ok(entries) = std::fs::read_dir(runtime_dir()) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(session) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".lock")) else {
            continue;
        };
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > STALE_LOCK_AGE));
        if session != me && session != "reuse" && old && session_alive(session) == Some(false) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks(tag: &str) -> RunMarks {
        let dir = std::env::temp_dir().join(format!("cleanroom-pulls-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        RunMarks::at(dir)
    }

    fn block_on<T>(fut: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(fut)
    }

    mod should {
        use super::*;

        #[test]
        fn give_each_piece_of_work_to_exactly_one_claimant() {
            let m = marks("one");
            assert_eq!(m.claim("postgres:17-alpine").unwrap(), Turn::Mine);
            assert_eq!(m.claim("postgres:17-alpine").unwrap(), Turn::Theirs);
            assert_eq!(m.claim("redis:7-alpine").unwrap(), Turn::Mine, "each key has a mark of its own");
            m.remove();
        }

        #[test]
        fn give_the_work_to_exactly_one_of_many_threads() {
            let m = std::sync::Arc::new(marks("threads"));
            let turns: Vec<Turn> = (0..8)
                .map(|_| {
                    let m = m.clone();
                    std::thread::spawn(move || m.claim("busybox:1.35").unwrap())
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|t| t.join().unwrap())
                .collect();
            assert_eq!(turns.iter().filter(|t| **t == Turn::Mine).count(), 1, "{turns:?}");
            m.remove();
        }

        #[test]
        fn hand_the_workers_outcome_to_the_others() {
            let m = marks("outcome");
            m.claim("a:1").unwrap();
            m.finish("a:1", &Ok::<(), String>(()));
            assert_eq!(block_on(m.outcome("a:1")), Some(Ok(())));
            m.claim("b:1").unwrap();
            m.finish("b:1", &Err::<(), String>("no such host\nat all".into()));
            assert_eq!(block_on(m.outcome("b:1")), Some(Err("no such host at all".into())));
            m.remove();
        }

        #[test]
        fn take_over_the_work_of_a_process_that_died() {
            let m = marks("dead");
            m.claim("c:1").unwrap();
            // A pid that cannot be running: above the kernel's maximum.
            std::fs::write(m.mark("c:1"), "busy 4294967295\n").unwrap();
            assert_eq!(block_on(m.outcome("c:1")), None);
            let text = std::fs::read_to_string(m.mark("c:1")).unwrap();
            assert_eq!(text, format!("busy {}\n", std::process::id()), "the mark is taken over");
            m.remove();
        }

        fn labels(pairs: &[(&str, String)]) -> std::collections::HashMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
        }

        fn ours(session: &str) -> Vec<(&'static str, String)> {
            let mut l = vec![(MANAGED_LABEL, "true".to_string()), (SESSION_LABEL, session.to_string())];
            l.extend(owner_labels());
            l
        }

        #[test]
        fn never_judge_a_run_of_another_owner() {
            // Its lock file here is stale and nobody holds it; still not ours.
            let session = format!("t-foreign-{}", std::process::id());
            create_runtime_dir().unwrap();
            std::fs::write(lock_path(&session), b"").unwrap();
            for (key, value) in [
                (crate::docker::OWNER_LABEL, "4242".to_string()),
                (crate::docker::HOST_LABEL, "0badc0de".to_string()),
                (crate::docker::RUNTIME_LABEL, "0badc0de".to_string()),
            ] {
                let mut l = labels(&ours(&session));
                l.insert(key.to_string(), value);
                assert!(!is_orphan(&l), "{key} differs: not ours to judge");
            }
            assert!(is_orphan(&labels(&ours(&session))), "ours, and its lock is free: dead");
            let _ = std::fs::remove_file(lock_path(&session));
        }

        #[test]
        fn never_take_a_missing_lock_for_a_dead_run() {
            let session = format!("t-nolock-{}", std::process::id());
            assert!(!is_orphan(&labels(&ours(&session))));
        }

        #[test]
        fn judge_a_reaperless_container_by_its_process() {
            let session = format!("t-proc-{}", std::process::id());
            let mut l = labels(&ours(&session));
            let me = crate::run::session::ProcessId::of(std::process::id()).unwrap();
            l.insert(PROCESS_LABEL.to_string(), me.encode());
            assert!(!is_orphan(&l), "its process runs");
            l.insert(PROCESS_LABEL.to_string(), format!("{}:1", me.pid));
            assert!(is_orphan(&l), "a process of that pid that started at another time is not it");
        }
    }
}
