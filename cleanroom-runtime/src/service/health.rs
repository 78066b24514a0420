//! Readiness checks as data: a service is Ready only when every one of its
//! checks has passed, in order. The health layer probes them.

use std::fmt;
use std::time::Duration;

/// How often a failing check is retried, unless set with
/// [`HealthCheck::with_interval`].
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_millis(100);
/// How long one attempt may take, unless set with [`HealthCheck::with_timeout`].
pub(crate) const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// One readiness check of a service.
///
/// ```
/// use cleanroom_runtime::HealthCheck;
/// use std::time::Duration;
///
/// let checks = [
///     HealthCheck::log("Ready to accept connections"),
///     HealthCheck::tcp(6379),
///     HealthCheck::http(8080, "/health").with_status(204),
///     HealthCheck::command(["pg_isready", "-U", "postgres"]),
///     HealthCheck::file("/tmp/ready").with_interval(Duration::from_millis(50)),
/// ];
/// assert_eq!(checks[1].to_string(), "tcp port 6379");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct HealthCheck {
    pub(crate) probe: Probe,
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    /// Checked while starting only, not repeated in the background.
    pub(crate) once: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Probe {
    /// A line in the container's output, seen at least `times` times.
    Log { message: String, times: usize },
    /// A TCP connection to the published port that the server keeps open.
    Tcp { port: u16 },
    /// An HTTP GET answered with the expected status (any 2xx when `None`).
    Http { port: u16, path: String, status: Option<u16> },
    /// A command run inside the container that exits with 0.
    Command { cmd: Vec<String> },
    /// A path that exists inside the container.
    File { path: String },
    /// A real Postgres login and `SELECT 1`.
    PostgresQuery,
    /// A Redis `PING` answered with `PONG`.
    RedisPing { port: u16 },
}

impl HealthCheck {
    /// Folds what this check is into `h`, for a definition's identity
    /// ([`GenericContainer::identity_hash`](crate::service::definition::GenericContainer)):
    /// field by field, not through `Debug`, which every process of a nextest
    /// run would pay for at its start (a check's command can be a long script).
    pub(crate) fn identity(&self, h: crate::util::hash::Fields) -> crate::util::hash::Fields {
        let h = match &self.probe {
            Probe::Log { message, times } => h.field("log").field(message).field(times.to_le_bytes()),
            Probe::Tcp { port } => h.field("tcp").field(port.to_le_bytes()),
            Probe::Http { port, path, status } => {
                let status = status.map_or([0xff; 3], |s| [1, s.to_le_bytes()[0], s.to_le_bytes()[1]]);
                h.field("http").field(port.to_le_bytes()).field(path).field(status)
            }
            Probe::Command { cmd } => {
                cmd.iter().fold(h.field("command").field(cmd.len().to_le_bytes()), |h, a| h.field(a))
            }
            Probe::File { path } => h.field("file").field(path),
            Probe::PostgresQuery => h.field("postgres query"),
            Probe::RedisPing { port } => h.field("redis ping").field(port.to_le_bytes()),
        };
        h.field(self.interval.as_nanos().to_le_bytes())
            .field(self.timeout.as_nanos().to_le_bytes())
            .field([u8::from(self.once)])
    }

    fn new(probe: Probe) -> Self {
        HealthCheck { probe, interval: DEFAULT_INTERVAL, timeout: DEFAULT_ATTEMPT_TIMEOUT, once: false }
    }

    /// Passes once `message` appears in the container's stdout or stderr.
    pub fn log(message: impl Into<String>) -> Self {
        Self::new(Probe::Log { message: message.into(), times: 1 })
    }

    /// Passes once `message` has appeared `times` times (Postgres prints its
    /// ready line twice: once for the init server, once for the real one).
    pub fn log_times(message: impl Into<String>, times: usize) -> Self {
        Self::new(Probe::Log { message: message.into(), times: times.max(1) })
    }

