//! The handles tests receive. All are cheap to clone and usable from sync
//! tests and from any async runtime: Docker work runs on cleanroom's own
//! runtime, never on the test's.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::engine::ExecOutput;
use crate::error::Error;
use crate::proxy::{NetworkConditions, Proxy};
use crate::service::running::RunningService;
use crate::util::percent::encode as percent_encode;

/// A running service's container.
///
/// ```no_run
/// # fn demo(web: cleanroom_runtime::Container) {
/// let url = format!("http://{}:{}/", web.host(), web.port(8080));
/// # }
/// ```
#[derive(Clone)]
pub struct Container {
    pub(crate) inner: Arc<RunningService>,
    room: Option<Arc<str>>,
    /// This handle's proxies (and its clones'), once [`Container::network`]
    /// or the definition's network conditions asked for them.
    shaped: Arc<OnceLock<Arc<Shaped>>>,
}

/// The proxies of one handle: one per published port.
#[derive(Debug)]
struct Shaped {
    proxies: BTreeMap<u16, Proxy>,
}

impl std::fmt::Debug for Container {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Container")
            .field("service", &self.inner.name)
            .field("image", &self.inner.image)
            .field("id", &self.inner.id)
            .field("ports", &self.inner.ports)
            .field("room", &self.room)
            .finish()
    }
}

impl Container {
    pub(crate) fn new(inner: Arc<RunningService>) -> Self {
        Container { inner, room: None, shaped: Arc::new(OnceLock::new()) }
    }

    /// The proxies, made now if the definition asks for network conditions.
    fn shaped(&self) -> Option<&Arc<Shaped>> {
        match (self.shaped.get(), self.inner.definition.network) {
            (Some(s), _) => Some(s),
            (None, Some(conditions)) => Some(self.proxy_every_port(conditions)),
            (None, None) => None,
        }
    }

    fn proxy_every_port(&self, conditions: NetworkConditions) -> &Arc<Shaped> {
        self.shaped.get_or_init(|| {
            let mut proxies = BTreeMap::new();
            for (&container_port, &host_port) in &self.inner.ports {
                let proxy = Proxy::start(&self.inner.name, self.engine_host(), host_port).unwrap_or_else(|e| {
                    panic!("{}: could not open a proxy on 127.0.0.1 for port {container_port}: {e}", self.inner.name)
                });
                proxy.set(|c| *c = conditions);
                proxies.insert(container_port, proxy);
            }
            Arc::new(Shaped { proxies })
        })
    }

    /// Network conditions between this test and the service, changed while
    /// the test runs: latency, bandwidth, resets, a cut. From the first call
    /// on, this handle (and its clones) goes through proxies of its own, on
    /// 127.0.0.1: [`Container::port`] and [`Container::host`] are theirs, so
    /// connect **after** calling it. Other tests are not affected; the
    /// proxies go when the handle does.
    ///
    /// ```no_run
    /// # async fn demo(web: cleanroom_runtime::Container) {
    /// use std::time::Duration;
    /// web.network().latency(Duration::from_millis(200)).download(64 * 1024);
    /// let url = format!("http://{}:{}/", web.host(), web.port(8080)); // through the proxy
    /// web.network().cut_for(Duration::from_secs(2)); // unreachable for two seconds
    /// # let _ = url;
    /// # }
    /// ```
    pub fn network(&self) -> Network {
        let shaped = match self.shaped() {
            Some(s) => s.clone(),
            None => self.proxy_every_port(NetworkConditions::default()).clone(),
        };
        Network { shaped }
    }

    /// Where the engine's published ports are reached (what a proxy
    /// connects to), see [`endpoint`](crate::docker::endpoint).
    fn engine_host(&self) -> &str {
        self.inner.host()
    }

    pub(crate) fn with_room(mut self, room: String) -> Self {
        self.room = Some(room.into());
        self
    }

    /// The test's room in this service, when the service defines rooms
    /// (`GenericContainer::with_rooms`); `None` for a shared service.
    pub fn room(&self) -> Option<&str> {
        self.room.as_deref()
    }

    /// The service's name (`postgres`, `web`).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The image it runs.
    pub fn image(&self) -> &str {
        &self.inner.image
    }

