//! Breaking things on purpose: runs that share a session id, a stale lock in
//! another runtime directory, a runtime directory someone else made, a
//! session id that could leave the runtime directory, processes without a
//! reaper. Each test asserts what the user sees, which tests fail (only those
//! that must) and what is left (nothing). `docs/reliability.md` lists the
//! guarantee each one proves.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use cleanroom_tests::{
    assert_nothing_left, child_command, docker, fresh_session, kill, reaper_pid, run_child, session_containers,
};

mod child {
    pub(super) mod suite {
        cleanroom_tests::postgres_and_redis_tests!("run by the fault tests": s01 s02);
    }

    pub(super) mod redis_rooms {
        #[cleanroom::test(redis(shared))]
        #[ignore = "run by the fault tests"]
        async fn flushes_the_shared_database(redis: cleanroom::Redis) {
            assert_eq!(redis.db(), 0);
            let mut c = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
            let () = redis::cmd("FLUSHDB").query_async(&mut c).await.unwrap();
        }

        #[cleanroom::test(redis)]
        #[ignore = "run by the fault tests"]
        fn prints_its_room(redis: cleanroom::Redis) {
            println!("cleanroom-test: REDIS_DB={}", redis.db());
        }
    }

    pub(super) mod bad_migrations {
        #[cleanroom::test(postgres(migrations = "/tmp/cleanroom-tests-bad-migrations"))]
        #[ignore = "run by the fault tests"]
        fn uses_them(postgres: cleanroom::Postgres) {
            let _ = postgres.url();
        }
    }

    pub(super) mod holds {
        use std::time::{Duration, Instant};

        /// Says READY, waits until the file `FAULTS_RELEASE` names exists,
        /// then proves that its Postgres and Redis still answer: a run that
        /// lost its services meanwhile fails here.
        #[cleanroom::test(postgres, redis)]
        #[ignore = "run by the fault tests"]
        async fn until_released(postgres: cleanroom::Postgres, redis: cleanroom::Redis) {
            println!("cleanroom-test: REDIS_DB={}", redis.db());
            println!("cleanroom-test: READY");
            let release = std::env::var("FAULTS_RELEASE").expect("FAULTS_RELEASE names the release file");
            let deadline = Instant::now() + Duration::from_secs(90);
            while !std::path::Path::new(&release).exists() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let (client, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls)
                .await
                .expect("its Postgres still runs when it is released");
            tokio::spawn(connection);
            client.batch_execute("CREATE TABLE still_here (v int)").await.unwrap();
            let mut cache = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
            let () = redis::AsyncCommands::set(&mut cache, "still", 1).await.unwrap();
            println!("cleanroom-test: SERVICES STILL ANSWER");
        }
    }
}

/// A directory of this test's own under the temp dir, made anew.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A run holding `until_released` in `session`, from `runtime` (its
/// `XDG_RUNTIME_DIR`), started and READY.
struct Holder {
    child: Child,
    release: PathBuf,
    /// The Redis database its test holds.
    redis_db: u32,
}

impl Holder {
    fn start(session: &str, runtime: &Path, env: &[(&str, &str)]) -> Holder {
        let release = runtime.join("release");
        let mut cmd = child_command(session, &["--ignored", "--exact", "child::holds::until_released", "--nocapture"]);
        cmd.env("XDG_RUNTIME_DIR", runtime)
            .env("FAULTS_RELEASE", &release)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut redis_db = None;
        let ready = lines.by_ref().any(|l| {
            let l = l.unwrap_or_default();
            if let Some(db) = l.split_once("REDIS_DB=").map(|(_, db)| db.trim().parse::<u32>().unwrap()) {
                redis_db = Some(db);
            }
            l.contains("cleanroom-test: READY")
        });
        let holder = Holder { child, release, redis_db: redis_db.unwrap_or(0) };
        assert!(ready, "the holding test of {session} never got its services");
        // The rest of its output is read when it ends.
        std::thread::spawn(move || lines.for_each(drop));
        holder
    }

    /// Lets the test go on and returns whether it passed, with its stderr.
    fn release(mut self) -> (bool, String) {
        std::fs::write(&self.release, b"").unwrap();
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
        }
        let status = self.child.wait().unwrap();
        (status.success(), stderr)
    }
}

