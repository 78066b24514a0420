//! The engine trait: what the layers above the engine ask of whatever runs a
//! service's container, for the container they hold — commands inside it,
//! its logs and files, how it ended, its events and stats, its CPU limit,
//! killing and removing it. Docker (`docker/`) is the first implementation;
//! the layers above hold an `Arc<dyn Engine>` in each running service and
//! never name Docker.
//!
//! Errors keep their structure up to where they are judged: an
//! [`EngineError`] has the operation, the engine's status and its message,
//! and says itself whether it means "not found", "conflict" or "try again".

use std::fmt;
use std::future::Future;
use std::pin::Pin;

/// A future an engine returns.
pub(crate) type EngineFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// A stream an engine returns; it lives as long as the engine's connection.
pub(crate) type EngineStream<T> = Pin<Box<dyn futures_util::Stream<Item = T> + Send + 'static>>;

/// A failed request to the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EngineError {
    /// What cleanroom asked: `create container`, `remove volume`, …
    pub(crate) op: &'static str,
    /// The engine's HTTP status; `None` when it did not answer (connection
    /// refused or reset, timeout) or the failure was on this side.
    pub(crate) status: Option<u16>,
    pub(crate) message: String,
}

impl EngineError {
    pub(crate) fn new(op: &'static str, status: Option<u16>, message: impl Into<String>) -> Self {
        EngineError { op, status, message: message.into() }
    }

    /// The engine has no such object.
    pub(crate) fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }

    /// The name is taken (a container or network of that name exists).
    pub(crate) fn is_conflict(&self) -> bool {
        self.status == Some(409)
    }

    /// Whether the same request may succeed if sent again: the engine failed
    /// on its side (5xx: a port another container just took, a storage
    /// hiccup) or did not answer at all. A 4xx is a mistake in the request.
    pub(crate) fn is_transient(&self) -> bool {
        match self.status {
            Some(status) => status >= 500,
            None => true,
        }
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(status) => write!(f, "{} failed: the engine answered {status}: {}", self.op, self.message),
            None => write!(f, "{} failed: {}", self.op, self.message),
        }
    }
}

impl std::error::Error for EngineError {}

/// What an exec'd command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Its exit code.
    pub exit_code: i64,
    /// What it wrote to stdout.
    pub stdout: String,
    /// What it wrote to stderr.
    pub stderr: String,
}

/// How a container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ended {
    pub(crate) code: i64,
    pub(crate) oom_killed: bool,
}

/// One sample of Docker's stats stream, as counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StatSample {
    /// CPU time the container used, nanoseconds, since it started.
    pub(crate) cpu_total: u64,
    /// CPU time of the whole host, nanoseconds.
    pub(crate) system_total: u64,
    pub(crate) online_cpus: u32,
    /// Bytes in use (without reclaimable page cache).
    pub(crate) memory: u64,
    pub(crate) memory_limit: u64,
    /// Bytes received and sent, in total.
    pub(crate) network: (u64, u64),
    /// Bytes read and written, in total.
    pub(crate) block: (u64, u64),
}

impl StatSample {
    /// CPU use between `prev` and `self`, in percent of one core.
    pub(crate) fn cpu_percent_since(&self, prev: &StatSample) -> Option<f64> {
        let cpu = self.cpu_total.checked_sub(prev.cpu_total)? as f64;
        let system = self.system_total.checked_sub(prev.system_total)? as f64;
        (system > 0.0).then(|| cpu / system * f64::from(self.online_cpus) * 100.0)
    }
}

/// What the layers above ask of the engine that runs a service's container.
pub(crate) trait Engine: Send + Sync + fmt::Debug {
    /// Runs a command inside the container and waits for it.
    fn exec<'a>(&'a self, id: &'a str, cmd: &'a [String]) -> EngineFuture<'a, Result<ExecOutput, EngineError>>;

    /// The container's output, the last `tail` lines or all of it.
    fn logs<'a>(&'a self, id: &'a str, tail: Option<usize>) -> EngineFuture<'a, Result<String, EngineError>>;

    /// Whether `path` exists in the container.
    fn path_exists<'a>(&'a self, id: &'a str, path: &'a str) -> EngineFuture<'a, Result<bool, EngineError>>;

    /// `None` while the container runs, else its exit code.
    fn exit_status<'a>(&'a self, id: &'a str) -> EngineFuture<'a, Result<Option<i64>, EngineError>>;

    /// How the container ended, if it did; `None` while it runs or when the
    /// engine did not answer.
    fn ended<'a>(&'a self, id: &'a str) -> EngineFuture<'a, Option<Ended>>;

    /// Stops and removes the container; one already gone counts as removed.
    fn remove<'a>(&'a self, id: &'a str) -> EngineFuture<'a, Result<(), EngineError>>;

    /// Kills the container's processes at once.
    fn kill<'a>(&'a self, id: &'a str) -> EngineFuture<'a, Result<(), EngineError>>;

    /// The engine's events about the container from now on, as `(action,
    /// exit code)`.
    fn events(&self, id: &str) -> EngineStream<Result<(String, Option<String>), EngineError>>;

    /// Resource samples of the container, one a second.
    fn stats(&self, id: &str) -> EngineStream<Result<StatSample, EngineError>>;

    /// The container's CPU limit in nano-CPUs (0: none).
    fn cpu_limit<'a>(&'a self, id: &'a str) -> EngineFuture<'a, Result<i64, EngineError>>;

    /// Changes the container's CPU limit while it runs.
    fn set_cpu_limit<'a>(&'a self, id: &'a str, nano_cpus: i64) -> EngineFuture<'a, Result<(), EngineError>>;
}
