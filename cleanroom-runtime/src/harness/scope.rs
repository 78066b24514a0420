//! One test's services and rooms, shared by every thread the test runs code
//! on, and the thread-local key that finds them again.
//!
//! A [`TestScope`] is what a test's parameters and `cleanroom::current()`
//! both draw from: the first to ask for a service's room opens it, everyone
//! after gets the same one. It is keyed to the test's threads, not to tokio
//! tasks: task-locals are not inherited by `tokio::spawn`, while every thread
//! of the test's runtime (its workers and its blocking pool) is started by
//! the runtime builder, which sets the key in `on_thread_start`; the test's
//! own thread is keyed by [`enter`] for as long as the test runs.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Instant;

use crate::catalog::TestDesc;
use crate::report::Acquisition;
use crate::rooms::{Room, RoomName};
use crate::run::registry;
use crate::service::definition::{ServiceKind, ServiceSpec};
use crate::service::handle::Container;

/// One test's services and rooms, from its start until its rooms are ended.
pub(crate) struct TestScope {
    desc: &'static TestDesc,
    state: Mutex<State>,
    /// Set once the test's rooms are ended: a thread that outlives the test
    /// (a blocking task still running) must not open new ones.
    ended: AtomicBool,
    /// The test's own thread, where `run` reports cleanroom's failures at
    /// the user's test.
    thread: std::thread::ThreadId,
}

#[derive(Default)]
struct State {
    /// The services the test needs, once Ready (without rooms).
    containers: Vec<(&'static str, Container)>,
    /// Each service's handle for this test, with its room once someone
    /// asked for it.
    handles: Vec<(&'static str, Container, Option<RoomName>)>,
    rooms: Vec<Box<dyn Room>>,
    acquisitions: Vec<Acquisition>,
}

impl std::fmt::Debug for TestScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestScope")
            .field("test", &self.desc.test_name())
            .field("ended", &self.ended.load(Ordering::Relaxed))
            .finish()
    }
}

impl TestScope {
    /// A scope for `desc`, counted among the running tests until it ends.
    pub(crate) fn new(desc: &'static TestDesc) -> Arc<TestScope> {
        let scope = Arc::new(TestScope {
            desc,
            state: Mutex::new(State::default()),
            ended: AtomicBool::new(false),
            thread: std::thread::current().id(),
        });
        running().push(Arc::downgrade(&scope));
        scope
    }

