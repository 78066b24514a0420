//! The API for code that does not use the macros.

use crate::error::Error;
use crate::run::registry::{self, Source};
use crate::service::definition::GenericContainer;
use crate::service::handle::Container;

/// A service the macros know by `name` (then `definition` is not used), or
/// `definition`.
fn source(name: &str, definition: impl FnOnce() -> GenericContainer + Send + 'static) -> Source {
    match crate::builtin::spec_named(name) {
        Some(spec) => Source::Spec(spec),
        None => Source::Dynamic(Box::new(definition)),
    }
}

/// The process's cleanroom: the same registry of singletons the macros use.
#[derive(Debug, Clone, Copy)]
pub struct Environment {
    _private: (),
}

/// The process's cleanroom environment.
///
/// ```no_run
/// # async fn demo() -> Result<(), cleanroom_runtime::Error> {
/// use cleanroom_runtime::{environment, GenericContainer, HealthCheck};
///
/// let web = environment()
///     .get_or_create_container("web", || {
///         GenericContainer::new("cleanroom-offline/busybox:1.35")
///             .with_cmd(["httpd", "-f", "-p", "8080", "-h", "/www"])
///             .with_port(8080)
///             .with_health_check(HealthCheck::http(8080, "/"))
///     })
///     .await?;
/// println!("http://{}:{}/", web.host(), web.port(8080));
/// # Ok(()) }
/// ```
pub fn environment() -> Environment {
    Environment { _private: () }
}

impl Environment {
    /// The container of the service `name`, starting it from `definition` if
    /// this process has not started it yet. A name the macros use (`postgres`,
    /// `redis`, a `#[cleanroom::service]`) returns that same singleton, and
    /// `definition` is then not called.
    pub async fn get_or_create_container(
        &self,
        name: &str,
        definition: impl FnOnce() -> GenericContainer + Send + 'static,
    ) -> Result<Container, Error> {
        let name = name.to_string();
        let source = source(&name, definition);
        let service =
            crate::util::background::on_runtime(async move { registry::global().get_or_start(&name, source).await })
                .await?;
        Ok(Container::new(service))
    }

    /// [`Environment::get_or_create_container`] for synchronous code.
    pub fn get_or_create_container_blocking(
        &self,
        name: &str,
        definition: impl FnOnce() -> GenericContainer + Send + 'static,
    ) -> Result<Container, Error> {
        let name = name.to_string();
        let source = source(&name, definition);
        let service =
            crate::util::background::block_on_runtime(
                async move { registry::global().get_or_start(&name, source).await },
            )?;
        Ok(Container::new(service))
    }

    /// The session id that labels everything this process creates
    /// (`cleanroom.session=<id>`).
    pub fn session(&self) -> Result<String, Error> {
        registry::global().session().map(str::to_string)
    }
}
