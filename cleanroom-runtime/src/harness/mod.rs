//! The one entry point generated tests call, and the typed description they
//! hand it.
//!
//! `#[cleanroom::test]` expands to a plain `#[test]` function that builds a
//! [`TestDesc`] (what the test is called, which services and fixtures it asked
//! for) and calls [`run`]. Everything the test needs is resolved through the
//! [`Resolve`] trait, which `#[cleanroom::fixture]`, `#[cleanroom::service]`
//! and the built-in services implement.

pub(crate) mod ahead;
pub(crate) mod builtin;
pub(crate) mod current;
pub(crate) mod process_fixture;
pub(crate) mod scope;

use std::any::Any;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

pub use crate::catalog::{Flavor, Node, NodeKind, Registration, TestDesc};
use crate::rooms::RoomName;
use crate::run::registry;
use crate::service::definition::ServiceSpec;
use crate::service::handle::Container;
use scope::TestScope;

/// Something a test parameter can be resolved to: a fixture or a service.
///
/// Implemented by the zero-sized types that `#[cleanroom::fixture]` and
/// `#[cleanroom::service]` generate next to the function of the same name.
pub trait Resolve {
    /// The value handed to the parameter.
    type Output;
    /// This fixture or service in the dependency graph.
    const NODE: Node;
    /// Produces the value for one test, resolving dependencies first.
    fn resolve(ctx: &mut TestContext) -> Self::Output;
}

/// A [`Resolve`] that is a service: only these may be listed in
/// `#[cleanroom::test(...)]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a cleanroom service",
    label = "not declared with #[cleanroom::service]",
    note = "only services may be listed in #[cleanroom::test(...)]: built-in `postgres`, `redis`, or a function marked #[cleanroom::service]; take fixtures as parameters instead"
)]
pub trait Service: Resolve {
    /// The service's node; `<T as Service>::NODE` in generated code both
    /// names the node and proves at compile time that `T` is a service.
    const NODE: Node = <Self as Resolve>::NODE;
}

/// One test's state while its parameters are resolved and its body runs.
pub struct TestContext {
    desc: &'static TestDesc,
    runtime: Option<tokio::runtime::Runtime>,
    memo: Vec<Memo>,
    /// When the body started, counted from process start.
    body_started: Option<std::time::Duration>,
    /// The test's services and rooms, shared with `cleanroom::current()` on
    /// every thread of the test.
    scope: Arc<TestScope>,
}

struct Memo {
    module_path: &'static str,
    name: &'static str,
    type_name: &'static str,
    /// A copy kept for later requests, when the type is `Clone`.
    kept: Option<Box<dyn Any>>,
    cloner: Option<ErasedCloner>,
}

/// Clones a kept fixture value behind `dyn Any`.
type ErasedCloner = fn(&dyn Any) -> Box<dyn Any>;

impl std::fmt::Debug for TestContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestContext")
            .field("test", &self.desc.test_name())
            .field("resolved", &self.memo.iter().map(|m| m.name).collect::<Vec<_>>())
            .finish()
    }
}

impl TestContext {
    fn new(desc: &'static TestDesc) -> Self {
        TestContext { desc, runtime: None, memo: Vec::new(), body_started: None, scope: TestScope::new(desc) }
    }

