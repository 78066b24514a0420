//! The one entry point generated tests call, and the typed description they
//! hand it.
//!
//! `#[cleanroom::test]` expands to a plain `#[test]` function that builds a
//! [`TestDesc`] (what the test is called, which services and fixtures it asked
//! for) and calls [`run`]. Everything the test needs is resolved through the
//! [`Resolve`] trait, which `#[cleanroom::fixture]`, `#[cleanroom::service]`
//! and the built-in services implement.

pub(crate) mod builtin;

use std::any::Any;
use std::future::Future;
use std::marker::PhantomData;

use std::time::Instant;

pub use crate::catalog::{Flavor, Node, NodeKind, Registration, TestDesc};
use crate::report::Acquisition;
use crate::rooms::{Room, RoomName};
use crate::run::registry;
use crate::service::definition::ServiceSpec;
use crate::service::handle::Container;

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
    /// The services the test needs, once Ready (without rooms).
    containers: Vec<(&'static str, Container)>,
    /// Each service's handle for this test, with its room once a parameter
    /// asked for it.
    handles: Vec<(&'static str, Container, Option<RoomName>)>,
    rooms: Vec<Box<dyn Room>>,
    acquisitions: Vec<Acquisition>,
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
            .field("rooms", &self.rooms.len())
            .finish()
    }
}

impl TestContext {
    fn new(desc: &'static TestDesc) -> Self {
        TestContext {
            desc,
            runtime: None,
            memo: Vec::new(),
            handles: Vec::new(),
            body_started: None,
            containers: Vec::new(),
            rooms: Vec::new(),
            acquisitions: Vec::new(),
        }
    }

    /// The test being run.
    pub fn desc(&self) -> &'static TestDesc {
        self.desc
    }

    fn runtime(&mut self) -> &tokio::runtime::Runtime {
        let flavor = self.desc.flavor;
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
            builder.enable_all().build().expect("cleanroom: failed to build the test's tokio runtime")
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
                _ => panic!(
                    "cleanroom: fixture `{}` is requested more than once in test `{}`, but its type `{}` is not Clone; \
                     return a cheaply clonable handle (for example Arc<{}>) so that every user shares the one value",
                    node.name,
                    self.desc.test_name(),
                    memo.type_name,
                    memo.type_name,
                ),
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
        if let Some((_, c)) = self.containers.iter().find(|(name, _)| *name == spec.name) {
            return c.clone();
        }
        let container = match registry::global().acquire(spec) {
            Ok(service) => Container::new(service),
            Err(err) => panic!("{err}"),
        };
        self.containers.push((spec.name, container.clone()));
        container
    }

    /// The test's handle of a service: its container, and the test's own
    /// room in it when the service has rooms (unless the attribute says
    /// `shared`). One per test, shared by the test and its fixtures.
    pub(crate) fn service(&mut self, spec: &'static ServiceSpec) -> (Container, Option<RoomName>) {
        if let Some((_, c, room)) = self.handles.iter().find(|(name, ..)| *name == spec.name) {
            return (c.clone(), room.clone());
        }
        let started = Instant::now();
        let mut container = self.ready(spec);
        let room_started = Instant::now();
        let test = self.desc.test_name();
        let room = crate::rooms::open(&spec.kind, &container, self.desc.room_options(spec.name), &test)
            .unwrap_or_else(|reason| panic!("{reason}"));
        let name = room.as_ref().map(|r| r.name());
        if let Some(RoomName::Named(room)) = &name {
            container = container.with_room(room.clone());
        }
        // The built-ins' acquisitions are always counted, a generic
        // service's only when it made a room.
        if room.is_some() || !matches!(spec.kind, crate::service::definition::ServiceKind::Generic(_)) {
            self.acquisitions.push(Acquisition {
                service: spec.name,
                elapsed: started.elapsed(),
                room: room_started.elapsed(),
            });
        }
        self.rooms.extend(room);
        self.handles.push((spec.name, container.clone(), name.clone()));
        (container, name)
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
        for room in self.rooms.drain(..) {
            room.end(&test, failed, keep);
        }
        for a in &self.acquisitions {
            tracing::debug!(
                service = a.service,
                wait_ms = crate::metrics::ms(a.elapsed),
                room_ms = crate::metrics::ms(a.room),
                "acquired"
            );
        }
        crate::report::record_test(self.desc, std::mem::take(&mut self.acquisitions), self.body_started);
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

/// Runs one test: the generated `#[test]` function's whole body.
pub fn run<R: Outcome>(desc: &'static TestDesc, body: impl FnOnce(&mut TestContext) -> R) -> R {
    let span = tracing::info_span!("cleanroom_test", test = %desc.test_name());
    let _entered = span.enter();
    let mut ctx = TestContext::new(desc);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // Every service the test asked for is Ready before it starts, whether
        // or not a parameter receives its handle; a service that failed fails
        // the test here, with its own error.
        for spec in desc.services() {
            ctx.ready(spec);
        }
        ctx.body_started = crate::util::clock::PROCESS_START.get().map(|t| t.elapsed());
        body(&mut ctx)
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

impl TestContext {
    /// When a service this test used died while it ran: what happened, in
    /// words, with the container's last log lines.
    fn died_under(&self) -> Option<String> {
        let registry = registry::get()?;
        for (name, container) in &self.containers {
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
            let mut ctx = TestContext::new(&SYNC_TEST);
            let _first = ctx.fixture(&SHARED, None, |_| Unique);
            let _second = ctx.fixture(&SHARED, None, |_| Unique);
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
