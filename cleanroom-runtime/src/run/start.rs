//! Starting one service, in phases: resolve its definition, plan what the
//! run calls it, provision what it needs (image, network, volumes), create
//! its container or attach to the one another process of the run created,
//! and make it ready (networks, ports, health checks, cache, init commands).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::marks::{Failure, StartState};
use super::registry::{Registry, RunningService, Slot, Source};
use crate::cache::VolumeKey;
use crate::config::Config;
use crate::docker::{
    owner_key, owner_labels, ContainerRequest, Docker, ImageError, PullPolicy, CREATOR_LABEL, DEFINITION_LABEL,
    MANAGED_LABEL, PROCESS_LABEL, REUSE_LABEL, SERVICE_LABEL, SESSION_LABEL, TTL_LABEL,
};
use crate::engine::{EngineError, EngineFuture, EngineKind, Owned, Provisioner};
use crate::error::Error;
use crate::health;
use crate::lifecycle::State;
use crate::metrics::Phases;
use crate::service::definition::GenericContainer;

/// Further attempts at creating and starting a container after a transient
/// error.
const START_RETRIES: u32 = 3;

/// The wait before the `n`th retry (1-based): 250 ms, 500 ms, 1 s, … up to 4 s.
pub(super) fn backoff(n: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << n.saturating_sub(1).min(4))).min(Duration::from_secs(4))
}

/// What the run calls a service and how it asks the engine for it: decided
/// once, before anything is created.
struct Plan {
    config: Config,
    /// This process's session.
    session: String,
    /// The session that owns the container: the run's, or the reused
    /// services' (`reuse-<uid>`).
    owner_session: String,
    /// Whether the processes of the run share the container (a reaper serves
    /// the run).
    shared: bool,
    reuse: bool,
    /// The container's name, when it is shared: Docker lets exactly one
    /// process of the run create it; the others attach.
    container_name: Option<String>,
    cache_volume: Option<VolumeKey>,
    /// What the engine is asked to create.
    request: ContainerRequest,
}

/// The container a start ended with.
struct Created {
    id: String,
    /// The creator's environment, when another process created it (its
    /// random password is the one that works).
    env: Option<BTreeMap<String, String>>,
    created_here: bool,
    /// Created on the run's network already (else it joins it after).
    on_run_network: bool,
}

/// What a start asks of its engine: the service, its slot and its resolved
/// definition, from the instant the start began.
pub(crate) struct StartRequest<'s> {
    pub(super) registry: &'static Registry,
    pub(super) name: &'s str,
    pub(super) slot: &'s Slot,
    pub(super) def: GenericContainer,
    pub(super) started: Instant,
}

/// A service an engine made ready or attached to, with its start's phases.
pub(crate) struct Started {
    pub(super) service: RunningService,
    pub(super) phases: Phases,
}

/// An engine as a start sees it.
pub(crate) type Driver<'s> = dyn Provisioner<StartRequest<'s>, Started, Error> + 's;

/// Which engine runs a service: an existing server when one is configured
/// for it (no engine is asked), else the local engine when the run uses it
/// (`runs_locally`, which under `auto` asks Docker), else Docker.
pub(super) async fn choose<E>(
    existing: bool,
    runs_locally: impl Future<Output = Result<bool, E>>,
) -> Result<EngineKind, E> {
    if existing {
        return Ok(EngineKind::Existing);
    }
    Ok(if runs_locally.await? { EngineKind::Local } else { EngineKind::Docker })
}

impl Registry {
    /// Starts `name` from `source`: the whole path from definition to a
    /// service that passed its checks, through the engine picked for it.
    pub(super) async fn start(
        &'static self,
        name: &str,
        slot: &Slot,
        source: Source,
    ) -> Result<Arc<RunningService>, Error> {
        let engine = self.pick_engine(name).await?;
        let def = self.definition(name, source)?;
        slot.transition(State::Starting)?;
        let request = StartRequest { registry: self, name, slot, def, started: Instant::now() };
        let Started { service, phases } = crate::engine::provision(engine.as_ref(), &request).await?;
        slot.transition(State::Ready)?;
        let service = Arc::new(service);
        slot.serve(&service);
        self.record_ready(name, slot, &service, phases, request.started);
        Ok(service)
    }