    /// The test being run.
    pub fn desc(&self) -> &'static TestDesc {
        self.desc
    }

    fn runtime(&mut self) -> &tokio::runtime::Runtime {
        let flavor = self.desc.flavor;
        let scope = self.scope.clone();
        self.runtime.get_or_insert_with(|| {
            let mut builder = match flavor {
                Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
                Flavor::MultiThread(workers) => {
                    let mut b = tokio::runtime::Builder::new_multi_thread();
                    if let Some(n) = workers {
                        b.worker_threads(n);
                    }
                    b
                }
                // A sync test with an async fixture: one worker, so that tasks the
                // fixture spawns (a connection driver) keep running while the
                // synchronous body uses what it returned.
                Flavor::Sync => {
                    let mut b = tokio::runtime::Builder::new_multi_thread();
                    b.worker_threads(1);
                    b
                }
            };
            // Every thread the runtime starts, workers and blocking pool alike,
            // is the test's: `cleanroom::current()` works in spawned tasks,
            // which task-locals would not reach. The test's own thread (which
            // drives a current-thread runtime) is marked by `run`.
            builder
                .on_thread_start(move || scope::adopt_thread(&scope))
                .on_thread_stop(scope::leave_thread)
                .enable_all()
                .build()
                .expect("cleanroom: failed to build the test's tokio runtime")
        })
    }

    /// Runs a future to completion on the test's runtime (created on first use).
    pub fn block_on<F: Future>(&mut self, fut: F) -> F::Output {
        self.runtime().block_on(fut)
    }

    /// Resolves a fixture once per test: the first request runs `make`, later
    /// requests get a clone (the type must be `Clone` to be requested twice).
    pub fn fixture<T: 'static>(
        &mut self,
        node: &'static Node,
        cloner: Option<fn(&T) -> T>,
        make: impl FnOnce(&mut TestContext) -> T,
    ) -> T {
        if let Some(i) = self.memo.iter().position(|m| m.name == node.name && m.module_path == node.module_path) {
            let memo = &self.memo[i];
            return match (&memo.kept, memo.cloner) {
                (Some(kept), Some(clone)) => *clone(kept.as_ref()).downcast::<T>().expect("fixture type is stable"),
                _ => fail(format!(
                    "cleanroom: fixture `{}` is requested more than once in test `{}`, but its type `{}` is not Clone; \
                     return a cheaply clonable handle (for example Arc<{}>) so that every user shares the one value",
                    node.name,
                    self.desc.test_name(),
                    memo.type_name,
                    memo.type_name,
                )),
            };
        }
        let value = make(self);
        let (kept, erased): (Option<Box<dyn Any>>, Option<ErasedCloner>) = match cloner {
            Some(clone) => {
                // Only monomorphic fn pointers can be stored; route through a
                // generic shim that knows T.
                let kept: Box<dyn Any> = Box::new((clone(&value), clone));
                (Some(kept), Some(clone_erased::<T>))
            }
            None => (None, None),
        };
        self.memo.push(Memo {
            module_path: node.module_path,
            name: node.name,
            type_name: std::any::type_name::<T>(),
            kept,
            cloner: erased,
        });
        value
    }

    /// The service's container once it is Ready, started if it is not yet
    /// running. A service that failed fails the test here, with its error.
    fn ready(&mut self, spec: &'static ServiceSpec) -> Container {
        self.scope.ready(spec)
    }

    /// The test's handle of a service: its container, and the test's own
    /// room in it when the service has rooms (unless the attribute says
    /// `shared`). One per test, shared by the test, its fixtures and
    /// `cleanroom::current()`.
    pub(crate) fn service(&mut self, spec: &'static ServiceSpec) -> (Container, Option<RoomName>) {
        self.scope.service(spec)
    }

    /// The handle of a service, started if it is not yet running; with the
    /// test's own room when the service defines rooms. One per test.
    pub fn container(&mut self, spec: &'static ServiceSpec) -> Container {
        self.service(spec).0
    }

    /// Ends the test's rooms: given back in the background after a pass,
    /// kept (and printed) after a failure, as `CLEANROOM_KEEP` says.
    fn finish(&mut self, failed: bool) {
        let keep = crate::config::current().map(|c| c.keep).unwrap_or_default();
        let test = self.desc.test_name();
        let acquisitions = self.scope.end(|room| room.end(&test, failed, keep));
        // What was opened ahead for the test and not taken goes back now.
        ahead::end_unclaimed();
        for a in &acquisitions {
            tracing::debug!(
                service = a.service,
                wait_ms = crate::metrics::ms(a.elapsed),
                room_ms = crate::metrics::ms(a.room),
                "acquired"
            );
        }
        crate::report::record_test(self.desc, acquisitions, self.body_started);
    }
}

fn clone_erased<T: 'static>(kept: &dyn Any) -> Box<dyn Any> {
    let (value, clone) = kept.downcast_ref::<(T, fn(&T) -> T)>().expect("fixture type is stable");
    Box::new(clone(value))
}

