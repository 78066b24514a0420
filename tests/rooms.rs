//! Clean rooms, live: every test gets a database of its own inside the shared
//! servers, cloned from a template that is built once.
//!
//! What a room costs a test is measured in `bench/suites/rooms.rs`.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cleanroom::{Container, GenericContainer, Postgres, Redis, RoomHooks};
use cleanroom_tests::{assert_nothing_left, fresh_session, run_child, runs_on_docker, EventWatch};

#[cleanroom::fixture]
async fn db(postgres: Postgres) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

#[cleanroom::fixture]
async fn cache(redis: Redis) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap()
}

fn exec_ok(c: &Container, cmd: &[&str]) -> Result<(), String> {
    let out = c.exec_blocking(cmd.iter().copied()).map_err(|e| e.to_string())?;
    if out.exit_code == 0 {
        Ok(())
    } else {
        Err(format!("`{}` exited with {}: {}", cmd.join(" "), out.exit_code, out.stderr))
    }
}

fn make_room(c: &Container, room: &str) -> Result<(), String> {
    exec_ok(c, &["mkdir", &format!("/data/{room}")])
}

fn remove_room(c: &Container, room: &str) -> Result<(), String> {
    exec_ok(c, &["rm", "-r", &format!("/data/{room}")])
}

/// A user's own service with rooms: a directory per test. Docker only: its
/// hooks run commands inside its container (on the local engine, docs/engines.md,
/// this test and `generic_rooms_are_released_after_a_passing_test` fail
/// with the error that names `with_local_command`).
#[cleanroom::service]
fn store() -> GenericContainer {
    GenericContainer::new("cleanroom-offline/busybox:1.35")
        .with_cmd(["sh", "-c", "mkdir -p /data && exec sleep 3600"])
        .with_health_check(cleanroom::HealthCheck::file("/data"))
        .with_rooms(RoomHooks::new(make_room, remove_room))
}

/// The same without hooks: shared.
#[cleanroom::service]
fn plain_store() -> GenericContainer {
    GenericContainer::new("cleanroom-offline/busybox:1.35").with_cmd(["sleep", "3600"])
}

// ----------------------------------------------------------------------------
// Direct tests
// ----------------------------------------------------------------------------

#[cleanroom::test(store, plain_store)]
fn a_service_with_room_hooks_gives_each_test_a_room(store: Container, plain_store: Container) {
    let room = store.room().expect("store defines rooms").to_string();
    exec_ok(&store, &["test", "-d", &format!("/data/{room}")]).unwrap();
    assert_eq!(plain_store.room(), None, "without hooks a service is shared");
}

#[cleanroom::test(postgres, redis)]
async fn each_test_has_its_own_database_and_keyspace(postgres: Postgres, redis: Redis, db: tokio_postgres::Client) {
    assert!(postgres.database().starts_with("cleanroom_"), "{}", postgres.database());
    assert!(postgres.url().ends_with(&format!("/{}", postgres.database())));
    let current: String = db.query_one("SELECT current_database()", &[]).await.unwrap().get(0);
    assert_eq!(current, postgres.database(), "the fixture and the test see the same database");
    assert!(redis.db() >= 1, "0 is the shared database");
    assert!(redis.url().ends_with(&format!("/{}", redis.db())));
}

#[cleanroom::test(postgres(shared), redis(shared))]
async fn shared_opts_out_of_isolation(postgres: Postgres, redis: Redis) {
    // The server's main database: the built-in container's, or the one an
    // existing server's URL names.
    let main = cleanroom_tests::existing_postgres()
        .map_or("cleanroom".to_string(), |url| url.rsplit('/').next().unwrap().split('?').next().unwrap().to_string());
    assert_eq!(postgres.database(), main);
    assert_eq!(redis.db(), 0);
}