    /// The engine that runs `name`, picked once ([`choose`]). Docker first
    /// learns where this process runs, before the definition is resolved
    /// (the built-in Redis's password depends on it).
    async fn pick_engine<'s>(&'static self, name: &str) -> Result<Box<Driver<'s>>, Error> {
        let external = super::existing::configured(name)?;
        let kind = choose(external.is_some(), self.runs_locally()).await?;
        Ok(match (kind, external) {
            (EngineKind::Existing, Some((url, databases))) => {
                Box::new(super::existing::ExistingDriver { server: Some((url, databases)) })
            }
            (EngineKind::Local, _) => Box::new(super::local::LocalDriver),
            _ => {
                self.locate_own_container().await?;
                Box::new(DockerDriver::default())
            }
        })
    }

    /// Inside a container, asks the engine where this container is, once,
    /// before anything is published (the built-in Redis's password depends
    /// on it) or mounted (a bind source the engine cannot see is copied
    /// in): see [`endpoint`](crate::docker::endpoint).
    ///
    /// The answer is kept in the runtime directory, per container: the
    /// other processes of the run (every one under nextest) read it there,
    /// and an attaching process still asks the engine nothing.
    async fn locate_own_container(&'static self) -> Result<(), Error> {
        if !crate::docker::endpoint::needs_detection() {
            return Ok(());
        }
        if self.settle_from_kept() {
            return Ok(());
        }
        let own_id = crate::util::os::own_container_id();
        let kept = kept_container_path();
        let docker = self.docker().await?;
        let found = match &own_id {
            Some(id) => docker.container_networks(id).await,
            None => None,
        };
        // A container that is not this one (a container named like this
        // machine, when the id came from the host name) is no answer: this
        // process's host name is its container's.
        let me = crate::util::os::host_name();
        let found = found.filter(|c| c.hostname.as_deref().is_none_or(|h| h.is_empty() || Some(h) == me.as_deref()));
        let gateway = found.as_ref().and_then(|c| c.gateways.values().next().cloned());
        crate::docker::endpoint::settle(found.as_ref().map(|c| crate::docker::endpoint::OwnContainer {
            id: &c.id,
            network_mode: &c.mode,
            gateway: gateway.as_deref(),
        }));
        if let Some(path) = kept {
            let text = match &found {
                Some(c) => format!("{}\n{}\n{}\n", c.id, c.mode, gateway.unwrap_or_default()),
                None => "unknown\n".to_string(),
            };
            if crate::util::paths::create_runtime_dir().is_ok() {
                if let Some(dir) = path.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                let _ = std::fs::write(&path, text);
            }
        }
        Ok(())
    }

    /// Settles where this process's container is from what an earlier
    /// process of it found and kept ([`Registry::locate_own_container`]), on
    /// the calling thread; `false` when nothing was kept.
    pub(super) fn settle_from_kept(&self) -> bool {
        let Some(Ok(text)) = kept_container_path().map(std::fs::read_to_string) else { return false };
        let mut lines = text.lines();
        match (lines.next(), lines.next(), lines.next()) {
            (Some("unknown"), _, _) => crate::docker::endpoint::settle(None),
            (Some(id), Some(mode), gateway) => {
                let own = crate::docker::endpoint::OwnContainer {
                    id,
                    network_mode: mode,
                    gateway: gateway.filter(|g| !g.is_empty()),
                };
                crate::docker::endpoint::settle(Some(own));
            }
            _ => {}
        }
        !crate::docker::endpoint::needs_detection()
    }

    /// The name of the container of `name` that a process attaching to its
    /// run looks for ([`Registry::plan`]'s, without the rest of the plan);
    /// `None` when the plan would fail (the start says why).
    pub(super) fn attach_name(&self, name: &str, def: &GenericContainer) -> Option<String> {
        let config = self.config.as_ref().ok()?;
        crate::docker::endpoint::current().ok()?;
        if config.reuse {
            // Reusing claims the service for this run: the plan does that.
            return self.plan(name, def).ok()?.container_name;
        }
        let hash = format!("{:016x}", def.identity_hash());
        Some(shared_name(self.session().ok()?, name, &hash))
    }

    /// Names, labels and the engine request of a service about to start.
    fn plan(&self, name: &str, def: &GenericContainer) -> Result<Plan, Error> {
        let config = self.config.clone()?;
        let session = self.session()?.to_string();
        // Where ports are published and reached from: wrong settings fail
        // the start here, before anything is created.
        crate::docker::endpoint::current()
            .map_err(|bad| Error::Configuration { key: bad.key.clone(), reason: bad.reason.clone() })?;
        let shared = self.reaper_attached();
        let definition_hash = format!("{:016x}", def.identity_hash());
        // A reused service belongs to no run: the next run with the same
        // definition attaches to it, and the reaper removes it once it has
        // been idle for the TTL.
        let reuse = config.reuse && shared;
        let uid = crate::util::paths::uid();
        let owner_session = if reuse { format!("reuse-{uid}") } else { session.clone() };
        let mut labels = def.labels.clone();
        labels.extend([
            (MANAGED_LABEL.to_string(), "true".to_string()),
            (SESSION_LABEL.to_string(), owner_session.clone()),
            (SERVICE_LABEL.to_string(), name.to_string()),
            (DEFINITION_LABEL.to_string(), definition_hash.clone()),
        ]);
        labels.extend(owner_labels().map(|(k, v)| (k.to_string(), v)));
        // The TTL this run beats by, for judges elsewhere (`heartbeat`).
        labels.insert(TTL_LABEL.to_string(), super::heartbeat::idle_ttl().as_secs().to_string());
        if reuse {
            labels.insert(REUSE_LABEL.to_string(), "true".to_string());
        }
        if shared {
            // Who is starting it, for the run's processes that wait for it
            // before its creator could write any mark (`wait_for_named`).
            if let Some(creator) = creator_label() {
                labels.insert(CREATOR_LABEL.to_string(), creator);
            }
        } else {
            // Without a reaper this container is this process's alone: its
            // exit removes it, and only it.
            labels.insert(PROCESS_LABEL.to_string(), process_label());
        }
        // The owner's key in the name: a run of another user, machine or
        // runtime directory with the same session id never attaches to it.
        let container_name = shared.then(|| shared_name(&owner_session, name, &definition_hash));
        if reuse {
            crate::run::keeper::claim_reused(container_name.as_deref().unwrap_or_default(), &session, config.reuse_ttl);
        }
        let cache_volume = crate::cache::volume_for(name, def);
        let mut request = def.container_request();
        request.labels = labels;
        request.name = container_name.clone();
        if let Some(volume) = &cache_volume {
            crate::cache::wrap(&mut request, volume);
        }
        Ok(Plan { config, session, owner_session, shared, reuse, container_name, cache_volume, request })
    }

    /// The image, the run's network, the cache volume and the definition's
    /// volumes: what must exist before the container is created.
    async fn provision(
        &self,
        docker: &Docker,
        name: &str,
        def: &GenericContainer,
        plan: &Plan,
        phases: &mut Phases,
    ) -> Result<(), Error> {
        let pull = async {
            let pull_started = Instant::now();
            let pulled = match plan.config.pull {
                PullPolicy::Always => pull_once(docker, name, &def.image, &plan.session).await,
                policy => {
                    docker.ensure_image(&def.image, policy).await.map_err(|e| image_not_found(name, &def.image, e))
                }
            };
            (pulled, pull_started.elapsed())
        };
        // The cache volume once the image is there (none is made for a
        // missing image), beside the run's network: the network takes
        // longest. A failure of the network's is met again, and reported,
        // when the container joins it.
        let image_then_volume = async {
            let (pulled, pull_time) = pull.await;
            let pulled = match (pulled, &plan.cache_volume) {
                (Ok(pulled), Some(volume)) => {
                    docker.ensure_volume(&volume.name, &volume.labels).await.map(|_| pulled).map_err(|reason| {
                        Error::Creation {
                            service: name.to_string(),
                            image: def.image.clone(),
                            reason: format!(
                                "could not make its cache volume {}: {reason} (run.volume_cache = false turns the \
                                 cache off)",
                                volume.name
                            ),
                            transient: reason.is_transient(),
                        }
                    })
                }
                (pulled, _) => pulled,
            };
            (pulled, pull_time)
        };
        let ((pulled, pull_time), _) =
            tokio::join!(image_then_volume, self.run_network(docker, &plan.owner_session, plan.reuse, plan.shared));
        phases.pull_ms = Some(crate::metrics::ms(pull_time));
        let pulled = pulled?;
        if pulled {
            crate::metrics::cache_miss("image");
        } else {
            crate::metrics::cache_hit("image");
        }
        // Only an image cleanroom pulled has a record, and only such an
        // image is ever evicted (`caches.image`).
        crate::cache::records::used("image", &def.image, pulled);
        if pulled {
            if let Ok(Some(size)) = docker.image_size(&def.image).await {
                crate::cache::records::sized("image", &def.image, size);
            }
        }
        self.ensure_volumes(docker, name, def, &plan.owner_session, plan.reuse, plan.shared).await?;
        crate::util::say!("cleanroom: starting {name} ({})", def.image);
        tracing::info!(service = name, image = %def.image, "starting");
        Ok(())
    }

    /// Creates the container, or attaches to the one another process of the
    /// run created (or a reused service); retries transient failures with
    /// backoff.
    #[allow(clippy::too_many_arguments)]
    async fn create_or_attach(
        &self,
        docker: &Docker,
        name: &str,
        def: &GenericContainer,
        plan: &Plan,
        slot: &Slot,
        started: Instant,
        phases: &mut Phases,
    ) -> Result<Created, Error> {
        // Already there (another process of the run, or a reused service):
        // attach without asking Docker to create anything.
        if let Some(cname) = plan.container_name.as_deref() {
            if let Ok(Some(c)) = docker.inspect_named(cname).await {
                if c.running {
                    return Ok(Created { id: c.id, env: Some(c.env), created_here: false, on_run_network: false });
                }
            }
        }
        let mut attempts = 0;
        let mut retries = 0u32;
        let mut network_made_again = false;
        let mut provisioned = false;
        loop {
            if !provisioned {
                self.provision(docker, name, def, plan, phases).await?;
                provisioned = true;
            }
            // Created on the run's network (made by `provision`) with its
            // alias, in one request: no connect after it. Without the
            // network (its making failed), it joins after, and says why not.
            let mut request = plan.request.clone();
            request.network = self.network.lock().await.clone().map(|network| (network, name.to_string()));
            self.creating.fetch_add(1, Ordering::SeqCst);
            let create_started = Instant::now();
            // A shared container's creator says so before it starts it: a
            // kill after the start then leaves a mark that names a process
            // gone, for its waiters to judge (a kill before it leaves the
            // container `created`, with its creator's label).
            let created = docker
                .start(&request, |id| {
                    if plan.shared {
                        crate::run::marks::mark_creator(id);
                    }
                })
                .await;
            phases.create_ms = Some(crate::metrics::ms(create_started.elapsed()));
            if let Ok(id) = &created {
                *slot.container_id.lock().unwrap_or_else(|e| e.into_inner()) = Some(id.clone());
            }
            self.creating.fetch_sub(1, Ordering::SeqCst);
            let err = match created {
                Ok(id) => {
                    let on_run_network = request.network.is_some();
                    return Ok(Created { id, env: None, created_here: true, on_run_network });
                }
                Err(err) => err,
            };
            // The run's network went away since it was made (the keeper of
            // reused services removes theirs with the last one): made again,
            // once. Docker says so with a 404; Podman with a 500 like any
            // failed create, so the network is looked up.
            let network_gone = match &request.network {
                Some((network, _)) if err.op == "create container" && err.status.is_some() && !network_made_again => {
                    err.is_not_found() || matches!(docker.network_use(network).await, Ok(None))
                }
                _ => false,
            };
            if network_gone {
                network_made_again = true;
                *self.network.lock().await = None;
                let _ = self.run_network(docker, &plan.owner_session, plan.reuse, plan.shared).await;
                continue;
            }
            // Another process of the run created it first. Docker says so
            // with a 409; Podman, when the two creates meet in its storage,
            // with a 500 ("the container name … is already in use"): a
            // create of a named container that failed while a container of
            // that name exists is taken as the same answer.
            let taken = err.is_conflict()
                || match plan.container_name.as_deref() {
                    Some(cname) if err.op == "create container" && err.status == Some(500) => {
                        matches!(docker.inspect_named(cname).await, Ok(Some(_)))
                    }
                    _ => false,
                };
            if taken && attempts < 100 {
                attempts += 1;
                let cname = plan.container_name.as_deref().unwrap_or_default();
                if let Some((id, env)) = wait_for_named(docker, name, def, cname, started).await? {
                    return Ok(Created { id, env: Some(env), created_here: false, on_run_network: false });
                }
                // It went away before it ran (its creator failed, or the
                // previous reaper of the run is still removing it): try to
                // create it again once the name is free.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            // A container may exist even though starting it failed.
            if !plan.shared {
                self.remove_labelled(
                    docker,
                    &[(SESSION_LABEL, &plan.session), (SERVICE_LABEL, name), (PROCESS_LABEL, &process_label())],
                )
                .await;
            } else if let Some(cname) = plan.container_name.as_deref() {
                if let Ok(Some(c)) = docker.inspect_named(cname).await {
                    if !c.running {
                        let _ = docker.remove(&c.id).await;
                    }
                }
            }
            let err = creation_error(name, &def.image, err);
            if err.is_transient() && retries < START_RETRIES && !crate::util::flags::shutting_down() {
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

    /// From a created or attached container to a service tests may use:
    /// networks, ports, health checks, the volume cache, init commands and
    /// the ready mark the run's other processes wait for.
    #[allow(clippy::too_many_arguments)]
    async fn make_ready(
        &self,
        docker: &Docker,
        name: &str,
        def: &GenericContainer,
        plan: &Plan,
        created: &Created,
        started: Instant,
        phases: &mut Phases,
    ) -> Result<RunningService, Error> {
        let (id, created_here) = (created.id.as_str(), created.created_here);
        let ports_started = Instant::now();
        if created_here {
            if !created.on_run_network {
                self.join_run_network(docker, id, name, &def.image, &plan.owner_session, plan.reuse, plan.shared)
                    .await?;
            }
            join_extra_networks(docker, id, name, def).await?;
        }
        let ports = docker.published_ports(id).await.map_err(|reason| Error::Start {
            service: name.to_string(),
            image: def.image.clone(),
            reason: format!("could not read its published ports: {reason}"),
        })?;
        let service = RunningService {
            name: name.to_string(),
            image: def.image.clone(),
            id: id.to_string(),
            ports,
            definition: def.clone(),
            engine: std::sync::Arc::new(docker.clone()),
            host: None,
            existing: None,
        };
        phases.start_ms = Some(crate::metrics::ms(ports_started.elapsed()));
        let deadline = started + def.startup_timeout;
        let health_started = Instant::now();
        // A container another process created and saw pass its checks needs
        // no second round of them (under nextest every test is a process of
        // its own that attaches).
        if created_here {
            // Whether the cluster came from the cache is known before the
            // server is up: read while the checks run, off the way to Ready.
            let restored = async {
                match plan.cache_volume {
                    Some(_) => crate::cache::restored_early(service.engine.as_ref(), &service.id).await,
                    None => None,
                }
            };
            let (ready, restored) = tokio::join!(health::wait_ready(&service, deadline), restored);
            ready?;
            if let Some(volume) = &plan.cache_volume {
                // Before the init commands and before any test sees the
                // server, so that a fill copies a cluster nobody touched.
                let cache_started = Instant::now();
                use_volume_cache(&service, &volume.name, restored).await?;
                phases.cache_ms = Some(crate::metrics::ms(cache_started.elapsed()));
            }
            run_init_commands(&service).await?;
        } else if !crate::run::marks::seen_ready(id) {
            // Passing checks do not say that the creator's init commands are
            // done: only its ready mark does.
            let may_probe = def.init.is_empty();
            health::probe::wait_attached(&service, deadline, may_probe, || match crate::run::marks::start_state(id) {
                StartState::Ready => Some(Ok(())),
                StartState::Failed(failure) => Some(Err(creator_failed(name, def, failure))),
                // Without init commands its own checks tell (every 2 s).
                StartState::CreatorGone if may_probe => None,
                StartState::CreatorGone => Some(Err(Error::Start {
                    service: name.to_string(),
                    image: def.image.clone(),
                    reason: "the process of the run that created it ended before it was Ready".into(),
                })),
                StartState::Starting => None,
            })
            .await?;
        }
        phases.health_ms =
            Some(crate::metrics::ms(health_started.elapsed()) - phases.cache_ms.unwrap_or(0.0)).map(|ms| ms.max(0.0));
        if plan.shared {
            crate::run::marks::mark_ready(id);
            if let Some(container_name) = &plan.container_name {
                let record = crate::run::marks::AttachRecord {
                    id: id.to_string(),
                    ports: service.ports.clone(),
                    env: def.env.clone(),
                };
                crate::run::marks::write_record(container_name, &record);
                if plan.reuse {
                    // This run has seen it run: its other processes need not ask.
                    check_reused(self, container_name);
                }
            }
        }
        Ok(service)
    }

    /// Counts and records a service that became ready (and already
    /// [served](Slot::serve)), and starts watching it.
    pub(super) fn record_ready(
        &'static self,
        name: &str,
        slot: &Slot,
        service: &Arc<RunningService>,
        phases: Phases,
        started: Instant,
    ) {
        let created_here = phases.created_here;
        crate::util::clock::mark(format!("{name} {}", if created_here { "ready" } else { "attached" }));
        if created_here {
            crate::metrics::cache_miss("container");
            crate::util::say!("cleanroom: {name} ready in {:.2} s", started.elapsed().as_secs_f64());
        } else {
            crate::metrics::cache_hit("container");
        }
        tracing::info!(service = name, created_here, ready_ms = crate::metrics::ms(started.elapsed()), "ready");
        let first = slot.restarts.load(Ordering::SeqCst) == 0
            && slot.failures.lock().unwrap_or_else(|e| e.into_inner()).is_empty();
        let disk = service.definition.limits.disk;
        crate::metrics::service(name, |m| {
            let r = &mut m.resources;
            (r.disk_read_bps_limit, r.disk_write_bps_limit) = (disk.read_bps, disk.write_bps);
            (r.disk_read_iops_limit, r.disk_write_iops_limit) = (disk.read_iops, disk.write_iops);
            m.image = service.image.clone();
            m.engine = service.engine.kind().name().to_string();
            m.containers.push(service.id.clone());
            m.starts.push(phases);
            if first {
                m.time_to_ready_ms = Some(crate::metrics::ms(started.elapsed()));
            }
        });
        if created_here {
            // The first reading of the server's counters, off the test's path:
            // throughput counts from here (docs/report.md).
            let service = service.clone();
            crate::util::background::spawn_background(async move {
                crate::health::perf::read_into_metrics(&service).await;
            });
        }
        self.watch(service.clone());
    }
}

/// Docker (and Podman, which speaks its API) as a start's engine: the
/// container is named by the run, so exactly one process creates it and the
/// others attach; what runs own is what carries their labels.
#[derive(Default)]
pub(crate) struct DockerDriver {
    /// The engine, once connected: given for listing, the registry's for a
    /// start.
    docker: tokio::sync::OnceCell<Docker>,
    /// The plan of the service being started: made once (it claims a reused
    /// service), read by `attach` and `create`.
    plan: std::sync::Mutex<Option<Arc<Plan>>>,
}

impl DockerDriver {
    /// A driver for listing and removing, on `docker`.
    pub(crate) fn on(docker: Docker) -> DockerDriver {
        DockerDriver { docker: tokio::sync::OnceCell::new_with(Some(docker)), plan: std::sync::Mutex::new(None) }
    }

    fn plan(&self, request: &StartRequest<'_>) -> Result<Arc<Plan>, Error> {
        let mut kept = self.plan.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(plan) = kept.as_ref() {
            return Ok(plan.clone());
        }
        let plan = Arc::new(request.registry.plan(request.name, &request.def)?);
        *kept = Some(plan.clone());
        Ok(plan)
    }

    async fn docker(&self) -> Result<Docker, EngineError> {
        let connect =
            || async { Docker::connect().await.map_err(|e| EngineError::new("connect", None, e.to_string())) };
        self.docker.get_or_try_init(connect).await.cloned()
    }
}

impl<'s> Provisioner<StartRequest<'s>, Started, Error> for DockerDriver {
    fn kind(&self) -> EngineKind {
        EngineKind::Docker
    }

    /// From the record of the process that made it Ready: nothing to ask
    /// the engine (but whether a reused service still runs, once per run).
    fn attach<'a>(&'a self, request: &'a StartRequest<'s>) -> EngineFuture<'a, Result<Option<Started>, Error>> {
        Box::pin(async move {
            check_bind_sources(request.name, &request.def)?;
            let plan = self.plan(request)?;
            let Some(cname) = plan.container_name.as_deref() else { return Ok(None) };
            let Some(service) = attach_from_record(request.name, &request.def, cname) else { return Ok(None) };
            if plan.reuse && !reused_checked(request.registry, cname) {
                let docker = self.docker.get_or_try_init(|| request.registry.docker()).await?.clone();
                match docker.inspect_named(cname).await {
                    // The very container the record names: another of that
                    // name may have been made since by another run.
                    Ok(Some(c)) if c.running && c.id == service.id => check_reused(request.registry, cname),
                    // Ended or gone since an earlier run: the create makes
                    // it again (`wait_for_named`).
                    _ => return Ok(None),
                }
            }
            Ok(Some(Started {
                service,
                phases: Phases { start_ms: Some(crate::metrics::ms(request.started.elapsed())), ..Phases::default() },
            }))
        })
    }

    fn create<'a>(&'a self, request: &'a StartRequest<'s>) -> EngineFuture<'a, Result<Started, Error>> {
        Box::pin(async move {
            let plan = self.plan(request)?;
            let docker = self.docker.get_or_try_init(|| request.registry.docker()).await?.clone();
            match request.registry.create_docker(&docker, request, &plan).await {
                Ok(started) => Ok(started),
                Err((err, made_here)) => {
                    if let Some(id) = made_here {
                        let _ = self.remove_owned(&id).await;
                    }
                    Err(err)
                }
            }
        })
    }

    fn list_owned(&self) -> EngineFuture<'_, Result<Vec<Owned>, EngineError>> {
        Box::pin(async move {
            let docker = self.docker().await?;
            let listed = docker.list(&format!("{MANAGED_LABEL}=true")).await?;
            Ok(listed
                .into_iter()
                .map(|c| Owned {
                    session: c.labels.get(SESSION_LABEL).cloned().unwrap_or_default(),
                    service: c.labels.get(SERVICE_LABEL).cloned().unwrap_or_default(),
                    id: c.id,
                    name: c.name,
                    image: c.image,
                    state: c.state,
                    address: String::new(),
                    labels: c.labels,
                    created: c.created,
                })
                .collect())
        })
    }

    fn remove_owned<'a>(&'a self, id: &'a str) -> EngineFuture<'a, Result<(), EngineError>> {
        Box::pin(async move { self.docker().await?.remove(id).await })
    }

    /// This owner's dead runs and other machines' idle ones (the orphan
    /// sweep: containers, networks, volumes, stale run files).
    fn sweep_dead<'a>(&'a self, me: &'a str, dry_run: bool) -> EngineFuture<'a, Result<Vec<String>, EngineError>> {
        Box::pin(async move {
            let docker = self.docker().await?;
            Ok(match dry_run {
                true => super::sweep::dead_sessions(&docker, me).await,
                false => super::sweep::sweep_orphans(&docker, me).await,
            })
        })
    }
}

