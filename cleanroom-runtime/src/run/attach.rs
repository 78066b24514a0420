//! The start of a process that attaches (every process of a `cargo nextest
//! run` but the first), done whole on cleanroom's start thread: the reaper's
//! connection, then each service from its creator's record, then the slot
//! tests wait on is filled. No task of cleanroom's runtime is on that path
//! (the runtime is built after, for what only a long process needs: the
//! monitor, the signal handlers; and only once the first test's rooms are
//! made, so that the build takes no core the test needs on its way), and no
//! hand-off between threads but the one to the test thread that waits.
//!
//! What cannot be had that way (no record, no reaper, an engine other than
//! Docker, a container whose place is still to be asked of the engine) goes
//! the usual way: [`Registry::get_or_start`]'s start on the runtime, for the
//! slot planted here.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::registry::{FailUnfilled, Registry, Slot, Source};
use crate::config::EngineChoice;
use crate::lifecycle::State;
use crate::metrics::Phases;
use crate::service::definition::ServiceSpec;

/// Whether the start thread is still planting the slots of the selected
/// tests' services: armed by the start hook, disarmed once they are planted
/// (or the start thread gave up). A test thread that asks for a service
/// meanwhile waits for its slot rather than start the service on a path of
/// its own.
static PLANTING: Latch = Latch::new();

/// The longest a test thread waits for the start thread to plant its slot:
/// only a start thread that is stuck takes this long, and the test then
/// starts its services itself.
const PLANTING_WAIT: Duration = Duration::from_secs(10);

/// Raised from the start hook until this process's first test reaches its
/// body: a start thread that attached builds cleanroom's runtime (for the
/// monitor and the signal handlers) only then, so that the build does not
/// take the cores the test thread needs on its way there.
static FIRST_BODY: Latch = Latch::new();

/// The longest the start thread waits for the first test's body before it
/// builds the runtime anyway.
const FIRST_BODY_WAIT: Duration = Duration::from_millis(100);

/// A flag threads wait on until it is lowered.
struct Latch {
    raised: Mutex<bool>,
    lowered: Condvar,
}

impl Latch {
    const fn new() -> Latch {
        Latch { raised: Mutex::new(false), lowered: Condvar::new() }
    }

    fn raise(&self) {
        *self.raised.lock().unwrap_or_else(|e| e.into_inner()) = true;
    }

    fn lower(&self) {
        *self.raised.lock().unwrap_or_else(|e| e.into_inner()) = false;
        self.lowered.notify_all();
    }

    /// Returns once the latch is down (at once if it is), or after `limit`.
    fn wait(&self, limit: Duration) {
        let raised = self.raised.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self.lowered.wait_timeout_while(raised, limit, |raised| *raised);
    }
}

/// Arms the wait: called by the start hook before it spawns the start
/// thread.
pub(crate) fn arm() {
    PLANTING.raise();
    FIRST_BODY.raise();
}

/// Says that this process's first test reached its body, if `reached`
/// says so: asked only until it has, so that the tests after the first pay
/// one load of a flag.
pub(crate) fn first_body_started(reached: impl FnOnce() -> bool) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static SAID: AtomicBool = AtomicBool::new(false);
    if SAID.load(Ordering::Relaxed) || !reached() {
        return;
    }
    if !SAID.swap(true, Ordering::Relaxed) {
        FIRST_BODY.lower();
    }
}

/// Disarms the wait (every waiting test thread goes on).
pub(crate) fn disarm() {
    PLANTING.lower();
}

/// Disarms the wait when dropped: the start thread holds one from its first
/// line, so that an early return or a panic disarms it too.
pub(crate) struct Planting;

impl Drop for Planting {
    fn drop(&mut self) {
        disarm();
    }
}

/// Registers this process among its run's clients and watches its
/// connection to the reaper when dropped ([`super::reaper::finish_attach`]):
/// after its services are handed out, or when the start thread panicked.
struct FinishAttach;

impl Drop for FinishAttach {
    fn drop(&mut self) {
        super::reaper::finish_attach();
    }
}

/// Waits, on a test thread, until the start thread has planted the slots
/// (at once when it is not planting).
pub(super) fn wait_for_planting() {
    PLANTING.wait(PLANTING_WAIT);
}