    /// Passes once a TCP connection to the container port, through its
    /// published port (on `Container::host`), is accepted and not closed at once.
    pub fn tcp(port: u16) -> Self {
        Self::new(Probe::Tcp { port })
    }

    /// Passes once `GET path` on the container port answers with a 2xx status.
    pub fn http(port: u16, path: impl Into<String>) -> Self {
        Self::new(Probe::Http { port, path: path.into(), status: None })
    }

    /// For an HTTP check: the exact status to expect instead of any 2xx.
    pub fn with_status(mut self, status: u16) -> Self {
        if let Probe::Http { status: s, .. } = &mut self.probe {
            *s = Some(status);
        }
        self
    }

    /// Passes once `cmd`, run inside the container, exits with status 0.
    pub fn command(cmd: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self::new(Probe::Command { cmd: cmd.into_iter().map(Into::into).collect() })
    }

    /// Passes once `path` exists inside the container.
    pub fn file(path: impl Into<String>) -> Self {
        Self::new(Probe::File { path: path.into() })
    }

    pub(crate) fn postgres_query() -> Self {
        Self::new(Probe::PostgresQuery)
    }

    pub(crate) fn redis_ping(port: u16) -> Self {
        Self::new(Probe::RedisPing { port })
    }

    /// How long to wait between failed attempts (100 ms unless set). While
    /// the service starts, the first retries come sooner: 10 ms after the
    /// first failure, doubling up to this interval.
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// How long one attempt may take before it counts as failed.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The container ports this check connects to, which must be published.
    /// Gates readiness only: once the service is Ready, the background
    /// monitor does not repeat this check (log checks never repeat: the line
    /// was printed once).
    ///
    /// ```
    /// # use cleanroom_runtime::HealthCheck;
    /// let migrate = HealthCheck::command(["sh", "-c", "test -e /tmp/migrated"]).once();
    /// # let _ = migrate;
    /// ```
    pub fn once(mut self) -> Self {
        self.once = true;
        self
    }

    /// Whether the background monitor repeats this check.
    pub(crate) fn repeats(&self) -> bool {
        !self.once && !matches!(self.probe, Probe::Log { .. })
    }

    /// The command of a command check (empty for other checks).
    pub(crate) fn command_args(&self) -> &[String] {
        match &self.probe {
            Probe::Command { cmd } => cmd,
            _ => &[],
        }
    }

    pub(crate) fn port(&self) -> Option<u16> {
        match &self.probe {
            Probe::Tcp { port } | Probe::Http { port, .. } | Probe::RedisPing { port } => Some(*port),
            _ => None,
        }
    }
}

impl fmt::Display for HealthCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.probe {
            Probe::Log { message, times: 1 } => write!(f, "log message {message:?}"),
            Probe::Log { message, times } => write!(f, "log message {message:?} seen {times} times"),
            Probe::Tcp { port } => write!(f, "tcp port {port}"),
            Probe::Http { port, path, status: None } => write!(f, "http GET {path} on port {port} answering 2xx"),
            Probe::Http { port, path, status: Some(s) } => write!(f, "http GET {path} on port {port} answering {s}"),
            Probe::Command { cmd } => write!(f, "command `{}` exiting with 0", cmd.join(" ")),
            Probe::File { path } => write!(f, "file {path} existing"),
            Probe::PostgresQuery => f.write_str("postgres login and SELECT 1"),
            Probe::RedisPing { port } => write!(f, "redis PING on port {port}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    mod should {
        use super::*;

        #[test]
        fn describe_checks_for_error_messages() {
            assert_eq!(HealthCheck::http(80, "/").with_status(204).to_string(), "http GET / on port 80 answering 204");
            assert_eq!(HealthCheck::command(["true"]).to_string(), "command `true` exiting with 0");
            assert_eq!(HealthCheck::log_times("ready", 2).to_string(), "log message \"ready\" seen 2 times");
        }
    }
}