impl Registry {
    /// [`DockerDriver`]'s create: provisions, creates (or attaches to the
    /// container a racing process created) and makes it ready. On failure
    /// it also names a container made here, which the caller removes.
    async fn create_docker(
        &'static self,
        docker: &Docker,
        request: &StartRequest<'_>,
        plan: &Plan,
    ) -> Result<Started, (Error, Option<String>)> {
        let (name, slot, started) = (request.name, request.slot, request.started);
        let mut phases = Phases::default();
        let mut replaced = 0;
        let mut round_started = started;
        loop {
            let created = self
                .create_or_attach(docker, name, &request.def, plan, slot, round_started, &mut phases)
                .await
                .map_err(|e| (e, None))?;
            if crate::util::flags::shutting_down() && created.created_here && !plan.shared {
                return Err((Error::ShuttingDown { service: name.to_string() }, Some(created.id)));
            }
            // Its creator mark is written (`create_or_attach`).
            let shared_here = created.created_here && plan.shared;
            let mut def = request.def.clone();
            if let Some(env) = &created.env {
                adopt_creator_values(&mut def, env);
            }
            let err = match self.make_ready(docker, name, &def, plan, &created, round_started, &mut phases).await {
                Ok(service) => {
                    phases.created_here = created.created_here;
                    return Ok(Started { service, phases });
                }
                Err(err) => err,
            };
            // Said before the caller removes it: the processes waiting for
            // it learn why at once, not at their startup timeout. A process
            // cut short says nothing: its end is its word, and a waiting
            // process makes the service again.
            if shared_here && !matches!(err, Error::ShuttingDown { .. }) {
                let failure = Failure { reason: err.to_string(), transient: err.is_transient() };
                crate::run::marks::mark_failed(&created.id, &failure);
            }
            // Its creator ended mid-start (its init commands may be half
            // done), or failed and could not remove it: removed and made
            // again, by whichever waiting process gets there first; the
            // others attach to that one. Not after this process's own
            // timeout: no time is left for it. The marks stay (processes
            // still waiting on this id read them); the sweep takes them with
            // the container.
            let orphaned = plan.shared
                && !created.created_here
                && !matches!(err, Error::Timeout { .. })
                && match crate::run::marks::start_state(&created.id) {
                    StartState::CreatorGone => true,
                    StartState::Failed(_) => {
                        crate::run::marks::creator_ended(&created.id) && docker.exit_status(&created.id).await.is_ok()
                    }
                    StartState::Ready | StartState::Starting => false,
                };
            if orphaned && replaced < 2 && !crate::util::flags::shutting_down() {
                replaced += 1;
                crate::metrics::alert(
                    name,
                    "creator_gone",
                    format!("the process that was starting {} ended before it was Ready: made again", created.id),
                );
                let _ = docker.remove(&created.id).await;
                // The replacement gets its own startup timeout.
                round_started = Instant::now();
                continue;
            }
            return Err((err, created.created_here.then_some(created.id)));
        }
    }
}