    /// The test.
    pub(crate) fn desc(&self) -> &'static TestDesc {
        self.desc
    }

    /// Whether the test's rooms were ended.
    pub(crate) fn has_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// Fails the test with cleanroom's own `message`: on the test's thread
    /// through `run`, which reports it at the user's test; on any other
    /// thread (a task the test spawned) as that thread's panic.
    fn fail(&self, message: String) -> ! {
        if std::thread::current().id() == self.thread {
            super::fail(message)
        }
        panic!("{message}")
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while opening a room (the test fails with it) leaves the
        // lists as they were: nothing half-made is pushed.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The service's container once it is Ready, started if it is not yet
    /// running. A service that failed fails the test here, with its error.
    pub(crate) fn ready(&self, spec: &'static ServiceSpec) -> Container {
        let mut state = self.state();
        if let Some((_, c)) = state.containers.iter().find(|(name, _)| *name == spec.name) {
            return c.clone();
        }
        // A schema found unusable at the run's start: fail before any server starts.
        if let Some(refused) = crate::rooms::postgres::RunStart::get().refusal(&self.desc.test_name()) {
            self.fail(refused.to_string());
        }
        let container = match registry::global().acquire(spec) {
            Ok(service) => Container::new(service),
            Err(err) => self.fail(err.to_string()),
        };
        state.containers.push((spec.name, container.clone()));
        container
    }

    /// The test's handle of a service: its container, and the test's own
    /// room in it when the service has rooms (unless the attribute says
    /// `shared`). One per test, whichever thread asks first.
    pub(crate) fn service(&self, spec: &'static ServiceSpec) -> (Container, Option<RoomName>) {
        if let Some((_, c, room)) = self.state().handles.iter().find(|(name, ..)| *name == spec.name) {
            return (c.clone(), room.clone());
        }
        let started = Instant::now();
        let mut container = self.ready(spec);
        // Held while the room opens, so that two threads of one test asking
        // at once get one room.
        let mut state = self.state();
        if let Some((_, c, room)) = state.handles.iter().find(|(name, ..)| *name == spec.name) {
            return (c.clone(), room.clone());
        }
        assert!(
            !self.has_ended(),
            "cleanroom: test `{}` has ended: its rooms are gone, and a thread it left running cannot open new ones",
            self.desc.test_name()
        );
        let room_started = Instant::now();
        let test = self.desc.test_name();
        // Opened ahead by the start thread (a process's one test), or now.
        let room = match super::ahead::claim(self.desc, spec.name) {
            Some(room) => Some(room),
            None => {
                let demand = crate::rooms::demand(self.desc, spec.name).unwrap_or_else(|e| self.fail(e.to_string()));
                crate::rooms::open(&spec.kind, &container, &demand, &test)
                    .unwrap_or_else(|reason| self.fail(reason.to_string()))
            }
        };
        let name = room.as_ref().map(|r| r.name());
        if let Some(RoomName::Named(room)) = &name {
            container = container.with_room(room.clone());
        }
        // The built-ins' acquisitions are always counted, a generic
        // service's only when it made a room.
        if room.is_some() || !matches!(spec.kind, ServiceKind::Generic(_)) {
            state.acquisitions.push(Acquisition {
                service: spec.name,
                elapsed: started.elapsed(),
                room: room_started.elapsed(),
            });
        }
        state.rooms.extend(room);
        state.handles.push((spec.name, container.clone(), name.clone()));
        // Once every handle the test can take is made, its body begins.
        crate::run::attach::first_body_started(|| state.handles.len() == self.desc.services().len());
        (container, name)
    }

    /// The services that were made Ready for the test, in order.
    pub(crate) fn containers(&self) -> Vec<(&'static str, Container)> {
        self.state().containers.clone()
    }

    /// Ends the test's rooms as `end` says, and hands back what the test
    /// waited for. Later requests for a room fail.
    pub(crate) fn end(&self, mut end: impl FnMut(Box<dyn Room>)) -> Vec<Acquisition> {
        let mut state = self.state();
        self.ended.store(true, Ordering::Release);
        running().retain(|weak| weak.strong_count() > 0 && !std::ptr::eq(weak.as_ptr(), self));
        for room in state.rooms.drain(..) {
            end(room);
        }
        std::mem::take(&mut state.acquisitions)
    }
}

/// The tests of this process that have begun and not ended, to name the
/// test in a message from a thread that is none of its (when only one runs).
fn running() -> MutexGuard<'static, Vec<Weak<TestScope>>> {
    static RUNNING: Mutex<Vec<Weak<TestScope>>> = Mutex::new(Vec::new());
    RUNNING.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The names of the tests running in this process now.
pub(crate) fn running_tests() -> Vec<String> {
    running().iter().filter_map(Weak::upgrade).filter(|s| !s.has_ended()).map(|s| s.desc.test_name()).collect()
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<TestScope>>> = const { RefCell::new(None) };
}

/// The scope of the test this thread belongs to, if any.
pub(crate) fn current() -> Option<Arc<TestScope>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Marks this thread as one of `scope`'s until the guard drops (then it is
/// what it was before).
pub(crate) fn enter(scope: Arc<TestScope>) -> Entered {
    Entered { before: CURRENT.with(|c| c.replace(Some(scope))) }
}

/// Makes this thread no test's until the guard drops: while a
/// process-scoped fixture is built on a test's thread.
pub(crate) fn step_out() -> Entered {
    Entered { before: CURRENT.with(|c| c.replace(None)) }
}

/// Marks a thread the test's runtime starts as the test's, for its life:
/// `on_thread_start`.
pub(crate) fn adopt_thread(scope: &Arc<TestScope>) {
    CURRENT.with(|c| *c.borrow_mut() = Some(scope.clone()));
}

/// Unmarks a thread the test's runtime stops: `on_thread_stop`.
pub(crate) fn leave_thread() {
    // `try_with`: the thread's locals may be going already.
    let _ = CURRENT.try_with(|c| c.borrow_mut().take());
}

/// Puts back what the thread was before [`enter`].
#[derive(Debug)]
pub(crate) struct Entered {
    before: Option<Arc<TestScope>>,
}

impl Drop for Entered {
    fn drop(&mut self) {
        let before = self.before.take();
        let _ = CURRENT.try_with(|c| *c.borrow_mut() = before);
    }
}
