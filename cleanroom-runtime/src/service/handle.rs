//! The handles tests receive. All are cheap to clone and usable from sync
//! tests and from any async runtime: Docker work runs on cleanroom's own
//! runtime, never on the test's.

use std::sync::Arc;

use crate::engine::ExecOutput;
use crate::error::Error;
use crate::service::running::RunningService;

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
        Container { inner, room: None }
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

    /// The host to connect to: ports are published on 127.0.0.1 only.
    pub fn host(&self) -> &str {
        "127.0.0.1"
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

    /// The host port published for `container_port`, if it is published.
    pub fn try_port(&self, container_port: u16) -> Option<u16> {
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

    /// `postgres://user:password@127.0.0.1:port/database`.
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
}

/// The shared Redis server, as one test sees it.
#[derive(Debug, Clone)]
pub struct Redis {
    container: Container,
    db: u32,
}

impl Redis {
    pub(crate) fn new(container: Container, db: u32) -> Self {
        Redis { container, db }
    }

    /// `redis://127.0.0.1:port/db`.
    pub fn url(&self) -> String {
        format!("redis://{}:{}/{}", self.host(), self.port(), self.db)
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
}

/// `text` as a URL's user, password or path may hold it: every byte but
/// letters, digits and `-._~` percent-encoded (a password may hold `@`, `:`,
/// `/` or quotes).
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::percent_encode;

        #[test]
        fn encode_what_a_url_cannot_hold_as_it_is() {
            assert_eq!(percent_encode("plain-Pass_1.~"), "plain-Pass_1.~");
            assert_eq!(percent_encode("it's @ a:b/c"), "it%27s%20%40%20a%3Ab%2Fc");
            assert_eq!(percent_encode("é"), "%C3%A9");
        }
    }
}