/// The containers of `session` whose runtime-directory label is `runtime`'s.
fn containers_with_label(session: &str, label: &str, value: &str) -> Vec<String> {
    docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=cleanroom.session={session}"),
        "--filter",
        &format!("label={label}={value}"),
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

/// The value of `label` on container `id`.
fn label_of(id: &str, label: &str) -> String {
    docker(&["inspect", "-f", &format!("{{{{index .Config.Labels \"{label}\"}}}}"), id]).trim().to_string()
}

/// Two shells with the same explicit `CLEANROOM_SESSION` but different
/// runtime directories (one without `XDG_RUNTIME_DIR`, or another user) are
/// two runs: each starts its own services and its reaper removes only its own.
#[test]
fn two_runs_with_one_session_id_from_two_runtime_directories_keep_their_own_services() {
    let session = fresh_session("same-id");
    let (a, b) = (scratch(&format!("{session}-a")), scratch(&format!("{session}-b")));
    let first = Holder::start(&session, &a, &[]);
    let first_runtime = label_of(&session_containers(&session)[0], "cleanroom.runtime");
    let second = Holder::start(&session, &b, &[]);
    let all = session_containers(&session);
    assert_eq!(all.len(), 4, "each run started its own Postgres and Redis: {all:?}");
    let runtimes: std::collections::BTreeSet<String> = all.iter().map(|id| label_of(id, "cleanroom.runtime")).collect();
    assert_eq!(runtimes.len(), 2, "two owners, told apart by their runtime directory: {runtimes:?}");

    let (passed, stderr) = first.release();
    assert!(passed, "the first run passes: {stderr}");
    // Its reaper removes its own containers, and only those.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !containers_with_label(&session, "cleanroom.runtime", &first_runtime).is_empty() && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(containers_with_label(&session, "cleanroom.runtime", &first_runtime).is_empty());
    assert_eq!(session_containers(&session).len(), 2, "the second run's services are untouched");

    let (passed, stderr) = second.release();
    assert!(passed, "the second run's services outlived the first run's reaper: {stderr}");
    assert_nothing_left(&session);
    let _ = (std::fs::remove_dir_all(&a), std::fs::remove_dir_all(&b));
}

/// A lock file of a live run's session lying unheld in another runtime
/// directory (a copy, a stale one) does not make that run dead: a reaper or
/// `prune` working from that directory judges only what its own owner made.
/// The reaper of a new run sweeps at its start exactly as `prune` does.
#[test]
fn a_stale_lock_in_another_runtime_directory_never_gets_a_live_run_removed() {
    let live = fresh_session("live");
    let (a, b) = (scratch(&format!("{live}-a")), scratch(&format!("{live}-b")));
    let holder = Holder::start(&live, &a, &[]);
    // The stale lock, where the sweeping run keeps its own.
    let planted = b.join("cleanroom");
    std::fs::create_dir_all(&planted).unwrap();
    std::fs::set_permissions(&planted, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    std::fs::write(planted.join(format!("{live}.lock")), b"").unwrap();

    let sweeper = fresh_session("sweeper");
    let run = run_child(
        &sweeper,
        &["--ignored", "child::suite::", "--test-threads", "1"],
        &[("XDG_RUNTIME_DIR", b.to_str().unwrap())],
    );
    assert!(run.passed(), "{}", run.text());
    assert_eq!(session_containers(&live).len(), 2, "the live run's services survived the sweep");
    let (passed, stderr) = holder.release();
    assert!(passed, "the live run's tests pass: {stderr}");
    assert_nothing_left(&live);
    assert_nothing_left(&sweeper);
    let _ = (std::fs::remove_dir_all(&a), std::fs::remove_dir_all(&b));
}

/// `CLEANROOM_SESSION=..` would name `runs/..`, the runtime directory's
/// parent: refused before anything starts.
#[test]
fn a_session_id_that_could_leave_the_runtime_directory_is_refused() {
    for bad in ["..", ".hidden", "a/b"] {
        let run = run_child(bad, &["--ignored", "--exact", "child::suite::s01"], &[]);
        let text = run.text();
        assert!(!run.passed(), "{bad:?} must fail the test: {text}");
        assert!(text.contains("CLEANROOM_SESSION") && text.contains("starting with a letter or a digit"), "{text}");
        assert!(session_containers(bad).is_empty(), "nothing started for {bad:?}");
    }
}

/// A runtime directory someone else made (here: owned by another uid, with a
/// socket in it posing as the reaper) is not trusted: the process says why,
/// runs without a reaper, and removes its own containers at exit.
#[test]
fn a_runtime_directory_of_another_user_is_never_trusted() {
    let session = fresh_session("foreign-dir");
    let base = scratch(&session);
    let dir = base.join("cleanroom");
    std::fs::create_dir_all(&dir).unwrap();
    let fake = std::os::unix::net::UnixListener::bind(dir.join(format!("{session}.sock"))).unwrap();
    fake.set_nonblocking(true).unwrap();
    let chown = std::process::Command::new("chown").args(["65534:65534", dir.to_str().unwrap()]).status();
    if !chown.is_ok_and(|s| s.success()) {
        eprintln!(
            "SKIPPED a_runtime_directory_of_another_user_is_never_trusted: this user cannot give a directory to uid \
             65534 (the test needs root, as CI has)"
        );
        return;
    }
    let run = run_child(
        &session,
        &["--ignored", "--exact", "child::suite::s01"],
        &[("XDG_RUNTIME_DIR", base.to_str().unwrap())],
    );
    let text = run.text();
    assert!(run.passed(), "the test itself runs: {text}");
    let listing = |d: &Path| -> Vec<String> {
        std::fs::read_dir(d)
            .map(|r| r.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default()
    };
    assert!(
        text.contains("belongs to uid 65534"),
        "the process says why it has no reaper: {text}\n(the directory holds {:?})",
        listing(&dir)
    );
    assert!(fake.accept().is_err(), "nobody connected to the planted socket");
    assert_nothing_left(&session);
    let _ = std::fs::remove_dir_all(&base);
}

/// Without a reaper (`CLEANROOM_NO_REAPER=1`) every process of a nextest run
/// has containers of its own, and one that exits removes only those.
#[test]
fn a_process_without_a_reaper_removes_only_its_own_containers() {
    let session = fresh_session("no-reaper");
    let runtime = scratch(&session);
    let holder = Holder::start(&session, &runtime, &[("CLEANROOM_NO_REAPER", "1")]);
    let run = run_child(
        &session,
        &["--ignored", "--exact", "child::suite::s01"],
        &[("CLEANROOM_NO_REAPER", "1"), ("XDG_RUNTIME_DIR", runtime.to_str().unwrap())],
    );
    assert!(run.passed(), "{}", run.text());
    assert_eq!(session_containers(&session).len(), 2, "the other process's containers stay");
    let (passed, stderr) = holder.release();
    assert!(passed, "the holding process kept its services: {stderr}");
    assert_nothing_left(&session);
    let _ = std::fs::remove_dir_all(&runtime);
}

/// A `redis(shared)` test's `FLUSHDB` empties database 0 and nothing else:
/// the leases live in a database never handed out, so a later process of the
/// run cannot be handed a database another test still holds.
#[test]
fn a_shared_tests_flushdb_cannot_hand_a_held_redis_database_out_twice() {
    let session = fresh_session("flushdb");
    let runtime = scratch(&session);
    let env = [("XDG_RUNTIME_DIR", runtime.to_str().unwrap())];
    let holder = Holder::start(&session, &runtime, &[]);
    let flush = run_child(&session, &["--ignored", "--exact", "child::redis_rooms::flushes_the_shared_database"], &env);
    assert!(flush.passed(), "{}", flush.text());
    let later =
        run_child(&session, &["--ignored", "--exact", "child::redis_rooms::prints_its_room", "--nocapture"], &env);
    let text = later.text();
    assert!(later.passed(), "{text}");
    let db: u32 =
        text.split_once("REDIS_DB=").map(|(_, rest)| rest.lines().next().unwrap().trim().parse().unwrap()).unwrap();
    assert_ne!(db, holder.redis_db, "database {db} is still held by the first process");
    assert_ne!(db, 0, "a room is never the shared database");
    let (passed, stderr) = holder.release();
    assert!(passed, "{stderr}");
    assert_nothing_left(&session);
    let _ = std::fs::remove_dir_all(&runtime);
}

/// The reaper is killed while a long test runs; a later process of the same
/// run starts a new reaper, which finds the first process registered in the
/// run's directory and keeps the services until it too is done.
#[test]
fn a_replacement_reaper_knows_the_processes_of_the_reaper_it_replaces() {
    let session = fresh_session("reaper-replaced");
    let runtime = scratch(&session);
    let env = [("XDG_RUNTIME_DIR", runtime.to_str().unwrap())];
    let holder = Holder::start(&session, &runtime, &[]);
    let first = reaper_pid(&session).expect("the run has a reaper");
    kill("-KILL", first);
    let later = run_child(&session, &["--ignored", "--exact", "child::suite::s01"], &env);
    assert!(later.passed(), "{}", later.text());
    let second = reaper_pid(&session).expect("the later process started a new reaper");
    assert_ne!(second, first);
    // Past the new reaper's grace period (3 s): the holding process, which
    // never connected to it, still has its services.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(session_containers(&session).len(), 2, "the run's services are still there");
    let (passed, stderr) = holder.release();
    assert!(passed, "the long test passes: {stderr}");
    assert_nothing_left(&session);
    let _ = std::fs::remove_dir_all(&runtime);
}

/// A variable of someone else's whose value is not UTF-8 is none of
/// cleanroom's business: the run goes on.
#[test]
fn a_non_utf8_variable_cleanroom_does_not_read_is_ignored() {
    use std::os::unix::ffi::OsStrExt;
    let session = fresh_session("non-utf8");
    let mut cmd = child_command(&session, &["--ignored", "--exact", "child::suite::s01"]);
    cmd.env("SOMEONE_ELSES", std::ffi::OsStr::from_bytes(b"caf\xe9 \xff"));
    let out = cmd.output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert_nothing_left(&session);
}

/// A misspelt `CLEANROOM_*` variable fails the run at once, naming the
/// closest setting, instead of being silently ignored.
#[test]
fn a_misspelt_variable_fails_the_run_naming_the_closest_setting() {
    let session = fresh_session("misspelt");
    let started = Instant::now();
    let run = run_child(&session, &["--ignored", "--exact", "child::suite::s01"], &[("CLEANROOM_KEPP", "never")]);
    let text = run.text();
    assert!(!run.passed(), "{text}");
    assert!(text.contains("CLEANROOM_KEPP") && text.contains("did you mean CLEANROOM_KEEP?"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(20), "it fails at once, not after a timeout");
    assert!(session_containers(&session).is_empty(), "nothing started");
}

/// A password with quotes, `@`, `:` and `/` (set in `cleanroom.toml`) works:
/// the server takes it, the handle's URL carries it encoded.
#[test]
fn a_password_with_quotes_and_url_characters_works() {
    let session = fresh_session("quoted-password");
    let dir = scratch(&session);
    let config = dir.join("cleanroom.toml");
    std::fs::write(&config, "[services.postgres]\nenv = { POSTGRES_PASSWORD = \"it's @ a:b/c \\\"q\\\"\" }\n").unwrap();
    let run = run_child(
        &session,
        &["--ignored", "--exact", "child::suite::s01"],
        &[("CLEANROOM_CONFIG", config.to_str().unwrap()), ("CLEANROOM_VOLUME_CACHE", "false")],
    );
    assert!(run.passed(), "{}", run.text());
    assert_nothing_left(&session);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A migration that fails names the file, the line and column, and the
/// server's own message, not "db error".
#[test]
fn a_failing_migration_names_the_file_the_line_and_the_servers_message() {
    let session = fresh_session("bad-migration");
    let dir = Path::new("/tmp/cleanroom-tests-bad-migrations");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("001_ok.sql"), "CREATE TABLE a (id int);\n").unwrap();
    std::fs::write(dir.join("002_typo.sql"), "CREATE TABLE b (id int);\nCREATE TABEL c (id int);\n").unwrap();
    let run = run_child(&session, &["--ignored", "--exact", "child::bad_migrations::uses_them"], &[]);
    let text = run.text();
    assert!(!run.passed(), "{text}");
    assert!(text.contains("002_typo.sql"), "the file: {text}");
    assert!(text.contains("syntax error at or near \"TABEL\""), "the server's message: {text}");
    assert!(text.contains("(line 2, column 8)"), "where: {text}");
    assert_nothing_left(&session);
    let _ = std::fs::remove_dir_all(dir);
}

/// A stand-in for the engine's socket: forwards to the real one until told
/// to drop out, then refuses and cuts every connection until told to come
/// back. Only this test's own processes use it; the real engine is never
/// touched.
struct FlakyEngine {
    path: PathBuf,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::os::unix::net::UnixStream>>>,
    /// How long each chunk a client sends is held before it is passed on, in
    /// milliseconds (0: none).
    delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl FlakyEngine {
    fn start(path: PathBuf) -> FlakyEngine {
        use std::os::unix::net::{UnixListener, UnixStream};
        use std::sync::atomic::Ordering;
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let delay_ms = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (d, o, delay) = (down.clone(), open.clone(), delay_ms.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if d.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(engine) = UnixStream::connect("/var/run/docker.sock") else { continue };
                let pipe = |mut from: UnixStream, mut to: UnixStream, slow: bool| {
                    let delay = delay.clone();
                    std::thread::spawn(move || {
                        use std::io::{Read, Write};
                        let mut buf = [0u8; 16 * 1024];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 {
                                break;
                            }
                            let held = delay.load(Ordering::SeqCst);
                            if slow && held > 0 {
                                std::thread::sleep(Duration::from_millis(held));
                            }
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                };
                {
                    let mut open = o.lock().unwrap();
                    open.push(client.try_clone().unwrap());
                    open.push(engine.try_clone().unwrap());
                }
                pipe(client.try_clone().unwrap(), engine.try_clone().unwrap(), true);
                pipe(engine, client, false);
            }
        });
        FlakyEngine { path, down, open, delay_ms }
    }

    fn host(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// The engine drops out: every connection is cut, new ones are refused.
    fn drop_out(&self) {
        self.down.store(true, std::sync::atomic::Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    fn come_back(&self) {
        self.down.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The engine drops out while a test runs and while the run ends, then comes
/// back: the test, which talks to its services and not to the engine, passes;
/// the reaper, which cannot remove anything while the engine is away, keeps
/// asking and removes everything once it answers again.
#[test]
fn an_engine_that_drops_out_mid_run_fails_no_test_and_leaves_nothing() {
    let session = fresh_session("engine-drops-out");
    let runtime = scratch(&session);
    let engine = FlakyEngine::start(runtime.join("engine.sock"));
    let host = engine.host();
    let holder = Holder::start(&session, &runtime, &[("DOCKER_HOST", &host)]);
    // Long enough for the holder's monitor to open its streams through it.
    std::thread::sleep(Duration::from_millis(1500));
    engine.drop_out();
    std::thread::sleep(Duration::from_secs(3));
    let (passed, stderr) = holder.release();
    assert!(passed, "the test talks to its services, not to the engine: {stderr}");
    // The run is over; its reaper cannot reach the engine for a while.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(session_containers(&session).len(), 2, "nothing could be removed while the engine was away");
    engine.come_back();
    assert_nothing_left(&session);
    let _ = std::fs::remove_dir_all(&runtime);
}

/// A runtime directory on a full disk: nothing that needs room there (run
/// marks, attach records, reports) can be written, yet the run works — the
/// reaper's lock and socket need no room — and nothing is left.
#[test]
fn a_full_runtime_directory_fails_no_test_and_leaves_nothing() {
    let session = fresh_session("disk-full");
    let base = scratch(&session);
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16k", "tmpfs", base.to_str().unwrap()])
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!(
            "SKIPPED a_full_runtime_directory_fails_no_test_and_leaves_nothing: this user cannot mount a tmpfs (the \
             test needs root, as CI has)"
        );
        return;
    }
    // Fill it: the runtime directory exists, nothing more fits.
    std::fs::create_dir(base.join("cleanroom")).unwrap();
    std::fs::set_permissions(base.join("cleanroom"), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let filler = vec![0u8; 4096];
    for n in 0.. {
        if std::fs::write(base.join(format!("filler-{n}")), &filler).is_err() {
            break;
        }
    }
    let run = run_child(
        &session,
        &["--ignored", "child::suite::", "--test-threads", "1"],
        &[("XDG_RUNTIME_DIR", base.to_str().unwrap())],
    );
    let text = run.text();
    assert!(run.passed(), "the tests run: {text}");
    assert!(text.contains("2 passed"), "{text}");
    assert_nothing_left(&session);
    // The run's reaper is gone by now; its lock and socket no longer pin the mount.
    let _ = std::process::Command::new("umount").arg("-l").arg(&base).status();
    let _ = std::fs::remove_dir_all(&base);
}

/// An engine that answers slowly (every request held 150 ms): services take
/// longer to start, the tests pass, and the reaper still removes everything.
#[test]
fn a_slow_engine_slows_the_start_and_fails_no_test() {
    let session = fresh_session("engine-slow");
    let runtime = scratch(&session);
    let engine = FlakyEngine::start(runtime.join("engine.sock"));
    engine.delay_ms.store(150, std::sync::atomic::Ordering::SeqCst);
    let started = Instant::now();
    let run = run_child(
        &session,
        &["--ignored", "child::suite::", "--test-threads", "2"],
        &[("DOCKER_HOST", &engine.host()), ("XDG_RUNTIME_DIR", runtime.to_str().unwrap())],
    );
    let took = started.elapsed();
    assert!(run.passed(), "{}", run.text());
    assert!(run.text().contains("2 passed"), "{}", run.text());
    eprintln!("with every engine request held 150 ms the run took {took:?}");
    assert_nothing_left(&session);
    let _ = std::fs::remove_dir_all(&runtime);
}