/// What a test returns: `()` or a `Result`, as with `#[test]`.
#[diagnostic::on_unimplemented(
    message = "a cleanroom test returns () or Result<(), E>, not `{Self}`",
    note = "as with #[test], return nothing or a Result whose error is Debug"
)]
pub trait Outcome {
    /// Whether this value means the test failed.
    fn is_failure(&self) -> bool;
}

impl Outcome for () {
    fn is_failure(&self) -> bool {
        false
    }
}

impl<T, E> Outcome for Result<T, E> {
    fn is_failure(&self) -> bool {
        self.is_err()
    }
}

impl Outcome for std::process::ExitCode {
    fn is_failure(&self) -> bool {
        *self != std::process::ExitCode::SUCCESS
    }
}

/// Why cleanroom failed a test (a service that never became Ready, a room
/// that could not be made): unwound without the panic hook, and panicked
/// again by [`run`] at its caller, so that the message points at the
/// user's test and not at a file of cleanroom's.
struct Failure(String);

/// Fails the test being resolved with `message`; [`run`] reports it.
pub(super) fn fail(message: String) -> ! {
    std::panic::resume_unwind(Box::new(Failure(message)))
}

/// Runs one test: the generated `#[test]` function's whole body. A failure of
/// cleanroom's own is reported at the caller, the user's test.
#[track_caller]
pub fn run<R: Outcome>(desc: &'static TestDesc, body: impl FnOnce(&mut TestContext) -> R) -> R {
    // Once per process, not a lock and a search per test.
    static STARTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);
    if STARTED.swap(false, std::sync::atomic::Ordering::Relaxed) {
        crate::util::clock::mark("first test thread");
    }
    let span = tracing::info_span!("cleanroom_test", test = %desc.test_name());
    let _entered = span.enter();
    let mut ctx = TestContext::new(desc);
    // This thread is the test's until it ends: `cleanroom::current()` here,
    // in the body and in a current-thread runtime's tasks finds it.
    let _thread = scope::enter(ctx.scope.clone());
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // Every service the test asked for is Ready before it starts, whether
        // or not a parameter receives its handle; a service that failed fails
        // the test here, with its own error.
        for spec in desc.services() {
            ctx.ready(spec);
        }
        ctx.body_started = crate::util::clock::PROCESS_START.get().map(|t| t.elapsed());
        // Once per process, not a lock and a search per test.
        static FIRST: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);
        if FIRST.swap(false, std::sync::atomic::Ordering::Relaxed) {
            crate::util::clock::mark("first test's services ready");
        }
        let out = body(&mut ctx);
        // A test that took fewer handles than it has services (its body
        // began without a room the scope could see opened) did by now.
        crate::run::attach::first_body_started(|| true);
        out
    }));
    match outcome {
        Ok(out) => {
            if out.is_failure() {
                if let Some(note) = ctx.died_under() {
                    eprintln!("{note}");
                }
            }
            ctx.finish(out.is_failure());
            out
        }
        Err(panic) => {
            let panic = match panic.downcast::<Failure>() {
                Ok(failure) => {
                    let message = match ctx.died_under() {
                        Some(note) => format!("{note}\n{}", failure.0),
                        None => failure.0,
                    };
                    ctx.finish(true);
                    drop(ctx);
                    // Here, not where it happened: `run` tracks its caller,
                    // so the message points at the user's test.
                    panic!("{message}");
                }
                Err(panic) => panic,
            };
            // A connection error is what the test saw; say why it happened.
            let panic = match ctx.died_under() {
                Some(note) => {
                    let own = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "(no message)".into());
                    // The panic hook has printed the test's own message
                    // already; this goes right under it in the test's output.
                    eprintln!("{note}");
                    Box::new(format!("{note}\nThe test's own panic: {own}")) as Box<dyn std::any::Any + Send>
                }
                None => panic,
            };
            ctx.finish(true);
            drop(ctx);
            std::panic::resume_unwind(panic)
        }
    }
}

/// The longest a failing test whose service died waits for its recovery.
const RECOVERY_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

