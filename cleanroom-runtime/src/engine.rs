//! The engine trait: what the layers above the engine ask of whatever runs a
//! service's container, for the container they hold — commands inside it,
//! its logs and files, how it ended, its events and stats, its CPU limit,
//! killing and removing it. Docker (`docker/`) is the first implementation;
//! the layers above hold an `Arc<dyn Engine>` in each running service and
//! never name Docker.
//!
//! The other half of an engine is [`Provisioner`]: creating and starting a
//! service from its plan, attaching to one another process of the run made,
//! inspecting, removing and listing what runs own. `run/start.rs` picks the
//! provisioner once per service and goes through it; `admin` lists through
//! it for every engine. Its request and service types are the run layer's
//! (a resolved definition, a running service), so the trait is generic over
//! them and this layer names neither.
//!
//! Errors keep their structure up to where they are judged: an
//! [`EngineError`] has the operation, the engine's status and its message,
//! and says itself whether it means "not found", "conflict" or "try again".

use std::collections::HashMap;
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
    /// Read and write operations, in total.
    pub(crate) block_ops: (u64, u64),
    /// Whether the engine counts operations at all: Docker on cgroup v1
    /// does; Podman's API and Docker on cgroup v2 leave them out.
    pub(crate) block_ops_counted: bool,
}

impl StatSample {
    /// CPU use between `prev` and `self`, in percent of one core.
    pub(crate) fn cpu_percent_since(&self, prev: &StatSample) -> Option<f64> {
        let cpu = self.cpu_total.checked_sub(prev.cpu_total)? as f64;
        let system = self.system_total.checked_sub(prev.system_total)? as f64;
        (system > 0.0).then(|| cpu / system * f64::from(self.online_cpus) * 100.0)
    }
}

/// Which kind of engine runs a service: what the report and `cargo
/// cleanroom ls` say, and what decides whether removing the service removes
/// everything cleanroom made on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EngineKind {
    /// A container engine (Docker, or one that speaks its API).
    Docker,
    /// A server that already runs (`CLEANROOM_POSTGRES_URL`, …): cleanroom
    /// owns only what it made on it, marked as its own.
    Existing,
    /// Server binaries run as processes on this machine.
    Local,
}

impl EngineKind {
    /// The name the report and the CLI show.
    pub(crate) fn name(self) -> &'static str {
        match self {
            EngineKind::Docker => "docker",
            EngineKind::Existing => "existing",
            EngineKind::Local => "local",
        }
    }
}

/// What the layers above ask of the engine that runs a service's container.
pub(crate) trait Engine: Send + Sync + fmt::Debug {
    /// Which kind of engine this is.
    fn kind(&self) -> EngineKind;

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

    /// Resource samples of the container, one a second (Docker) or one
    /// every five seconds (Podman).
    fn stats(&self, id: &str) -> EngineStream<Result<StatSample, EngineError>>;

    /// The container's CPU limit in nano-CPUs (0: none).
    fn cpu_limit<'a>(&'a self, id: &'a str) -> EngineFuture<'a, Result<i64, EngineError>>;

    /// Changes the container's CPU limit while it runs.
    fn set_cpu_limit<'a>(&'a self, id: &'a str, nano_cpus: i64) -> EngineFuture<'a, Result<(), EngineError>>;
}

/// Something a run owns on an engine, as [`Provisioner::list_owned`] finds
/// it: a container, a local server, a server a run recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Owned {
    /// The engine's id for it: a container id; a local server's or an
    /// existing server's service id.
    pub(crate) id: String,
    /// The engine's name for it (a container's name; else the service's).
    pub(crate) name: String,
    /// Its image; for a local or existing server, what runs it.
    pub(crate) image: String,
    /// The engine's word for its state (`running`, `exited`, …).
    pub(crate) state: String,
    /// The run's session.
    pub(crate) session: String,
    /// The service it is.
    pub(crate) service: String,
    /// Where it is reached, password masked; empty when the engine does not
    /// say (a container's ports are in its labels' run).
    pub(crate) address: String,
    /// Its labels (a container's; empty elsewhere).
    pub(crate) labels: HashMap<String, String>,
    /// When it was made, seconds since the epoch (0: not known).
    pub(crate) created: i64,
}

/// What the run layer asks of an engine to have a service at all: make it
/// or find it, and find again what runs own. `Request` is what a start
/// knows (the run's resolved definition), `Service` what it ends with, `Err`
/// the run's error. Implemented for Docker (which serves Podman too), the
/// existing-server engine and the local engine; the caller picks one and
/// never switches on the kind again.
pub(crate) trait Provisioner<Request, Service, Err>: Send + Sync {
    /// Which kind of engine this is.
    fn kind(&self) -> EngineKind;

    /// The service another process of the run made ready, if there is one:
    /// nothing is created.
    fn attach<'a>(&'a self, request: &'a Request) -> EngineFuture<'a, Result<Option<Service>, Err>>;

