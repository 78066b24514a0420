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
    assert_nothing_left, child_command, containers_of, docker, engine_socket, fresh_session, kill, reaper_pid,
    remove_container, run_child, service_containers, session_containers,
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

        /// With [`prints_its_room`], two rooms in one process: it leases
        /// its own from the server rather than take the run's pool's.
        #[cleanroom::test(redis)]
        #[ignore = "run by the fault tests"]
        fn prints_its_room_too(redis: cleanroom::Redis) {
            println!("cleanroom-test: REDIS_DB={}", redis.db());
        }
    }

    pub(super) mod bad_migrations {
        /// Its migrations come from `CLEANROOM_POSTGRES_MIGRATIONS`, which
        /// the fault test sets: the directory is made at run time, and an
        /// attribute's path is checked when the test compiles.
        #[cleanroom::test(postgres)]
        #[ignore = "run by the fault tests"]
        fn uses_them(postgres: cleanroom::Postgres) {
            let _ = postgres.url();
        }
    }

    pub(super) mod gated {
        /// A service whose init command waits for the file `open` in the
        /// directory `FAULTS_GATE` names (bind-mounted), then exits with the
        /// code written in it: a start the fault tests hold, fail or let
        /// through.
        #[cleanroom::service]
        fn gated() -> cleanroom::GenericContainer {
            let gate = std::env::var("FAULTS_GATE").unwrap_or_else(|_| std::env::temp_dir().display().to_string());
            // A start that outlasts the fault tests: a process that waits
            // for its creator's word until this timeout is a process that hangs.
            cleanroom::GenericContainer::new("cleanroom-offline/busybox:1.35")
                .with_startup_timeout(std::time::Duration::from_secs(600))
                .with_cmd(["sleep", "3600"])
                .with_bind_mount(gate, "/gate")
                .with_init_command([
                    "sh",
                    "-c",
                    "while [ ! -f /gate/open ]; do sleep 0.1; done; exit $(cat /gate/open)",
                ])
        }

        #[cleanroom::test(gated)]
        #[ignore = "run by the fault tests"]
        fn passes_its_gate(gated: cleanroom::Container) {
            println!("cleanroom-test: GATED={}", gated.id());
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

        /// Holds its run (the reaper serves while it runs) with a Redis
        /// only: no Postgres of the run is watched by this process.
        #[cleanroom::test(redis)]
        #[ignore = "run by the fault tests"]
        fn redis_until_released(redis: cleanroom::Redis) {
            println!("cleanroom-test: REDIS_DB={}", redis.db());
            println!("cleanroom-test: READY");
            let release = std::env::var("FAULTS_RELEASE").expect("FAULTS_RELEASE names the release file");
            let deadline = Instant::now() + Duration::from_secs(90);
            while !std::path::Path::new(&release).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
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
        Holder::spawn(None, session, runtime, env)
    }

    /// [`Holder::start`], as the user `uid` (with the engine socket's group,
    /// as a member of the `docker` group would have it).
    fn start_as(uid: u32, session: &str, runtime: &Path, env: &[(&str, &str)]) -> Holder {
        Holder::spawn(Some(uid), session, runtime, env)
    }

    fn spawn(uid: Option<u32>, session: &str, runtime: &Path, env: &[(&str, &str)]) -> Holder {
        Holder::spawn_test("child::holds::until_released", uid, session, runtime, env)
    }

    /// [`Holder::start`] of another holding `test`.
    fn spawn_test(test: &str, uid: Option<u32>, session: &str, runtime: &Path, env: &[(&str, &str)]) -> Holder {
        // One per run: several runs may share a runtime directory.
        let release = runtime.join(format!("release-{session}-{}", uid.unwrap_or(0)));
        let inner = child_command(session, &["--ignored", "--exact", test, "--nocapture"]);
        let mut cmd = match uid {
            None => inner,
            Some(uid) => {
                use std::os::unix::fs::MetadataExt;
                let group = std::fs::metadata(engine_socket()).expect("the engine's socket").gid();
                let mut cmd = std::process::Command::new("setpriv");
                cmd.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={uid}"))
                    .arg(format!("--groups={group}"))
                    .arg("--")
                    .arg(inner.get_program())
                    .args(inner.get_args());
                for (k, v) in inner.get_envs() {
                    if let Some(v) = v {
                        cmd.env(k, v);
                    }
                }
                cmd
            }
        };
        cmd.env("XDG_RUNTIME_DIR", runtime)
            .env("FAULTS_RELEASE", &release)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            // An empty XDG_RUNTIME_DIR: none at all (the fallback directory).
            match (*k, *v) {
                ("XDG_RUNTIME_DIR", "") => cmd.env_remove(k),
                _ => cmd.env(k, v),
            };
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
    /// (A holder dropped without this, by a test that failed first, is
    /// killed: its run's reaper removes what it held.)
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

impl Drop for Holder {
    fn drop(&mut self) {
        // Ended already after `release`: then this does nothing.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The containers of `session` whose runtime-directory label is `runtime`'s.
fn containers_with_label(session: &str, label: &str, value: &str) -> Vec<String> {
    containers_of(session, &[&format!("label={label}={value}")])
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
    // Without XDG_RUNTIME_DIR: the fallback runtime directory (its release
    // file goes in `b` all the same).
    let second = Holder::start(&session, &b, &[("XDG_RUNTIME_DIR", "")]);
    let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap());
    let fallback = std::env::temp_dir().join(format!("cleanroom-{uid}")).join("runs").join(&session);
    assert!(fallback.is_dir(), "the second run's files are in the fallback directory {}", fallback.display());
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

/// Whether this process may run another user's processes (root, with
/// `setpriv`).
fn can_run_as_another_user() -> bool {
    let root = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0;
    root && std::process::Command::new("setpriv").arg("--version").output().is_ok()
}

/// A test that cannot run on this machine (it needs root): under CI (`CI`
/// set), which runs as root, that is a failure, not a skip.
fn cannot_run(test: &str, why: &str) {
    assert!(std::env::var_os("CI").is_none(), "{test} must run under CI but cannot: {why}");
    eprintln!("SKIPPED {test}: {why}");
}

/// The containers of `session` that the user `uid` owns.
fn owned_by(session: &str, uid: u32) -> Vec<String> {
    let mut ids = containers_with_label(session, "cleanroom.owner", &uid.to_string());
    ids.sort();
    ids
}

/// Two users of one machine each run two runs at once, with the same two
/// explicit session ids (`CLEANROOM_SESSION=ci` in a shared CI script, and
/// a second job): each of the four runs gets its own services, labelled with
/// its uid, and the end of each removes exactly its own. The second user is
/// a real other uid (`setpriv`), with the engine socket's group, as a member
/// of the `docker` group.
#[test]
fn two_users_with_two_runs_each_at_once_keep_their_own_services() {
    if !can_run_as_another_user() {
        return cannot_run(
            "two_users_with_two_runs_each_at_once_keep_their_own_services",
            "it needs root and setpriv to run a second user's process",
        );
    }
    const OTHER: u32 = 4242;
    let sessions = [fresh_session("two-users"), fresh_session("two-users")];
    let (a, b) = (scratch(&format!("{}-a", sessions[0])), scratch(&format!("{}-b", sessions[0])));
    std::os::unix::fs::chown(&b, Some(OTHER), Some(OTHER)).unwrap();
    // (session, user, its run), each user's two runs in one runtime directory.
    let mut runs: Vec<(&str, u32, Option<Holder>)> = Vec::new();
    for session in &sessions {
        runs.push((session, 0, Some(Holder::start(session, &a, &[]))));
        let theirs = Holder::start_as(OTHER, session, &b, &[("CLEANROOM_VOLUME_CACHE", "false")]);
        runs.push((session, OTHER, Some(theirs)));
    }
    let own: Vec<Vec<String>> = runs.iter().map(|(session, uid, _)| owned_by(session, *uid)).collect();
    for ((session, uid, _), ids) in runs.iter().zip(&own) {
        assert_eq!(ids.len(), 2, "the run of {session} by uid {uid} has its own Postgres and Redis: {ids:?}");
    }
    for session in &sessions {
        let all = session_containers(session);
        assert_eq!(all.len(), 4, "two runs of {session}, one per user: {all:?}");
    }

    // The users' runs end in turn, interleaved.
    let order = [1, 2, 3, 0];
    for (step, &i) in order.iter().enumerate() {
        let (session, uid) = (runs[i].0, runs[i].1);
        let (passed, stderr) = runs[i].2.take().unwrap().release();
        assert!(passed, "the run of {session} by uid {uid} kept its services to its end: {stderr}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !owned_by(session, uid).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(owned_by(session, uid).is_empty(), "the run of {session} by uid {uid} is removed at its end");
        for &j in &order[step + 1..] {
            let (other, other_uid) = (runs[j].0, runs[j].1);
            assert_eq!(
                owned_by(other, other_uid),
                own[j],
                "the run of {other} by uid {other_uid} is untouched by the end of {session} by uid {uid}"
            );
        }
    }
    for session in &sessions {
        assert_nothing_left(session);
    }
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
        return cannot_run(
            "a_runtime_directory_of_another_user_is_never_trusted",
            "this user cannot give a directory to uid 65534 (the test needs root, as CI has)",
        );
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

/// Without a reaper, a process removes at exit what carries its process
/// label (`pid:start`) *and* its owner labels: another machine's process
/// with the same pid and start time (they are unique on one machine only),
/// posed here by a container with the holder's process label and another
/// machine's owner labels, keeps its container.
#[test]
fn a_process_without_a_reaper_leaves_another_machines_container_with_its_process_label() {
    let session = fresh_session("no-reaper-owner");
    let runtime = scratch(&session);
    let holder = Holder::start(&session, &runtime, &[("CLEANROOM_NO_REAPER", "1")]);
    let own = session_containers(&session);
    assert_eq!(own.len(), 2, "{own:?}");
    let process = label_of(&own[0], "cleanroom.process");
    assert!(process.contains(':'), "pid:start, not {process:?}");
    let mut args = vec!["run", "-d", "--rm"];
    let labels = [
        "cleanroom.managed=true".to_string(),
        format!("cleanroom.session={session}"),
        format!("cleanroom.process={process}"),
        "cleanroom.owner=1000".to_string(),
        "cleanroom.host=0badc0de".to_string(),
        "cleanroom.runtime=0badc0de".to_string(),
    ];
    for l in &labels {
        args.extend(["--label", l.as_str()]);
    }
    args.extend(["cleanroom-offline/busybox:1.35", "sleep", "300"]);
    let other = docker(&args).trim().to_string();
    let (passed, stderr) = holder.release();
    let left = session_containers(&session);
    let other_stayed = left.iter().any(|id| other.starts_with(id.as_str()));
    cleanroom_tests::remove_container(&other);
    assert!(passed, "{stderr}");
    assert!(other_stayed, "another machine's container with the same process label was removed: {left:?}");
    assert_eq!(left.len(), 1, "the process's own two are gone: {left:?}");
    assert_nothing_left(&session);
    let _ = std::fs::remove_dir_all(&runtime);
}

/// The database the Redis container `redis` keeps its leases in: its last.
fn leases_database(redis: &str) -> u32 {
    let databases = docker(&["exec", redis, "redis-cli", "CONFIG", "GET", "databases"]);
    databases.lines().nth(1).and_then(|n| n.trim().parse::<u32>().ok()).expect("a count") - 1
}

/// Every Redis lease of a session's server, as `key holder` lines, sorted:
/// they live in the server's last database.
fn redis_leases(session: &str) -> Vec<String> {
    let redis = service_containers(session, "redis");
    assert_eq!(redis.len(), 1, "{redis:?}");
    let leases = leases_database(&redis[0]);
    let script = format!(
        "for k in $(redis-cli -n {leases} --scan --pattern 'cleanroom:lease:*'); do echo \"$k $(redis-cli -n {leases} GET $k)\"; done"
    );
    let mut lines: Vec<String> =
        docker(&["exec", &redis[0], "sh", "-c", &script]).lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// A Redis room's lease lasts `run.redis_lease_ttl` unless its holder
/// renews it. With a TTL of two seconds, a test that holds its room for
/// three and a half TTLs keeps it: every lease there was when it began, the
/// process's own (leased ahead, renewed by its timer) and the reaper's pool's
/// (renewed by the keeper), is still there with the same holder.
#[test]
fn redis_leases_are_renewed_while_their_test_runs_past_their_ttl() {
    let session = fresh_session("lease-renewal");
    let runtime = scratch(&session);
    let holder = Holder::spawn_test(
        "child::holds::redis_until_released",
        None,
        &session,
        &runtime,
        &[("CLEANROOM_REDIS_LEASE_TTL", "2")],
    );
    // The keeper fills the run's pool beside the process's own lease.
    std::thread::sleep(Duration::from_millis(500));
    let before = redis_leases(&session);
    let own = format!("cleanroom:lease:{} ", holder.redis_db);
    assert!(before.iter().any(|l| l.starts_with(&own)), "the test's own lease is there: {before:?}");
    let holders: std::collections::BTreeSet<&str> =
        before.iter().filter_map(|l| l.split_once(' ')).map(|(_, h)| h).collect();
    assert!(holders.len() >= 2, "leases of the process and of the reaper's keeper: {before:?}");
    std::thread::sleep(Duration::from_secs(7));
    let after = redis_leases(&session);
    for lease in &before {
        assert!(after.contains(lease), "{lease} was not renewed past its two-second TTL: now {after:?}");
    }
    let (passed, stderr) = holder.release();
    assert!(passed, "{stderr}");
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
    // The holder's lease outlived the flush: it lives in the leases'
    // database, the server's last, which is never a room.
    let redis = service_containers(&session, "redis");
    assert_eq!(redis.len(), 1, "{redis:?}");
    let leases = leases_database(&redis[0]);
    let lease = format!("cleanroom:lease:{}", holder.redis_db);
    let held = docker(&["exec", &redis[0], "redis-cli", "-n", &leases.to_string(), "EXISTS", &lease]);
    assert_eq!(held.trim(), "1", "the holder's lease {lease} is gone after the flush");
    // Two tests with a room: the process leases its own from the server
    // after the flush (a process of one test would take one the run's
    // keeper leased before it, which proves nothing here).
    let later = run_child(
        &session,
        &["--ignored", "child::redis_rooms::prints_its_room", "--test-threads", "1", "--nocapture"],
        &env,
    );
    let text = later.text();
    assert!(later.passed(), "{text}");
    assert!(text.contains("2 passed"), "{text}");
    let dbs: Vec<u32> =
        text.lines().filter_map(|l| l.split_once("REDIS_DB=")).map(|(_, db)| db.trim().parse().unwrap()).collect();
    assert_eq!(dbs.len(), 2, "{text}");
    for db in dbs {
        assert_ne!(db, holder.redis_db, "database {db} is still held by the first process");
        assert_ne!(db, 0, "a room is never the shared database");
    }
    let (passed, stderr) = holder.release();
    assert!(passed, "{stderr}");
    assert_nothing_left(&session);
    let _ = std::fs::remove_dir_all(&runtime);
}

/// A reaper killed while a test runs is replaced by that test's own
/// process at once: nobody else has to come along for the run to be cleaned
/// up.
#[test]
fn a_killed_reaper_is_replaced_by_the_process_it_served() {
    killed_reaper_replaced("reaper-killed", &[]);
}

/// The same over Windows's transport for the reaper (a loopback TCP port
/// named by a file, with tokens; docs/environments.md), which Linux uses
/// when told to: the run attaches, its killed reaper is replaced, its test
/// passes and nothing is left, as over the Unix socket.
#[test]
fn a_killed_reaper_is_replaced_over_the_windows_transport_too() {
    killed_reaper_replaced("reaper-killed-tcp", &[("CLEANROOM_REAPER_TRANSPORT", "tcp")]);
}

/// Starts a holding run with `env`, kills its reaper, checks that the run's
/// process started another (over TCP: that its socket is a file naming a
/// port and two tokens), lets the test end and checks that nothing is left.
fn killed_reaper_replaced(tag: &str, env: &[(&str, &str)]) {
    let session = fresh_session(tag);
    let runtime = scratch(&session);
    let holder = Holder::start(&session, &runtime, env);
    let tcp = env.iter().any(|(k, v)| *k == "CLEANROOM_REAPER_TRANSPORT" && *v == "tcp");
    let socket = runtime.join("cleanroom").join(format!("{session}.sock"));
    // Inode and change time: a new file may reuse the old one's inode.
    let inode = || {
        std::fs::symlink_metadata(&socket).ok().map(|m| {
            use std::os::unix::fs::MetadataExt;
            (m.ino(), m.ctime(), m.ctime_nsec())
        })
    };
    let assert_transport = |when: &str| {
        let meta = std::fs::symlink_metadata(&socket).unwrap_or_else(|e| panic!("{}: {e}", socket.display()));
        if tcp {
            let text = std::fs::read_to_string(&socket).unwrap();
            let words: Vec<&str> = text.split_whitespace().collect();
            assert!(
                meta.is_file() && words.len() == 3 && words[0].parse::<u16>().is_ok(),
                "{when}: the reaper's socket is a file naming its port and two tokens: {text:?}"
            );
        } else {
            use std::os::unix::fs::FileTypeExt;
            assert!(meta.file_type().is_socket(), "{when}: the reaper listens on a Unix socket");
        }
    };
    assert_transport("first reaper");
    let first_socket = inode();
    let first = reaper_pid(&session).expect("the run has a reaper");
    kill("-KILL", first);
    let deadline = Instant::now() + Duration::from_secs(10);
    let second = loop {
        match reaper_pid(&session) {
            Some(pid) if pid != first => break Some(pid),
            _ if Instant::now() > deadline => break None,
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    assert!(second.is_some(), "the holding process started a replacement reaper");
    // The replacement listens on a socket of its own (the killed one's is
    // removed first).
    let deadline = Instant::now() + Duration::from_secs(10);
    while (inode().is_none() || inode() == first_socket) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_ne!(inode(), first_socket, "the replacement made its own socket");
    assert_transport("replacement reaper");
    assert_eq!(session_containers(&session).len(), 2, "the run's services are still there");
    let (passed, stderr) = holder.release();
    assert!(passed, "the long test passes: {stderr}");
    assert_nothing_left(&session);
    let _ = std::fs::remove_dir_all(&runtime);
}

/// Asserts that `session` has exactly its Postgres and Redis; otherwise
/// says which containers it has (name, process label, state), with what
/// the run that came meanwhile printed (`said`).
fn assert_the_runs_two_services_are_there(session: &str, said: &str) {
    let found = session_containers(session);
    if found.len() != 2 {
        let described = docker(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=cleanroom.session={session}"),
            "--format",
            "{{.Names}} process={{.Label \"cleanroom.process\"}} {{.Status}}",
        ]);
        panic!("the run's two services are not all that is there:\n{described}\nthe later run printed:\n{said}");
    }
}

/// A replacement reaper started by a later process knows the processes
/// that registered with the one it replaces, though they never connected to
/// it: the holding process is stopped (SIGSTOP) while its reaper is killed,
/// so that it cannot replace the reaper itself.
#[test]
fn a_replacement_reaper_knows_the_processes_of_the_reaper_it_replaces() {
    let session = fresh_session("reaper-replaced");
    let runtime = scratch(&session);
    let env = [("XDG_RUNTIME_DIR", runtime.to_str().unwrap())];
    let holder = Holder::start(&session, &runtime, &[]);
    let first = reaper_pid(&session).expect("the run has a reaper");
    kill("-STOP", holder.child.id());
    let stopped = Stopped(holder.child.id());
    kill("-KILL", first);
    let later = run_child(&session, &["--ignored", "--exact", "child::suite::s01"], &env);
    assert!(later.passed(), "{}", later.text());
    let second = reaper_pid(&session).expect("the later process started a new reaper");
    assert_ne!(second, first);
    // Past the new reaper's grace period (3 s): the holding process, which
    // never connected to it, still has its services.
    std::thread::sleep(Duration::from_secs(6));
    assert_the_runs_two_services_are_there(&session, &later.text());
    drop(stopped);
    let (passed, stderr) = holder.release();
    assert!(passed, "the long test passes: {stderr}");
    assert_nothing_left(&session);
    let _ = std::fs::remove_dir_all(&runtime);
}

/// This machine's host label: the 32-bit FNV-1a of its machine id, as the
/// runtime writes it.
fn this_host_label() -> String {
    let id = ["/etc/machine-id", "/var/lib/dbus/machine-id", "/proc/sys/kernel/hostname"]
        .iter()
        .find_map(|f| std::fs::read_to_string(f).ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()))
        .unwrap_or_else(|| "unknown-host".to_string());
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("{:08x}", hash as u32)
}

/// A container (and, with `network`, a network) posing as what a run of
/// the machine `host` made, whose last heartbeat was `beat_age` seconds ago
/// on the engine's clock (`None`: it never beat); with `own_ttl`, a run that
/// says it beats by that `run.remote_idle_ttl`.
fn pose_as_run(session: &str, host: &str, beat_age: Option<i64>, network: bool, own_ttl: Option<u64>) -> String {
    let mut labels = vec![
        "cleanroom.managed=true".to_string(),
        format!("cleanroom.session={session}"),
        "cleanroom.owner=1000".to_string(),
        format!("cleanroom.host={host}"),
        "cleanroom.runtime=0badc0de".to_string(),
    ];
    labels.extend(own_ttl.map(|t| format!("cleanroom.remote-idle-ttl={t}")));
    let mut args = vec!["run", "-d", "--rm"];
    for l in &labels {
        args.extend(["--label", l]);
    }
    args.extend(["cleanroom-offline/busybox:1.35", "sleep", "300"]);
    let id = docker(&args).trim().to_string();
    if let Some(age) = beat_age {
        let script = format!("echo $(( $(date +%s) - {age} )) > /.cleanroom-heartbeat");
        docker(&["exec", &id, "sh", "-c", &script]);
    }
    if network {
        let mut args = vec!["network", "create"];
        for l in &labels {
            args.extend(["--label", l]);
        }
        let name = format!("{session}-net");
        args.push(&name);
        docker(&args);
    }
    id
}

/// On an engine shared by several machines, a run of another machine cannot
/// be proven dead from here: what it made is removed (by a starting
/// reaper's sweep) only once none of its containers has had a heartbeat for
/// `run.remote_idle_ttl`, on the engine's clock. A run of another machine
/// that beats, or that never beat but was just made, stays, and so does one
/// idle for less than the longer TTL it says it beats by; this machine's
/// runs are never judged by heartbeat (their locks say).
#[test]
fn a_run_of_another_machine_is_removed_only_once_idle_past_its_ttl() {
    let session = fresh_session("remote-runs");
    let [idle, beating, silent, here, patient] =
        ["idle", "beating", "silent", "here", "patient"].map(|k| format!("{session}-{k}"));
    let idle_id = pose_as_run(&idle, "0badc0de", Some(300), true, None);
    let beating_id = pose_as_run(&beating, "0badc0de", Some(5), false, None);
    let silent_id = pose_as_run(&silent, "0badc0de", None, false, None);
    let here_id = pose_as_run(&here, &this_host_label(), Some(300), false, None);
    // It beats once a minute by its own hour: 300 s of silence is no death.
    let patient_id = pose_as_run(&patient, "0badc0de", Some(300), false, Some(3600));
    let run =
        run_child(&session, &["--ignored", "--exact", "child::suite::s01"], &[("CLEANROOM_REMOTE_IDLE_TTL", "100")]);
    assert!(run.passed(), "{}", run.text());
    let idle_network = || docker(&["network", "ls", "-q", "--filter", &format!("label=cleanroom.session={idle}")]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(session_containers(&idle).is_empty() && idle_network().trim().is_empty()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let remaining = docker(&["ps", "-q", "--no-trunc", "--filter", "label=cleanroom.host"]);
    let survived = |id: &str| remaining.lines().any(|l| l == id);
    let outcome =
        [survived(&idle_id), survived(&beating_id), survived(&silent_id), survived(&here_id), survived(&patient_id)];
    let idle_network_left = !idle_network().trim().is_empty();
    for s in [&idle, &beating, &silent, &here, &patient] {
        for id in session_containers(s) {
            cleanroom_tests::remove_container(&id);
        }
    }
    let _ = std::process::Command::new("docker").args(["network", "rm", &format!("{idle}-net")]).output();
    assert_eq!(
        outcome,
        [false, true, true, true, true],
        "[idle 300 s, beat 5 s ago, never beat, this machine's, idle 300 s of its own TTL 3600 s]"
    );
    assert!(!idle_network_left, "the idle run's network goes with its containers");
    for s in [&idle, &beating, &silent, &here, &patient, &session] {
        assert_nothing_left(s);
    }
}

/// The heartbeat of container `id` and the container's clock, if it has one.
fn heartbeat_of(id: &str) -> Option<(i64, i64)> {
    let out = std::process::Command::new("docker")
        .args(["exec", id, "sh", "-c", "cat /.cleanroom-heartbeat && date +%s"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut numbers = text.lines().filter_map(|l| l.trim().parse::<i64>().ok());
    Some((numbers.next()?, numbers.next()?))
}

/// A live run's reaper writes the engine's time into each of its
/// containers, often enough for the idle TTL (six beats in it).
#[test]
fn a_live_runs_reaper_keeps_a_heartbeat_in_each_of_its_containers() {
    let session = fresh_session("heartbeat");
    let runtime = scratch(&session);
    let holder = Holder::start(&session, &runtime, &[("CLEANROOM_REMOTE_IDLE_TTL", "6")]);
    let containers = session_containers(&session);
    assert_eq!(containers.len(), 2);
    let read = heartbeat_of;
    let deadline = Instant::now() + Duration::from_secs(10);
    let first: Vec<(i64, i64)> = loop {
        let seen: Vec<_> = containers.iter().filter_map(|id| read(id)).collect();
        if seen.len() == containers.len() || Instant::now() > deadline {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(first.len(), containers.len(), "every container of the run has a heartbeat");
    for (beat, clock) in &first {
        assert!((clock - beat).abs() <= 3, "a recent beat on the engine's clock: beat {beat}, clock {clock}");
    }
    std::thread::sleep(Duration::from_millis(2500));
    for (id, (before, _)) in containers.iter().zip(&first) {
        let (after, _) = read(id).expect("it still has one");
        assert!(after > *before, "the heartbeat moved on: {before} then {after}");
    }
    let (passed, stderr) = holder.release();
    assert!(passed, "{stderr}");
    assert_nothing_left(&session);
    let _ = std::fs::remove_dir_all(&runtime);
}

/// A process stopped with SIGSTOP, continued when this is dropped (also
/// when an assertion fails first).
struct Stopped(u32);

impl Drop for Stopped {
    fn drop(&mut self) {
        kill("-CONT", self.0);
    }
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
    let run = run_child(
        &session,
        &["--ignored", "--exact", "child::bad_migrations::uses_them"],
        &[("CLEANROOM_POSTGRES_MIGRATIONS", dir.to_str().unwrap())],
    );
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
    /// Set: the next request to start a container is never passed on (its
    /// client waits for an answer until it ends); cleared by that request.
    hold_next_start: std::sync::Arc<std::sync::atomic::AtomicBool>,
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
        let hold_next_start = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (d, o, delay, hold) = (down.clone(), open.clone(), delay_ms.clone(), hold_next_start.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if d.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(engine) = UnixStream::connect(engine_socket()) else { continue };
                let pipe = |mut from: UnixStream, mut to: UnixStream, slow: bool| {
                    let (delay, hold) = (delay.clone(), hold.clone());
                    std::thread::spawn(move || {
                        use std::io::{Read, Write};
                        let mut buf = [0u8; 16 * 1024];
                        let mut holding = false;
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 {
                                break;
                            }
                            if slow && is_container_start(&buf[..n]) && hold.swap(false, Ordering::SeqCst) {
                                holding = true;
                            }
                            if holding {
                                continue;
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
        FlakyEngine { path, down, open, delay_ms, hold_next_start }
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

/// Whether `chunk` begins a request to start a container
/// (`POST /v1.xx/containers/<id>/start`).
fn is_container_start(chunk: &[u8]) -> bool {
    let line = String::from_utf8_lossy(&chunk[..chunk.len().min(200)]);
    let line = line.lines().next().unwrap_or_default();
    line.starts_with("POST ") && line.contains("/containers/") && line.contains("/start")
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
        return cannot_run(
            "a_full_runtime_directory_fails_no_test_and_leaves_nothing",
            "this user cannot mount a tmpfs (the test needs root, as CI has)",
        );
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

/// The pid's process has ended (gone, or a zombie nobody reaped yet): a
/// killed reaper's lock is free only then.
fn wait_until_ended(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let ended = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_or(true, |stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')))
    };
    while !ended() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(ended(), "process {pid} ended after SIGKILL");
}

/// A run whose reaper was killed and is not replaced yet holds no lock,
/// but its processes still run (they registered with the reaper): a run of
/// another session from the same runtime directory, whose reaper sweeps at
/// its start, leaves its containers and its run directory alone. The holding
/// process is stopped (SIGSTOP) so that it cannot replace its reaper.
#[test]
fn a_run_whose_reaper_is_being_replaced_is_never_swept() {
    let session = fresh_session("between-reapers");
    let runtime = scratch(&session);
    let env = [("XDG_RUNTIME_DIR", runtime.to_str().unwrap())];
    let holder = Holder::start(&session, &runtime, &[]);
    let mut services = session_containers(&session);
    services.sort();
    let run_dir = runtime.join("cleanroom").join("runs").join(&session);
    assert!(run_dir.is_dir(), "the run has a run directory: {}", run_dir.display());
    let reaper = reaper_pid(&session).expect("the run has a reaper");
    kill("-STOP", holder.child.id());
    let stopped = Stopped(holder.child.id());
    kill("-KILL", reaper);
    wait_until_ended(reaper);

    let sweeper = fresh_session("sweeper");
    let run = run_child(&sweeper, &["--ignored", "--exact", "child::suite::s01"], &env);
    assert!(run.passed(), "{}", run.text());
    assert_nothing_left(&sweeper);
    let mut left = session_containers(&session);
    left.sort();
    assert_eq!(left, services, "the other run's sweep left the live run's services alone");
    assert!(run_dir.is_dir(), "the other run's sweep left the live run's directory alone");

    drop(stopped);
    let (passed, stderr) = holder.release();
    assert!(passed, "the live run's test passes: {stderr}");
    assert_nothing_left(&session);
    let _ = std::fs::remove_dir_all(&runtime);
}

/// A reaper that starts while the engine is away (here: the run's reaper is
/// killed while the engine is away, and the run's process starts a
/// replacement at once) asks the engine again while it serves: once the
/// engine is back, the run's containers get heartbeats again (other machines
/// sharing the engine would otherwise take the run for idle), and the run
/// leaves nothing.
#[test]
fn a_reaper_that_starts_while_the_engine_is_away_beats_once_it_is_back() {
    let session = fresh_session("reaper-engine-away");
    let runtime = scratch(&session);
    let engine = FlakyEngine::start(runtime.join("engine.sock"));
    let host = engine.host();
    // A heartbeat a second (six in the idle TTL).
    let holder = Holder::start(&session, &runtime, &[("DOCKER_HOST", &host), ("CLEANROOM_REMOTE_IDLE_TTL", "6")]);
    let containers = session_containers(&session);
    assert_eq!(containers.len(), 2);
    // The reaper's first beat may come before the containers exist: wait
    // for one on each (a second apart) before the engine goes away.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !containers.iter().all(|id| heartbeat_of(id).is_some()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    engine.drop_out();
    let first = reaper_pid(&session).expect("the run has a reaper");
    kill("-KILL", first);
    let deadline = Instant::now() + Duration::from_secs(10);
    let second = loop {
        match reaper_pid(&session) {
            Some(pid) if pid != first => break Some(pid),
            _ if Instant::now() > deadline => break None,
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    assert!(second.is_some(), "the holding process started a replacement reaper while the engine was away");
    // Time for the replacement to find the engine away.
    std::thread::sleep(Duration::from_secs(2));
    engine.come_back();
    // The engine's clock when it came back (asked directly, not through the proxy).
    let (_, back) = heartbeat_of(&containers[0]).expect("the first reaper beat before the engine went away");
    let deadline = Instant::now() + Duration::from_secs(15);
    let fresh = |id: &String| heartbeat_of(id).is_some_and(|(beat, _)| beat >= back);
    while !containers.iter().all(fresh) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let beats: Vec<_> = containers.iter().map(|id| heartbeat_of(id)).collect();
    assert!(containers.iter().all(fresh), "a beat since the engine came back at {back}: {beats:?}");
    let (passed, stderr) = holder.release();
    assert!(passed, "{stderr}");
    assert_nothing_left(&session);
    let _ = std::fs::remove_dir_all(&runtime);
}

/// The running Postgres containers of `session`: (id, definition label).
fn postgres_of(session: &str) -> Vec<(String, String)> {
    service_containers(session, "postgres")
        .into_iter()
        .map(|id| {
            let definition = label_of(&id, "cleanroom.definition");
            (id, definition)
        })
        .collect()
}

/// Postgres killed under its run, with two processes of the run attached
/// (as under nextest), each of whose monitors sees the death: exactly one
/// replacement is made, with the same definition (so the same cache), and
/// no second cache volume.
#[test]
fn a_killed_postgres_under_two_processes_is_replaced_once_with_its_definition() {
    let session = fresh_session("recovery-twice");
    let runtime = scratch(&session);
    let cache_volumes = || docker(&["volume", "ls", "-q", "--filter", "label=cleanroom.cache"]);
    let first = Holder::start(&session, &runtime, &[]);
    let second = Holder::start(&session, &runtime, &[]);
    let killed = postgres_of(&session);
    assert_eq!(killed.len(), 1, "one Postgres for the run's two processes: {killed:?}");
    let volumes_before = cache_volumes();
    docker(&["kill", &killed[0].0]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let replaced = |now: &[(String, String)]| now.iter().any(|(id, _)| *id != killed[0].0);
    while !replaced(&postgres_of(&session)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    // Both processes' recoveries are over by now: a second replacement would be there.
    std::thread::sleep(Duration::from_secs(5));
    let now = postgres_of(&session);
    assert_eq!(now.len(), 1, "exactly one replacement: {now:?}");
    assert_ne!(now[0].0, killed[0].0, "the killed one was replaced");
    assert_eq!(now[0].1, killed[0].1, "the replacement keeps the definition");
    assert_eq!(cache_volumes(), volumes_before, "no second cache volume");
    // Their tests may fail (their Postgres died under them): what matters is what is left.
    let _ = first.release();
    let _ = second.release();
    assert_nothing_left(&session);
    let _ = std::fs::remove_dir_all(&runtime);
}

/// Postgres killed while no process of its run watches it (every process
/// short, as under nextest, and the one that holds the run uses Redis
/// only): the next process still finds it Ready in the run's records, and
/// its test fails, saying why; that process replaces it, and the process
/// after takes the replacement, not the dead container's record.
#[test]
fn a_postgres_that_died_unwatched_is_replaced_for_the_processes_after() {
    let session = fresh_session("died-unwatched");
    let runtime = scratch(&session);
    let holder = Holder::spawn_test("child::holds::redis_until_released", None, &session, &runtime, &[]);
    let xdg = [("XDG_RUNTIME_DIR", runtime.to_str().unwrap())];
    let test = |name: &str| run_child(&session, &["--ignored", "--exact", name], &xdg);
    let first = test("child::suite::s01");
    assert!(first.passed(), "{}", first.text());
    let killed = postgres_of(&session);
    assert_eq!(killed.len(), 1, "{killed:?}");
    docker(&["kill", &killed[0].0]);
    let second = test("child::suite::s02");
    assert!(!second.passed(), "its Postgres was dead: {}", second.text());
    assert!(second.text().contains("postgres died under test `child::suite::s02`"), "it says why: {}", second.text());
    let third = test("child::suite::s01");
    assert!(third.passed(), "the process after takes a replacement: {}", third.text());
    let now = postgres_of(&session);
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now[0].0, killed[0].0, "the dead one was replaced");
    let _ = holder.release();
    assert_nothing_left(&session);
    let _ = std::fs::remove_dir_all(&runtime);
}

/// The runtime directory is ours (0700), but the socket in it is served by
/// another user's process (uid 65534): the run asks the socket's peer who it
/// is (`SO_PEERCRED`), refuses it as not its reaper, says so, runs without
/// a reaper, and leaves nothing.
#[test]
fn a_reaper_socket_served_by_another_user_is_never_trusted() {
    if !can_run_as_another_user() {
        return cannot_run(
            "a_reaper_socket_served_by_another_user_is_never_trusted",
            "it needs root and setpriv to run a listener as uid 65534",
        );
    }
    let session = fresh_session("foreign-socket");
    let base = scratch(&session);
    let dir = base.join("cleanroom");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    // The listener binds in a directory of its own, then its socket is moved
    // into ours: uid 65534 cannot write in a 0700 directory of root's.
    let theirs = base.join("theirs");
    std::fs::create_dir_all(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let listen = "import socket, sys\n\
                  s = socket.socket(socket.AF_UNIX)\n\
                  s.bind(sys.argv[1])\n\
                  s.listen(16)\n\
                  print('LISTENING', flush=True)\n\
                  held = []\n\
                  while True:\n    held.append(s.accept())\n";
    let mut listener = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--", "/usr/bin/python3", "-c", listen])
        .arg(theirs.join("sock"))
        .stdout(Stdio::piped())
        .spawn()
        .expect(
            "Debian's python3 runs under setpriv (a python3 of root's own, e.g. pyenv's, is not readable by uid 65534)",
        );
    let mut lines = BufReader::new(listener.stdout.take().unwrap()).lines();
    assert!(lines.any(|l| l.is_ok_and(|l| l.contains("LISTENING"))), "the other user's listener started");
    let planted = dir.join(format!("{session}.sock"));
    std::fs::rename(theirs.join("sock"), &planted).unwrap();

    let run = run_child(
        &session,
        &["--ignored", "--exact", "child::suite::s01"],
        &[("XDG_RUNTIME_DIR", base.to_str().unwrap())],
    );
    let _ = listener.kill();
    let _ = listener.wait();
    let text = run.text();
    assert!(run.passed(), "the test runs without a reaper: {text}");
    assert!(text.contains("uid 65534") && text.contains("not your reaper"), "the process says why: {text}");
    assert!(text.contains("removes its own containers at exit"), "and what it does instead: {text}");
    assert_nothing_left(&session);
    let _ = std::fs::remove_dir_all(&base);
}

/// The `gated` service's gate for `session`: a directory made anew.
fn gate(session: &str) -> PathBuf {
    scratch(&format!("{session}-gate"))
}

/// Opens `gate`: the init command waiting behind it exits with `code`.
fn open_gate(gate: &Path, code: u8) {
    // Whole or not at all: a half-written file would read as exit 0.
    std::fs::write(gate.join(".open"), code.to_string()).unwrap();
    std::fs::rename(gate.join(".open"), gate.join("open")).unwrap();
}

/// Starts `child::gated::passes_its_gate` in `session`, from `runtime`.
fn spawn_gated(session: &str, runtime: &Path, gate: &Path) -> Child {
    spawn_gated_with(session, runtime, gate, &[])
}

/// [`spawn_gated`] with `env` too.
fn spawn_gated_with(session: &str, runtime: &Path, gate: &Path, env: &[(&str, &str)]) -> Child {
    child_command(session, &["--ignored", "--exact", "child::gated::passes_its_gate", "--nocapture"])
        .envs(env.iter().copied())
        .env("XDG_RUNTIME_DIR", runtime)
        .env("FAULTS_GATE", gate)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until `session`'s gated container runs and the process that
/// created it has said so in `runtime` (the mark the run's other processes
/// read): that process is at the init command, behind the gate. Its id.
fn gated_creator_at_work(session: &str, runtime: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let [short] = service_containers(session, "gated").as_slice() {
            let marks = std::fs::read_dir(runtime.join("cleanroom/ready")).into_iter().flatten().flatten();
            if marks
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .any(|m| m.starts_with(short.as_str()) && m.ends_with(".creator"))
            {
                return short.clone();
            }
        }
        assert!(Instant::now() < deadline, "{session}'s gated service was never created");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a child started by [`spawn_gated`] printed, once it ended, and
/// whether it passed. One still waiting after two minutes waits for its
/// startup timeout (ten): it is killed, and the test fails.
fn gated_outcome(mut child: Child) -> (bool, String) {
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let (stdout, stderr) = (read(Box::new(child.stdout.take().unwrap())), read(Box::new(child.stderr.take().unwrap())));
    let out = move || format!("{}{}", stdout.join().unwrap(), stderr.join().unwrap());
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still waiting after two minutes for a start that can no longer succeed: {}", out());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (status.success(), out())
}

/// The gated child `waiting` passed with a container other than `orphan`,
/// the one its creator left: it made the service again. Nothing of
/// `session` is left, and `dirs` are removed. What the child printed.
fn assert_made_again(waiting: Child, orphan: &str, session: &str, dirs: [&Path; 2]) -> String {
    let (passed, said) = gated_outcome(waiting);
    assert!(passed, "the waiting process made the service again: {said}");
    let used = said.split_once("GATED=").map(|(_, id)| id.lines().next().unwrap_or_default().to_string());
    assert!(used.is_some_and(|id| !id.starts_with(orphan)), "its test got a new container, not {orphan}: {said}");
    assert_nothing_left(session);
    for dir in dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
    said
}

/// A shared service whose start fails in the process that created it (its
/// init command exits with 3) while another process of the run waits for
/// it: that one fails at once with the creator's reason, not at its startup
/// timeout with a guess.
#[test]
fn a_start_that_fails_in_its_creator_fails_the_processes_waiting_for_it_with_its_reason() {
    let session = fresh_session("creator-failed");
    let runtime = scratch(&session);
    let gate = gate(&session);
    let creator = spawn_gated(&session, &runtime, &gate);
    gated_creator_at_work(&session, &runtime);
    let waiting = spawn_gated(&session, &runtime, &gate);
    // Time to attach and wait for the creator's word.
    std::thread::sleep(Duration::from_secs(3));
    open_gate(&gate, 3);
    let (creator_passed, creator_said) = gated_outcome(creator);
    let (waiting_passed, waiting_said) = gated_outcome(waiting);
    assert!(
        !creator_passed && creator_said.contains("exited with code 3"),
        "the creator's init failed: {creator_said}"
    );
    assert!(!waiting_passed, "{waiting_said}");
    assert!(
        waiting_said.contains("the process of the run that created gated failed: gated (image")
            && waiting_said.contains("exited with code 3"),
        "the waiting process gives the creator's reason: {waiting_said}"
    );
    assert_nothing_left(&session);
    let _ = std::fs::remove_dir_all(&runtime);
    let _ = std::fs::remove_dir_all(&gate);
}

/// The process that created a shared service is killed (`kill -9`) in the
/// middle of its start, behind its init command, while another process of
/// the run waits for it: the waiting one removes the half-started container,
/// makes the service again and its test passes.
#[test]
fn a_creator_killed_mid_start_is_replaced_by_the_process_waiting_for_it() {
    let session = fresh_session("creator-killed");
    let runtime = scratch(&session);
    let gate = gate(&session);
    let mut creator = spawn_gated(&session, &runtime, &gate);
    let orphan = gated_creator_at_work(&session, &runtime);
    let waiting = spawn_gated(&session, &runtime, &gate);
    // Attached and registered with the run's reaper, which then keeps the
    // run when the creator goes.
    std::thread::sleep(Duration::from_secs(2));
    kill("-KILL", creator.id());
    let _ = creator.wait();
    open_gate(&gate, 0);
    assert_made_again(waiting, &orphan, &session, [&runtime, &gate]);
}

/// What a fault test whose run goes through a [`FlakyEngine`] leaves if it
/// fails: that run's reaper cannot remove anything once the stand-in is gone
/// with the test. On a failure its children and reaper are killed and its
/// session's containers and networks removed, through the real engine.
struct ThroughAStandIn<'a> {
    session: &'a str,
    children: Vec<u32>,
}

impl Drop for ThroughAStandIn<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let reaper = reaper_pid(self.session);
        for pid in self.children.iter().copied().chain(reaper) {
            let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
        for id in session_containers(self.session) {
            remove_container(&id);
        }
        // Not `docker()`: a second panic here would abort the test binary.
        let filter = format!("label=cleanroom.session={}", self.session);
        let _ = std::process::Command::new("sh")
            .args(["-c", "docker network ls -q --filter \"$1\" | xargs -r docker network rm", "sh", &filter])
            .status();
    }
}

/// The process that created a shared service is killed (`kill -9`) between
/// its create and its start, the container left `created`, while another
/// process of the run waits for it to run: the waiting one sees that its
/// creator (the container's `cleanroom.creator` label) ended, removes it,
/// makes the service again and its test passes — not at its startup timeout
/// (the gated service's is ten minutes). The creator's engine is a stand-in
/// that never passes its start request on.
#[test]
fn a_creator_killed_between_create_and_start_is_replaced_by_the_process_waiting_for_it() {
    let session = fresh_session("creator-killed-created");
    let runtime = scratch(&session);
    let gate = gate(&session);
    open_gate(&gate, 0);
    let engine = FlakyEngine::start(runtime.join("engine.sock"));
    engine.hold_next_start.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut creator = spawn_gated_with(&session, &runtime, &gate, &[("DOCKER_HOST", &engine.host())]);
    let mut cleanup = ThroughAStandIn { session: &session, children: vec![creator.id()] };
    let created = || containers_of(&session, &["label=cleanroom.service=gated", "status=created"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    // Created, and its start asked for and held.
    let orphan = loop {
        if let [id] = created().as_slice() {
            if !engine.hold_next_start.load(std::sync::atomic::Ordering::SeqCst) {
                break id.clone();
            }
        }
        assert!(Instant::now() < deadline, "{session}'s gated container was never created and held");
        std::thread::sleep(Duration::from_millis(50));
    };
    let waiting = spawn_gated(&session, &runtime, &gate);
    cleanup.children.push(waiting.id());
    // Registered with the run's reaper, which then keeps the run when the
    // creator goes, and waiting for the container to run.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(created(), std::slice::from_ref(&orphan), "nobody started it meanwhile");
    kill("-KILL", creator.id());
    let _ = creator.wait();
    let said = assert_made_again(waiting, &orphan, &session, [&runtime, &gate]);
    // Made again because its creator's label said so, not because the run's
    // reaper removed the orphan meanwhile (it would, with no process left).
    assert!(
        said.contains(&format!("the process that created {orphan}")) && said.contains("ended before it started it"),
        "the waiting process judged the creator by the container's label: {said}"
    );
}
