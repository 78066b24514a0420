//! `#[cleanroom::test]` and `#[cleanroom::fixture]` as a user writes them,
//! with fixtures only: nothing here needs Docker.
//!
//! Tests run in parallel, so every call counter belongs to one test alone.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::runtime::{Handle, RuntimeFlavor};

#[cleanroom::fixture]
fn answer() -> u32 {
    42
}

#[cleanroom::fixture]
async fn greeting() -> String {
    tokio::task::yield_now().await;
    "hello".to_owned()
}

#[cleanroom::fixture]
fn doubled(answer: u32) -> u32 {
    answer * 2
}

#[cleanroom::fixture]
async fn sentence(greeting: String, doubled: u32) -> String {
    format!("{greeting} {doubled}")
}

#[cleanroom::test]
fn a_sync_test_takes_a_sync_fixture(answer: u32) {
    assert_eq!(answer, 42);
}

#[cleanroom::test]
async fn an_async_test_takes_an_async_fixture(greeting: String) {
    tokio::task::yield_now().await;
    assert_eq!(greeting, "hello");
}

#[cleanroom::test]
fn a_sync_test_takes_an_async_fixture(greeting: String) {
    assert_eq!(greeting, "hello");
}

#[cleanroom::test]
async fn an_async_test_takes_a_sync_fixture(answer: u32) {
    assert_eq!(answer, 42);
}

#[cleanroom::test]
fn a_fixture_takes_other_fixtures(doubled: u32, sentence: String) {
    assert_eq!(doubled, 84);
    assert_eq!(sentence, "hello 84");
}

#[cleanroom::test]
fn a_test_without_parameters_runs() {}

static SHARED_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cleanroom::fixture]
fn shared() -> Arc<AtomicUsize> {
    SHARED_CALLS.fetch_add(1, Ordering::SeqCst);
    Arc::new(AtomicUsize::new(0))
}

#[cleanroom::test]
fn a_fixture_requested_twice_is_made_once_and_shared(
    shared: Arc<AtomicUsize>,
    #[from(shared)] again: Arc<AtomicUsize>,
) {
    assert_eq!(SHARED_CALLS.load(Ordering::SeqCst), 1);
    assert!(Arc::ptr_eq(&shared, &again));
}

static ROOT_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cleanroom::fixture]
fn root() -> Arc<str> {
    ROOT_CALLS.fetch_add(1, Ordering::SeqCst);
    Arc::from("root")
}

#[cleanroom::fixture]
fn left(root: Arc<str>) -> Arc<str> {
    root
}

#[cleanroom::fixture]
async fn right(root: Arc<str>) -> Arc<str> {
    root
}

#[cleanroom::test]
async fn a_fixture_two_fixtures_depend_on_is_made_once(left: Arc<str>, right: Arc<str>, root: Arc<str>) {
    assert_eq!(ROOT_CALLS.load(Ordering::SeqCst), 1);
    assert!(Arc::ptr_eq(&left, &right) && Arc::ptr_eq(&right, &root));
}

/// Not `Clone`: fine as long as each test asks for it once.
#[derive(Debug, PartialEq)]
struct Unique(u32);

#[cleanroom::fixture]
fn unique(answer: u32) -> Unique {
    Unique(answer)
}

#[cleanroom::test]
fn a_fixture_that_is_not_clone_can_be_used_once(unique: Unique) {
    assert_eq!(unique, Unique(42));
}

#[cleanroom::test]
fn a_parameter_can_name_its_fixture_with_from(#[from(answer)] n: u32, #[from(greeting)] mut text: String) {
    text.push('!');
    assert_eq!((n, text.as_str()), (42, "hello!"));
}

#[cleanroom::fixture]
fn pair() -> (u32, &'static str) {
    (1, "one")
}

#[cleanroom::test]
fn a_pattern_parameter_names_its_fixture_with_from(#[from(pair)] (number, name): (u32, &'static str)) {
    assert_eq!((number, name), (1, "one"));
}

#[cleanroom::fixture]
async fn delayed() -> tokio::sync::oneshot::Receiver<u32> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        tokio::task::yield_now().await;
        let _ = tx.send(7);
    });
    rx
}

#[cleanroom::test]
fn a_task_an_async_fixture_spawns_keeps_running_during_a_sync_test(delayed: tokio::sync::oneshot::Receiver<u32>) {
    assert_eq!(delayed.blocking_recv(), Ok(7));
}

#[cleanroom::test]
fn a_test_can_return_ok(answer: u32) -> Result<(), String> {
    if answer == 42 {
        Ok(())
    } else {
        Err(format!("unexpected {answer}"))
    }
}

#[cleanroom::test]
async fn an_async_test_can_use_the_question_mark(greeting: String) -> Result<(), std::num::ParseIntError> {
    let n: u32 = "42".parse()?;
    assert_eq!((n, greeting.as_str()), (42, "hello"));
    Ok(())
}

#[should_panic(expected = "boom")]
#[cleanroom::test]
fn should_panic_above_the_attribute_is_kept() {
    panic!("boom");
}

#[cleanroom::test]
#[should_panic(expected = "async boom")]
async fn should_panic_below_the_attribute_is_kept(answer: u32) {
    panic!("async boom {answer}");
}

#[cleanroom::test]
#[ignore = "proves that #[ignore] is kept: running it fails"]
fn an_ignored_test_does_not_run() {
    panic!("#[ignore] was dropped by #[cleanroom::test]");
}

#[cleanroom::test]
#[cfg(any())]
fn a_test_removed_by_cfg_takes_its_registration_along(missing: NoSuchFixture) {}

#[cleanroom::test]
async fn an_async_test_runs_on_a_current_thread_runtime_by_default() {
    assert_eq!(Handle::current().runtime_flavor(), RuntimeFlavor::CurrentThread);
}

#[cleanroom::test(flavor = "current_thread")]
async fn current_thread_can_be_asked_for() {
    assert_eq!(Handle::current().runtime_flavor(), RuntimeFlavor::CurrentThread);
}

#[cleanroom::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_thread_runs_on_a_multi_thread_runtime(answer: u32) {
    assert_eq!(answer, 42);
    assert_eq!(Handle::current().runtime_flavor(), RuntimeFlavor::MultiThread);
    assert_eq!(Handle::current().metrics().num_workers(), 2);
}

#[cleanroom::test(flavor = "multi_thread")]
async fn multi_thread_without_worker_threads_runs_on_a_multi_thread_runtime() {
    assert_eq!(Handle::current().runtime_flavor(), RuntimeFlavor::MultiThread);
}

/// As tokio's `test_macro_is_resilient_to_shadowing`: the generated test
/// attribute and paths are absolute.
mod shadowing {
    #[allow(unused_imports)]
    use cleanroom::test;

    use super::answer;

    #[allow(dead_code, non_camel_case_types)]
    struct core;
    #[allow(dead_code)]
    enum Option {
        None,
    }
    #[allow(dead_code)]
    fn run() {}

    #[cleanroom::test]
    fn the_test_attribute_is_resilient_to_shadowing() {}

    #[cleanroom::test(flavor = "multi_thread", worker_threads = 1)]
    async fn absolute_paths_are_resilient_to_shadowing(#[from(answer)] n: u32) {
        assert_eq!(n, 42);
    }
}
