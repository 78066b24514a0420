//! cleanroom's own tokio runtime. All engine work runs on it, never on a
//! test's runtime: a test's runtime ends with the test, and a sync test has
//! none.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

type Queued = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Work given to [`spawn_background`] while the runtime's build is deferred
/// ([`defer_build`]), until the build spawns it.
struct Queue {
    /// `Some` while a build is deferred and has not happened.
    queued: Mutex<Option<Vec<Queued>>>,
    /// Whether `queued` may be `Some`: one load on every [`runtime`] call.
    deferring: AtomicBool,
}

impl Queue {
    const fn new() -> Queue {
        Queue { queued: Mutex::new(None), deferring: AtomicBool::new(false) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Vec<Queued>>> {
        self.queued.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Begins a deferral unless `built` or one is on; whether it began.
    fn defer(&self, built: impl Fn() -> bool) -> bool {
        let mut queued = self.lock();
        if built() || queued.is_some() {
            return false;
        }
        *queued = Some(Vec::new());
        self.deferring.store(true, Ordering::Release);
        true
    }

    /// Keeps `fut` while a deferral is on and nothing is `built`; gives it
    /// back otherwise, to be spawned. Checked under the lock: a build
    /// ([`Queue::take`]) takes the queue under it after the runtime is set,
    /// so it takes `fut` or `fut` sees the runtime.
    fn keep(&self, fut: Queued, built: impl Fn() -> bool) -> Option<Queued> {
        let mut queued = self.lock();
        match queued.as_mut() {
            Some(queue) if !built() => {
                queue.push(fut);
                None
            }
            _ => Some(fut),
        }
    }

    /// Ends the deferral: what was kept, to be spawned.
    fn take(&self) -> Vec<Queued> {
        let mut queued = self.lock();
        self.deferring.store(false, Ordering::Release);
        queued.take().unwrap_or_default()
    }

    /// Ends the deferral if nothing was kept; `false` if something was (and
    /// the deferral goes on until [`Queue::take`]).
    fn end_if_empty(&self) -> bool {
        let mut queued = self.lock();
        if queued.as_ref().is_some_and(|q| !q.is_empty()) {
            return false;
        }
        *queued = None;
        self.deferring.store(false, Ordering::Release);
        true
    }
}

static QUEUE: Queue = Queue::new();

/// The runtime, built on first use; work queued while its build was
/// deferred is spawned on it.
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    let runtime = RUNTIME.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cleanroom")
            .enable_all()
            .build()
            .expect("cleanroom: failed to build its tokio runtime");
        crate::util::clock::mark("background runtime built");
        runtime
    });
    if QUEUE.deferring.load(Ordering::Acquire) {
        for fut in QUEUE.take() {
            runtime.spawn(fut);
        }
    }
    runtime
}

/// Until the guard drops, [`spawn_background`] queues its work rather than
/// build the runtime on its caller's thread: a test thread then goes on to
/// its body while building the runtime (its worker threads, its drivers:
/// hundreds of microseconds on two busy cores) waits for the thread that
/// holds the guard. The guard's drop builds the runtime if work is queued,
/// and spawns it; without any, the runtime stays unbuilt until first used.
#[must_use = "the build is deferred only while the guard lives"]
pub(crate) struct DeferredBuild(());

/// Defers the runtime's build for [`spawn_background`] ([`DeferredBuild`]);
/// `None` once it is built, or while another deferral is on.
pub(crate) fn defer_build() -> Option<DeferredBuild> {
    QUEUE.defer(|| RUNTIME.get().is_some()).then_some(DeferredBuild(()))
}

impl Drop for DeferredBuild {
    fn drop(&mut self) {
        flush();
    }
}

/// Spawns what is queued, building the runtime for it; nothing when
/// nothing is (the process's exit calls it first, so that the work a test
/// queued, the drop of its database, runs before the process says it is
/// done).
pub(crate) fn flush() {
    if !QUEUE.end_if_empty() {
        // The build takes the queue; a build elsewhere that read the flag
        // before this deferral began left it, and it is taken here.
        let runtime = runtime();
        for fut in QUEUE.take() {
            runtime.spawn(fut);
        }
    }
}

/// Runs `fut` on cleanroom's runtime and awaits it from any runtime.
pub(crate) async fn on_runtime<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> T {
    match runtime().spawn(fut).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Runs `fut` on cleanroom's runtime and blocks the calling thread until it ends.
pub(crate) fn block_on_runtime<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    runtime().spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().expect("cleanroom: its runtime stopped while a test was waiting on it")
}

/// Polls `fut` on the calling thread until it ends, parked in between: for
/// a future that only waits for another thread (a service's outcome), so
/// that thread's send wakes this one directly, without a task of the
/// runtime's in between.
pub(crate) fn block_here<F: Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let std::task::Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

/// Runs `fut` on cleanroom's runtime without waiting for it: work off a
/// test's critical path (dropping its database).
pub(crate) fn spawn_background(fut: impl Future<Output = ()> + Send + 'static) {
    if RUNTIME.get().is_some() || !QUEUE.deferring.load(Ordering::Acquire) {
        runtime().spawn(fut);
        return;
    }
    if let Some(fut) = QUEUE.keep(Box::pin(fut), || RUNTIME.get().is_some()) {
        runtime().spawn(fut);
    }
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::*;

        fn work(tx: &std::sync::mpsc::Sender<i32>, n: i32) -> Queued {
            let tx = tx.clone();
            Box::pin(async move {
                let _ = tx.send(n);
            })
        }

        #[test]
        fn keep_work_while_the_build_is_deferred_and_hand_it_to_the_build() {
            let queue = Queue::new();
            let (tx, rx) = std::sync::mpsc::channel();
            assert!(queue.keep(work(&tx, 0), || false).is_some(), "no deferral: spawned at once");
            assert!(queue.defer(|| false));
            assert!(!queue.defer(|| false), "one deferral at a time: a second guard would end the first");
            assert!(queue.keep(work(&tx, 1), || false).is_none(), "kept for the build");
            assert!(queue.keep(work(&tx, 2), || true).is_some(), "built meanwhile: spawned at once");
            assert!(!queue.end_if_empty(), "work is kept: the deferral ends with the build");
            let kept = queue.take();
            assert_eq!(kept.len(), 1);
            for fut in kept {
                crate::util::background::block_here(fut);
            }
            assert_eq!(rx.try_recv(), Ok(1));
            assert!(queue.keep(work(&tx, 3), || false).is_some(), "after the build nothing is kept");
            assert!(!queue.deferring.load(Ordering::Acquire));
            assert!(queue.defer(|| false));
            assert!(queue.end_if_empty(), "nothing kept: the deferral ends without a build");
            assert!(!queue.defer(|| true), "nothing to defer once built");
        }

        #[test]
        fn run_work_given_while_the_build_is_deferred_once_the_deferral_ends() {
            let (tx, rx) = std::sync::mpsc::channel();
            let deferred = defer_build();
            for n in 0..3 {
                let tx = tx.clone();
                spawn_background(async move {
                    let _ = tx.send(n);
                });
            }
            drop(deferred);
            let mut got: Vec<i32> = (0..3)
                .map(|_| rx.recv_timeout(std::time::Duration::from_secs(10)).expect("queued work runs"))
                .collect();
            got.sort();
            assert_eq!(got, [0, 1, 2]);
        }
    }
}