/// Where the answer to "where is this process's container" is kept for the
/// other processes of that container ([`Registry::locate_own_container`]);
/// `None` outside a container.
fn kept_container_path() -> Option<std::path::PathBuf> {
    crate::util::os::own_container_key().map(|key| crate::util::paths::runtime_dir().join("containers").join(key))
}

/// The name of the container the processes of the run that owns it
/// (`owner_session`) share for service `name` with the definition whose
/// identity hash is `definition_hash`. The owner's key is in it: a run of
/// another user, machine or runtime directory with the same session id never
/// attaches to it.
pub(super) fn shared_name(owner_session: &str, name: &str, definition_hash: &str) -> String {
    format!("cleanroom-{owner_session}-{name}-{}-{}", &definition_hash[..12], owner_key())
}

/// A service of the run another process made Ready, from the record it
/// wrote for its container `container_name`; `None` when there is none (or
/// it is not ready), and the engine is asked as usual.
pub(super) fn attach_from_record(name: &str, def: &GenericContainer, container_name: &str) -> Option<RunningService> {
    let record = crate::run::marks::read_record(container_name)?;
    let mut def = def.clone();
    adopt_creator_values(&mut def, &record.env);
    Some(RunningService {
        name: name.to_string(),
        image: def.image.clone(),
        id: record.id,
        ports: record.ports,
        definition: def,
        engine: std::sync::Arc::new(super::lazy_engine::LazyDocker),
        host: None,
        existing: None,
    })
}

