//! `cleanroom::current()`, live: a helper that takes no parameters (an
//! application's `spawn_app()`) reaches the running test's own database,
//! from whichever thread of the test it runs on.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use cleanroom::{Container, GenericContainer, HealthCheck, Postgres, Redis};
use cleanroom_tests::{assert_nothing_left, docker, fresh_session, run_child};

/// What an application's test helper learns about its database, through a
/// real connection.
#[derive(Debug, PartialEq)]
struct App {
    /// `SELECT current_database()` on the connection the helper made.
    database: String,
    /// The Redis logical database the helper's URL points at.
    redis_db: u32,
}

/// An application's helper: no parameters, one line reaches the test.
async fn spawn_app() -> App {
    let test = cleanroom::current();
    let postgres = test.postgres();
    let (client, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let database: String = client.query_one("SELECT current_database()", &[]).await.unwrap().get(0);
    App { database, redis_db: test.redis().db() }
}

fn expected(postgres: &Postgres, redis: &Redis) -> App {
    assert!(postgres.database().starts_with("cleanroom_t_"), "a room of the test's own: {}", postgres.database());
    App { database: postgres.database().to_string(), redis_db: redis.db() }
}

#[cleanroom::test(postgres, redis)]
async fn a_helper_finds_the_tests_own_rooms_on_a_current_thread_runtime(postgres: Postgres, redis: Redis) {
    let expected = expected(&postgres, &redis);
    assert_eq!(spawn_app().await, expected, "on the test's thread");
    assert_eq!(tokio::spawn(spawn_app()).await.unwrap(), expected, "in a spawned task");
    let blocking = tokio::task::spawn_blocking(|| {
        let postgres = cleanroom::current().postgres();
        (postgres.database().to_string(), cleanroom::current().redis().db())
    });
    assert_eq!(blocking.await.unwrap(), (expected.database, expected.redis_db), "in spawn_blocking");
}

#[cleanroom::test(postgres, redis, flavor = "multi_thread", worker_threads = 2)]
async fn a_helper_finds_the_tests_own_rooms_on_a_multi_thread_runtime(postgres: Postgres, redis: Redis) {
    let expected = expected(&postgres, &redis);
    assert_eq!(spawn_app().await, expected, "on the test's thread");
    // More tasks than workers: some run on the other worker.
    let tasks: Vec<_> = (0..6).map(|_| tokio::spawn(spawn_app())).collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), expected, "in a spawned task");
    }
    let in_place = tokio::task::block_in_place(|| cleanroom::current().postgres().database().to_string());
    assert_eq!(in_place, expected.database, "in block_in_place");
    let blocking = tokio::task::spawn_blocking(|| cleanroom::current().postgres().database().to_string());
    assert_eq!(blocking.await.unwrap(), expected.database, "in spawn_blocking");
}

#[cleanroom::test(postgres, redis)]
fn a_sync_test_finds_its_rooms_on_its_own_thread(postgres: Postgres, redis: Redis) {
    let current = cleanroom::current();
    assert_eq!(current.postgres().database(), postgres.database());
    assert_eq!(current.redis().db(), redis.db());
    assert_eq!(current.test_name(), "a_sync_test_finds_its_rooms_on_its_own_thread");
}

/// The test declares the services but takes no handle: the first
/// `current()` opens the rooms, real ones.
#[cleanroom::test(postgres, redis)]
async fn a_test_without_parameters_gets_rooms_of_its_own_through_current() {
    let app = spawn_app().await;
    assert!(app.database.starts_with("cleanroom_t_"), "{app:?}");
    assert!(app.redis_db >= 1, "not the shared database 0: {app:?}");
    assert_eq!(cleanroom::current().postgres().database(), app.database, "the same room every time");
}

