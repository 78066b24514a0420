//! The process-wide registry of services: each is started at most once, on
//! cleanroom's own runtime, and every container it started is removed when the
//! process ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use tokio::sync::watch;

use crate::builtin;
use crate::config::Config;
use crate::docker::Docker;
use crate::error::Error;
use crate::lifecycle::{Lifecycle, State};
use crate::run::session::Session;
use crate::service::definition::{GenericContainer, ServiceKind, ServiceSpec};
pub(crate) use crate::service::running::RunningService;
use crate::service::watch::ServiceFailure;

type StartOutcome = Option<Result<Arc<RunningService>, Error>>;

pub(super) struct Slot {
    pub(super) lifecycle: Mutex<Lifecycle>,
    pub(super) outcome: watch::Sender<StartOutcome>,
    /// The container, as soon as Docker created it (before it is Ready).
    pub(super) container_id: Mutex<Option<String>>,
    /// The service tests get now (`None` while it starts or recovers).
    pub(super) serving: Mutex<Option<Arc<RunningService>>>,
    /// Every death or failure seen, oldest first, with when it was seen.
    pub(super) failures: Mutex<Vec<(ServiceFailure, Instant)>>,
    /// Replacements made by this process's recovery.
    pub(super) restarts: std::sync::atomic::AtomicU32,
}

impl Slot {
    /// The slot of a service about to start.
    pub(super) fn new(name: &str) -> Slot {
        Slot {
            lifecycle: Mutex::new(Lifecycle::new(name)),
            outcome: watch::Sender::new(None),
            container_id: Mutex::new(None),
            serving: Mutex::new(None),
            failures: Mutex::new(Vec::new()),
            restarts: std::sync::atomic::AtomicU32::new(0),
        }
    }

    pub(super) fn transition(&self, to: State) -> Result<(), Error> {
        self.lifecycle.lock().unwrap_or_else(|e| e.into_inner()).transition(to).map_err(Error::from)
    }

    /// Hands `service` to tests from now on (before its waiters are woken:
    /// they take it from here).
    pub(super) fn serve(&self, service: &Arc<RunningService>) {
        *self.serving.lock().unwrap_or_else(|e| e.into_inner()) = Some(service.clone());
    }
}

/// Fails the waiters of a slot that still has no outcome when this is
/// dropped: a start that panicked (cleanroom's bug), or was cut short by the
/// process's end, would otherwise leave every test that waits on the slot
/// waiting for good. Whoever starts a service holds one until the outcome
/// is sent, or hands it over to the task that sends it.
pub(super) struct FailUnfilled {
    name: String,
    slot: Option<Arc<Slot>>,
}

impl FailUnfilled {
    pub(super) fn new(name: &str, slot: &Arc<Slot>) -> FailUnfilled {
        FailUnfilled { name: name.to_string(), slot: Some(slot.clone()) }
    }

    /// Someone else sends the outcome from now on.
    pub(super) fn hand_over(mut self) {
        self.slot = None;
    }
}

impl Drop for FailUnfilled {
    fn drop(&mut self) {
        let Some(slot) = self.slot.take() else { return };
        let service = &self.name;
        // Checked and sent at once: a start's own outcome is never replaced.
        let failed = slot.outcome.send_if_modified(|outcome| {
            if outcome.is_some() {
                return false;
            }
            *outcome = Some(Err(if crate::util::flags::shutting_down() {
                Error::ShuttingDown { service: service.clone() }
            } else {
                Error::Operation {
                    service: service.clone(),
                    operation: "start".into(),
                    reason: "cleanroom's start of it stopped short: it panicked (its message is above); this is a \
                             bug of cleanroom's, please report it with that message"
                        .into(),
                }
            }));
            true
        });
        if failed {
            let _ = slot.transition(State::Failed);
        }
    }
}

/// A new slot for `name` in `slots`, counted as the service cache's miss:
/// the start of a service this process had not asked for yet.
pub(super) fn new_slot(slots: &mut HashMap<String, Arc<Slot>>, name: &str) -> Arc<Slot> {
    crate::metrics::cache_miss("service");
    let slot = Arc::new(Slot::new(name));
    slots.insert(name.to_string(), slot.clone());
    slot
}

