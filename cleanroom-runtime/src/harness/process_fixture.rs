//! `#[cleanroom::fixture(scope = "process")]`: a value built once per test
//! process, on first use, and handed to every test that asks (a clone each).
//!
//! Where it is built matters. Tests run on runtimes of their own that end
//! with them, so a value holding a connection whose driver task was spawned
//! on the first test's runtime would die with that test. An async process
//! fixture therefore runs on a runtime of its own that lives as long as the
//! process: the tasks it spawns (a connection's driver, a pool's
//! maintenance) keep running for every later test, whichever runtime that
//! test uses. A process fixture cannot reach a test: it takes only other
//! process fixtures (a compile error otherwise), and `cleanroom::current()`
//! panics inside it.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use super::scope;
use super::{Node, Resolve, TestDesc};

/// What a process fixture's value must be: it is built once and handed to
/// tests on any thread.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the value of a process-scoped fixture",
    label = "built once and cloned into every test, on any thread",
    note = "a process fixture's value must be Clone + Send + Sync + 'static: wrap it in an Arc (Arc<Mutex<..>> if tests change it)"
)]
pub trait ProcessValue: Clone + Send + Sync + 'static {}

impl<T: Clone + Send + Sync + 'static> ProcessValue for T {}

/// A [`Resolve`] built once per process: only these may be the parameters of
/// a process fixture.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a process-scoped fixture",
    label = "a process fixture can take only other process fixtures",
    note = "a process fixture is built once and shared by every test of the process: it cannot take a service's handle or a per-test fixture, which would hand one test's room to the others; make this one #[cleanroom::fixture(scope = \"process\")], or make the fixture that takes it per test (no scope)"
)]
pub trait ProcessScoped: Resolve {
    /// The value, built by the first test that asks for it (`test`).
    fn process_value(test: &'static TestDesc) -> Self::Output;
}

/// What one process fixture's first build left: its value, or why building
/// it failed. A failure is kept, so that every test that needs the fixture
/// fails with the first test's reason instead of building it again.
type Built = Result<Box<dyn Any + Send + Sync>, String>;

/// A clone of the process fixture `node`'s value, built with `make` if no
/// test of this process built it before. Other tests asking meanwhile wait
/// for the one build.
pub fn process_fixture<T: ProcessValue>(node: &'static Node, test: &'static TestDesc, make: impl FnOnce() -> T) -> T {
    let cell = cell_of(node);
    let built = cell.get_or_init(|| {
        // Not the test's: `cleanroom::current()` inside it panics.
        let _outside = scope::step_out();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(make)) {
            Ok(value) => Ok(Box::new(value) as Box<dyn Any + Send + Sync>),
            Err(panic) => Err(format!(
                "cleanroom: the process-scoped fixture `{}` failed when test `{}` built it, and is not built again \
                 for the tests of this process: {}",
                node.name,
                test.test_name(),
                panic_text(panic.as_ref())
            )),
        }
    });
    match built {
        Ok(value) => value.downcast_ref::<T>().expect("a fixture's type is stable").clone(),
        Err(message) => panic!("{message}"),
    }
}

/// The one cell of the fixture `node` (by its module and name) in this
/// process.
fn cell_of(node: &'static Node) -> Arc<OnceLock<Built>> {
    type Cells = Mutex<HashMap<(&'static str, &'static str), Arc<OnceLock<Built>>>>;
    static CELLS: OnceLock<Cells> = OnceLock::new();
    let mut cells = CELLS.get_or_init(Default::default).lock().unwrap_or_else(PoisonError::into_inner);
    cells.entry((node.module_path, node.name)).or_default().clone()
}

fn panic_text(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".into())
}

/// Runs an async process fixture to completion on the process fixtures'
/// runtime, which lives as long as the process: the tasks the fixture
/// spawns outlive the test that built it.
pub fn block_on_process<F: Future>(fut: F) -> F::Output {
    runtime().block_on(fut)
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        // One worker drives what process fixtures spawn while tests use
        // their values; `block_on` runs the fixture itself on the caller.
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cleanroom-process-fixtures")
            .enable_all()
            .build()
            .expect("cleanroom: failed to build the process fixtures' tokio runtime")
    })
}