    /// Creates and starts the service from its plan (or, where the engine
    /// decides who creates, attaches to the one a racing process made), and
    /// makes it ready.
    fn create<'a>(&'a self, request: &'a Request) -> EngineFuture<'a, Result<Service, Err>>;

    /// What the runs of this owner have on this engine.
    fn list_owned(&self) -> EngineFuture<'_, Result<Vec<Owned>, EngineError>>;

    /// One thing runs own, by its id; `None` when the engine has no such
    /// thing.
    // No caller in the runtime yet besides the tests: the run layer inspects
    // through each engine's own richer answer (a container's environment and
    // exit code) where it needs one.
    #[allow(dead_code)]
    fn inspect<'a>(&'a self, id: &'a str) -> EngineFuture<'a, Result<Option<Owned>, EngineError>> {
        Box::pin(async move { Ok(self.list_owned().await?.into_iter().find(|o| o.id == id)) })
    }

    /// Removes one thing a run owns, by its id; one already gone counts as
    /// removed.
    fn remove_owned<'a>(&'a self, id: &'a str) -> EngineFuture<'a, Result<(), EngineError>>;

    /// Removes what runs that are provably over left on this engine, never
    /// `me`'s (with `dry_run`, only finds it), and names what went: the
    /// sessions of those runs, or on an existing server the databases and
    /// rooms with their session. The rule a starting run's reaper applies,
    /// and `cargo cleanroom prune`.
    fn sweep_dead<'a>(&'a self, me: &'a str, dry_run: bool) -> EngineFuture<'a, Result<Vec<String>, EngineError>>;
}

/// Has the service `request` asks for: the one another process of the run
/// made, else a new one.
pub(crate) async fn provision<Request, Service, Err>(
    engine: &(dyn Provisioner<Request, Service, Err> + '_),
    request: &Request,
) -> Result<Service, Err> {
    match engine.attach(request).await? {
        Some(service) => Ok(service),
        None => engine.create(request).await,
    }
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::*;
        use std::sync::Mutex;

        /// An engine that records what it was asked and answers as told.
        #[derive(Default)]
        struct Fake {
            made_by_another: Option<&'static str>,
            fails: bool,
            asked: Mutex<Vec<String>>,
        }

        impl Provisioner<&'static str, String, String> for Fake {
            fn kind(&self) -> EngineKind {
                EngineKind::Local
            }

            fn attach<'a>(&'a self, request: &'a &'static str) -> EngineFuture<'a, Result<Option<String>, String>> {
                self.asked.lock().unwrap().push(format!("attach {request}"));
                Box::pin(async move { Ok(self.made_by_another.map(|by| format!("{request} made by {by}"))) })
            }

            fn create<'a>(&'a self, request: &'a &'static str) -> EngineFuture<'a, Result<String, String>> {
                self.asked.lock().unwrap().push(format!("create {request}"));
                Box::pin(async move {
                    if self.fails {
                        Err(format!("{request} did not start"))
                    } else {
                        Ok(format!("{request} made here"))
                    }
                })
            }

            fn list_owned(&self) -> EngineFuture<'_, Result<Vec<Owned>, EngineError>> {
                Box::pin(async { Ok(vec![Owned { id: "a".into(), session: "s".into(), ..Owned::default() }]) })
            }

            fn remove_owned<'a>(&'a self, id: &'a str) -> EngineFuture<'a, Result<(), EngineError>> {
                self.asked.lock().unwrap().push(format!("remove {id}"));
                Box::pin(async { Ok(()) })
            }

            fn sweep_dead<'a>(
                &'a self,
                me: &'a str,
                dry_run: bool,
            ) -> EngineFuture<'a, Result<Vec<String>, EngineError>> {
                self.asked.lock().unwrap().push(format!("sweep but {me} dry_run={dry_run}"));
                Box::pin(async { Ok(vec!["dead".to_string()]) })
            }
        }

        fn block_on<T>(future: impl Future<Output = T>) -> T {
            tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(future)
        }

        #[test]
        fn attach_to_what_another_process_made_and_create_nothing() {
            let fake = Fake { made_by_another: Some("pid 7"), ..Fake::default() };
            assert_eq!(block_on(provision(&fake, &"postgres")), Ok("postgres made by pid 7".to_string()));
            assert_eq!(*fake.asked.lock().unwrap(), ["attach postgres"]);
        }

        #[test]
        fn create_when_nobody_made_it_and_pass_its_error_on() {
            let fake = Fake::default();
            assert_eq!(block_on(provision(&fake, &"redis")), Ok("redis made here".to_string()));
            assert_eq!(*fake.asked.lock().unwrap(), ["attach redis", "create redis"]);
            let failing = Fake { fails: true, ..Fake::default() };
            assert_eq!(block_on(provision(&failing, &"redis")), Err("redis did not start".to_string()));
        }

        #[test]
        fn inspect_what_a_run_owns_through_its_listing() {
            let fake = Fake::default();
            assert_eq!(block_on(fake.inspect("a")).unwrap().map(|o| o.session), Some("s".to_string()));
            assert_eq!(block_on(fake.inspect("b")).unwrap(), None);
        }
    }
}
