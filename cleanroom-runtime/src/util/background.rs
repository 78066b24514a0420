//! cleanroom's own tokio runtime. All engine work runs on it, never on a
//! test's runtime: a test's runtime ends with the test, and a sync test has
//! none.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

type Queued = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Work given to [`spawn_background`] while a build of the runtime is
/// deferred ([`defer_build`]): `Some` from then until the runtime is built,
/// which spawns it.
static QUEUED: Mutex<Option<Vec<Queued>>> = Mutex::new(None);
/// Whether [`QUEUED`] may hold work: one load on every [`runtime`] call.
static MAY_BE_QUEUED: AtomicBool = AtomicBool::new(false);

/// The runtime, built on first use.
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
    if MAY_BE_QUEUED.load(Ordering::Acquire) {
        for fut in take_queued() {
            runtime.spawn(fut);
        }
    }
    runtime
}

fn take_queued() -> Vec<Queued> {
    let mut queued = QUEUED.lock().unwrap_or_else(|e| e.into_inner());
    MAY_BE_QUEUED.store(false, Ordering::Release);
    queued.take().unwrap_or_default()
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
/// nothing to defer once it is built.
pub(crate) fn defer_build() -> DeferredBuild {
    let mut queued = QUEUED.lock().unwrap_or_else(|e| e.into_inner());
    if RUNTIME.get().is_none() && queued.is_none() {
        *queued = Some(Vec::new());
        MAY_BE_QUEUED.store(true, Ordering::Release);
    }
    DeferredBuild(())
}

impl Drop for DeferredBuild {
    fn drop(&mut self) {
        let work = {
            let mut queued = QUEUED.lock().unwrap_or_else(|e| e.into_inner());
            queued.as_ref().is_some_and(|q| !q.is_empty()) || {
                *queued = None;
                MAY_BE_QUEUED.store(false, Ordering::Release);
                false
            }
        };
        if work {
            // The runtime spawns the queue when it is built; whatever a
            // build elsewhere left (it read the flag before this queue
            // began) is spawned here.
            let runtime = runtime();
            for fut in take_queued() {
                runtime.spawn(fut);
            }
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
    if RUNTIME.get().is_none() {
        let mut queued = QUEUED.lock().unwrap_or_else(|e| e.into_inner());
        // Checked again under the lock: a build that set the runtime takes
        // the queue under it, after this push or not at all.
        if RUNTIME.get().is_none() {
            if let Some(queue) = queued.as_mut() {
                queue.push(Box::pin(fut));
                return;
            }
        }
    }
    runtime().spawn(fut);
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::*;

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
            assert!(QUEUED.lock().unwrap().is_none(), "nothing is queued once the runtime is built");
            // Later work goes straight to the runtime.
            spawn_background(async move {
                let _ = tx.send(3);
            });
            assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(10)), Ok(3));
        }
    }
}