impl TestContext {
    /// When a service this test used died while it ran: what happened, in
    /// words, with the container's last log lines.
    fn died_under(&self) -> Option<String> {
        let registry = registry::get()?;
        for (name, container) in &self.scope.containers() {
            let id = container.inner.id.clone();
            // Most failing tests failed on their own: one question to Docker
            // says whether the container still runs, with no waiting.
            let mut failure = registry.failure_of(name, &id);
            let ended = if failure.is_some() {
                None
            } else {
                let engine = container.inner.engine.clone();
                let probe = id.clone();
                match crate::util::background::block_on_runtime(async move { engine.ended(&probe).await }) {
                    None => continue,
                    Some(e) => Some(e),
                }
            };
            // It died: the monitor hears of it within milliseconds and has the
            // reason and the last log lines; once it has recorded the death,
            // the tests after this one wait for the replacement.
            for _ in 0..20 {
                if failure.is_some() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
                failure = registry.failure_of(name, &id);
            }
            // Not recorded: the monitor has not looked yet (a process under
            // load). Recovered here, so that neither this process's next
            // tests nor the run's later processes, which find it Ready in
            // the run's records, take the dead container.
            // Either way the test returns once the recovery is over (or after
            // RECOVERY_WAIT): see `recovery_done`.
            let cause = match (&failure, &ended) {
                (None, Some(e)) => Some(crate::monitor::Cause::Died { exit_code: Some(e.code.to_string()) }),
                _ => None,
            };
            let (service, dead) = (name.to_string(), id.clone());
            crate::util::background::block_on_runtime(async move {
                if let Some(cause) = cause {
                    registry.recover(&service, &dead, cause).await;
                }
                registry.recovery_done(&service, RECOVERY_WAIT).await;
            });
            let (reason, logs) = match (failure, ended) {
                (Some(f), _) => (f.reason, f.logs),
                (None, Some(e)) => (
                    format!(
                        "its container {} exited with code {}{}",
                        &id[..id.len().min(12)],
                        e.code,
                        if e.oom_killed { " (OOM)" } else { "" }
                    ),
                    String::new(),
                ),
                (None, None) => continue,
            };
            let logs = if logs.is_empty() { String::new() } else { format!("; its last log lines:\n{logs}") };
            return Some(format!(
                "cleanroom: {name} died under test `{}`: {reason}. The test's errors come from that, not from the test; cleanroom recovers the service for the tests after it{logs}",
                self.desc.test_name()
            ));
        }
        None
    }
}

/// Autoref specialisation: `(&&Share::<T>::new()).cloner()` is
/// `Some(T::clone)` when `T: Clone` and `None` otherwise, so that fixtures can
/// be shared within a test without requiring `Clone` of every fixture.
#[derive(Debug)]
pub struct Share<T>(PhantomData<fn() -> T>);

impl<T> Share<T> {
    /// A marker for `T`.
    pub const fn new() -> Self {
        Share(PhantomData)
    }
}

impl<T> Default for Share<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Picked when `T: Clone`.
pub trait ShareClone<T> {
    /// `Some(T::clone)`.
    fn cloner(&self) -> Option<fn(&T) -> T>;
}

impl<T: Clone> ShareClone<T> for &Share<T> {
    fn cloner(&self) -> Option<fn(&T) -> T> {
        Some(<T as Clone>::clone)
    }
}

/// Picked otherwise.
pub trait ShareNone<T> {
    /// `None`.
    fn cloner(&self) -> Option<fn(&T) -> T>;
}