    /// The Docker container id.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The host to connect to: `127.0.0.1` with a local engine, the
    /// engine's host with a remote one (`DOCKER_HOST=tcp://…`), the gateway
    /// of this container's network inside one, or `CLEANROOM_HOST`
    /// (docs/environments.md has the detection order). A handle with network
    /// conditions listens on 127.0.0.1 (its proxies are in this process).
    pub fn host(&self) -> &str {
        if self.shaped().is_some() {
            return "127.0.0.1";
        }
        self.engine_host()
    }

    /// The host port published for `container_port`.
    ///
    /// # Panics
    /// If the port was not published: add it with `GenericContainer::with_port`.
    pub fn port(&self, container_port: u16) -> u16 {
        self.try_port(container_port).unwrap_or_else(|| {
            panic!(
                "{}: container port {container_port} is not published (published: {:?}); add .with_port({container_port}) to its definition",
                self.inner.name,
                self.inner.ports.keys().collect::<Vec<_>>()
            )
        })
    }

    /// The host port published for `container_port`, if it is published
    /// (its proxy's, once the handle has network conditions).
    pub fn try_port(&self, container_port: u16) -> Option<u16> {
        if let Some(shaped) = self.shaped() {
            return shaped.proxies.get(&container_port).map(|p| p.port);
        }
        self.inner.ports.get(&container_port).copied()
    }

    /// Runs `cmd` inside the container and waits for it to exit.
    pub async fn exec(&self, cmd: impl IntoIterator<Item = impl Into<String>>) -> Result<ExecOutput, Error> {
        let cmd: Vec<String> = cmd.into_iter().map(Into::into).collect();
        let inner = self.inner.clone();
        crate::util::background::on_runtime(async move { inner.engine.exec(&inner.id, &cmd).await })
            .await
            .map_err(|reason| self.operation_error("exec", reason))
    }

    /// [`Container::exec`] for synchronous tests. Do not call it from async code.
    pub fn exec_blocking(&self, cmd: impl IntoIterator<Item = impl Into<String>>) -> Result<ExecOutput, Error> {
        let cmd: Vec<String> = cmd.into_iter().map(Into::into).collect();
        let inner = self.inner.clone();
        crate::util::background::block_on_runtime(async move { inner.engine.exec(&inner.id, &cmd).await })
            .map_err(|reason| self.operation_error("exec", reason))
    }

    /// Everything the container has written to stdout and stderr so far.
    pub async fn logs(&self) -> Result<String, Error> {
        let inner = self.inner.clone();
        crate::util::background::on_runtime(async move { inner.engine.logs(&inner.id, None).await })
            .await
            .map_err(|reason| self.operation_error("logs", reason))
    }

    /// [`Container::logs`] for synchronous tests. Do not call it from async code.
    pub fn logs_blocking(&self) -> Result<String, Error> {
        let inner = self.inner.clone();
        crate::util::background::block_on_runtime(async move { inner.engine.logs(&inner.id, None).await })
            .map_err(|reason| self.operation_error("logs", reason))
    }

    fn operation_error(&self, operation: &str, reason: impl std::fmt::Display) -> Error {
        Error::Operation { service: self.inner.name.clone(), operation: operation.into(), reason: reason.to_string() }
    }
}

/// The shared Postgres server, as one test sees it.
///
/// ```no_run
/// # async fn demo(postgres: cleanroom_runtime::Postgres) {
/// let (client, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls).await.unwrap();
/// # }
/// ```
#[derive(Clone)]
pub struct Postgres {
    container: Container,
    database: String,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password stays out of debug output.
        f.debug_struct("Postgres")
            .field("host", &self.host())
            .field("port", &self.port())
            .field("user", &self.user())
            .field("database", &self.database)
            .finish()
    }
}

impl Postgres {
    /// A handle on `database`, or on the server's main database.
    pub(crate) fn new(container: Container, database: Option<String>) -> Self {
        let database = database.unwrap_or_else(|| {
            container
                .inner
                .env("POSTGRES_DB")
                .or(container.inner.env("POSTGRES_USER"))
                .unwrap_or("postgres")
                .to_string()
        });
        Postgres { container, database }
    }