/// Where the definition of a service comes from.
pub(crate) enum Source {
    /// Declared with the macros (or built in).
    Spec(&'static ServiceSpec),
    /// Given at run time to `Environment::get_or_create_container`.
    Dynamic(Box<dyn FnOnce() -> GenericContainer + Send>),
    /// Already built, overrides applied: a replacement after a failure.
    Resolved(Box<GenericContainer>),
}

pub(crate) struct Registry {
    pub(super) config: Result<Config, Error>,
    pub(super) session: Result<Session, Error>,
    /// Whether this process is attached to its session's reaper.
    pub(super) reaper: OnceLock<bool>,
    pub(super) docker: tokio::sync::OnceCell<Result<Docker, Error>>,
    /// The run's network, once this process has made or found it.
    pub(super) network: tokio::sync::Mutex<Option<String>>,
    /// Named volumes this process created, for teardown without a reaper.
    pub(super) volumes: Mutex<Vec<String>>,
    pub(super) slots: Mutex<HashMap<String, Arc<Slot>>>,
    /// Containers being created right now (their ids are not known yet).
    pub(super) creating: AtomicUsize,
    pub(super) torn_down: AtomicBool,
    pub(super) signals_installed: AtomicBool,
}

static REGISTRY: OnceLock<Registry> = OnceLock::new();

/// The registry, created on first use.
pub(crate) fn global() -> &'static Registry {
    REGISTRY.get_or_init(|| Registry {
        config: Config::from_env(),
        session: crate::run::session::current(),
        reaper: OnceLock::new(),
        docker: tokio::sync::OnceCell::new(),
        network: tokio::sync::Mutex::new(None),
        volumes: Mutex::new(Vec::new()),
        slots: Mutex::new(HashMap::new()),
        creating: AtomicUsize::new(0),
        torn_down: AtomicBool::new(false),
        signals_installed: AtomicBool::new(false),
    })
}

/// The registry if anything created it.
pub(crate) fn get() -> Option<&'static Registry> {
    REGISTRY.get()
}

impl Registry {
    /// The session id, which labels everything this process creates.
    pub(crate) fn session(&self) -> Result<&str, Error> {
        self.session.as_ref().map(|s| s.id.as_str()).map_err(Clone::clone)
    }

    /// Connects to the session's reaper (starting it if needed) before the
    /// first container is made, so that nothing exists without someone to
    /// remove it. Without a reaper this process removes what it made itself.
    pub(super) fn reaper_attached(&self) -> bool {
        self.attach_to_reaper(true)
    }

    /// [`Registry::reaper_attached`], with this process registered among
    /// the run's clients now or (`register_now` false) by the caller soon.
    fn attach_to_reaper(&self, register_now: bool) -> bool {
        *self.reaper.get_or_init(|| {
            let Ok(session) = &self.session else { return false };
            if crate::config::current().is_ok_and(|c| c.no_reaper) {
                crate::run::heartbeat::beat_for_this_process(&session.id);
                return false;
            }
            crate::util::clock::mark("reaper asked");
            match crate::run::reaper::attach(session, register_now) {
                Ok(()) => {
                    crate::util::flags::set_shares_services(true);
                    if crate::run::reaper::keeps_pools(&session.id) {
                        crate::util::flags::set_pool_keeper(crate::run::reaper::tell_keeper);
                        if crate::run::reaper::keeps_redis(&session.id) {
                            let root = crate::run::reaper::redis_pools(&session.id);
                            crate::util::flags::set_redis_keeper(root, format!("keeper:{}", session.id));
                        }
                    }
                    crate::util::clock::mark("reaper attached");
                    true
                }
                Err(reason) => {
                    crate::run::heartbeat::beat_for_this_process(&session.id);
                    crate::util::say!("cleanroom: no reaper for session {} ({reason}); this process removes its own containers at exit, and shares none with other processes", session.id);
                    false
                }
            }
        })
    }

    /// In a process that attaches (its run's reaper already serves: every
    /// nextest process but the first), connects to the reaper now, on the
    /// calling thread, before the services are read from their creators'
    /// records (`run::attach`), and registers among the run's clients once
    /// they are in its tests' hands ([`super::liveness::register_client`]).
    /// Starts no reaper: without one serving, the first start does as
    /// before. `true` when it attached.
    pub(super) fn attach_reaper_if_serving(&self) -> bool {
        let Ok(session) = &self.session else { return false };
        super::liveness::socket_path(&session.id).exists() && self.attach_to_reaper(false)
    }

    /// Whether teardown has begun.
    pub(crate) fn is_shutting_down(&self) -> bool {
        crate::util::flags::shutting_down()
    }