/// Whether a process of this run found the reused container `container_name`
/// running: a reused service outlives runs, and may have been stopped or
/// removed between them (an engine that restarted), so its record is
/// trusted once a process of the run has asked the engine, once.
pub(super) fn reused_checked(registry: &Registry, container_name: &str) -> bool {
    registry.session().is_ok_and(|s| reused_check_path(s, container_name).exists())
}

/// Notes that the reused container `container_name` was found running.
fn check_reused(registry: &Registry, container_name: &str) {
    if let Ok(session) = registry.session() {
        let path = reused_check_path(session, container_name);
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = std::fs::write(path, b"");
    }
}

fn reused_check_path(session: &str, container_name: &str) -> std::path::PathBuf {
    crate::run::marks::run_dir(session).join("reused-checked").join(container_name)
}

/// Takes from the environment of a container another process created the
/// values of the variables the definition sets (its random password is the
/// one that works), and nothing else: the image's own variables are not part
/// of the definition, so a replacement made from it after a failure has the
/// same identity and cache key as the service it replaces.
fn adopt_creator_values(def: &mut GenericContainer, actual: &BTreeMap<String, String>) {
    for (key, value) in def.env.iter_mut() {
        if let Some(theirs) = actual.get(key) {
            value.clone_from(theirs);
        }
    }
}