    /// `postgres://user:password@host:port/database`.
    pub fn url(&self) -> String {
        format!(
            "postgres://{}:{}@{}:{}/{}",
            percent_encode(self.user()),
            percent_encode(self.password()),
            self.host(),
            self.port(),
            percent_encode(&self.database)
        )
    }

    /// The host to connect to.
    pub fn host(&self) -> &str {
        self.container.host()
    }

    /// The published port of 5432.
    pub fn port(&self) -> u16 {
        self.container.port(5432)
    }

    /// The user (a superuser of the server).
    pub fn user(&self) -> &str {
        self.container.inner.env("POSTGRES_USER").unwrap_or("postgres")
    }

    /// The password, random for every run.
    pub fn password(&self) -> &str {
        self.container.inner.env("POSTGRES_PASSWORD").unwrap_or("")
    }

    /// [`Postgres::url`] with the password masked, for messages and logs:
    /// no password is ever printed.
    pub(crate) fn masked_url(&self) -> String {
        format!("postgres://{}:***@{}:{}/{}", percent_encode(self.user()), self.host(), self.port(), self.database)
    }

    /// The database this handle points at: the test's own, or the server's
    /// main database with `postgres(shared)`.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The container underneath.
    pub fn container(&self) -> &Container {
        &self.container
    }

    /// Network conditions between this test and Postgres
    /// ([`Container::network`]); call it before connecting.
    ///
    /// ```no_run
    /// # async fn demo(postgres: cleanroom_runtime::Postgres) {
    /// postgres.network().latency(std::time::Duration::from_millis(100));
    /// let (client, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls).await.unwrap();
    /// # }
    /// ```
    pub fn network(&self) -> Network {
        self.container.network()
    }
}

/// The shared Redis server, as one test sees it.
#[derive(Clone)]
pub struct Redis {
    container: Container,
    db: u32,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password stays out of debug output.
        f.debug_struct("Redis").field("host", &self.host()).field("port", &self.port()).field("db", &self.db).finish()
    }
}

impl Redis {
    pub(crate) fn new(container: Container, db: u32) -> Self {
        Redis { container, db }
    }

    /// `redis://host:port/db`, or `redis://:password@host:port/db` when the
    /// server requires a password (its port is reachable beyond the engine
    /// host's loopback).
    pub fn url(&self) -> String {
        match self.password() {
            Some(password) => {
                format!("redis://:{}@{}:{}/{}", percent_encode(password), self.host(), self.port(), self.db)
            }
            None => format!("redis://{}:{}/{}", self.host(), self.port(), self.db),
        }
    }

    /// The password the server requires, random for every run; `None` when
    /// its port is published on the engine host's loopback only.
    pub fn password(&self) -> Option<&str> {
        self.container.inner.env(crate::service::definition::REDIS_PASSWORD_ENV)
    }

    /// The host to connect to.
    pub fn host(&self) -> &str {
        self.container.host()
    }

    /// The published port of 6379.
    pub fn port(&self) -> u16 {
        self.container.port(6379)
    }

    /// The logical database this handle points at: the test's own, or 0
    /// with `redis(shared)`.
    pub fn db(&self) -> u32 {
        self.db
    }

    /// The container underneath.
    pub fn container(&self) -> &Container {
        &self.container
    }

    /// Network conditions between this test and Redis
    /// ([`Container::network`]); call it before connecting.
    pub fn network(&self) -> Network {
        self.container.network()
    }
}

/// Network conditions between one test and one service, through proxies of
/// that test's own (see [`Container::network`]). Each setter applies at once
/// to what flows from then on, and returns the same `Network` so that they
/// chain.
#[derive(Debug, Clone)]
pub struct Network {
    shaped: Arc<Shaped>,
}

impl Network {
    fn set(&self, change: impl Fn(&mut NetworkConditions)) -> &Self {
        for proxy in self.shaped.proxies.values() {
            proxy.set(&change);
        }
        self
    }

    /// Adds `latency` to every chunk of data, each way (a round trip takes
    /// twice as long more).
    pub fn latency(&self, latency: Duration) -> &Self {
        self.set(|c| c.latency = latency)
    }

