//! cleanroom's own tokio runtime. All engine work runs on it, never on a
//! test's runtime: a test's runtime ends with the test, and a sync test has
//! none.

use std::future::Future;
use std::sync::OnceLock;

static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

/// The runtime, built on first use.
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    RUNTIME.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cleanroom")
            .enable_all()
            .build()
            .expect("cleanroom: failed to build its tokio runtime");
        crate::util::clock::mark("background runtime built");
        runtime
    })
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
    runtime().spawn(fut);
}