    /// The running service, starting it if needed; blocks until it is Ready
    /// or failed. Call it outside async code.
    pub(crate) fn acquire(&'static self, spec: &'static ServiceSpec) -> Result<Arc<RunningService>, Error> {
        if let Some(service) = self.ready_now(spec.name) {
            return Ok(service);
        }
        // The run's start may be about to plant its slot: waited for, so
        // that the service is not started a second way.
        if self.slot(spec.name).is_none() {
            super::attach::wait_for_planting();
        }
        // Being started already (the run's start asked for it): wait here,
        // woken by the start's own send, then take it as above. A failure
        // is read below, where it is made an error.
        if let Some(slot) = self.slot(spec.name) {
            let mut outcome = slot.outcome.subscribe();
            let ended = crate::util::background::block_here(async { outcome.wait_for(Option::is_some).await.is_ok() });
            if ended {
                if let Some(service) = self.ready_now(spec.name) {
                    return Ok(service);
                }
            }
        }
        crate::util::background::block_on_runtime(async move { self.get_or_start(spec.name, Source::Spec(spec)).await })
    }

    /// The service `name` when it is Ready already, on the calling thread:
    /// a test's thread then hands nothing to the runtime and waits for no
    /// wake-up (two per test under nextest, a few hundred microseconds on
    /// two busy cores).
    fn ready_now(&self, name: &str) -> Option<Arc<RunningService>> {
        let slot = self.slot(name)?;
        let service = slot.outcome.borrow().clone()?.ok()?;
        crate::metrics::cache_hit("service");
        let mut lifecycle = slot.lifecycle.lock().unwrap_or_else(|e| e.into_inner());
        if lifecycle.state() == State::Ready {
            let _ = lifecycle.transition(State::Running);
        }
        Some(service)
    }

    /// The service `name` if it is Ready, without counting it as a test's
    /// or moving it to Running: for work done ahead of the tests.
    pub(crate) fn peek_ready(&self, name: &str) -> Option<Arc<RunningService>> {
        self.slot(name)?.outcome.borrow().clone()?.ok()
    }