    /// Varies the latency by up to `jitter` either way, at random.
    pub fn jitter(&self, jitter: Duration) -> &Self {
        self.set(|c| c.jitter = jitter)
    }

    /// Limits both directions to `bytes_per_second`.
    pub fn bandwidth(&self, bytes_per_second: u64) -> &Self {
        self.set(|c| (c.upload, c.download) = (Some(bytes_per_second), Some(bytes_per_second)))
    }

    /// Limits what the test sends to `bytes_per_second`.
    pub fn upload(&self, bytes_per_second: u64) -> &Self {
        self.set(|c| c.upload = Some(bytes_per_second))
    }

    /// Limits what the test receives to `bytes_per_second`.
    pub fn download(&self, bytes_per_second: u64) -> &Self {
        self.set(|c| c.download = Some(bytes_per_second))
    }

    /// Resets this share (0 to 1) of new connections as they arrive: a
    /// proxy sees streams, not packets, so "loss" is a connection reset.
    ///
    /// # Panics
    /// If `share` is not within 0 and 1.
    pub fn reset_rate(&self, share: f64) -> &Self {
        assert!((0.0..=1.0).contains(&share), "reset_rate({share}): the share of connections reset is from 0 to 1");
        self.set(|c| c.reset_rate = share)
    }

    /// Makes the service unreachable until [`Network::restore`]: open
    /// connections are closed, new ones closed as they arrive.
    pub fn cut(&self) -> &Self {
        self.set(|c| c.cut_until = Some(Instant::now() + Duration::from_secs(365 * 24 * 3600)))
    }

    /// Makes the service unreachable for `duration`, then reachable again.
    pub fn cut_for(&self, duration: Duration) -> &Self {
        self.set(|c| c.cut_until = Some(Instant::now() + duration))
    }

    /// Ends a cut.
    pub fn restore(&self) -> &Self {
        self.set(|c| c.cut_until = None)
    }

    /// Back to no conditions at all (the handle still goes through its proxies).
    pub fn clear(&self) -> &Self {
        self.set(|c| *c = NetworkConditions::default())
    }

    /// Bytes the test sent to the service through its proxies so far.
    pub fn bytes_sent(&self) -> u64 {
        self.shaped.proxies.values().map(|p| p.traffic.up.load(std::sync::atomic::Ordering::Relaxed)).sum()
    }

    /// Bytes the test received from the service through its proxies so far.
    pub fn bytes_received(&self) -> u64 {
        self.shaped.proxies.values().map(|p| p.traffic.down.load(std::sync::atomic::Ordering::Relaxed)).sum()
    }
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::*;

        /// A service whose port 80 is published on `port` of 127.0.0.1; no
        /// engine is asked anything (an existing server's refuses all).
        fn service(port: u16) -> Arc<RunningService> {
            let engine = crate::external::ExistingServer { address: "127.0.0.1".into() };
            Arc::new(RunningService {
                name: "handle-test".into(),
                image: "none".into(),
                id: "handle-test".into(),
                ports: BTreeMap::from([(80, port)]),
                definition: crate::GenericContainer::new("none").with_port(80),
                engine: Arc::new(engine),
                host: Some("127.0.0.1".into()),
                existing: None,
            })
        }

        #[test]
        fn let_no_network_condition_outlive_its_handle() {
            let published = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
            let port = published.local_addr().unwrap().port();
            let service = service(port);

            let first = Container::new(service.clone());
            first.network().latency(Duration::from_millis(50));
            let proxied = first.port(80);
            assert_ne!(proxied, port, "a handle with conditions goes through its proxy");
            std::net::TcpStream::connect(("127.0.0.1", proxied)).expect("the proxy listens while its handle lives");
            drop(first);

            let second = Container::new(service);
            assert_eq!(second.port(80), port, "a new handle for the service has no conditions: the published port");
            // The proxy's listener closes on cleanroom's runtime once its
            // handle is gone.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match std::net::TcpStream::connect(("127.0.0.1", proxied)) {
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
                    _ => assert!(Instant::now() < deadline, "the old proxy port {proxied} still accepts connections"),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}