impl Registry {
    /// Starts the services the selected tests need, at the process's start,
    /// on its start thread: the slots first (test threads wait on them from
    /// then on), then each filled here from its creator's record or started
    /// on the runtime.
    /// `ahead` runs once the services this thread attached from their
    /// records are handed out (when it attached any), before it waits for
    /// the first test's body: work for that test, done while libtest starts
    /// its thread.
    pub(crate) fn start_selected(&'static self, specs: &[&'static ServiceSpec], ahead: fn()) {
        let attached = self.attach_reaper_if_serving();
        // Once the services are handed out, or the start thread gave up.
        let _finish = attached.then_some(FinishAttach);
        let planted = self.plant(specs);
        disarm();
        self.attach_or_start(planted, ahead);
    }

    /// Slots for `specs` that nobody made yet, in the state a start begins
    /// in, for [`Registry::attach_or_start`] to fill. A test thread that asks
    /// for one of them waits on it from now on.
    fn plant(&'static self, specs: &[&'static ServiceSpec]) -> Vec<(&'static ServiceSpec, Arc<Slot>)> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let mut planted = Vec::new();
        for &spec in specs {
            if slots.contains_key(spec.name) {
                continue;
            }
            planted.push((spec, super::registry::new_slot(&mut slots, spec.name)));
        }
        planted
    }

    /// Fills planted slots: each service from its creator's record, here,
    /// when this process attaches; the others started on the runtime, as
    /// [`Registry::get_or_start`] starts them.
    fn attach_or_start(&'static self, planted: Vec<(&'static ServiceSpec, Arc<Slot>)>, ahead: fn()) {
        // Work a test thread hands to the runtime on its way to its body
        // (topping up a pool of rooms) waits for the build below.
        let deferred = crate::util::background::defer_build();
        let mut attached = Vec::new();
        // A panic here fails the waiters of the slots not yet filled or
        // handed to a start, rather than leave them waiting.
        let guards: Vec<FailUnfilled> = planted.iter().map(|(spec, slot)| FailUnfilled::new(spec.name, slot)).collect();
        for ((spec, slot), unfilled) in planted.into_iter().zip(guards) {
            let started = Instant::now();
            match self.attach_now(spec) {
                Some(service) => {
                    crate::metrics::cache_hit("attach_record");
                    let service = Arc::new(service);
                    // Tests go on from here; what follows is off their way.
                    let _ = slot.transition(State::Starting);
                    let _ = slot.transition(State::Ready);
                    slot.serve(&service);
                    slot.outcome.send_replace(Some(Ok(service.clone())));
                    attached.push((spec, slot, service, started));
                }
                None => {
                    // A process of a run whose reaper serves that could not:
                    // the creator's record was not there yet (it is making
                    // the service), or the service is not one the run's
                    // Docker containers serve.
                    if self.reaper.get() == Some(&true) {
                        crate::metrics::cache_miss("attach_record");
                    }
                    self.launch(spec.name.to_string(), slot, Source::Spec(spec));
                    unfilled.hand_over();
                }
            }
        }
        if attached.is_empty() {
            return;
        }
        // Counted now (a one-test process may end soon); their monitors
        // wait in the queue for the runtime.
        for (spec, slot, service, started) in attached {
            let phases = Phases { start_ms: Some(crate::metrics::ms(started.elapsed())), ..Phases::default() };
            self.record_ready(spec.name, &slot, &service, phases, started);
        }
        // Its panic (a bug) costs the test its head start, not the process
        // its signal handlers.
        let _ = std::panic::catch_unwind(ahead);
        FIRST_BODY.wait(FIRST_BODY_WAIT);
        drop(deferred);
        self.install_signal_handlers();
    }

    /// `spec` from the record of the process of the run that made it Ready,
    /// on the calling thread; `None` when that cannot be had here (the start
    /// on the runtime then finds out why, and says so if it is an error).
    fn attach_now(&'static self, spec: &'static ServiceSpec) -> Option<crate::service::running::RunningService> {
        // Only with the run's reaper attached already: attaching to it is
        // what makes a process one of the run's.
        if self.reaper.get() != Some(&true) {
            return None;
        }
        let config = self.config.as_ref().ok()?;
        if config.engine != EngineChoice::Docker || super::existing::configured(spec.name).ok()?.is_some() {
            return None;
        }
        if crate::docker::endpoint::needs_detection() && !self.settle_from_kept() {
            return None;
        }
        let def = self.definition(spec.name, Source::Spec(spec)).ok()?;
        super::start::check_bind_sources(spec.name, &def).ok()?;
        let container_name = self.attach_name(spec.name, &def)?;
        // A reused service is asked of the engine once per run: by the start
        // on the runtime.
        if config.reuse && !super::start::reused_checked(self, &container_name) {
            return None;
        }
        super::start::attach_from_record(spec.name, &def, &container_name)
    }
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::Latch;
        use std::sync::Arc;
        use std::time::Duration;

        #[test]
        fn hold_a_test_thread_until_the_slots_are_planted() {
            let latch = Arc::new(Latch::new());
            latch.wait(Duration::from_secs(5));
            latch.raise();
            let (tx, rx) = std::sync::mpsc::channel();
            let waiting = latch.clone();
            let waiter = std::thread::spawn(move || {
                waiting.wait(Duration::from_secs(30));
                tx.send(()).unwrap();
            });
            assert!(rx.recv_timeout(Duration::from_millis(300)).is_err(), "it waits while the slots are planted");
            latch.lower();
            rx.recv_timeout(Duration::from_secs(10)).expect("it goes on once they are");
            waiter.join().unwrap();
        }

        #[test]
        fn let_a_test_thread_go_on_after_the_limit_when_planting_is_stuck() {
            let latch = Latch::new();
            latch.raise();
            let started = std::time::Instant::now();
            latch.wait(Duration::from_millis(50));
            assert!(started.elapsed() >= Duration::from_millis(50));
        }
    }
}