#[cleanroom::test(postgres(migrations = "fixtures/migrations", init = "fixtures/seed.sql"))]
async fn migrations_and_init_data_are_in_every_room(db: tokio_postgres::Client) {
    let owners: Vec<String> =
        db.query("SELECT owner FROM accounts ORDER BY id", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(owners, ["seed-1", "seed-2"]);
}

// ----------------------------------------------------------------------------
// Child suites
// ----------------------------------------------------------------------------

mod child {
    use super::*;

    pub(super) mod isolation {
        use super::*;
        use redis::AsyncCommands;

        macro_rules! isolated_tests {
            ($($name:ident)*) => {$(
                #[cleanroom::test(postgres(migrations = "fixtures/migrations"), redis)]
                #[ignore = "run by thirty_two_parallel_tests_see_only_their_own_data"]
                async fn $name(db: tokio_postgres::Client, mut cache: redis::aio::MultiplexedConnection) {
                    let me = stringify!($name);
                    // Same table name, same keys, own values.
                    db.batch_execute("CREATE TABLE scratch (v text)").await.unwrap();
                    db.execute("INSERT INTO scratch VALUES ($1)", &[&me]).await.unwrap();
                    db.execute("INSERT INTO accounts (owner) VALUES ($1)", &[&me]).await.unwrap();
                    let () = cache.set("shared:key", me).await.unwrap();
                    let () = cache.rpush("shared:list", me).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let rows: Vec<String> = db.query("SELECT v FROM scratch", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
                    assert_eq!(rows, [me]);
                    let owners: Vec<String> = db.query("SELECT owner FROM accounts", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
                    assert_eq!(owners, [me], "the migrated schema, none of another test's rows");
                    let got: String = cache.get("shared:key").await.unwrap();
                    assert_eq!(got, me);
                    let list: Vec<String> = cache.lrange("shared:list", 0, -1).await.unwrap();
                    assert_eq!(list, [me]);
                    let build: (i32, String) = {
                        let r = db.query_one("SELECT built_by, built_at::text FROM template_build", &[]).await.unwrap();
                        (r.get(0), r.get(1))
                    };
                    println!("TEMPLATE_BUILD={}@{}", build.0, build.1);
                }
            )*};
        }
        isolated_tests!(i01 i02 i03 i04 i05 i06 i07 i08 i09 i10 i11 i12 i13 i14 i15 i16
                        i17 i18 i19 i20 i21 i22 i23 i24 i25 i26 i27 i28 i29 i30 i31 i32);
    }

    pub(super) mod generic_rooms {
        use super::*;

        static FIRST_ROOM: Mutex<Option<String>> = Mutex::new(None);

        #[cleanroom::test(store)]
        #[ignore = "run by generic_rooms_are_released_after_a_passing_test"]
        fn a_writes(store: Container) {
            let room = store.room().unwrap().to_string();
            exec_ok(&store, &["sh", "-c", &format!("echo mine > /data/{room}/file")]).unwrap();
            *FIRST_ROOM.lock().unwrap() = Some(room);
        }

        #[cleanroom::test(store)]
        #[ignore = "run by generic_rooms_are_released_after_a_passing_test"]
        fn b_sees_a_fresh_room(store: Container) {
            let first = FIRST_ROOM.lock().unwrap().clone().expect("a_writes ran first");
            let room = store.room().unwrap();
            assert_ne!(room, first);
            exec_ok(&store, &["test", "!", "-e", &format!("/data/{first}")]).expect("a's room was released");
            let out = store.exec_blocking(["ls", "-A", &format!("/data/{room}")]).unwrap();
            assert_eq!(out.stdout, "", "a fresh room is empty");
        }
    }

    pub(super) mod keep {
        use super::*;

        pub(super) static PASSED_DB: Mutex<Option<String>> = Mutex::new(None);
        pub(super) static FAILED_URL: Mutex<Option<String>> = Mutex::new(None);

        #[cleanroom::test(postgres)]
        #[ignore = "run by a_failing_test_keeps_its_database_and_a_passing_one_does_not"]
        fn a_passes(postgres: Postgres) {
            *PASSED_DB.lock().unwrap() = Some(postgres.database().to_string());
        }

        #[cleanroom::test(postgres)]
        #[ignore = "run by a_failing_test_keeps_its_database_and_a_passing_one_does_not"]
        async fn b_fails(postgres: Postgres, db: tokio_postgres::Client) {
            db.batch_execute("CREATE TABLE evidence (v text); INSERT INTO evidence VALUES ('left for debugging')")
                .await
                .unwrap();
            *FAILED_URL.lock().unwrap() = Some(postgres.url());
            panic!("this test fails on purpose");
        }

        #[cleanroom::test(postgres(shared))]
        #[ignore = "run by a_failing_test_keeps_its_database_and_a_passing_one_does_not"]
        async fn c_inspects(db: tokio_postgres::Client) {
            // The failed test's database answers at the URL it printed.
            let url = FAILED_URL.lock().unwrap().clone().expect("b_fails ran first");
            let (kept, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            let v: String = kept.query_one("SELECT v FROM evidence", &[]).await.unwrap().get(0);
            assert_eq!(v, "left for debugging");
            println!("INSPECTED {url}");
            // The passing test's database is dropped (in the background).
            let passed = PASSED_DB.lock().unwrap().clone().expect("a_passes ran first");
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let n: i64 = db
                    .query_one("SELECT count(*) FROM pg_database WHERE datname = $1", &[&passed])
                    .await
                    .unwrap()
                    .get(0);
                if n == 0 {
                    break;
                }
                assert!(Instant::now() < deadline, "{passed} was not dropped");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

// ----------------------------------------------------------------------------
// Parents
// ----------------------------------------------------------------------------

#[test]
fn thirty_two_parallel_tests_see_only_their_own_data() {
    let session = fresh_session("isolation");
    let watch = EventWatch::start(&session);
    let run = run_child(&session, &["--ignored", "child::isolation::", "--test-threads", "8", "--nocapture"], &[]);
    let text = run.text();
    assert!(run.passed(), "{text}");
    assert!(text.contains("32 passed"), "{text}");
    let builds: BTreeSet<&str> = text.lines().filter_map(|l| l.strip_prefix("TEMPLATE_BUILD=")).collect();
    assert_eq!(builds.len(), 1, "the template was built once for 32 tests, not {}: {builds:?}", builds.len());
    if runs_on_docker() {
        assert_eq!(watch.starts_of("postgres"), 1);
        assert_eq!(watch.starts_of("redis"), 1);
        watch.settle(Duration::from_secs(10));
    } else if cleanroom_tests::existing_postgres().is_none() {
        assert_eq!(text.matches("runs on the local engine").count(), 2, "postgres and redis started once: {text}");
    }
    assert_nothing_left(&session);
}

#[test]
fn generic_rooms_are_released_after_a_passing_test() {
    let session = fresh_session("generic-rooms");
    let run = run_child(&session, &["--ignored", "child::generic_rooms::", "--test-threads", "1"], &[]);
    assert!(run.passed(), "{}", run.text());
    assert!(run.text().contains("2 passed"), "{}", run.text());
    assert_nothing_left(&session);
}

#[test]
fn a_failing_test_keeps_its_database_and_a_passing_one_does_not() {
    let session = fresh_session("keep");
    let report = std::env::temp_dir().join(format!("{session}.json"));
    let run = run_child(
        &session,
        &["--ignored", "child::keep::", "--test-threads", "1", "--nocapture"],
        &[("CLEANROOM_REPORT_JSON", report.to_str().unwrap()), ("CLEANROOM_REPORT", "full")],
    );
    let text = run.text();
    assert!(text.contains("2 passed; 1 failed"), "{text}");
    let inspected = text
        .lines()
        .find_map(|l| l.split_once("INSPECTED ").map(|(_, url)| url.trim()))
        .unwrap_or_else(|| panic!("c_inspects did not run:\n{text}"));
    let printed = "test `child::keep::b_fails` failed; its database";
    let line = text.lines().find(|l| l.contains(printed)).unwrap_or_else(|| panic!("no kept-database line:\n{text}"));
    // postgres://user:password@host:port/db, as the test saw it.
    let (user_and_password, rest) = inspected.trim_start_matches("postgres://").split_once('@').unwrap();
    let (user, password) = user_and_password.split_once(':').unwrap();
    let masked = format!("postgres://{user}:***@{rest}");
    assert!(line.contains(&format!("psql '{masked}'")), "the printed URL is the one that worked, masked: {line}");
    assert!(!line.contains(password), "no message prints the password: {line}");
    // Nor does any other line cleanroom wrote (the test's own line with the
    // URL it saw aside), nor the run's report.
    let leaks: Vec<&str> = text.lines().filter(|l| l.contains(password) && !l.contains("INSPECTED ")).collect();
    assert!(leaks.is_empty(), "no message prints the password: {leaks:?}");
    let report_text = std::fs::read_to_string(&report).expect("the run wrote its report");
    let _ = std::fs::remove_file(&report);
    assert!(report_text.contains("\"postgres\""), "the report names the service: {report_text}");
    assert!(!report_text.contains(password), "the report holds no password");
    let where_the_password_is = if cleanroom_tests::existing_postgres().is_some() {
        "the password is the one in its URL"
    } else {
        "sh -c 'echo \"$POSTGRES_PASSWORD\"'"
    };
    assert!(line.contains(where_the_password_is), "the line says where the password is: {line}");
    assert!(line.contains("lives until the run ends"), "the line says how long the database lives: {line}");
    // The two lines under it rerun that one test alone with the server kept,
    // under either runner: the commands a user copies.
    let after: Vec<&str> = text.lines().skip_while(|l| !l.contains(printed)).skip(1).take(2).collect();
    assert_eq!(
        after,
        [
            "  CLEANROOM_REUSE=1 cargo test -p cleanroom-tests --test rooms -- child::keep::b_fails --exact \
             --include-ignored",
            "  CLEANROOM_REUSE=1 cargo nextest run -p cleanroom-tests --run-ignored all \
             -E 'binary_id(cleanroom-tests::rooms) & test(=child::keep::b_fails)'",
        ],
        "the line says how to open it after the run:\n{text}"
    );
    assert!(!text.contains("child::keep::a_passes` ended"), "a passing test's database is not kept:\n{text}");
    assert_nothing_left(&session);
}

/// The text between `start` and the next `end` after it in `line`.
fn between<'a>(line: &'a str, start: &str, end: &str) -> &'a str {
    let from = line.find(start).unwrap_or_else(|| panic!("no {start:?} in {line}")) + start.len();
    let len = line[from..].find(end).unwrap_or_else(|| panic!("no {end:?} after {start:?} in {line}"));
    &line[from..from + len]
}

/// The kept database can really be opened after the run: a failing test
/// prints the command that reruns it with its server kept; run as printed,
/// the rerun fails again, and once it has exited its database answers at the
/// URL it printed, with the password from where it said, holding the data the
/// test wrote. The binary stands in for `cargo test -p … --test rooms`:
/// cargo holds its build lock while this suite runs, so a nested cargo would
/// wait for it forever; the cargo part is checked to name this binary.
#[test]
fn the_printed_rerun_leaves_a_database_that_opens_after_the_run() {
    if !runs_on_docker() {
        println!("skipped: the kept server and its password are Docker's here");
        return;
    }
    let _reuse = cleanroom_tests::reuse_lock();
    let first = fresh_session("rerun-first");
    let run = run_child(&first, &["--ignored", "--exact", "child::keep::b_fails"], &[]);
    assert!(!run.passed(), "{}", run.text());
    let text = run.text();
    let command = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("CLEANROOM_REUSE=1 cargo test "))
        .unwrap_or_else(|| panic!("no rerun command printed:\n{text}"));
    // `VAR=value cargo test <cargo's arguments> -- <the test binary's>`
    let (before, libtest) = command.split_once(" -- ").unwrap();
    let (variables, cargo_args) = before.split_once(" cargo test ").unwrap();
    assert_eq!(cargo_args, format!("-p {} --test rooms", env!("CARGO_PKG_NAME")), "it names this binary: {command}");
    // A runtime directory of its own: the kept server is this test's alone,
    // named and labelled by it, and removed below by those labels.
    let runtime = std::env::temp_dir().join(fresh_session("rerun-runtime"));
    std::fs::create_dir_all(&runtime).unwrap();
    let mut env: Vec<(&str, &str)> = variables.split_whitespace().map(|v| v.split_once('=').unwrap()).collect();
    env.extend([("XDG_RUNTIME_DIR", runtime.to_str().unwrap()), ("CLEANROOM_REUSE_TTL", "300")]);
    let second = fresh_session("rerun-second");
    let args: Vec<&str> = libtest.split_whitespace().collect();
    let rerun = run_child(&second, &args, &env);
    let rerun_text = rerun.text();
    assert!(!rerun.passed() && rerun_text.contains("1 failed"), "the test ran again, and failed: {rerun_text}");
    let line = rerun_text
        .lines()
        .find(|l| l.contains("test `child::keep::b_fails` failed; its database"))
        .unwrap_or_else(|| panic!("no kept-database line:\n{rerun_text}"));
    assert!(line.contains("stays after the run") && line.contains("CLEANROOM_REUSE keeps"), "{line}");
    let url = between(line, "psql '", "'");
    // Run as printed, by a shell, as a user would paste it.
    let password_command = between(line, "(the password: `", "`)");
    assert!(password_command.starts_with("docker exec "), "{password_command}");
    let out = std::process::Command::new("sh").args(["-c", password_command]).output().unwrap();
    assert!(out.status.success(), "`{password_command}` failed: {}", String::from_utf8_lossy(&out.stderr));
    let password = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let container = password_command.split_whitespace().nth(2).unwrap();
    let url = url.replacen(":***@", &format!(":{}@", password), 1);
    let found = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let (kept, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        let v: String = kept.query_one("SELECT v FROM evidence", &[]).await.unwrap().get(0);
        v
    });
    // Only what this test's runtime directory made: its kept server and the
    // reused services' network (the keeper would, after the TTL).
    let runtime_label =
        cleanroom_tests::docker(&["inspect", "--format", "{{index .Config.Labels \"cleanroom.runtime\"}}", container]);
    let ours = [format!("label=cleanroom.runtime={}", runtime_label.trim()), "label=cleanroom.reuse=true".to_string()];
    for id in cleanroom_tests::docker(&["ps", "-aq", "--filter", &ours[0], "--filter", &ours[1]]).lines() {
        cleanroom_tests::docker(&["rm", "-f", id]);
    }
    for id in cleanroom_tests::docker(&["network", "ls", "-q", "--filter", &ours[0], "--filter", &ours[1]]).lines() {
        cleanroom_tests::docker(&["network", "rm", id]);
    }
    let _ = std::fs::remove_dir_all(&runtime);
    assert_eq!(found, "left for debugging", "the kept database holds what the test wrote");
    assert_nothing_left(&first);
    assert_nothing_left(&second);
}
