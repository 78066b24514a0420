//! The process-wide registry of services: each is started at most once, on
//! cleanroom's own runtime, and every container it started is removed when the
//! process ends.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::backend::{Docker, DEFINITION_LABEL, MANAGED_LABEL, OWNER_LABEL, REUSE_LABEL, SERVICE_LABEL, SESSION_LABEL};
use crate::builtin;
use crate::config::Config;
use crate::definition::{GenericContainer, ServiceKind, ServiceSpec};
use crate::error::Error;
use crate::health;
use crate::lifecycle::{Lifecycle, State};
use crate::monitor::{Cause, ServiceFailure};
use crate::session::Session;

/// Further attempts at creating and starting a container after a transient
/// error.
const START_RETRIES: u32 = 3;

/// The wait before the `n`th retry (1-based): 250 ms, 500 ms, 1 s, … up to 4 s.
fn backoff(n: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << n.saturating_sub(1).min(4))).min(Duration::from_secs(4))
}

/// How long teardown may take before cleanroom gives up and lets the process end.
const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// A service that passed its health checks.
#[derive(Debug)]
pub(crate) struct RunningService {
    pub(crate) name: String,
    pub(crate) image: String,
    pub(crate) id: String,
    pub(crate) ports: BTreeMap<u16, u16>,
    pub(crate) definition: GenericContainer,
    pub(crate) docker: Docker,
}

impl RunningService {
    pub(crate) fn env(&self, key: &str) -> Option<&str> {
        self.definition.env.get(key).map(String::as_str)
    }
}

type Outcome = Option<Result<Arc<RunningService>, Error>>;

struct Slot {
    lifecycle: Mutex<Lifecycle>,
    outcome: watch::Sender<Outcome>,
    /// The container, as soon as Docker created it (before it is Ready).
    container_id: Mutex<Option<String>>,
    /// The service tests get now (`None` while it starts or recovers).
    serving: Mutex<Option<Arc<RunningService>>>,
    /// Every death or failure seen, oldest first, with when it was seen.
    failures: Mutex<Vec<(ServiceFailure, Instant)>>,
    /// Replacements made by this process's recovery.
    restarts: std::sync::atomic::AtomicU32,
}

impl Slot {
    fn transition(&self, to: State) -> Result<(), Error> {
        self.lifecycle.lock().unwrap_or_else(|e| e.into_inner()).transition(to)
    }
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
    runtime: tokio::runtime::Runtime,
    config: Result<Config, Error>,
    session: Result<Session, Error>,
    /// Whether this process is attached to its session's reaper.
    reaper: OnceLock<bool>,
    docker: tokio::sync::OnceCell<Result<Docker, Error>>,
    /// The run's network, once this process has made or found it.
    network: tokio::sync::Mutex<Option<String>>,
    /// Named volumes this process created, for teardown without a reaper.
    volumes: Mutex<Vec<String>>,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    /// Containers being created right now (their ids are not known yet).
    creating: AtomicUsize,
    shutting_down: AtomicBool,
    torn_down: AtomicBool,
    signals_installed: AtomicBool,
}

static REGISTRY: OnceLock<Registry> = OnceLock::new();

/// The registry, created on first use.
pub(crate) fn global() -> &'static Registry {
    REGISTRY.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cleanroom")
            .enable_all()
            .build()
            .expect("cleanroom: failed to build its tokio runtime");
        Registry {
            runtime,
            config: Config::from_env(),
            session: crate::session::current(),
            reaper: OnceLock::new(),
            docker: tokio::sync::OnceCell::new(),
            network: tokio::sync::Mutex::new(None),
            volumes: Mutex::new(Vec::new()),
            slots: Mutex::new(HashMap::new()),
            creating: AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
            torn_down: AtomicBool::new(false),
            signals_installed: AtomicBool::new(false),
        }
    })
}

/// The registry if anything created it.
pub(crate) fn get() -> Option<&'static Registry> {
    REGISTRY.get()
}

/// Runs `fut` on cleanroom's runtime and awaits it from any runtime.
pub(crate) async fn on_runtime<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> T {
    match global().runtime.spawn(fut).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Runs `fut` on cleanroom's runtime and blocks the calling thread until it ends.
pub(crate) fn block_on_runtime<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    global().runtime.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().expect("cleanroom: its runtime stopped while a test was waiting on it")
}

/// Runs `fut` on cleanroom's runtime without waiting for it: work off a
/// test's critical path (dropping its database).
pub(crate) fn spawn_background(fut: impl Future<Output = ()> + Send + 'static) {
    global().runtime.spawn(fut);
}

impl Registry {
    /// The session id, which labels everything this process creates.
    pub(crate) fn session(&self) -> Result<&str, Error> {
        self.session.as_ref().map(|s| s.id.as_str()).map_err(Clone::clone)
    }