impl<T> ShareNone<T> for Share<T> {
    fn cloner(&self) -> Option<fn(&T) -> T> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone)]
    struct Cheap;

    #[derive(Debug)]
    struct Unique;

    static SYNC_TEST: TestDesc =
        TestDesc { module_path: "krate::m", name: "t", ignored: false, flavor: Flavor::Sync, needs: &[], rooms: &[] };

    static SHARED: Node = Node::fixture("shared", "krate::m", &[]);

    mod should {
        use super::*;

        #[test]
        fn pick_clone_for_sharing_only_for_clone_types() {
            #[allow(unused_imports)]
            use super::super::{ShareClone as _, ShareNone as _};
            // The autoref specialisation is the point: `&&` picks ShareClone
            // for Clone types and falls back to ShareNone for the rest.
            #[allow(clippy::needless_borrow)]
            {
                assert!((&&Share::<Cheap>::new()).cloner().is_some());
                assert!((&&Share::<Unique>::new()).cloner().is_none());
            }
        }

        #[test]
        fn make_a_clone_fixture_once_and_share_it() {
            let mut ctx = TestContext::new(&SYNC_TEST);
            let mut calls = 0;
            let first = ctx.fixture(&SHARED, Some(<String as Clone>::clone), |_| {
                calls += 1;
                "value".to_string()
            });
            let second = ctx.fixture(&SHARED, Some(<String as Clone>::clone), |_| {
                calls += 1;
                "another".to_string()
            });
            assert_eq!((first.as_str(), second.as_str(), calls), ("value", "value", 1));
        }

        #[test]
        #[should_panic(
            expected = "fixture `shared` is requested more than once in test `m::t`, but its type `cleanroom_runtime::harness::tests::Unique` is not Clone"
        )]
        fn say_how_to_fix_a_non_clone_fixture_requested_twice() {
            // Through `run`, which reports cleanroom's failures at its caller.
            run(&SYNC_TEST, |ctx| {
                let _first = ctx.fixture(&SHARED, None, |_| Unique);
                let _second = ctx.fixture(&SHARED, None, |_| Unique);
            });
        }

        #[test]
        fn report_a_failure_of_cleanrooms_at_the_caller_of_run() {
            // Where the panic hook is told the panic happened, for this
            // thread's panics only (other tests run meanwhile).
            let caller = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let (seen, this_thread) = (caller.clone(), std::thread::current().id());
            let hook = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if let Some(location) = info.location().filter(|_| std::thread::current().id() == this_thread) {
                    seen.lock().unwrap().push((location.file().to_string(), location.line()));
                }
            }));
            let line = line!() + 1;
            let outcome = std::panic::catch_unwind(|| run::<()>(&SYNC_TEST, |_| fail("cleanroom: broken".into())));
            std::panic::set_hook(hook);
            let message = outcome.unwrap_err().downcast::<String>().map(|m| *m).unwrap_or_default();
            assert_eq!(message, "cleanroom: broken");
            assert_eq!(*caller.lock().unwrap(), [(file!().to_string(), line)], "the one panic the hook saw");
        }

        #[test]
        fn find_services_through_fixtures() {
            static CLIENT: Node =
                Node::fixture("client", "krate", &[&<crate::harness::builtin::postgres as Resolve>::NODE]);
            static REPO: Node =
                Node::fixture("repo", "krate", &[&CLIENT, &<crate::harness::builtin::redis as Resolve>::NODE, &CLIENT]);
            static DESC: TestDesc = TestDesc {
                module_path: "krate",
                name: "t",
                ignored: false,
                flavor: Flavor::Sync,
                needs: &[&REPO, &CLIENT],
                rooms: &[],
            };
            let names: Vec<_> = DESC.services().iter().map(|s| s.name).collect();
            assert_eq!(names, ["postgres", "redis"]);
        }

        #[test]
        fn drive_the_async_fixtures_of_a_sync_test_on_a_runtime_that_keeps_running() {
            let mut ctx = TestContext::new(&SYNC_TEST);
            let (tx, rx) = std::sync::mpsc::channel();
            ctx.block_on(async move {
                // A task spawned by a fixture (a connection driver) goes on
                // running after the fixture returns.
                tokio::spawn(async move {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    tx.send(tokio::runtime::Handle::current().runtime_flavor()).unwrap();
                });
            });
            let flavor = rx.recv_timeout(std::time::Duration::from_secs(5)).expect("the spawned task ran");
            assert_eq!(flavor, tokio::runtime::RuntimeFlavor::MultiThread);
        }

        #[test]
        fn drop_the_crate_from_the_test_name() {
            let desc = TestDesc {
                module_path: "my_crate::db::users",
                name: "inserts",
                ignored: false,
                flavor: Flavor::Sync,
                needs: &[],
                rooms: &[],
            };
            assert_eq!(desc.test_name(), "db::users::inserts");
            let top = TestDesc {
                module_path: "live",
                name: "t",
                ignored: false,
                flavor: Flavor::Sync,
                needs: &[],
                rooms: &[],
            };
            assert_eq!(top.test_name(), "t");
        }
    }
}