#[cleanroom::fixture]
async fn db(postgres: Postgres) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// `postgres` is declared through a fixture only.
#[cleanroom::test]
async fn a_fixture_and_current_see_the_same_database(db: tokio_postgres::Client) {
    let through_fixture: String = db.query_one("SELECT current_database()", &[]).await.unwrap().get(0);
    assert_eq!(cleanroom::current().postgres().database(), through_fixture);
}

#[cleanroom::test(postgres(shared))]
fn shared_gives_current_the_servers_main_database(postgres: Postgres) {
    assert_eq!(cleanroom::current().postgres().database(), postgres.database());
    assert!(!postgres.database().starts_with("cleanroom_t_"), "{}", postgres.database());
}

#[cleanroom::service]
fn current_web() -> GenericContainer {
    GenericContainer::new("cleanroom-offline/busybox:1.35")
        .with_cmd(["sh", "-c", "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"])
        .with_port(8080)
        .with_health_check(HealthCheck::http(8080, "/"))
}

#[cleanroom::test(current_web)]
async fn a_users_service_is_found_by_name(current_web: Container) {
    let found = tokio::spawn(async { cleanroom::current().service("current_web") }).await.unwrap();
    assert_eq!((found.id(), found.port(8080)), (current_web.id(), current_web.port(8080)));
}