    /// Connects to the session's reaper (starting it if needed) before the
    /// first container is made, so that nothing exists without someone to
    /// remove it. Without a reaper this process removes what it made itself.
    fn reaper_attached(&self) -> bool {
        *self.reaper.get_or_init(|| {
            let Ok(session) = &self.session else { return false };
            if crate::config::current().is_ok_and(|c| c.no_reaper) {
                return false;
            }
            match crate::reaper::attach(session) {
                Ok(()) => true,
                Err(reason) => {
                    eprintln!("cleanroom: no reaper for session {} ({reason}); this process removes its own containers at exit, and shares none with other processes", session.id);
                    false
                }
            }
        })
    }

    /// Whether this process shares its services with the other processes of
    /// its run (a reaper serves the run).
    pub(crate) fn shares_services(&self) -> bool {
        self.reaper.get() == Some(&true)
    }

    /// Whether teardown has begun.
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Starts `spec` in the background if nobody has yet.
    pub(crate) fn prestart(&'static self, spec: &'static ServiceSpec) {
        self.runtime.spawn(async move {
            let _ = self.get_or_start(spec.name, Source::Spec(spec)).await;
        });
    }

    /// The running service, starting it if needed; blocks until it is Ready
    /// or failed. Call it outside async code.
    pub(crate) fn acquire(&'static self, spec: &'static ServiceSpec) -> Result<Arc<RunningService>, Error> {
        block_on_runtime(async move { self.get_or_start(spec.name, Source::Spec(spec)).await })
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
                    crate::metrics::cache_miss("service");
                    if self.shutting_down.load(Ordering::SeqCst) {
                        return Err(Error::ShuttingDown { service: name.to_string() });
                    }
                    let slot = Arc::new(Slot {
                        lifecycle: Mutex::new(Lifecycle::new(name)),
                        outcome: watch::Sender::new(None),
                        container_id: Mutex::new(None),
                        serving: Mutex::new(None),
                        failures: Mutex::new(Vec::new()),
                        restarts: std::sync::atomic::AtomicU32::new(0),
                    });
                    slots.insert(name.to_string(), slot.clone());
                    let rx = slot.outcome.subscribe();
                    self.install_signal_handlers();
                    let name = name.to_string();
                    let span = tracing::info_span!("cleanroom_service", service = %name);
                    self.runtime.spawn(tracing::Instrument::instrument(
                        async move {
                            let result = self.start(&name, &slot, source).await;
                            if let Err(e) = &result {
                                tracing::warn!("failed to start: {e}");
                                let _ = slot.transition(State::Failed);
                            }
                            slot.outcome.send_replace(Some(result));
                        },
                        span,
                    ));
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

    async fn docker(&self) -> Result<Docker, Error> {
        self.docker.get_or_init(Docker::connect).await.clone()
    }

    /// Builds the definition: from the spec, then environment overrides.
    fn definition(&self, name: &str, source: Source) -> Result<GenericContainer, Error> {
        let def = match source {
            Source::Spec(spec) => {
                if let Some(other) = crate::driver::registered_services()
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
        let overrides = crate::config::layers()?.service(name)?;
        // A service's own `startup_timeout` beats the run's.
        let own_timeout = overrides.startup_timeout.is_some();
        let mut def = overrides.apply(def, config.image_prefix.as_deref());
        if !config.volume_cache {
            def.volume_cache = None;
        }
        if let Config { startup_timeout: Some(t), .. } = config {
            if !own_timeout && def.startup_timeout == crate::definition::DEFAULT_STARTUP_TIMEOUT {
                def.startup_timeout = *t;
            }
        }
        Ok(def)
    }

    async fn start(&'static self, name: &str, slot: &Slot, source: Source) -> Result<Arc<RunningService>, Error> {
        let config = self.config.clone()?;
        let session = self.session()?.to_string();
        let def = self.definition(name, source)?;
        check_bind_sources(name, &def)?;
        let docker = self.docker().await?;
        slot.transition(State::Starting)?;
        let started = Instant::now();

        let shared = self.reaper_attached();
        let definition_hash = format!("{:016x}", def.identity_hash());
        // A reused service belongs to no run: the next run with the same
        // definition attaches to it, and the reaper removes it once it has
        // been idle for the TTL.
        let reuse = config.reuse && shared;
        let uid = crate::reaper::uid();
        let owner_session = if reuse { format!("reuse-{uid}") } else { session.clone() };
        let mut labels = BTreeMap::from([
            (MANAGED_LABEL.to_string(), "true".to_string()),
            (SESSION_LABEL.to_string(), owner_session.clone()),
            (SERVICE_LABEL.to_string(), name.to_string()),
            (DEFINITION_LABEL.to_string(), definition_hash.clone()),
            (OWNER_LABEL.to_string(), uid.to_string()),
        ]);
        if reuse {
            labels.insert(REUSE_LABEL.to_string(), "true".to_string());
        }
        let mut labels_all = def.labels.clone();
        labels_all.extend(labels);
        // Processes of one run share a container through its name: Docker
        // lets exactly one of them create it; the others attach.
        let container_name = shared.then(|| format!("cleanroom-{owner_session}-{name}-{}", &definition_hash[..12]));
        if reuse {
            crate::reaper::claim_reused(container_name.as_deref().unwrap_or_default(), &session, config.reuse_ttl);
        }

        // Already there (another process of the run, or a reused service):
        // attach without asking Docker to create anything.
        let existing = match container_name.as_deref() {
            Some(cname) => match docker.inspect_named(cname).await {
                Ok(Some(c)) if c.running => Some((c.id, c.env)),
                _ => None,
            },
            None => None,
        };
        let cache_volume = crate::cache::volume_for(name, &def);
        let docker_def = match &cache_volume {
            Some(volume) => crate::cache::wrap(&def, volume),
            None => def.clone(),
        };
        let mut attempts = 0;
        let mut retries = 0u32;
        let mut phases = crate::metrics::Phases::default();
        let (id, actual_env, created_here) = loop {
            if let Some((id, env)) = existing.clone() {
                break (id, Some(env), false);
            }
            if attempts == 0 && retries == 0 {
                let pull = async {
                    let pull_started = Instant::now();
                    let pulled = match config.pull {
                        crate::config::PullPolicy::Always => pull_once(&docker, name, &def.image, &session).await,
                        policy => docker.ensure_image(name, &def.image, policy).await,
                    };
                    (pulled, pull_started.elapsed())
                };
                // The run's network is made while the image is looked at; a
                // failure here is met again, and reported, when the
                // container joins it.
                let ((pulled, pull_time), _) =
                    tokio::join!(pull, self.run_network(&docker, &owner_session, reuse, shared));
                let pulled = pulled?;
                phases.pull_ms = Some(crate::metrics::ms(pull_time));
                if let Some(volume) = &cache_volume {
                    docker.ensure_volume(&volume.name, &volume.labels).await.map_err(|reason| Error::Creation {
                        service: name.to_string(),
                        image: def.image.clone(),
                        reason: format!("could not make its cache volume {}: {reason} (run.volume_cache = false turns the cache off)", volume.name),
                    })?;
                }
                if pulled {
                    crate::metrics::cache_miss("image");
                } else {
                    crate::metrics::cache_hit("image");
                }
                self.ensure_volumes(&docker, name, &def, &owner_session, reuse).await?;
                eprintln!("cleanroom: starting {name} ({})", def.image);
                tracing::info!(service = name, image = %def.image, "starting");
            }
            self.creating.fetch_add(1, Ordering::SeqCst);
            let create_started = Instant::now();
            let created = docker.start(name, &docker_def, labels_all.clone(), container_name.as_deref()).await;
            phases.create_ms = Some(crate::metrics::ms(create_started.elapsed()));
            let created = created.map(|container| {
                let id = container.id().to_string();
                // cleanroom removes its containers itself, by id and by label;
                // testcontainers' remove-on-drop must not race with that.
                std::mem::forget(container);
                *slot.container_id.lock().unwrap_or_else(|e| e.into_inner()) = Some(id.clone());
                id
            });
            self.creating.fetch_sub(1, Ordering::SeqCst);
            match created {
                Ok(id) => break (id, None, true),
                Err(Error::NameTaken { .. }) if attempts < 100 => {
                    attempts += 1;
                    let cname = container_name.as_deref().unwrap_or_default();
                    if let Some((id, env)) = self.wait_for_named(&docker, name, &def, cname, started).await? {
                        break (id, Some(env), false);
                    }
                    // It went away before it ran (its creator failed, or the
                    // previous reaper of the run is still removing it): try to
                    // create it again once the name is free.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(err) => {
                    // A container may exist even though starting it failed.
                    if !shared {
                        self.remove_labelled(&docker, &[(SESSION_LABEL, &session), (SERVICE_LABEL, name)]).await;
                    } else if let Some(cname) = container_name.as_deref() {
                        if let Ok(Some(c)) = docker.inspect_named(cname).await {
                            if !c.running {
                                let _ = docker.remove(&c.id).await;
                            }
                        }
                    }
                    if err.is_transient() && retries < START_RETRIES && !self.is_shutting_down() {
                        retries += 1;
                        let wait = backoff(retries);
                        crate::metrics::alert(
                            name,
                            "startup_retry",
                            format!("{err}; retrying in {wait:?} ({retries} of {START_RETRIES})"),
                        );
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    return Err(err);
                }
            }
        };
        if self.shutting_down.load(Ordering::SeqCst) && created_here && !shared {
            let _ = docker.remove(&id).await;
            return Err(Error::ShuttingDown { service: name.to_string() });
        }
        let mut def = def;
        if let Some(env) = actual_env {
            // The creator's values (its random password) are the ones that work.
            def.env = env;
        }

        let ready = async {
            let ports_started = Instant::now();
            if created_here {
                self.join_run_network(&docker, &id, name, &def.image, &owner_session, reuse, shared).await?;
                join_extra_networks(&docker, &id, name, &def).await?;
            }
            let ports = docker.published_ports(&id).await.map_err(|reason| Error::Start {
                service: name.to_string(),
                image: def.image.clone(),
                reason: format!("could not read its published ports: {reason}"),
            })?;
            let service = RunningService {
                name: name.to_string(),
                image: def.image.clone(),
                id: id.clone(),
                ports,
                definition: def.clone(),
                docker: docker.clone(),
            };
            phases.start_ms = Some(crate::metrics::ms(ports_started.elapsed()));
            let deadline = started + def.startup_timeout;
            let health_started = Instant::now();
            // A container another process created and saw pass its checks
            // needs no second round of them (under nextest every test is a
            // process of its own that attaches).
            if created_here {
                health::wait_ready(&service, deadline, &self.shutting_down).await?;
                if let Some(volume) = &cache_volume {
                    // Before the init commands and before any test sees the
                    // server, so that a fill copies a cluster nobody touched.
                    let cache_started = Instant::now();
                    use_volume_cache(&service, &volume.name).await?;
                    phases.cache_ms = Some(crate::metrics::ms(cache_started.elapsed()));
                }
                run_init_commands(&service).await?;
            } else if !crate::reaper::seen_ready(&id) {
                let probe_id = id.clone();
                // Passing checks do not say that the creator's init commands
                // are done: only its ready mark does.
                let may_probe = def.init.is_empty();
                health::probe::wait_attached(&service, deadline, &self.shutting_down, may_probe, move || {
                    crate::reaper::seen_ready(&probe_id)
                })
                .await?;
            }
            phases.health_ms = Some(crate::metrics::ms(health_started.elapsed()) - phases.cache_ms.unwrap_or(0.0))
                .map(|ms| ms.max(0.0));
            if shared {
                crate::reaper::mark_ready(&id);
            }
            Ok::<_, Error>(service)
        }
        .await;
        match ready {
            Ok(service) => {
                slot.transition(State::Ready)?;
                let service = Arc::new(service);
                phases.created_here = created_here;
                if created_here {
                    crate::metrics::cache_miss("container");
                    eprintln!("cleanroom: {name} ready in {:.2} s", started.elapsed().as_secs_f64());
                } else {
                    crate::metrics::cache_hit("container");
                }
                tracing::info!(service = name, created_here, ready_ms = crate::metrics::ms(started.elapsed()), "ready");
                let first = slot.restarts.load(Ordering::SeqCst) == 0
                    && slot.failures.lock().unwrap_or_else(|e| e.into_inner()).is_empty();
                crate::metrics::service(name, |m| {
                    m.image = def.image.clone();
                    m.containers.push(id.clone());
                    m.starts.push(phases);
                    if first {
                        m.time_to_ready_ms = Some(crate::metrics::ms(started.elapsed()));
                    }
                });
                *slot.serving.lock().unwrap_or_else(|e| e.into_inner()) = Some(service.clone());
                crate::monitor::spawn(self, service.clone());
                Ok(service)
            }
            Err(err) => {
                if created_here {
                    let _ = docker.remove(&id).await;
                }
                Err(err)
            }
        }
    }

    /// Waits for the container another process of the run created under
    /// `container_name` to run. `None` if it disappeared (its creator failed),
    /// so that the caller can create it again.
    async fn wait_for_named(
        &self,
        docker: &Docker,
        name: &str,
        def: &GenericContainer,
        container_name: &str,
        started: Instant,
    ) -> Result<Option<(String, BTreeMap<String, String>)>, Error> {
        loop {
            let found = docker.inspect_named(container_name).await.map_err(|reason| Error::Start {
                service: name.to_string(),
                image: def.image.clone(),
                reason: format!("could not inspect {container_name}: {reason}"),
            })?;
            match found {
                None => return Ok(None),
                Some(c) if c.running => return Ok(Some((c.id, c.env))),
                Some(c) if c.status == "created" => {}
                Some(c) => {
                    return Err(Error::Exited {
                        service: name.to_string(),
                        image: def.image.clone(),
                        code: c.exit_code.unwrap_or(-1),
                        logs: docker.logs(&c.id, Some(20)).await.unwrap_or_default(),
                    })
                }
            }
            if started.elapsed() > def.startup_timeout {
                return Err(Error::Timeout {
                    service: name.to_string(),
                    image: def.image.clone(),
                    check: "the container that another process of the run created starting".into(),
                    after: started.elapsed(),
                    last: "it was created but did not run".into(),
                    logs: String::new(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The run's network, made by whichever process of the run needs it
    /// first (a process without a reaper has one of its own).
    async fn run_network(
        &self,
        docker: &Docker,
        owner_session: &str,
        reuse: bool,
        shared: bool,
    ) -> Result<String, String> {
        let mut held = self.network.lock().await;
        if let Some(name) = held.as_ref() {
            return Ok(name.clone());
        }
        let name = run_network_name(owner_session, shared, std::process::id());
        let labels = run_labels(owner_session, reuse);
        // One process of the run creates it, the others wait for it: not
        // every engine refuses a second network of the same name.
        // Whatever the outcome, each process then makes sure of the network
        // itself: a failure is not handed on, and a reused network outlives
        // the marks' run.
        let marks = crate::reaper::RunMarks::of(owner_session);
        let key = format!("network {name}");
        let mine = match shared.then(|| marks.claim(&key).ok()).flatten() {
            Some(crate::reaper::Turn::Theirs) => marks.outcome(&key).await.is_none(),
            Some(crate::reaper::Turn::Mine) => true,
            None => false,
        };
        let created = docker.ensure_network(&name, &labels).await;
        if mine {
            marks.finish(&key, &created.as_ref().map(|_| ()).map_err(Clone::clone));
        }
        let created = created?;
        if created {
            crate::metrics::cache_miss("network");
        } else {
            crate::metrics::cache_hit("network");
        }
        *held = Some(name.clone());
        Ok(name)
    }

    /// Connects a container this process created to the run's network, with
    /// its service name as the alias the other services reach it by. Once
    /// more with the network made again if it went away meanwhile (the
    /// keeper of reused services removes theirs when the last one goes).
    #[allow(clippy::too_many_arguments)]
    async fn join_run_network(
        &self,
        docker: &Docker,
        id: &str,
        service: &str,
        image: &str,
        owner_session: &str,
        reuse: bool,
        shared: bool,
    ) -> Result<(), Error> {
        let mut reason = String::new();
        for _ in 0..2 {
            match self.run_network(docker, owner_session, reuse, shared).await {
                Ok(network) => match docker.connect_network(&network, id, service).await {
                    Ok(()) => return Ok(()),
                    Err(e) => {
                        reason = format!("could not connect it to the run's network {network}: {e}");
                        *self.network.lock().await = None;
                    }
                },
                Err(e) => reason = format!("could not create the run's network: {e}"),
            }
        }
        Err(Error::Start { service: service.to_string(), image: image.to_string(), reason })
    }

    /// Creates the named volumes of `def` that do not exist yet, labelled
    /// as the run's so that the run's end removes them; existing volumes are
    /// used as they are and left alone.
    async fn ensure_volumes(
        &self,
        docker: &Docker,
        service: &str,
        def: &GenericContainer,
        owner_session: &str,
        reuse: bool,
    ) -> Result<(), Error> {
        let labels = run_labels(owner_session, reuse);
        for mount in def.mounts.iter().filter(|m| m.kind == crate::definition::MountKind::Volume) {
            match docker.ensure_volume(&mount.source, &labels).await {
                Ok(true) => self.volumes.lock().unwrap_or_else(|e| e.into_inner()).push(mount.source.clone()),
                Ok(false) => {}
                Err(reason) => {
                    return Err(Error::Creation {
                        service: service.to_string(),
                        image: def.image.clone(),
                        reason: format!("could not create the volume {} for {}: {reason}", mount.source, mount.target),
                    })
                }
            }
        }
        Ok(())
    }

    async fn remove_labelled(&self, docker: &Docker, labels: &[(&str, &str)]) {
        if let Ok(ids) = docker.containers_labelled(labels).await {
            futures_util::future::join_all(ids.iter().map(|id| docker.remove(id))).await;
        }
    }

    /// Stops and removes everything this process started. Safe to call more
    /// than once; only the first call does the work.
    pub(crate) async fn teardown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        if self.torn_down.swap(true, Ordering::SeqCst) {
            return;
        }
        let slots: Vec<Arc<Slot>> = self.slots.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        if slots.is_empty() {
            return;
        }
        let Some(Ok(docker)) = self.docker.get().cloned() else { return };
        let Ok(session) = self.session() else { return };
        if self.reaper.get() == Some(&true) {
            // The reaper removes the run's containers once its last process is
            // gone; this process only returns what it holds on the servers.
            crate::rooms::release_pooled().await;
            return;
        }
        // Containers being created now are labelled, so wait for their ids to
        // exist before asking Docker by label.
        let wait_start = Instant::now();
        while self.creating.load(Ordering::SeqCst) > 0 && wait_start.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for slot in &slots {
            let _ = slot.transition(State::Stopping);
        }
        let mut ids: Vec<String> =
            slots.iter().filter_map(|s| s.container_id.lock().unwrap_or_else(|e| e.into_inner()).clone()).collect();
        if let Ok(more) = docker.containers_labelled(&[(MANAGED_LABEL, "true"), (SESSION_LABEL, session)]).await {
            for id in more {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        let results = futures_util::future::join_all(ids.iter().map(|id| docker.remove(id))).await;
        for (id, result) in ids.iter().zip(results) {
            if let Err(e) = result {
                eprintln!("cleanroom: could not remove container {id}: {e}; remove it with `docker rm -f {id}`");
            }
        }
        // Without a reaper the volumes this process created are its own too
        // (a volume another process still uses refuses to go: left to that
        // process's teardown, or `cargo cleanroom prune`).
        let volumes: Vec<String> = std::mem::take(&mut *self.volumes.lock().unwrap_or_else(|e| e.into_inner()));
        for volume in volumes {
            if let Err(e) = docker.remove_volume(&volume).await {
                eprintln!(
                    "cleanroom: could not remove volume {volume}: {e}; remove it with `docker volume rm {volume}`"
                );
            }
        }
        // Without a reaper the network is this process's own.
        if let Some(network) = self.network.lock().await.take() {
            if let Err(e) = docker.remove_network(&network).await {
                eprintln!(
                    "cleanroom: could not remove network {network}: {e}; remove it with `docker network rm {network}`"
                );
            }
        }
        for slot in &slots {
            let _ = slot.transition(State::Stopped);
        }
        if let Ok(config) = crate::config::current() {
            crate::cache::evict(&docker, config.cache_ttl, config.cache_size).await;
        }
    }

    /// [`Registry::teardown`] from outside the runtime (the exit hook).
    pub(crate) fn shutdown_blocking(&'static self) {
        if self.torn_down.load(Ordering::SeqCst) {
            return;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        self.runtime.spawn(async move {
            self.teardown().await;
            let _ = tx.send(());
        });
        if rx.recv_timeout(TEARDOWN_TIMEOUT).is_err() {
            eprintln!(
                "cleanroom: teardown did not finish within {TEARDOWN_TIMEOUT:?}; list what is left with `docker ps -a --filter label={SESSION_LABEL}={}`",
                self.session().unwrap_or("?")
            );
        }
    }

    /// On SIGINT or SIGTERM: remove everything, then exit as the signal would have.
    fn install_signal_handlers(&'static self) {
        if self.signals_installed.swap(true, Ordering::SeqCst) {
            return;
        }
        #[cfg(unix)]
        self.runtime.spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
                return;
            };
            let code = tokio::select! {
                _ = int.recv() => 130,
                _ = term.recv() => 143,
            };
            // With a reaper, exiting is enough: it notices and cleans up.
            if self.reaper.get() != Some(&true) {
                self.teardown().await;
            }
            self.torn_down.store(true, Ordering::SeqCst);
            std::process::exit(code);
        });
    }

    fn slot(&self, name: &str) -> Option<Arc<Slot>> {
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

    /// A service died or turned unhealthy: records it, then replaces the
    /// container or gives up, as its recovery policy says. Tests that ask for
    /// the service meanwhile wait for the outcome. Several processes of a run
    /// may recover the same death at once: each removes the dead container by
    /// id, and Docker's unique container names let one create the replacement
    /// while the others attach to it.
    pub(crate) async fn recover(&'static self, name: &str, failed_id: &str, cause: Cause) {
        let Some(slot) = self.slot(name) else { return };
        let previous = {
            let mut serving = slot.serving.lock().unwrap_or_else(|e| e.into_inner());
            match serving.as_ref() {
                Some(s) if s.id == failed_id => serving.take().expect("checked"),
                // Already recovered (or never served): nothing to do.
                _ => return,
            }
        };
        // New callers wait from here on for the recovery's outcome.
        slot.outcome.send_replace(None);
        crate::metrics::service(name, |m| {
            m.health = crate::metrics::Health::Unhealthy;
            if let Some(since) = m.ready_since.take() {
                m.uptime_ms += crate::metrics::ms(since.elapsed());
            }
        });
        let docker = previous.docker.clone();
        let ended = docker.ended(failed_id).await;
        let logs = match docker.logs(failed_id, Some(20)).await {
            Ok(l) if l.trim().is_empty() => "(no output)".to_string(),
            Ok(l) => l.trim_end().lines().map(|l| format!("  | {l}")).collect::<Vec<_>>().join("\n"),
            Err(e) => format!("(logs unavailable: {e})"),
        };
        let short = &failed_id[..failed_id.len().min(12)];
        let (kind, reason) = match &cause {
            Cause::Died { exit_code } => {
                let code =
                    ended.map(|e| e.code.to_string()).or_else(|| exit_code.clone()).unwrap_or_else(|| "?".into());
                if ended.is_some_and(|e| e.oom_killed) {
                    crate::metrics::service(name, |m| m.oom_killed = true);
                    ("oom", format!("its container {short} was killed for lack of memory (OOM, exit code {code})"))
                } else {
                    ("died", format!("its container {short} exited with code {code}"))
                }
            }
            Cause::Unhealthy { last } => (
                "unhealthy",
                format!(
                    "its container {short} failed its health checks {} times in a row: {last}",
                    crate::monitor::UNHEALTHY_AFTER
                ),
            ),
            Cause::Limit { what } => ("restart", format!("its container {short} crossed a limit: {what}")),
        };
        let restarts = slot.restarts.load(Ordering::SeqCst);
        let failure = ServiceFailure {
            service: name.to_string(),
            container: failed_id.to_string(),
            reason: reason.clone(),
            logs: logs.clone(),
            restarts,
        };
        slot.failures.lock().unwrap_or_else(|e| e.into_inner()).push((failure.clone(), Instant::now()));
        crate::metrics::alert(name, kind, reason.clone());
        let _ = slot.transition(State::Failed);

        let refused = crate::monitor::refusal(previous.definition.watch.recovery, &failure);
        if self.is_shutting_down() {
            return;
        }
        if let Some(policy) = refused {
            let _ = docker.remove(failed_id).await;
            slot.outcome.send_replace(Some(Err(Error::ServiceDied {
                service: name.to_string(),
                reason,
                policy,
                logs,
            })));
            return;
        }
        let _ = slot.transition(State::Restarting);
        let _ = docker.remove(failed_id).await;
        tokio::time::sleep(backoff(restarts + 1)).await;
        let began = Instant::now();
        let mut def = previous.definition.clone();
        def.rooms = previous.definition.rooms;
        let result = self.start(name, &slot, Source::Resolved(Box::new(def))).await;
        slot.restarts.fetch_add(1, Ordering::SeqCst);
        match &result {
            Ok(service) => {
                let here = service.id != failed_id
                    && crate::metrics::service(name, |m| m.starts.last().is_some_and(|p| p.created_here));
                if here {
                    crate::metrics::service(name, |m| m.restarts += 1);
                }
                crate::metrics::alert(
                    name,
                    "restarted",
                    format!(
                        "replaced by container {} in {:.2} s{}",
                        &service.id[..service.id.len().min(12)],
                        began.elapsed().as_secs_f64(),
                        if here { "" } else { " (another process of the run made it)" }
                    ),
                );
            }
            Err(e) => {
                let _ = slot.transition(State::Failed);
                crate::metrics::alert(name, "restart_failed", format!("could not replace it: {e}"));
            }
        }
        let result = result.map_err(|e| Error::ServiceDied {
            service: name.to_string(),
            reason: failure.reason.clone(),
            policy: format!("its replacement failed: {e}"),
            logs: failure.logs.clone(),
        });
        slot.outcome.send_replace(Some(result));
    }

    /// Lifecycle history of a service, for reports and tests.
    pub(crate) fn lifecycle(&self, name: &str) -> Option<Lifecycle> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.get(name).map(|s| s.lifecycle.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// Counts what a service's start found in its volume cache; the first
/// health check has cleaned a restored cluster or filled an empty cache by
/// then (cache.rs). A failed fill costs the next run its head start, not
/// this run its service: it is an alert, not an error.
async fn use_volume_cache(service: &RunningService, volume: &str) -> Result<(), Error> {
    let (found, outcome) = crate::cache::found(&service.docker, &service.id).await.map_err(|reason| Error::Start {
        service: service.name.clone(),
        image: service.image.clone(),
        reason,
    })?;
    match found {
        crate::cache::Found::Restored(generation) => {
            crate::metrics::cache_hit("volume");
            crate::cache::touch(volume, None);
            tracing::info!(service = %service.name, volume, generation, "cluster copied from the volume cache");
        }
        found => {
            crate::metrics::cache_miss("volume");
            if let crate::cache::Found::Failed(generation) = &found {
                crate::metrics::alert(
                    &service.name,
                    "cache_restore",
                    format!("copying {generation} from {volume} failed; initialised afresh"),
                );
            }
            match outcome.strip_prefix("filled ").map(|kib| kib.trim().parse::<u64>()) {
                Some(Ok(kib)) => crate::cache::touch(volume, Some(kib * 1024)),
                _ => crate::metrics::alert(&service.name, "cache_fill", format!("filling {volume} failed: {outcome}")),
            }
        }
    }
    Ok(())
}

/// `run.pull = always`: pulls `image` once per run, whichever process of the
/// run gets there first; the others wait for its outcome. `true` when this
/// process pulled it.
async fn pull_once(docker: &Docker, service: &str, image: &str, session: &str) -> Result<bool, Error> {
    let marks = crate::reaper::RunMarks::of(session);
    let key = format!("pull {image}");
    let outcome = match marks.claim(&key) {
        Ok(crate::reaper::Turn::Theirs) => match marks.outcome(&key).await {
            Some(Ok(())) => return Ok(false),
            Some(Err(reason)) => Err(format!("another process of this run pulled it and failed: {reason}")),
            // Its puller is gone without an outcome: the mark is this
            // process's now.
            None => {
                let outcome = docker.pull(image).await;
                marks.finish(&key, &outcome);
                outcome
            }
        },
        Ok(crate::reaper::Turn::Mine) => {
            let outcome = docker.pull(image).await;
            marks.finish(&key, &outcome);
            outcome
        }
        // No runtime directory: pull in this process.
        Err(_) => docker.pull(image).await,
    };
    match outcome {
        Ok(()) => Ok(true),
        Err(reason) if docker.has_image(image).await => Err(Error::Creation {
            service: service.to_string(),
            image: image.to_string(),
            reason: format!(
                "run.pull is `always` and the pull of {image} failed ({reason}); to use the copy on this machine set CLEANROOM_PULL=missing"
            ),
        }),
        Err(reason) => Err(Error::ImageNotFound {
            service: service.to_string(),
            image: image.to_string(),
            pull: format!("the pull failed: {reason}"),
            env: crate::config::env_key(service),
        }),
    }
}

/// Refuses a bind mount whose host path does not exist before Docker is
/// asked, naming the service and the path.
fn check_bind_sources(service: &str, def: &GenericContainer) -> Result<(), Error> {
    for mount in def.mounts.iter().filter(|m| m.kind == crate::definition::MountKind::Bind) {
        let path = crate::backend::absolute(&mount.source);
        if !path.exists() {
            return Err(Error::Configuration {
                key: format!("service `{service}`, bind mount of {}", mount.target),
                reason: format!("the host path {} does not exist; create it or fix the mount's source", path.display()),
            });
        }
    }
    Ok(())
}

/// Connects a container this process created to the extra networks of its
/// definition, where it is reached by its service name too.
async fn join_extra_networks(docker: &Docker, id: &str, service: &str, def: &GenericContainer) -> Result<(), Error> {
    for network in &def.networks {
        docker.connect_network(network, id, service).await.map_err(|reason| Error::Creation {
            service: service.to_string(),
            image: def.image.clone(),
            reason: format!(
                "could not connect it to the network {network}: {reason}; cleanroom joins existing networks only (create it with `docker network create {network}`)"
            ),
        })?;
    }
    Ok(())
}

/// Runs the init commands of a container this process created, in order;
/// the first that fails fails the start.
async fn run_init_commands(service: &RunningService) -> Result<(), Error> {
    for cmd in &service.definition.init {
        let failed = |code: i64, stderr: String| Error::Init {
            service: service.name.clone(),
            image: service.image.clone(),
            command: cmd.join(" "),
            code,
            stderr: if stderr.trim().is_empty() { "(empty)".to_string() } else { stderr.trim_end().to_string() },
        };
        let out = service
            .docker
            .exec(&service.id, cmd)
            .await
            .map_err(|reason| failed(-1, format!("docker could not run it: {reason}")))?;
        if out.exit_code != 0 {
            return Err(failed(out.exit_code, out.stderr));
        }
    }
    Ok(())
}

/// The name of the run's network: `cleanroom-<session>` when the processes
/// of the run share it, else one per process.
/// The labels of what a run (or the reused services) owns besides its
/// containers: networks and volumes.
fn run_labels(owner_session: &str, reuse: bool) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (MANAGED_LABEL.to_string(), "true".to_string()),
        (SESSION_LABEL.to_string(), owner_session.to_string()),
        (OWNER_LABEL.to_string(), crate::reaper::uid().to_string()),
    ]);
    if reuse {
        labels.insert(REUSE_LABEL.to_string(), "true".to_string());
    }
    labels
}

fn run_network_name(owner_session: &str, shared: bool, pid: u32) -> String {
    if shared {
        format!("cleanroom-{owner_session}")
    } else {
        format!("cleanroom-{owner_session}-p{pid}")
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
        use super::super::run_network_name;

        #[test]
        fn give_the_processes_of_a_run_one_network_and_a_process_without_reaper_its_own() {
            assert_eq!(run_network_name("nextest-1", true, 10), run_network_name("nextest-1", true, 11));
            assert_eq!(run_network_name("nextest-1", true, 10), "cleanroom-nextest-1");
            assert_ne!(run_network_name("nextest-1", false, 10), run_network_name("nextest-1", false, 11));
            assert_ne!(run_network_name("nextest-1", true, 10), run_network_name("nextest-2", true, 10));
        }
    }
}
