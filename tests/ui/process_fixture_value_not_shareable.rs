//! A process-scoped fixture's value is built once and cloned into every
//! test, on any thread.

struct NotClone;

#[cleanroom::fixture(scope = "process")]
fn not_clone() -> NotClone {
    NotClone
}

#[cleanroom::fixture(scope = "process")]
fn not_sync() -> std::rc::Rc<u32> {
    std::rc::Rc::new(1)
}

fn main() {}