/// Declared by no test: asking for it must start nothing.
#[cleanroom::service]
fn current_never_declared() -> GenericContainer {
    GenericContainer::new("cleanroom-offline/busybox:1.35").with_cmd(["sleep", "3600"])
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[cleanroom::test(redis)]
fn a_service_the_test_does_not_declare_panics_naming_the_fix_and_starts_nothing() {
    let message = std::panic::catch_unwind(|| cleanroom::current().service("current_never_declared"))
        .map(drop)
        .map_err(panic_text)
        .unwrap_err();
    assert_eq!(
        message,
        "cleanroom::current(): test `a_service_the_test_does_not_declare_panics_naming_the_fix_and_starts_nothing` \
         does not declare the service `current_never_declared` (it declares: redis); list it in the test's \
         attribute, #[cleanroom::test(current_never_declared)], or take it in one of its fixtures"
    );
    let message =
        std::panic::catch_unwind(|| cleanroom::current().postgres()).map(drop).map_err(panic_text).unwrap_err();
    assert!(message.contains("does not declare the service `postgres`"), "{message}");
    assert!(cleanroom::lifecycle_of("current_never_declared").is_none(), "nothing was started");
    let containers = docker(&["ps", "-aq", "--filter", "label=cleanroom.service=current_never_declared"]);
    assert!(containers.trim().is_empty(), "no container of the undeclared service: {containers}");
}

#[cleanroom::test(postgres)]
fn a_std_thread_the_test_made_panics_naming_the_test_and_the_fix() {
    let message = std::thread::spawn(|| std::panic::catch_unwind(cleanroom::current).map(drop).map_err(panic_text))
        .join()
        .unwrap()
        .unwrap_err();
    assert!(message.starts_with("cleanroom::current() called outside a cleanroom test"), "{message}");
    // Named alone when it is the only test running (nextest), among the
    // others otherwise.
    assert!(message.contains("a_std_thread_the_test_made_panics_naming_the_test_and_the_fix"), "{message}");
    assert!(message.contains("move the handle in"), "{message}");
    // The fix the message gives works.
    let postgres = cleanroom::current().postgres();
    let database = std::thread::spawn(move || postgres.database().to_string()).join().unwrap();
    assert!(database.starts_with("cleanroom_t_"), "{database}");
}

#[test]
fn outside_a_test_current_panics_and_try_current_is_none() {
    assert!(cleanroom::try_current().is_none());
    let message = std::panic::catch_unwind(cleanroom::current).map(drop).map_err(panic_text).unwrap_err();
    assert!(message.starts_with("cleanroom::current() called outside a cleanroom test"), "{message}");
}

// ----------------------------------------------------------------------------
// Two tests at once, in one process: run as a child by the test below.
// ----------------------------------------------------------------------------

/// The databases the two child tests saw, once each has arrived.
static ARRIVED: Mutex<Vec<String>> = Mutex::new(Vec::new());
static BOTH: Condvar = Condvar::new();

/// Waits until both child tests have recorded their database, and returns
/// both: the tests are then running at the same time.
fn meet(database: String) -> Vec<String> {
    let mut arrived = ARRIVED.lock().unwrap();
    arrived.push(database);
    BOTH.notify_all();
    let (arrived, wait) = BOTH.wait_timeout_while(arrived, Duration::from_secs(120), |a| a.len() < 2).unwrap();
    assert!(!wait.timed_out(), "the other test never ran alongside this one (run with --test-threads=2)");
    arrived.clone()
}

async fn concurrent_child(postgres: Postgres) {
    let own = postgres.database().to_string();
    let seen = meet(own.clone());
    assert_eq!(seen.len(), 2);
    assert_ne!(seen[0], seen[1], "two tests, two databases");
    // While the other test runs too, every thread of this one finds its own.
    assert_eq!(spawn_app().await.database, own);
    let blocking = tokio::task::spawn_blocking(|| cleanroom::current().postgres().database().to_string());
    assert_eq!(blocking.await.unwrap(), own);
}

#[cleanroom::test(postgres, redis, flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child test: run by two_tests_running_at_once_each_find_their_own_database"]
async fn child_concurrent_a(postgres: Postgres) {
    concurrent_child(postgres).await;
}

#[cleanroom::test(postgres, redis)]
#[ignore = "child test: run by two_tests_running_at_once_each_find_their_own_database"]
async fn child_concurrent_b(postgres: Postgres) {
    concurrent_child(postgres).await;
}

#[test]
fn two_tests_running_at_once_each_find_their_own_database() {
    let session = fresh_session("current");
    let run = run_child(
        &session,
        &["--ignored", "--exact", "--test-threads=2", "child_concurrent_a", "child_concurrent_b"],
        &[],
    );
    assert!(run.passed(), "{}", run.text());
    assert!(run.text().contains("2 passed"), "{}", run.text());
    assert_nothing_left(&session);
}

/// A fixture that asks `current()` instead of taking `postgres`.
#[cleanroom::fixture]
async fn database_seen_by_a_fixture() -> String {
    cleanroom::current().postgres().database().to_string()
}

#[cleanroom::test(postgres)]
async fn a_fixture_finds_the_test_through_current(database_seen_by_a_fixture: String, postgres: Postgres) {
    assert_eq!(database_seen_by_a_fixture, postgres.database());
}

// ----------------------------------------------------------------------------
// Where the panics point: at the caller's line, not inside cleanroom.
// ----------------------------------------------------------------------------

#[test]
#[ignore = "child test: run by the_panics_point_at_the_callers_line"]
fn child_current_outside_a_test() {
    let _ = cleanroom::current(); // CALLER-OUTSIDE
}

#[cleanroom::test(redis)]
#[ignore = "child test: run by the_panics_point_at_the_callers_line"]
fn child_undeclared_postgres() {
    let _ = cleanroom::current().postgres(); // CALLER-UNDECLARED
}

/// The line of this file that holds `marker`.
fn line_of(marker: &str) -> usize {
    let source = include_str!("current.rs");
    let needle = format!("// {marker}");
    source.lines().position(|l| l.ends_with(&needle)).expect("the marker is in this file") + 1
}

#[test]
fn the_panics_point_at_the_callers_line() {
    for (test, marker) in
        [("child_current_outside_a_test", "CALLER-OUTSIDE"), ("child_undeclared_postgres", "CALLER-UNDECLARED")]
    {
        let run = run_child(&fresh_session("current-caller"), &["--ignored", "--exact", test], &[]);
        let text = run.text();
        assert!(!run.passed(), "{text}");
        let location = format!("current.rs:{}:", line_of(marker));
        assert!(text.contains(&location), "the panic points at {location}: {text}");
    }
}