/// This process as [`PROCESS_LABEL`] names it: `pid:start`, which no later
/// process can share.
pub(super) fn process_label() -> String {
    crate::run::session::ProcessId::current().map_or_else(|| std::process::id().to_string(), |p| p.encode())
}

/// The run's error for an engine error while creating and starting a
/// container; whether it is worth retrying is the engine error's verdict.
fn creation_error(service: &str, image: &str, err: crate::docker::DockerError) -> Error {
    let transient = err.is_transient();
    let reason = err.to_string();
    if err.op == "create container" {
        Error::Creation { service: service.into(), image: image.into(), reason, transient }
    } else {
        Error::Start { service: service.into(), image: image.into(), reason }
    }
}

/// The run's error for an image that is not here and was not pulled.
fn image_not_found(service: &str, image: &str, err: ImageError) -> Error {
    let pull = match err {
        ImageError::PullingOff => "pulling is off (CLEANROOM_PULL=never)".to_string(),
        ImageError::Pull(e) => format!("the pull failed: {e}"),
    };
    Error::ImageNotFound {
        service: service.to_string(),
        image: image.to_string(),
        pull,
        env: crate::config::env_key(service),
    }
}

/// What a process of the run that waited for `name`'s creator gives when the
/// creator failed: its reason.
fn creator_failed(name: &str, def: &GenericContainer, failure: Failure) -> Error {
    Error::CreatorFailed {
        service: name.to_string(),
        image: def.image.clone(),
        reason: failure.reason,
        transient: failure.transient,
    }
}

