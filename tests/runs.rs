//! One set of containers per run, across processes, and nothing left behind
//! whatever happens to the processes.
//!
//! A run here is emulated the way the runners make one: `cargo test` runs
//! test processes one after another as children of one long-lived process;
//! nextest runs every test in a process of its own, many at once, all with the
//! same `NEXTEST_RUN_ID`. Docker's own event stream counts the containers.
//! What one test process starts, and leaves when it exits, is
//! `tests/process_start_and_exit.rs`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cleanroom_tests::{
    assert_nothing_left, docker, fresh_session, kill, kill_run_with_its_reaper, nextest_session, reaper_pid, run_child,
    service_containers, session_containers, start_waiting, AllSessionsWatch, EventWatch,
};

mod child {
    use super::*;

    pub(super) mod suite {
        cleanroom_tests::postgres_and_redis_tests!("run by the run tests": s01 s02 s03 s04 s05 s06 s07 s08 s09 s10 s11 s12 s13 s14 s15 s16 s17 s18 s19 s20);
    }

    pub(super) mod ahead {
        use super::*;

        #[derive(Debug, Clone)]
        pub struct Late;

        /// Resolved before the test's handles (its parameters come in
        /// order): the rooms are opened ahead by then.
        #[cleanroom::fixture]
        fn late() -> Late {
            std::thread::sleep(Duration::from_millis(300));
            Late
        }

        #[cleanroom::test(postgres, redis)]
        #[ignore = "run by the rooms-ahead test"]
        async fn takes_rooms_opened_ahead(late: Late, postgres: cleanroom::Postgres, redis: cleanroom::Redis) {
            let Late = late;
            // Its own, empty rooms, like any test's.
            let (db, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            db.batch_execute("CREATE TABLE mine (id int)").await.unwrap();
            let mut c = redis::Client::open(redis.url()).unwrap().get_connection().unwrap();
            let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
            assert!(keys.is_empty(), "a flushed database: {keys:?}");
            println!("cleanroom-test: ROOMS {} {}", postgres.database(), redis.db());
        }

        /// Takes no handle: the rooms opened ahead for it go back at its end.
        /// (`late` gives the start thread the time to open them: without it
        /// the test can end before, and its end closes the start thread's
        /// way.)
        #[cleanroom::test(postgres, redis)]
        #[ignore = "run by the rooms-ahead test"]
        fn takes_no_room(late: Late) {
            let Late = late;
        }
    }

    pub(super) mod waits {
        use super::*;

        #[cleanroom::test(postgres, redis)]
        #[ignore = "run by the kill tests"]
        fn until_killed() {
            println!("cleanroom-test: READY");
            std::thread::sleep(Duration::from_secs(120));
        }

        #[cleanroom::test(redis)]
        #[ignore = "run by the Redis pool's kill test"]
        fn writes_to_redis_until_killed(redis: cleanroom::Redis) {
            let mut c = redis::Client::open(redis.url()).unwrap().get_connection().unwrap();
            let () = redis::cmd("SET").arg("left").arg("by a killed test").query(&mut c).unwrap();
            println!("cleanroom-test: READY {}", redis.db());
            std::thread::sleep(Duration::from_secs(120));
        }
    }
}

/// A `sh` that runs `script` with `$BIN` set to this test binary: a runner
/// process like `cargo test`, whose pid the test processes' session is
/// derived from.
fn runner(script: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script])
        .env("BIN", std::env::current_exe().unwrap())
        .env_remove("CLEANROOM_SESSION")
        .env_remove("NEXTEST_RUN_ID")
        .env("RUST_BACKTRACE", "0");
    cmd
}

/// The one session the run's reports name.
fn session_from_reports(path: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut sessions: Vec<String> = Vec::new();
    for line in text.lines() {
        let doc: serde_json::Value = serde_json::from_str(line).unwrap();
        let s = doc["session"].as_str().unwrap().to_string();
        if !sessions.contains(&s) {
            sessions.push(s);
        }
    }
    sessions
}

#[test]
fn three_test_processes_one_after_another_share_one_postgres_and_redis() {
    let watch = AllSessionsWatch::start();
    let report = std::env::temp_dir().join(format!("{}.jsonl", fresh_session("seq")));
    let out = runner(
        "for process in 1 2 3; do \"$BIN\" --ignored child::suite:: --test-threads 2 2>&1 | grep -E 'test result'; done",
    )
    .env("CLEANROOM_REPORT_JSON", &report)
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(text.matches("20 passed").count(), 3, "three processes, each running the suite:\n{text}");
    let sessions = session_from_reports(&report);
    let _ = std::fs::remove_file(&report);
    assert_eq!(sessions.len(), 1, "the three processes derived one session: {sessions:?}");
    let session = &sessions[0];
    assert!(session.starts_with("run-"), "derived from the runner process: {session}");
    assert_eq!(watch.starts_of(session, "postgres"), 1);
    assert_eq!(watch.starts_of(session, "redis"), 1);
    assert_nothing_left(session);
}

#[test]
fn twenty_processes_of_one_nextest_run_start_each_service_once() {
    let watch = AllSessionsWatch::start();
    let run_id = format!(
        "0000{:x}-cafe-4bad-beef-{:012x}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() as u64 ^ 0x5eed
    );
    let session = nextest_session(&run_id);
    // Like nextest: one process per test, several at once, all started
    // together, all with the run's NEXTEST_RUN_ID and no other hint.
    let mut children = Vec::new();
    for i in 1..=20 {
        let mut cmd = nextest_command(&run_id, &format!("child::suite::s{i:02}"));
        cmd.arg("--nocapture").stdout(Stdio::piped()).stderr(Stdio::piped());
        children.push(cmd.spawn().unwrap());
    }
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(watch.starts_of(&session, "postgres"), 1, "sessions seen: {:?}", watch.sessions_of("postgres"));
    assert_eq!(watch.starts_of(&session, "redis"), 1);
    assert_nothing_left(&session);
}