    pub(crate) async fn get_or_start(&'static self, name: &str, source: Source) -> Result<Arc<RunningService>, Error> {
        let mut rx = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            match slots.get(name) {
                Some(slot) => {
                    crate::metrics::cache_hit("service");
                    slot.outcome.subscribe()
                }
                None => {
                    if crate::util::flags::shutting_down() {
                        crate::metrics::cache_miss("service");
                        return Err(Error::ShuttingDown { service: name.to_string() });
                    }
                    let slot = new_slot(&mut slots, name);
                    let rx = slot.outcome.subscribe();
                    self.launch(name.to_string(), slot, source);
                    rx
                }
            }
        };
        let outcome = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|_| Error::ShuttingDown { service: name.to_string() })?
            .clone()
            .expect("waited for Some");
        if outcome.is_ok() {
            if let Some(slot) = self.slots.lock().unwrap_or_else(|e| e.into_inner()).get(name) {
                let mut lifecycle = slot.lifecycle.lock().unwrap_or_else(|e| e.into_inner());
                if lifecycle.state() == State::Ready {
                    let _ = lifecycle.transition(State::Running);
                }
            }
        }
        outcome
    }

    /// Starts the service of `slot` on the runtime: its outcome is sent to
    /// the slot's waiters.
    pub(super) fn launch(&'static self, name: String, slot: Arc<Slot>, source: Source) {
        self.install_signal_handlers();
        let span = tracing::info_span!("cleanroom_service", service = %name);
        crate::util::background::runtime().spawn(tracing::Instrument::instrument(
            async move {
                let unfilled = FailUnfilled::new(&name, &slot);
                let result = self.start(&name, &slot, source).await;
                if let Err(e) = &result {
                    tracing::warn!("failed to start: {e}");
                    let _ = slot.transition(State::Failed);
                }
                unfilled.hand_over();
                slot.outcome.send_replace(Some(result));
            },
            span,
        ));
    }

    pub(super) async fn docker(&self) -> Result<Docker, Error> {
        self.docker
            .get_or_init(|| async {
                let docker = Docker::connect().await.map_err(Error::from)?;
                // Before anything is created: the run's reaper removes its
                // part in Docker only if a process of the run connected.
                if let Ok(session) = self.session() {
                    super::local::mark_docker_used(session);
                }
                Ok(docker)
            })
            .await
            .clone()
    }

    /// Builds the definition: from the spec, then environment overrides.
    pub(super) fn definition(&self, name: &str, source: Source) -> Result<GenericContainer, Error> {
        let def = match source {
            Source::Spec(spec) => {
                if let Some(other) = crate::catalog::registered_services()
                    .find(|s| s.name == spec.name && s.module_path != spec.module_path)
                {
                    return Err(Error::DuplicateService {
                        name: spec.name.to_string(),
                        first: spec.module_path.to_string(),
                        second: other.module_path.to_string(),
                    });
                }
                match spec.kind {
                    ServiceKind::Postgres => builtin::postgres_definition(),
                    ServiceKind::Redis => builtin::redis_definition(),
                    ServiceKind::Generic(build) => {
                        std::panic::catch_unwind(build).map_err(|panic| Error::Configuration {
                            key: format!("service `{name}`"),
                            reason: format!(
                                "its #[cleanroom::service] function panicked: {}",
                                panic_message(panic.as_ref())
                            ),
                        })?
                    }
                }
            }
            Source::Dynamic(build) => build(),
            Source::Resolved(def) => return Ok(*def),
        };
        let config = self.config.as_ref().map_err(Clone::clone)?;
        let overrides = crate::config::service_overrides(name)?;
        // A service's own `startup_timeout` beats the run's.
        let own_timeout = overrides.startup_timeout.is_some();
        let mut def = overrides.apply(def, config.image_prefix.as_deref());
        if !config.volume_cache {
            def.volume_cache = None;
        }
        if let Config { startup_timeout: Some(t), .. } = config {
            if !own_timeout && def.startup_timeout == crate::service::definition::DEFAULT_STARTUP_TIMEOUT {
                def.startup_timeout = *t;
            }
        }
        Ok(def)
    }

    pub(super) fn slot(&self, name: &str) -> Option<Arc<Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    /// Whether `id` is the container tests of `name` get now.
    pub(crate) fn is_serving(&self, name: &str, id: &str) -> bool {
        self.slot(name).is_some_and(|slot| {
            slot.serving.lock().unwrap_or_else(|e| e.into_inner()).as_ref().is_some_and(|s| s.id == id)
        })
    }

    /// The failure of container `id` of `name`, if this process saw one.
    pub(crate) fn failure_of(&self, name: &str, id: &str) -> Option<ServiceFailure> {
        let slot = self.slot(name)?;
        let failures = slot.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.iter().rev().find(|(f, _)| f.container == id).map(|(f, _)| f.clone())
    }

    /// Lifecycle history of a service, for reports and tests.
    pub(crate) fn lifecycle(&self, name: &str) -> Option<Lifecycle> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.get(name).map(|s| s.lifecycle.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::{FailUnfilled, Slot};
        use crate::error::Error;
        use std::sync::Arc;
        use std::time::Duration;

        #[test]
        fn fail_the_waiters_of_a_start_that_panicked() {
            let slot = Arc::new(Slot::new("web"));
            let mut waiting = slot.outcome.subscribe();
            let starting = slot.clone();
            let start = std::thread::spawn(move || {
                let _unfilled = FailUnfilled::new("web", &starting);
                panic!("a start that goes wrong");
            });
            assert!(start.join().is_err());
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let outcome = runtime
                .block_on(async {
                    tokio::time::timeout(Duration::from_secs(5), waiting.wait_for(Option::is_some)).await
                })
                .expect("the waiter is not left waiting")
                .expect("the slot lives")
                .clone()
                .expect("an outcome");
            let err = outcome.expect_err("a failure").to_string();
            assert!(err.starts_with("web: start failed") && err.contains("panicked"), "{err}");
        }

        #[test]
        fn leave_a_sent_outcome_and_a_start_handed_over_alone() {
            let handed = Arc::new(Slot::new("web"));
            FailUnfilled::new("web", &handed).hand_over();
            assert!(handed.outcome.borrow().is_none(), "the start it was handed to sends it");
            let sent = Arc::new(Slot::new("db"));
            sent.outcome.send_replace(Some(Err(Error::NameTaken { service: "db".into(), reason: "taken".into() })));
            drop(FailUnfilled::new("db", &sent));
            let outcome = sent.outcome.borrow().clone();
            assert!(matches!(outcome, Some(Err(Error::NameTaken { .. }))), "{outcome:?}");
        }
    }
}