/// Waits for the container another process of the run created under
/// `container_name` to run. `None` if it disappeared (its creator failed),
/// so that the caller can create it again.
async fn wait_for_named(
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
        // Stopped or being removed by its creator, which failed: it said why.
        if let Some(c) = found.as_ref().filter(|c| !c.running) {
            if let StartState::Failed(failure) = crate::run::marks::start_state(&c.id) {
                return Err(creator_failed(name, def, failure));
            }
        }
        match found {
            None => return Ok(None),
            Some(c) if c.running => return Ok(Some((c.id, c.env))),
            // Created by a process that ended before it could start it (a
            // kill between the two requests): nobody will. Made again.
            Some(c) if c.status == "created" && creator_ended_before_start(&c) => {
                crate::metrics::alert(
                    name,
                    "creator_gone",
                    format!("the process that created {} ended before it started it: made again", c.id),
                );
                let _ = docker.remove(&c.id).await;
                return Ok(None);
            }
            // Starting, or on its way out (another process frees the name
            // below, or recovers it): asked again.
            Some(c) if matches!(c.status.as_str(), "created" | "removing" | "dead") => {}
            // Ready once, ended since (stopped between two runs that reuse
            // it, or dead with nobody left to recover it): not a start that
            // failed, but a service to make again (its ready mark, or its
            // record, says it was Ready: a recovery forgets the mark first).
            // Its name is freed; the mark and record go last, so that a
            // process that asks meanwhile sees them too.
            Some(c)
                if crate::run::marks::seen_ready(&c.id)
                    || crate::run::marks::recorded_id(container_name).as_deref() == Some(c.id.as_str()) =>
            {
                let _ = docker.remove(&c.id).await;
                crate::run::marks::forget_record(container_name);
                crate::run::marks::forget_ready(&c.id);
                return Ok(None);
            }
            // Left by a creator that ended mid-start: made again.
            Some(c) if crate::run::marks::start_state(&c.id) == StartState::CreatorGone => {
                let _ = docker.remove(&c.id).await;
                return Ok(None);
            }
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

/// This process as [`CREATOR_LABEL`] names it: `pid:start@<pid space>`
/// ([`crate::util::os::pid_space`]); `None` where the space is not told.
fn creator_label() -> Option<String> {
    Some(format!("{}@{}", process_label(), crate::util::os::pid_space()?))
}

/// Whether the process that created the container `c` (its
/// [`CREATOR_LABEL`]) no longer runs. Judged only by a process that sees
/// the creator's pids ([`crate::util::os::pid_space`]: the same boot and
/// pid namespace); a container of another space, or of a creator that
/// leaves no label (an earlier version), is waited for as before, until the
/// startup timeout.
fn creator_ended_before_start(c: &crate::docker::containers::NamedContainer) -> bool {
    let Some((creator, space)) = c.creator.as_deref().and_then(|label| label.rsplit_once('@')) else {
        return false;
    };
    crate::util::os::pid_space() == Some(space)
        && crate::run::session::ProcessId::decode(creator).is_some_and(|p| !p.is_alive())
}

/// Counts what a service's start found in its volume cache; the first
/// health check has cleaned a restored cluster or filled an empty cache by
/// then (`cache/`). A failed fill costs the next run its head start, not
/// this run its service: it is an alert, not an error. `restored`: the
/// generation [`crate::cache::restored_early`] saw copied, if it did.
async fn use_volume_cache(service: &RunningService, volume: &str, restored: Option<String>) -> Result<(), Error> {
    let (found, outcome) = match restored {
        Some(generation) => (crate::cache::RestoreOutcome::Restored(generation), String::new()),
        None => crate::cache::found(service.engine.as_ref(), &service.id).await.map_err(|reason| Error::Start {
            service: service.name.clone(),
            image: service.image.clone(),
            reason,
        })?,
    };
    match found {
        crate::cache::RestoreOutcome::Restored(generation) => {
            crate::metrics::cache_hit("volume");
            crate::cache::touch(volume, None, true);
            tracing::info!(service = %service.name, volume, generation, "cluster copied from the volume cache");
        }
        found => {
            crate::metrics::cache_miss("volume");
            if let crate::cache::RestoreOutcome::Failed(generation) = &found {
                crate::metrics::alert(
                    &service.name,
                    "cache_restore",
                    format!("copying {generation} from {volume} failed; initialised afresh"),
                );
            }
            match outcome.strip_prefix("filled ").map(|kib| kib.trim().parse::<u64>()) {
                Some(Ok(kib)) => crate::cache::touch(volume, Some(kib * 1024), true),
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
    let marks = crate::run::marks::RunMarks::of(session);
    let key = format!("pull {image}");
    let outcome = match marks.claim(&key) {
        Ok(crate::run::marks::Turn::Theirs) => match marks.outcome(&key).await {
            Some(Ok(())) => return Ok(false),
            Some(Err(reason)) => Err(format!("another process of this run pulled it and failed: {reason}")),
            // Its puller is gone without an outcome: the mark is this
            // process's now.
            None => {
                let outcome = docker.pull(image).await;
                marks.finish(&key, &outcome);
                outcome.map_err(String::from)
            }
        },
        Ok(crate::run::marks::Turn::Mine) => {
            let outcome = docker.pull(image).await;
            marks.finish(&key, &outcome);
            outcome.map_err(String::from)
        }
        // No runtime directory: pull in this process.
        Err(_) => docker.pull(image).await.map_err(String::from),
    };
    match outcome {
        Ok(()) => Ok(true),
        Err(reason) if docker.has_image(image).await => Err(Error::Creation {
            service: service.to_string(),
            image: image.to_string(),
            reason: format!(
                "run.pull is `always` and the pull of {image} failed ({reason}); to use the copy on this machine set CLEANROOM_PULL=missing"
            ),
            transient: false,
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
pub(super) fn check_bind_sources(service: &str, def: &GenericContainer) -> Result<(), Error> {
    for mount in def.mounts.iter().filter(|m| m.kind == crate::service::definition::MountKind::Bind) {
        let path = crate::docker::absolute(&mount.source);
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
            transient: reason.is_transient(),
        })?;
    }
    Ok(())
}

/// Runs the init commands of a container this process created, in order;
/// the first that fails fails the start.
pub(super) async fn run_init_commands(service: &RunningService) -> Result<(), Error> {
    for cmd in &service.definition.init {
        let failed = |code: i64, stderr: String| Error::Init {
            service: service.name.clone(),
            image: service.image.clone(),
            command: cmd.join(" "),
            code,
            stderr: if stderr.trim().is_empty() { "(empty)".to_string() } else { stderr.trim_end().to_string() },
        };
        let out = service
            .engine
            .exec(&service.id, cmd)
            .await
            .map_err(|reason| failed(-1, format!("{} could not run it: {reason}", service.engine.kind().name())))?;
        if out.exit_code != 0 {
            return Err(failed(out.exit_code, out.stderr));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::{adopt_creator_values, creator_ended_before_start, creator_label};
        use std::collections::BTreeMap;

        fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
            tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(future)
        }

        #[test]
        fn pick_an_existing_server_without_asking_any_engine() {
            use crate::engine::EngineKind;
            let never = async {
                if true {
                    panic!("no engine is asked for an existing server");
                }
                Ok::<bool, String>(true)
            };
            assert_eq!(block_on(super::super::choose(true, never)), Ok(EngineKind::Existing));
        }

        #[test]
        fn pick_the_local_engine_or_docker_as_the_run_says() {
            use crate::engine::EngineKind;
            let choose = |local: Result<bool, String>| block_on(super::super::choose(false, async { local }));
            assert_eq!(choose(Ok(true)), Ok(EngineKind::Local));
            assert_eq!(choose(Ok(false)), Ok(EngineKind::Docker));
            assert_eq!(choose(Err("no settings".into())), Err("no settings".to_string()), "its error is the start's");
        }

        #[test]
        fn judge_a_creator_by_its_label_only_in_its_own_pid_space() {
            let with = |creator: Option<String>| crate::docker::containers::NamedContainer {
                id: "c1".into(),
                running: false,
                status: "created".into(),
                exit_code: None,
                env: BTreeMap::new(),
                creator,
            };
            let Some(space) = crate::util::os::pid_space() else { return };
            let me = crate::run::session::ProcessId::current().unwrap();
            let ended = crate::run::session::ProcessId { start: me.start + 1, ..me };
            assert_eq!(creator_label(), Some(format!("{}@{space}", me.encode())));
            assert!(!creator_ended_before_start(&with(creator_label())), "this process still runs");
            assert!(creator_ended_before_start(&with(Some(format!("{}@{space}", ended.encode())))));
            assert!(
                !creator_ended_before_start(&with(Some(format!("{}@another-boot/4026531836", ended.encode())))),
                "a creator in another pid space is not judged from here"
            );
            assert!(!creator_ended_before_start(&with(Some(ended.encode()))), "no space: not judged");
            assert!(!creator_ended_before_start(&with(None)), "no label (an earlier version): not judged");
        }

        #[test]
        fn take_the_creators_password_but_not_the_images_environment() {
            let mut def = crate::builtin::postgres_definition();
            let before = def.identity_hash();
            let mut actual: BTreeMap<String, String> = def.env.clone();
            actual.insert("POSTGRES_PASSWORD".into(), "the-creators".into());
            actual.insert("PATH".into(), "/usr/local/bin:/usr/bin".into());
            actual.insert("PGDATA".into(), "/var/lib/postgresql/data".into());
            adopt_creator_values(&mut def, &actual);
            assert_eq!(def.env["POSTGRES_PASSWORD"], "the-creators");
            assert!(!def.env.contains_key("PATH"), "the image's variables stay the image's");
            assert_eq!(def.identity_hash(), before, "a replacement has the identity of what it replaces");
        }
    }
}
