//! `#[cleanroom::fixture(scope = "process")]` as a user writes it: built
//! once per test process on first use, injected by name like any fixture,
//! and (when async) run on a runtime that outlives every test's.
//!
//! No Docker here; the misuses that must not compile are in `ui/`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use cleanroom_tests::{fresh_session, run_child};
use tokio::sync::{mpsc, oneshot};

static SETTINGS_BUILT: AtomicUsize = AtomicUsize::new(0);

/// Something expensive the whole process shares, built once.
#[derive(Debug, Clone, PartialEq)]
struct Settings {
    name: Arc<str>,
}

#[cleanroom::fixture(scope = "process")]
fn settings() -> Settings {
    SETTINGS_BUILT.fetch_add(1, Ordering::SeqCst);
    Settings { name: "shared".into() }
}

/// A process fixture that takes another.
#[cleanroom::fixture(scope = "process")]
fn greeting(settings: Settings) -> Arc<str> {
    format!("hello from {}", settings.name).into()
}

/// A per-test fixture may take a process fixture.
#[cleanroom::fixture]
fn per_test_label(greeting: Arc<str>) -> String {
    format!("{greeting} (per test)")
}

#[cleanroom::test]
fn a_process_fixture_is_built_once_for_every_test_that_takes_it(settings: Settings, greeting: Arc<str>) {
    assert_eq!(settings.name.as_ref(), "shared");
    assert_eq!(greeting.as_ref(), "hello from shared");
    assert_eq!(SETTINGS_BUILT.load(Ordering::SeqCst), 1, "built once per process, whatever the test count");
}

#[cleanroom::test]
async fn an_async_test_takes_the_same_process_fixture(settings: Settings, per_test_label: String) {
    assert_eq!(per_test_label, "hello from shared (per test)");
    assert_eq!(settings.name.as_ref(), "shared");
    assert_eq!(SETTINGS_BUILT.load(Ordering::SeqCst), 1);
}

#[cleanroom::test]
fn a_renamed_parameter_takes_a_process_fixture(#[from(settings)] s: Settings) {
    assert_eq!(s.name.as_ref(), "shared");
}

/// A client of a background task the fixture spawned: a connection driver's
/// stand-in. The task answers with the name of the thread it runs on.
#[derive(Debug, Clone)]
struct Echo {
    requests: mpsc::UnboundedSender<(u32, oneshot::Sender<(u32, String)>)>,
}

impl Echo {
    async fn ask(&self, n: u32) -> (u32, String) {
        let (tx, rx) = oneshot::channel();
        self.requests.send((n, tx)).expect("the fixture's task is alive");
        rx.await.expect("the fixture's task answers")
    }
}

#[cleanroom::fixture(scope = "process")]
async fn echo() -> Echo {
    let (requests, mut incoming) = mpsc::unbounded_channel::<(u32, oneshot::Sender<(u32, String)>)>();
    tokio::spawn(async move {
        while let Some((n, reply)) = incoming.recv().await {
            let thread = std::thread::current().name().unwrap_or("").to_string();
            let _ = reply.send((n, thread));
        }
    });
    Echo { requests }
}

#[cleanroom::test]
async fn a_task_an_async_process_fixture_spawned_serves_a_current_thread_test(echo: Echo) {
    let (n, thread) = echo.ask(1).await;
    assert_eq!((n, thread.as_str()), (1, "cleanroom-process-fixtures"));
}

#[cleanroom::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_an_async_process_fixture_spawned_serves_a_multi_thread_test(echo: Echo) {
    assert_eq!(echo.ask(2).await.0, 2);
}

#[cleanroom::test]
fn a_task_an_async_process_fixture_spawned_serves_a_sync_test(echo: Echo) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    assert_eq!(runtime.block_on(echo.ask(3)).0, 3);
}

// ----------------------------------------------------------------------------
// Child tests: run in order by the tests below, one at a time.
// ----------------------------------------------------------------------------

#[cleanroom::test]
#[ignore = "child test: run by the_fixtures_task_outlives_the_test_that_built_it"]
async fn child_1_builds_the_echo(echo: Echo) {
    assert_eq!(echo.ask(10).await.0, 10);
}

#[cleanroom::test]
#[ignore = "child test: run by the_fixtures_task_outlives_the_test_that_built_it"]
async fn child_2_uses_the_echo_after_the_builders_runtime_ended(echo: Echo) {
    assert_eq!(echo.ask(20).await.0, 20);
}

static FAILING_BUILT: AtomicUsize = AtomicUsize::new(0);

#[cleanroom::fixture(scope = "process")]
fn failing() -> u32 {
    let n = FAILING_BUILT.fetch_add(1, Ordering::SeqCst) + 1;
    panic!("the failing fixture's build number {n} failed");
}

#[cleanroom::test]
#[ignore = "child test: run by a_failed_build_fails_every_test_that_needs_it_without_building_again"]
fn child_3_builds_the_failing_fixture(failing: u32) {
    let _ = failing;
}

#[cleanroom::test]
#[ignore = "child test: run by a_failed_build_fails_every_test_that_needs_it_without_building_again"]
fn child_4_needs_the_failing_fixture_too(failing: u32) {
    let _ = failing;
}

#[cleanroom::fixture(scope = "process")]
async fn asks_for_the_current_test() -> String {
    cleanroom::current().test_name()
}

#[cleanroom::test]
#[ignore = "child test: run by a_process_fixture_cannot_reach_the_test_that_builds_it"]
fn child_5_builds_a_fixture_that_asks_for_the_current_test(asks_for_the_current_test: String) {
    let _ = asks_for_the_current_test;
}

/// libtest runs one test at a time in name order with `--test-threads=1`:
/// the second test runs after the first test's runtime was dropped.
fn run_in_order(tests: &[&str]) -> cleanroom_tests::ChildRun {
    let mut args = vec!["--ignored", "--exact", "--test-threads=1"];
    args.extend_from_slice(tests);
    run_child(&fresh_session("process-fixtures"), &args, &[])
}

#[test]
fn the_fixtures_task_outlives_the_test_that_built_it() {
    let run = run_in_order(&["child_1_builds_the_echo", "child_2_uses_the_echo_after_the_builders_runtime_ended"]);
    assert!(run.passed(), "{}", run.text());
    assert!(run.text().contains("2 passed"), "{}", run.text());
}

#[test]
fn a_failed_build_fails_every_test_that_needs_it_without_building_again() {
    let run = run_in_order(&["child_3_builds_the_failing_fixture", "child_4_needs_the_failing_fixture_too"]);
    let text = run.text();
    assert!(text.contains("2 failed"), "{text}");
    let reason = "the process-scoped fixture `failing` failed when test `child_3_builds_the_failing_fixture` built \
                  it, and is not built again for the tests of this process: the failing fixture's build number 1 \
                  failed";
    assert_eq!(text.matches(reason).count(), 2, "both tests fail with the first build's reason: {text}");
    assert!(!text.contains("build number 2"), "built once: {text}");
}

#[test]
fn a_process_fixture_cannot_reach_the_test_that_builds_it() {
    let run = run_in_order(&["child_5_builds_a_fixture_that_asks_for_the_current_test"]);
    let text = run.text();
    assert!(!run.passed(), "{text}");
    assert!(text.contains("cleanroom::current() called outside a cleanroom test"), "{text}");
}
