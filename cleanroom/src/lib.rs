//! Facade crate: see README. (Docs filled in below.)
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms, unreachable_pub)]
#![forbid(unsafe_code)]

pub use cleanroom_macros::{fixture, service, test};
pub use cleanroom_runtime::{
    environment, Container, Environment, Error, ExecOutput, GenericContainer, HealthCheck, HealthStatus, Postgres,
    Redis, Result, State,
};

/// Not public API: the one door from generated code into the runtime.
#[doc(hidden)]
pub mod __private {
    pub use cleanroom_runtime::__private::*;
    pub use inventory;
}