/// A process of one test (nextest's) opens the test's rooms on its start
/// thread once its services are attached, while libtest starts the test's
/// thread; the test takes them. A test that takes no room gives back the
/// rooms opened for it: nothing is left on the servers.
#[test]
fn a_process_of_one_test_opens_its_rooms_ahead_and_gives_back_what_its_test_does_not_take() {
    let run_id = format!(
        "0000{:x}-a4ed-4bad-beef-{:012x}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() as u64 ^ 0xa4ed
    );
    let report = std::env::temp_dir().join(format!("{}.json", fresh_session("ahead")));
    let session = nextest_processes_then(&run_id, &report, 1, &[], |session| {
        assert!(pools_refilled(session), "the keeper refills the run's pools for the next processes");
    });
    for test in ["takes_rooms_opened_ahead", "takes_no_room"] {
        let child = nextest_command(&run_id, &format!("child::ahead::{test}"))
            .arg("--nocapture")
            .env("CLEANROOM_REPORT_JSON", &report)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        passed_attached(child);
        assert!(pools_refilled(&session), "the keeper refills the run's pools after {test}");
    }
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let _ = std::fs::remove_file(&report);
    let marks_of = |test: &str| -> Vec<String> {
        let pid =
            doc["tests"].as_array().unwrap().iter().find(|t| t["name"].as_str().unwrap().ends_with(test)).unwrap()
                ["pid"]
                .clone();
        let process = doc["processes"].as_array().unwrap().iter().find(|p| p["pid"] == pid).unwrap();
        process["marks"].as_array().unwrap().iter().map(|m| m["at"].as_str().unwrap().to_string()).collect()
    };
    let took = marks_of("takes_rooms_opened_ahead");
    for mark in ["first test's rooms opened ahead", "postgres room taken ahead", "redis room taken ahead"] {
        assert!(took.iter().any(|m| m == mark), "`{mark}` in the marks of the test that took them: {took:?}");
    }
    let left = marks_of("takes_no_room");
    for mark in ["first test's rooms opened ahead", "rooms opened ahead given back"] {
        assert!(left.iter().any(|m| m == mark), "`{mark}` in the marks of the test that took none: {left:?}");
    }
    assert!(!left.iter().any(|m| m.ends_with("room taken ahead")), "{left:?}");
    let ahead = doc["caches"]["room_ahead"]["hits"].as_u64().unwrap_or(0);
    assert!(ahead >= 2, "counted: {}", doc["caches"]);
    // What `takes_no_room` did not take went back: the Postgres database to
    // the keeper to drop, the Redis database to be flushed.
    let (ready, taken, returned) = settled_redis_pool(&redis_pool_of(&session));
    assert!(
        taken.is_empty() && returned.is_empty(),
        "every Redis room came back and was flushed: {taken:?} {returned:?}"
    );
    assert!(!ready.is_empty());
    // Every test database on the server is in the run's pool or left to
    // the run to drop: the one `takes_no_room` did not take is not lost.
    let postgres = service_containers(&session, "postgres");
    let deadline = Instant::now() + Duration::from_secs(2);
    let unknown = loop {
        let unknown = databases_known_to_nobody(&postgres[0]);
        if unknown.is_empty() || Instant::now() > deadline {
            break unknown;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(unknown.is_empty(), "{unknown:?} is in no pool and left to nobody");
    assert_nothing_left(&session);
}

/// Under nextest every test is a process of its own whose own pool of
/// cloned databases starts empty: it takes one that an earlier process of
/// the run cloned ahead (`postgres_run_pool`), and clones the next while its
/// test runs. Each test creates the same table in its database, so a
/// database handed out twice would fail the second test.
#[test]
fn processes_of_a_nextest_run_take_databases_that_earlier_ones_cloned_ahead() {
    let run_id = format!(
        "0000{:x}-feed-4bad-beef-{:012x}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() as u64 ^ 0x9001
    );
    let report = std::env::temp_dir().join(format!("{}.json", fresh_session("runpool")));
    // After each pair, the keeper is given time to refill the run's pools:
    // this proves that processes take what was made ahead, not how fast the
    // keeper makes it (a process that finds the pool empty makes its own;
    // the benchmark measures what that costs).
    let session = nextest_processes_then(&run_id, &report, 6, &[], |session| {
        assert!(pools_refilled(session), "the keeper refills the run's pools for the next pair");
    });
    let reaper = reaper_pid(&session).expect("the run's reaper waits for the next process (its grace)");
    // Each process left its part for the reaper, which folded them once no
    // process was still to report: the document is whole as the last exits.
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let _ = std::fs::remove_file(&report);
    assert_eq!(doc["processes"].as_array().map(Vec::len), Some(12), "every process is in the document");
    assert_eq!(doc["tests"].as_array().map(Vec::len), Some(12));
    let parts = cleanroom_runtime::admin::runtime_dir().join("reports").join(format!("{session}.parts"));
    assert!(!parts.exists(), "no part is left unfolded in {}", parts.display());
    // A passed test's database goes: dropped by its process, or, when the
    // process ended before its drop was sent, by the next one that clones.
    let postgres = service_containers(&session, "postgres");
    assert_eq!(postgres.len(), 1, "the run has one Postgres: {postgres:?}");
    // What the server holds besides the run's pool, and which of that no
    // list of the run's names (the pool, what is left to drop).
    let survey = || survey_databases(&postgres[0]);
    // Whatever is left, the run knows of: the reaper (or the next process,
    // or the run's end) drops it. A clone the reaper is making is known to
    // it alone until it is in the pool, a moment later: asked again then.
    let deadline = Instant::now() + Duration::from_secs(2);
    let (left, unknown, pooled) = loop {
        let (left, unknown, pooled) = survey();
        if unknown.is_empty() || Instant::now() > deadline {
            break (left, unknown, pooled);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(unknown.is_empty(), "every database left is left to the run: {unknown:?} is known to nobody");
    // The run's reaper cloned the pool's databases, not the test processes.
    let by_reaper = format!("cleanroom_t_{reaper}_");
    assert!(
        pooled.iter().any(|name| name.starts_with(&by_reaper)),
        "the reaper ({reaper}) keeps the run's pool: {pooled:?}"
    );
    // Not one per test: what the last pair left at its exit, each its
    // test's database and at most one clone of its own pool that the full
    // run's pool did not take (a process clones for itself when the run's
    // pool looked short as it started).
    assert!(left.len() <= 4, "the databases of passed tests are dropped: {left:?} left besides the pool {pooled:?}");
    let pool = &doc["caches"]["postgres_run_pool"];
    let (hits, misses) = (pool["hits"].as_u64().unwrap_or(0), pool["misses"].as_u64().unwrap_or(0));
    assert_eq!(hits + misses, 12, "every process looked in the run's pool once: {}", doc["caches"]);
    assert!(hits >= 10, "after the first pair, processes find databases cloned ahead: {hits} hits, {misses} misses");
    eprintln!("run pool: {hits} hits, {misses} misses; per-test overhead {}", doc["overhead"]);
    // Every process after the first pair took both services from their
    // creator's records on its start thread (`run::attach`); only a process
    // that started while the first made them could not.
    let records = &doc["caches"]["attach_record"];
    let (hits, misses) = (records["hits"].as_u64().unwrap_or(0), records["misses"].as_u64().unwrap_or(0));
    assert!(hits >= 20 && hits + misses <= 24, "10 processes or more attached from the records: {}", doc["caches"]);

    // Redis likewise: the reaper leased the rooms ahead, in the run's name,
    // and flushed each that came back (every test found its room empty).
    let redis = redis_pool_of(&session);
    let pool = &doc["caches"]["redis_run_pool"];
    let (hits, misses) = (pool["hits"].as_u64().unwrap_or(0), pool["misses"].as_u64().unwrap_or(0));
    // The first process found the pool empty as it attached, and leased
    // its own room ahead; the others looked in the run's pool.
    let own = &doc["caches"]["redis_leased_ahead"];
    let own = own["hits"].as_u64().unwrap_or(0) + own["misses"].as_u64().unwrap_or(0);
    assert_eq!(hits + own, 12, "every process took one room: {}", doc["caches"]);
    assert!(misses <= own, "a process that missed the pool leased its own: {}", doc["caches"]);
    assert!(hits >= 10, "after the first pair, processes find Redis rooms leased ahead: {hits} hits, {misses} misses");
    let (ready, taken, returned) = settled_redis_pool(&redis);
    assert!(taken.is_empty() && returned.is_empty(), "every room came back and was flushed: {taken:?} {returned:?}");
    assert!(!ready.is_empty(), "the keeper holds rooms ready for the next process");
    let redis_container = service_containers(&session, "redis");
    for db in &ready {
        let holder =
            docker(&["exec", &redis_container[0], "redis-cli", "-n", "63", "GET", &format!("cleanroom:lease:{db}")]);
        assert_eq!(holder.trim(), format!("keeper:{session}"), "room {db} is leased in the run's name");
        let keys = docker(&["exec", &redis_container[0], "redis-cli", "-n", db, "DBSIZE"]);
        assert_eq!(keys.trim(), "0", "room {db} is flushed");
    }
    assert_nothing_left(&session);
}

/// The directory of the run's pool of its Redis's databases.
fn redis_pool_of(session: &str) -> std::path::PathBuf {
    let redis = service_containers(session, "redis");
    assert_eq!(redis.len(), 1, "the run has one Redis: {redis:?}");
    run_redis_pool(session, &redis[0]).unwrap_or_else(|| panic!("the run's Redis pool of {} is there", redis[0]))
}

/// The pool's ready, taken and given-back rooms once the keeper has had
/// up to 2 s to flush what came back.
fn settled_redis_pool(pool: &std::path::Path) -> (Vec<String>, Vec<String>, Vec<String>) {
    let list = |kind: &str| walk_names(&pool.join(kind));
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let (taken, returned) = (list("taken"), list("returned"));
        if (taken.is_empty() && returned.is_empty()) || Instant::now() > deadline {
            return (list("ready"), taken, returned);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A test process killed (`kill -9`) while its test holds a Redis room of
/// the run's pool never gives it back: the keeper sees the process gone,
/// flushes what it wrote, and hands the room out again.
#[test]
fn a_redis_room_a_killed_process_held_is_flushed_and_handed_out_again() {
    // Told apart from the other runs of this binary within the session's
    // first 24 characters.
    let run_id = format!("0000{:x}-4ed1-4bad-beef-{:012x}", std::process::id(), 0x4ed1u64);
    let report = std::env::temp_dir().join(format!("{}.json", fresh_session("redispool")));
    // One pair fills the pool.
    let session = nextest_processes(&run_id, &report, 1, &[]);
    let pool = redis_pool_of(&session);
    let mut holder = nextest_command(&run_id, "child::waits::writes_to_redis_until_killed")
        .arg("--nocapture")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    let db = loop {
        let line = lines.next().expect("the holder says its room").unwrap();
        if let Some(db) = line.strip_prefix("cleanroom-test: READY ") {
            break db.to_string();
        }
    };
    let taken = walk_names(&pool.join("taken"));
    assert_eq!(taken, vec![format!("{db}@{}", taken[0].split_once('@').unwrap().1)], "room {db} is taken");
    assert!(taken[0].starts_with(&format!("{db}@{}:", holder.id())), "by the holder: {taken:?}");
    kill("-9", holder.id());
    let _ = holder.wait();
    // The next process tells the keeper, which finds the holder gone.
    passed_attached(nextest_process(&run_id, &report, 3, &[]));
    let (ready, taken, returned) = settled_redis_pool(&pool);
    let _ = std::fs::remove_file(&report);
    assert!(taken.is_empty() && returned.is_empty(), "the killed process's room is back: {taken:?} {returned:?}");
    assert!(ready.contains(&db), "room {db} is ready again: {ready:?}");
    let redis = service_containers(&session, "redis");
    let keys = docker(&["exec", &redis[0], "redis-cli", "-n", &db, "DBSIZE"]);
    assert_eq!(keys.trim(), "0", "what the killed test wrote is flushed");
    assert_nothing_left(&session);
}

/// Without a reaper that keeps the run's pools (one of another version:
/// its mark removed), a process whose clone for the run's pool has had no
/// answer when it ends (the server is slow; here a session holds a lock on
/// the template that the clone waits for) leaves the clone's name to the
/// run as perhaps still in the making. The next process does not drop it while the server still
/// makes it (the drop would find nothing, and the database would appear
/// after it, known to nobody), and a process after the server made it
/// drops it.
#[test]
fn a_clone_the_server_makes_after_its_process_ended_is_dropped_by_a_later_process() {
    let run_id = format!("0000{:x}-c10e-4bad-beef-{:012x}", std::process::id(), 0xc10eu64);
    let report = std::env::temp_dir().join(format!("{}.json", fresh_session("late-clone")));
    // The checks between processes must not outlast the reaper's wait for
    // the next one (and the wait must end before `assert_nothing_left`'s).
    let env = [("CLEANROOM_REAPER_GRACE", "8")];
    let session = nextest_processes(&run_id, &report, 1, &env);
    let postgres = service_containers(&session, "postgres");
    assert_eq!(postgres.len(), 1, "the run has one Postgres: {postgres:?}");
    let container = postgres[0].clone();
    let psql = |sql: &str| {
        docker(&[
            "exec",
            &container,
            "sh",
            "-c",
            "PGAPPNAME=cleanroom-test psql -U \"$POSTGRES_USER\" -d \"$POSTGRES_DB\" -tAc \"$1\"",
            "sh",
            sql,
        ])
    };
    let databases = || psql("SELECT datname FROM pg_database").lines().map(str::to_string).collect::<Vec<_>>();
    let pool_root = std::fs::read_dir(cleanroom_runtime::admin::runtime_dir().join("pgpool"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(&container))
        .expect("the run's pool has a directory for its server");
    let template_dir = std::fs::read_dir(&pool_root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .expect("the run's pool has a directory for the suite's template");
    let template = template_dir.file_name().unwrap().to_string_lossy().into_owned();
    // The run's reaper keeps its pools; this test is about what processes
    // do without one that does (another version's reaper): its mark goes.
    // Once it has filled the pool (four), and no clone of its is on its way.
    let deadline = Instant::now() + Duration::from_secs(30);
    while walk_names(&template_dir).len() < 4 {
        assert!(Instant::now() < deadline, "the run's pool was filled: {:?}", walk_names(&template_dir));
        std::thread::sleep(Duration::from_millis(20));
    }
    let mark = run_dir(&session).join("pool-keeper");
    assert!(mark.exists(), "the run's reaper keeps its pools: {}", mark.display());
    std::fs::remove_file(&mark).unwrap();
    let pooled = walk_names(&template_dir);
    assert_eq!(pooled.len(), 4, "the run's pool holds four: {pooled:?}");
    let retired = || -> Vec<(String, bool)> {
        let mut list: Vec<(String, bool)> = std::fs::read_dir(pool_root.join(".retired"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap() == b"creating"))
            .collect();
        list.sort();
        list
    };

    // A session holds a lock that `CREATE DATABASE … TEMPLATE` waits for.
    let mut hold = Command::new("docker")
        .args([
            "exec",
            &container,
            "sh",
            "-c",
            "PGAPPNAME=cleanroom-test-hold psql -U \"$POSTGRES_USER\" -d \"$POSTGRES_DB\" -c \"$1\"",
            "sh",
            &format!("BEGIN; COMMENT ON DATABASE \"{template}\" IS NULL; SELECT pg_sleep(300);"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let held = "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
                WHERE a.application_name = 'cleanroom-test-hold' AND l.locktype = 'object' AND l.granted";
    let deadline = Instant::now() + Duration::from_secs(30);
    while psql(held).trim() == "0" {
        assert!(Instant::now() < deadline, "the lock on the template is held");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Process A takes a database of the pool, and its clone for the pool
    // waits for the lock past the process's wait at exit.
    passed_attached(nextest_process(&run_id, &report, 3, &env));
    let after_a = retired();
    let unfinished: Vec<&String> = after_a.iter().filter(|(_, u)| *u).map(|(n, _)| n).collect();
    assert_eq!(unfinished.len(), 1, "A left its clone as perhaps still in the making: {after_a:?}");
    let late = unfinished[0].clone();
    let creating = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE state <> 'idle' AND query LIKE 'CREATE DATABASE \"{late}\"%'"
    );
    assert_eq!(psql(&creating).trim(), "1", "the server still makes {late}");
    assert!(!databases().contains(&late));
    let dropped_by_c: Vec<String> = after_a.iter().filter(|(_, u)| !*u).map(|(n, _)| n.clone()).collect();
    assert!(!dropped_by_c.is_empty(), "A's own drop waited behind its clone and was left to the run: {after_a:?}");

    // Process C (cloning nothing itself: the pool has some left, and its
    // own pool is off) drops what was left to it, but hands on the clone the
    // server still makes.
    passed_attached(nextest_process(&run_id, &report, 4, &[env[0], ("CLEANROOM_POOL", "0")]));
    let after_c = retired();
    assert!(after_c.contains(&(late.clone(), true)), "C handed {late} on, still in the making: {after_c:?}");
    let now = databases();
    let kept: Vec<&String> = dropped_by_c.iter().filter(|d| now.contains(d)).collect();
    assert!(kept.is_empty(), "C dropped the databases left to it: {kept:?} are still there");

    // The lock goes; the server makes the clone; process D drops it.
    psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'cleanroom-test-hold'");
    let _ = hold.wait();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !databases().contains(&late) {
        assert!(Instant::now() < deadline, "the server made {late} once the lock went");
        std::thread::sleep(Duration::from_millis(50));
    }
    passed_attached(nextest_process(&run_id, &report, 5, &env));
    assert!(!databases().contains(&late), "D dropped {late}");
    assert!(!retired().iter().any(|(n, _)| *n == late), "and took it off the list");
    let _ = std::fs::remove_file(&report);
    assert_nothing_left(&session);
}

/// Over Windows's transport for the reaper (a loopback TCP port with
/// tokens, which Linux uses when told to; docs/environments.md): four
/// processes of one nextest run, two at a time, attach to one reaper, hand
/// it their parts of the report, which it folds into one document, and the
/// run leaves nothing.
#[test]
fn processes_of_a_run_over_the_windows_transport_share_a_reaper_and_fold_their_report() {
    let run_id = format!("0000{:x}-7cb0-4bad-beef-{:012x}", std::process::id(), 0x7cb0u64);
    let report = std::env::temp_dir().join(format!("{}.json", fresh_session("tcp-reaper")));
    let session = nextest_processes(&run_id, &report, 2, &[("CLEANROOM_REAPER_TRANSPORT", "tcp")]);
    let socket = cleanroom_runtime::admin::runtime_dir().join(format!("{session}.sock"));
    if let Ok(text) = std::fs::read_to_string(&socket) {
        assert_eq!(text.split_whitespace().count(), 3, "the reaper's socket names a port and two tokens: {text:?}");
    }
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let _ = std::fs::remove_file(&report);
    assert_eq!(doc["processes"].as_array().map(Vec::len), Some(4), "every process is in the document");
    let parts = cleanroom_runtime::admin::runtime_dir().join("reports").join(format!("{session}.parts"));
    assert!(!parts.exists(), "the reaper folded every part: {} is left", parts.display());
    assert_eq!(service_containers(&session, "postgres").len(), 1, "the four processes share one Postgres");
    assert_nothing_left(&session);
}

/// Runs `pairs` pairs of this binary's `child::suite` tests as processes of
/// the nextest run `run_id`, two at a time as nextest runs them on two
/// cores, each with `CLEANROOM_REPORT_JSON` at `report` and `env`; asserts
/// that each passed, attached to the run's reaper. Returns the run's
/// session.
fn nextest_processes(run_id: &str, report: &std::path::Path, pairs: usize, env: &[(&str, &str)]) -> String {
    nextest_processes_then(run_id, report, pairs, env, |_| {})
}

/// [`nextest_processes`], calling `between` with the session after each pair.
fn nextest_processes_then(
    run_id: &str,
    report: &std::path::Path,
    pairs: usize,
    env: &[(&str, &str)],
    between: impl Fn(&str),
) -> String {
    let session = nextest_session(run_id);
    for pair in 0..pairs {
        let children: Vec<_> = (1..=2).map(|k| nextest_process(run_id, report, pair * 2 + k, env)).collect();
        for child in children {
            passed_attached(child);
        }
        between(&session);
    }
    session
}

/// The test databases (`cleanroom_t_…`) on the Postgres of container `id`
/// that are neither in one of its pools nor left to be dropped.
fn databases_known_to_nobody(id: &str) -> Vec<String> {
    survey_databases(id).1
}

/// What the Postgres container `id` holds besides its pools: the test
/// databases in no pool, those of them not left to drop either (known to
/// nobody), and the pools' names.
fn survey_databases(id: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let databases = docker(&[
        "exec",
        id,
        "sh",
        "-c",
        "psql -U \"$POSTGRES_USER\" -d \"$POSTGRES_DB\" -tAc \"SELECT datname FROM pg_database\"",
    ]);
    let dirs = pg_pool_dirs(id);
    let pooled: Vec<String> = dirs.iter().flat_map(|dir| walk_names(dir)).collect();
    let retired: Vec<String> = dirs
        .iter()
        .flat_map(|dir| std::fs::read_dir(dir.join(".retired")).into_iter().flatten().flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let left: Vec<String> = databases
        .lines()
        .filter(|d| d.starts_with("cleanroom_t_") && !pooled.iter().any(|p| p == d))
        .map(str::to_string)
        .collect();
    let unknown = left.iter().filter(|d| !retired.contains(d)).cloned().collect();
    (left, unknown, pooled)
}

/// The directories of the Postgres pools of the container `id` (one per
/// server, under the runtime directory's `pgpool`).
fn pg_pool_dirs(id: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(cleanroom_runtime::admin::runtime_dir().join("pgpool"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(id))
        .map(|e| e.path())
        .collect()
}

/// Waits up to 10 s until the reaper's keeper holds at least two cloned
/// Postgres databases and two leased Redis rooms ready for `session`'s next
/// processes (a pair takes two of each): whether it did.
fn pools_refilled(session: &str) -> bool {
    let postgres = service_containers(session, "postgres");
    let pg_pool = |id: &str| -> usize { pg_pool_dirs(id).iter().map(|dir| walk_names(dir).len()).sum() };
    let redis = redis_pool_of(session).join("ready");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = postgres.iter().map(|id| pg_pool(id)).sum::<usize>() >= 2 && walk_names(&redis).len() >= 2;
        if ready || Instant::now() > deadline {
            return ready;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts this binary's `child::suite::s<test>` as a process of the
/// nextest run `run_id`.
fn nextest_process(run_id: &str, report: &std::path::Path, test: usize, env: &[(&str, &str)]) -> std::process::Child {
    nextest_command(run_id, &format!("child::suite::s{test:02}"))
        .env("CLEANROOM_REPORT_JSON", report)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// This binary's ignored test `test` as a process of the nextest run `run_id`.
fn nextest_command(run_id: &str, test: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--ignored", "--exact", test]).env_remove("CLEANROOM_SESSION").env("NEXTEST_RUN_ID", run_id);
    cmd
}

/// Waits for `child` and asserts that it passed, attached to its run's reaper.
fn passed_attached(child: std::process::Child) {
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{said}");
    assert!(!said.contains("no reaper for session"), "the process attached to the run's reaper: {said}");
}

/// The names of the files under `dir`, at any depth, hidden ones (and
/// what hidden directories hold) left out.
fn walk_names(dir: &std::path::Path) -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if entry.path().is_dir() {
            names.extend(walk_names(&entry.path()));
        } else {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names
}

/// Starts `until_killed` under a runner that then sleeps, and returns the
/// runner, the test process's pid and the derived session.
fn start_waiting_run() -> (std::process::Child, u32, String) {
    let mut child =
        runner("\"$BIN\" --ignored --exact child::waits::until_killed --nocapture & echo \"PID $!\"; wait; sleep 60")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut pid = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(p) = line.strip_prefix("PID ") {
            pid = Some(p.trim().parse::<u32>().unwrap());
        }
        if line.contains("cleanroom-test: READY") {
            break;
        }
    }
    let pid = pid.expect("the runner printed the test process's pid");
    let start: u64 = {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap();
        stat[stat.rfind(')').unwrap() + 1..].split_whitespace().nth(19).unwrap().parse().unwrap()
    };
    let session = format!("run-{}-{start}", child.id());
    assert_eq!(session_containers(&session).len(), 2, "postgres and redis run for {session}");
    (child, pid, session)
}

#[test]
fn kill_9_of_a_test_process_leaks_nothing() {
    let (mut runner, pid, session) = start_waiting_run();
    kill("-KILL", pid);
    // The runner still runs (it sleeps): the reaper's grace period applies.
    assert_nothing_left(&session);
    let _ = runner.kill();
    let _ = runner.wait();
}

#[test]
fn kill_9_of_a_whole_run_leaks_nothing() {
    let (mut runner, pid, session) = start_waiting_run();
    kill("-KILL", pid);
    let _ = runner.kill();
    let _ = runner.wait();
    assert_nothing_left(&session);
}

#[test]
fn a_killed_reaper_is_cleaned_up_after_by_the_next_run_and_live_runs_are_untouched() {
    // A run whose reaper dies, then its test process: orphans.
    let orphaned = fresh_session("orphaned");
    kill_run_with_its_reaper(&orphaned, &[]);
    // Its containers are orphans now: nothing of that run is left to remove
    // them. (A reaper of a run starting right now, in another test, may
    // already sweep them; the next run below must, in any case.)

    // A live run meanwhile.
    let live = fresh_session("live");
    let mut alive = start_waiting(&live, &[]);

    // The next run: its reaper sweeps the orphans.
    let next = fresh_session("next");
    let watch = EventWatch::start(&next);
    let run = run_child(&next, &["--ignored", "--exact", "child::suite::s01"], &[]);
    assert!(run.passed(), "{}", run.text());
    assert_nothing_left(&orphaned);
    assert_eq!(session_containers(&live).len(), 2, "a live run is untouched");
    drop(watch);

    kill("-TERM", alive.id());
    let _ = alive.wait();
    assert_nothing_left(&live);
    assert_nothing_left(&next);
}

fn uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").unwrap().uid()
}

fn reused_containers(service: &str) -> Vec<String> {
    cleanroom_tests::docker(&[
        "ps",
        "-aq",
        "--filter",
        "label=cleanroom.reuse=true",
        "--filter",
        &format!("label=cleanroom.service={service}"),
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

/// A reused Postgres stopped between two runs (an engine that restarted,
/// a `docker stop`), then one removed (`docker rm`, its record left behind):
/// the run after each asks the engine once whether what its records name
/// still runs, and makes it again; no test fails.
#[test]
fn a_reused_service_stopped_or_removed_between_runs_is_made_again_by_the_next() {
    let _reuse = cleanroom_tests::reuse_lock();
    let report = std::env::temp_dir().join(format!("{}.jsonl", fresh_session("reuse-ended-report")));
    let env = [
        ("CLEANROOM_REUSE", "1"),
        ("CLEANROOM_REUSE_TTL", "60"),
        // A definition of its own: no other reuse on this machine is touched.
        ("CLEANROOM_STARTUP_TIMEOUT", "61.7"),
        ("CLEANROOM_REPORT_JSON", report.to_str().unwrap()),
    ];
    let run_in_new_session = |tag: &str, test: &str| {
        let session = fresh_session(tag);
        let run = run_child(&session, &["--ignored", "--exact", test], &env);
        assert_nothing_left(&session);
        run
    };
    let first = run_in_new_session("reuse-ended-first", "child::suite::s01");
    assert!(first.passed(), "{}", first.text());
    // The reused containers of this definition, by name (tests that reuse
    // others run meanwhile): the first run's, from its report.
    let text = std::fs::read_to_string(&report).unwrap();
    let _ = std::fs::remove_file(&report);
    let doc: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let container_of = |service: &str| {
        let s = doc["services"].as_array().unwrap().iter().find(|s| s["name"] == service).unwrap();
        let id = s["containers"][0].as_str().unwrap().to_string();
        cleanroom_tests::docker(&["inspect", "-f", "{{.Name}}", &id]).trim().trim_start_matches('/').to_string()
    };
    let (postgres, redis) = (container_of("postgres"), container_of("redis"));
    let named = |name: &str| -> Vec<String> {
        cleanroom_tests::docker(&["ps", "-aq", "--no-trunc", "--filter", &format!("name=^/{name}$")])
            .lines()
            .map(str::to_string)
            .collect()
    };
    let stopped = named(&postgres);
    assert_eq!(stopped.len(), 1, "{stopped:?}");
    cleanroom_tests::docker(&["stop", "-t", "1", &stopped[0]]);
    let second = run_in_new_session("reuse-ended-second", "child::suite::s02");
    let after_stop = named(&postgres);
    for id in &after_stop {
        cleanroom_tests::remove_container(id);
    }
    let third = run_in_new_session("reuse-ended-third", "child::suite::s01");
    let after_rm = named(&postgres);
    for id in [named(&postgres), named(&redis)].concat() {
        cleanroom_tests::remove_container(&id);
    }
    assert!(second.passed(), "the run after the stop: {}", second.text());
    assert_eq!(after_stop.len(), 1, "{after_stop:?}");
    assert_ne!(after_stop[0], stopped[0], "the stopped one was made again");
    assert!(third.passed(), "the run after the removal: {}", third.text());
    assert_eq!(after_rm.len(), 1, "{after_rm:?}");
    assert_ne!(after_rm[0], after_stop[0], "the removed one was made again");
}

/// A reused Redis under nextest: the run's keeper leases rooms ahead on it
/// as on one the run owns, so processes take them without a round trip;
/// once the run is over it gives every one back, flushed. The server
/// outlives the run; the run's leases do not.
#[test]
fn the_run_pool_of_a_reused_redis_is_given_back_flushed_when_the_run_ends() {
    let _reuse = cleanroom_tests::reuse_lock();
    let (others, other_postgres) = (reused_containers("redis"), reused_containers("postgres"));
    let ours = || -> Vec<String> { reused_containers("redis").into_iter().filter(|id| !others.contains(id)).collect() };
    let run_id = format!(
        "0000{:x}-feed-4bad-beef-{:012x}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() as u64 ^ 0x7e05
    );
    let report = std::env::temp_dir().join(format!("{}.json", fresh_session("reuse-redis-pool")));
    let env = [
        ("CLEANROOM_REUSE", "1"),
        ("CLEANROOM_REUSE_TTL", "60"),
        // A definition of its own: no other reuse on this machine is touched.
        ("CLEANROOM_STARTUP_TIMEOUT", "61.9"),
        ("CLEANROOM_REAPER_GRACE", "1"),
    ];
    // The keeper's ready rooms, seen between the pairs of processes.
    let leased_ahead = std::sync::Mutex::new(std::collections::BTreeSet::new());
    let session = nextest_processes_then(&run_id, &report, 3, &env, |session| {
        let Some(redis) = ours().first().cloned() else { return };
        let ready = || run_redis_pool(session, &redis).map(|pool| walk_names(&pool.join("ready"))).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(10);
        while ready().len() < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        leased_ahead.lock().unwrap().extend(ready());
    });
    let redis = ours();
    let cleanup = || {
        let postgres = reused_containers("postgres").into_iter().filter(|id| !other_postgres.contains(id)).collect();
        for id in [ours(), postgres].concat() {
            cleanroom_tests::remove_container(&id);
        }
    };
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap_or_default()).unwrap_or_default();
    let _ = std::fs::remove_file(&report);
    let pool = &doc["caches"]["redis_run_pool"];
    let hits = pool["hits"].as_u64().unwrap_or(0);
    let leases = |id: &str| -> Vec<String> {
        let script = "local out = {} for _, k in ipairs(redis.call('KEYS', 'cleanroom:lease:*')) do \
                      table.insert(out, k .. '=' .. redis.call('GET', k)) end return out";
        docker(&["exec", id, "redis-cli", "-n", "63", "EVAL", script, "0"]).lines().map(str::to_string).collect()
    };
    let during = redis.first().map(|id| leases(id)).unwrap_or_default();
    // The run ends once its reaper's grace is over: the reaper gives the
    // pool back, then removes the run's directory (and stays on as the
    // keeper of the reused services, for their TTL).
    let run_ended = until_run_ended(&session);
    let after = redis.first().map(|id| leases(id)).unwrap_or_default();
    let sizes: Vec<(String, String)> = leased_ahead
        .lock()
        .unwrap()
        .iter()
        .map(|db| (db.clone(), docker(&["exec", &redis[0], "redis-cli", "-n", db, "DBSIZE"]).trim().to_string()))
        .collect();
    cleanup();

    assert_eq!(redis.len(), 1, "the run reused one Redis of its own definition: {redis:?}");
    assert!(hits >= 4, "after the first pair, processes take rooms the keeper leased ahead: {}", doc["caches"]);
    let keeper = format!("keeper:{session}");
    assert!(during.iter().any(|l| l.ends_with(&keeper)), "the keeper leases in the run's name: {during:?}");
    assert!(run_ended, "the run ends once its reaper's grace is over: {} is gone", run_dir(&session).display());
    assert!(!after.iter().any(|l| l.ends_with(&keeper)), "the run's leases are given back at its end: {after:?}");
    assert!(!sizes.is_empty());
    for (db, size) in sizes {
        assert_eq!(size, "0", "room {db}, leased ahead by the run, is flushed as it is given back");
    }
    assert_nothing_left(&session);
}

/// Two cold runs with reuse, one after the other, each two processes at
/// once (like `nextest -j 2`), the reused services and their network gone
/// in between: each run makes one network, and every process passes. The
/// first run's mark of who made the network (kept under the reused
/// services' owner, `reuse-<uid>`, whose directory no run's end removes)
/// must not tell the second run's processes that it is made: each then made
/// one, and every later use of the name failed as ambiguous.
#[test]
fn each_cold_run_with_reuse_makes_one_network_for_its_processes() {
    let _reuse = cleanroom_tests::reuse_lock();
    let before: Vec<String> = [reused_containers("postgres"), reused_containers("redis")].concat();
    let ours = || -> Vec<String> {
        [reused_containers("postgres"), reused_containers("redis")]
            .concat()
            .into_iter()
            .filter(|id| !before.contains(id))
            .collect()
    };
    let env = [
        ("CLEANROOM_REUSE", "1"),
        ("CLEANROOM_REUSE_TTL", "60"),
        // A definition of its own: no other reuse on this machine is touched.
        ("CLEANROOM_STARTUP_TIMEOUT", "61.8"),
        ("CLEANROOM_REAPER_GRACE", "1"),
    ];
    // The reused services' networks of this user (`cleanroom-reuse-*`):
    // what other reuse tests left (their containers removed) goes first,
    // so that each round starts without one; one still in use stays, and
    // the round then makes none.
    let reuse_networks = || -> Vec<String> {
        docker(&["network", "ls", "-q", "--filter", "label=cleanroom.reuse=true", "--filter", "name=cleanroom-reuse-"])
            .lines()
            .map(str::to_string)
            .collect()
    };
    for network in reuse_networks() {
        let _ = Command::new("docker").args(["network", "rm", &network]).output();
    }
    let mut made = Vec::new();
    let mut expected = Vec::new();
    for round in 0..2u64 {
        expected.push((1, u64::from(reuse_networks().is_empty())));
        let run_id = format!("0000{:x}-feed-4bad-beef-{:012x}", std::process::id(), 0xc01d0 + round);
        let report = std::env::temp_dir().join(format!("{}.json", fresh_session("reuse-network")));
        let children: Vec<_> = (1..=2).map(|k| nextest_process(&run_id, &report, k, &env)).collect();
        let outputs: Vec<_> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report).unwrap_or_default()).unwrap_or_default();
        let _ = std::fs::remove_file(&report);
        // The run ends; its reaper stays on as the keeper of the reused
        // services (for their TTL), and is stopped here, so that it does
        // not tend what the next run makes under the same names.
        let session = nextest_session(&run_id);
        until_run_ended(&session);
        if let Some(reaper) = reaper_pid(&session) {
            kill("-KILL", reaper);
        }
        // The reused services go, and their network with them (as when
        // their TTL runs out): the next run makes both again.
        let networks = reused_networks_of(&ours());
        for id in ours() {
            cleanroom_tests::remove_container(&id);
        }
        // (Every unused one: a duplicate made by mistake is on no container.)
        for network in reuse_networks() {
            let _ = Command::new("docker").args(["network", "rm", &network]).output();
        }
        for out in &outputs {
            let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(out.status.success(), "round {round}: {said}");
        }
        made.push((networks.len(), doc["caches"]["network"]["misses"].as_u64().unwrap_or(0)));
    }
    assert_eq!(
        made, expected,
        "(networks, processes that made one) per run: one network, made by one process if none was there"
    );
    assert!(expected.iter().any(|&(_, makers)| makers == 1), "a round started without the network");
}

/// The reused services' networks the containers `ids` are on.
fn reused_networks_of(ids: &[String]) -> Vec<String> {
    let mut networks: Vec<String> = ids
        .iter()
        .flat_map(|id| {
            docker(&["inspect", "-f", "{{range $_, $n := .NetworkSettings.Networks}}{{$n.NetworkID}} {{end}}", id])
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|net| docker(&["network", "inspect", "-f", "{{.Name}}", net]).trim().starts_with("cleanroom-reuse-"))
        .collect();
    networks.sort();
    networks.dedup();
    networks
}

/// The directory the processes of `session` share, which goes with the run.
pub fn run_dir(session: &str) -> std::path::PathBuf {
    cleanroom_runtime::admin::runtime_dir().join("runs").join(session)
}

/// Waits up to 30 s for the run `session` to end (its reaper removes its
/// directory); whether it did.
pub fn until_run_ended(session: &str) -> bool {
    let dir = run_dir(session);
    let deadline = Instant::now() + Duration::from_secs(30);
    while dir.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    !dir.exists()
}

/// The run's pool of the Redis container `id`, under the run's directory.
fn run_redis_pool(session: &str, id: &str) -> Option<std::path::PathBuf> {
    let root = run_dir(session).join("redispool");
    std::fs::read_dir(&root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(id)))
}

#[test]
fn reuse_keeps_services_for_the_next_run_and_removes_them_after_the_ttl() {
    let _reuse = cleanroom_tests::reuse_lock();
    let watch = AllSessionsWatch::start();
    let owner = format!("reuse-{}", uid());
    let report = std::env::temp_dir().join(format!("{}.jsonl", fresh_session("reuse-report")));
    let env = [
        ("CLEANROOM_REUSE", "1"),
        ("CLEANROOM_REUSE_TTL", "8"),
        // A definition of its own (the startup timeout is part of it), so that
        // no other reuse on this machine is touched.
        ("CLEANROOM_STARTUP_TIMEOUT", "61.5"),
        ("CLEANROOM_REPORT_JSON", report.to_str().unwrap()),
    ];
    // Reused services of other definitions may exist on this machine: only
    // the ones this test makes count.
    let others: Vec<String> = [reused_containers("postgres"), reused_containers("redis")].concat();
    let ours = |service: &str| -> Vec<String> {
        reused_containers(service).into_iter().filter(|id| !others.contains(id)).collect()
    };
    let first = fresh_session("reuse-first");
    let run = run_child(&first, &["--ignored", "--exact", "child::suite::s01"], &env);
    assert!(run.passed(), "{}", run.text());
    assert_eq!(watch.starts_of(&owner, "postgres"), 1);
    assert_eq!(watch.starts_of(&owner, "redis"), 1);
    // The first run is over (its reaper too, once its grace period passed):
    // the reused services stay.
    assert_nothing_left(&first);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(ours("postgres").len(), 1, "postgres is kept for the next run");
    assert_eq!(ours("redis").len(), 1, "redis is kept for the next run");

    let second = fresh_session("reuse-second");
    let started = Instant::now();
    let run = run_child(&second, &["--ignored", "--exact", "child::suite::s02"], &env);
    assert!(run.passed(), "{}", run.text());
    println!("second run (reuse): {:?} wall", started.elapsed());
    assert_eq!(watch.starts_of(&owner, "postgres"), 1, "the second run started no postgres");
    assert_eq!(watch.starts_of(&owner, "redis"), 1, "the second run started no redis");
    let text = std::fs::read_to_string(&report).unwrap();
    let _ = std::fs::remove_file(&report);
    let second_doc: serde_json::Value = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|d| d["session"] == second.as_str())
        .unwrap();
    println!(
        "second run (reuse): services ready for the first test {} µs after process start",
        second_doc["tests"][0]["started_micros"]
    );
    for a in second_doc["tests"][0]["acquire"].as_array().unwrap() {
        println!("second run (reuse): {} handle in {} µs", a["service"], a["micros"]);
    }

    // Idle for the TTL after the last run that used them: gone.
    let reused = [ours("postgres"), ours("redis")].concat();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(ours("postgres").is_empty() && ours("redis").is_empty()) {
        assert!(Instant::now() < deadline, "reused containers outlived their TTL");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_nothing_left(&second);
    // With them their ready marks and attach records: the next run with
    // this definition names its containers the same, and must not attach to
    // the ones that are gone.
    let ready = cleanroom_runtime::admin::runtime_dir().join("ready");
    for entry in std::fs::read_dir(&ready).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let name = entry.file_name().to_string_lossy().into_owned();
        for id in &reused {
            // (`docker ps -q` ids are short: a mark's name starts with one.)
            assert!(
                !name.starts_with(id.as_str()) && !text.contains(id.as_str()),
                "{name} still names the removed container {id}"
            );
        }
    }
}

/// The container cache layer's cap: with `caches.container.max_count = 1`
/// only one idle reused service waits for the next run, though both are
/// well within their TTL; the report says what each layer holds.
#[test]
fn a_container_cap_keeps_only_that_many_idle_reused_services() {
    let _reuse = cleanroom_tests::reuse_lock();
    let runtime = std::env::temp_dir().join(fresh_session("reuse-cap"));
    std::fs::create_dir_all(&runtime).unwrap();
    let report = runtime.join("report.json");
    let env = [
        ("XDG_RUNTIME_DIR", runtime.to_str().unwrap()),
        ("CLEANROOM_REUSE", "1"),
        ("CLEANROOM_REUSE_TTL", "120"),
        ("CLEANROOM_CACHE_CONTAINER_MAX_COUNT", "1"),
        ("CLEANROOM_REPORT_JSON", report.to_str().unwrap()),
    ];
    let session = fresh_session("reuse-cap");
    let run = run_child(&session, &["--ignored", "--exact", "child::suite::s01"], &env);
    assert!(run.passed(), "{}", run.text());
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(doc["cache_layers"]["container"]["entries"], 2, "both reused services: {:#}", doc["cache_layers"]);
    assert_eq!(doc["cache_layers"]["container"]["eviction"], "lru");
    // This runtime directory's reused services: its owner label.
    let ours = || -> Vec<String> {
        let all = cleanroom_tests::docker(&["ps", "-aq", "--filter", "label=cleanroom.reuse=true"]);
        all.lines().filter(|id| owned_by(&runtime, id)).map(str::to_string).collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while ours().len() > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let left = ours();
    assert_eq!(left.len(), 1, "the cap of 1 leaves one idle reused service: {left:?}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(ours(), left, "and keeps it (its TTL is two minutes)");
    // Clean up what this test's runtime directory owns: the kept service and
    // its network (the keeper would, after the TTL).
    let label = format!("label=cleanroom.runtime={}", runtime_label(&left[0]));
    for id in cleanroom_tests::docker(&["ps", "-aq", "--filter", &label]).lines() {
        let _ = Command::new("docker").args(["rm", "-f", id]).output();
    }
    for id in cleanroom_tests::docker(&["network", "ls", "-q", "--filter", &label]).lines() {
        let _ = Command::new("docker").args(["network", "rm", id]).output();
    }
    let _ = std::fs::remove_dir_all(&runtime);
    assert_nothing_left(&session);
}

/// The image cache layer evicts only images cleanroom pulled itself, which
/// it records when it pulls. Nothing can be pulled on this machine, so two
/// local tags stand in for pulled images (their records are written as a
/// pull writes them); a third tag without a record is the user's own. Over
/// `caches.image.max_size` the run's end removes the recorded ones, never
/// the user's, and the report counts what the layer holds.
#[test]
fn the_image_cap_removes_only_images_cleanroom_pulled() {
    let session = fresh_session("image-cap");
    let runtime = std::env::temp_dir().join(&session);
    let records = runtime.join("cleanroom/caches/image");
    std::fs::create_dir_all(&records).unwrap();
    let repo = format!("cleanroom-evict-test/{session}");
    let tags = ["pulled-a", "pulled-b", "users-own"].map(|t| format!("{repo}:{t}"));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    for tag in &tags {
        cleanroom_tests::docker(&["tag", "cleanroom-offline/busybox:1.35", tag]);
    }
    for tag in &tags[..2] {
        let file: String = tag
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        std::fs::write(records.join(file), format!("{now} 1 0")).unwrap();
    }
    let present = |tag: &str| Command::new("docker").args(["image", "inspect", tag]).output().unwrap().status.success();
    let run = run_child(
        &session,
        &["--ignored", "--exact", "child::suite::s01"],
        &[("XDG_RUNTIME_DIR", runtime.to_str().unwrap()), ("CLEANROOM_CACHE_IMAGE_MAX_SIZE", "1KiB")],
    );
    assert!(run.passed(), "{}", run.text());
    let deadline = Instant::now() + Duration::from_secs(20);
    while (present(&tags[0]) || present(&tags[1])) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let outcome = tags.each_ref().map(|t| present(t));
    let _ = Command::new("docker").args(["rmi", &tags[2]]).output();
    assert_eq!(outcome, [false, false, true], "[recorded, recorded, the user's own]");
    assert!(present("cleanroom-offline/busybox:1.35"), "the image the tags shared stays");
    assert!(std::fs::read_dir(&records).unwrap().next().is_none(), "their records went with them");
    let _ = std::fs::remove_dir_all(&runtime);
    assert_nothing_left(&session);
}

fn runtime_label(id: &str) -> String {
    cleanroom_tests::docker(&["inspect", "--format", "{{index .Config.Labels \"cleanroom.runtime\"}}", id])
        .trim()
        .to_string()
}

/// Whether the container `id` was made from the runtime directory under
/// `xdg` (its claims live there). A container removed between the listing
/// and this inspect (a cap or a TTL evicting it, another test's cleanup) is
/// gone, so it is not one of ours that is left.
fn owned_by(xdg: &std::path::Path, id: &str) -> bool {
    let out = Command::new("docker").args(["inspect", "--format", "{{.Name}}", id]).output().unwrap();
    if !out.status.success() {
        return false;
    }
    let name = String::from_utf8_lossy(&out.stdout);
    xdg.join("cleanroom/reuse").join(name.trim().trim_start_matches('/')).exists()
}

#[test]
fn without_a_reaper_each_process_removes_its_own_containers() {
    let session = fresh_session("no-reaper");
    let watch = EventWatch::start(&session);
    let report = std::env::temp_dir().join(format!("{session}.json"));
    let run = run_child(
        &session,
        &["--ignored", "--exact", "child::suite::s01"],
        &[("CLEANROOM_NO_REAPER", "1"), ("CLEANROOM_REPORT_JSON", report.to_str().unwrap())],
    );
    assert!(run.passed(), "{}", run.text());
    assert!(reaper_pid(&session).is_none(), "no reaper was started");
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    std::fs::remove_file(&report).unwrap();
    assert_eq!(doc["caches"]["network"]["misses"], 1, "the process made a network: {}", doc["caches"]);
    // Removed by the process itself at exit: already gone when it has exited.
    assert!(session_containers(&session).is_empty(), "left: {:?}", session_containers(&session));
    // So is the network of its own that its containers joined.
    let rest = cleanroom_tests::session_networks_and_volumes(&session);
    assert!(rest.is_empty(), "networks or volumes left: {rest:?}");
    assert_eq!(watch.starts_of("postgres"), 1);
    assert_eq!(watch.starts_of("redis"), 1);
}
