//! Readiness checks: a service is Ready only when every one of its checks has
//! passed, in order.

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
    /// published port on 127.0.0.1, is accepted and not closed at once.
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

    /// How long to wait between failed attempts.
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

/// How a service is doing, as its checks last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthStatus {
    /// Checks have not passed yet.
    Starting,
    /// Every check passed.
    Healthy,
    /// A check failed.
    Unhealthy,
    /// Not known (not checked yet, or Docker did not answer).
    Unknown,
}

/// Parses the status code out of an HTTP/1.x status line.
pub(crate) fn parse_http_status(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_lines() {
        assert_eq!(parse_http_status(b"HTTP/1.0 200 OK\r\nServer: x\r\n"), Some(200));
        assert_eq!(parse_http_status(b"HTTP/1.1 404 Not Found\r\n"), Some(404));
        assert_eq!(parse_http_status(b"garbage"), None);
        assert_eq!(parse_http_status(b""), None);
    }

    #[test]
    fn describes_checks_for_error_messages() {
        assert_eq!(HealthCheck::http(80, "/").with_status(204).to_string(), "http GET / on port 80 answering 204");
        assert_eq!(HealthCheck::command(["true"]).to_string(), "command `true` exiting with 0");
        assert_eq!(HealthCheck::log_times("ready", 2).to_string(), "log message \"ready\" seen 2 times");
    }
}

pub(crate) mod probe {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::{parse_http_status, HealthCheck, Probe};
    use crate::error::Error;
    use crate::registry::RunningService;

    /// How many log lines an error about a failed start carries.
    const LOG_LINES: usize = 20;

    /// Waits until every check of `service` passes, in order, or fails with
    /// the check that never passed, or with the container's exit.
    pub(crate) async fn wait_ready(
        service: &RunningService,
        deadline: Instant,
        stop: &AtomicBool,
    ) -> Result<(), Error> {
        let started = Instant::now();
        for check in &service.definition.health_checks {
            let mut last: String;
            loop {
                if stop.load(Ordering::SeqCst) {
                    return Err(Error::ShuttingDown { service: service.name.clone() });
                }
                if let Some(err) = exited_error(service).await {
                    return Err(err);
                }
                let budget = check.timeout.min(deadline.saturating_duration_since(Instant::now()));
                match tokio::time::timeout(budget, attempt(service, check)).await {
                    Ok(Ok(())) => break,
                    Ok(Err(reason)) => last = reason,
                    Err(_) => last = format!("no answer within {budget:?}"),
                }
                if Instant::now() + check.interval >= deadline {
                    return Err(Error::Timeout {
                        service: service.name.clone(),
                        image: service.image.clone(),
                        check: check.to_string(),
                        after: started.elapsed(),
                        last,
                        logs: tail(service).await,
                    });
                }
                tokio::time::sleep(check.interval).await;
            }
        }
        Ok(())
    }

    /// For a process that attaches to a container another process of the
    /// run is bringing up: waits for that process's ready mark (`marked`),
    /// running the checks itself only every 2 s (in case the creator died),
    /// so that twenty attaching processes do not hammer the container and
    /// the engine with probes while it starts.
    ///
    /// Without `may_probe` (the service has init commands, which passing
    /// checks say nothing about) only the mark counts.
    pub(crate) async fn wait_attached(
        service: &RunningService,
        deadline: Instant,
        stop: &AtomicBool,
        may_probe: bool,
        marked: impl Fn() -> bool,
    ) -> Result<(), Error> {
        const PROBE_EVERY: Duration = Duration::from_secs(2);
        let started = Instant::now();
        let mut next_probe = started + PROBE_EVERY;
        let mut last = "not probed yet".to_string();
        loop {
            if marked() {
                return Ok(());
            }
            if stop.load(Ordering::SeqCst) {
                return Err(Error::ShuttingDown { service: service.name.clone() });
            }
            if Instant::now() >= next_probe {
                if let Some(err) = exited_error(service).await {
                    return Err(err);
                }
                let mut passed = may_probe;
                if !may_probe {
                    last = "waiting for the creator to run the init commands".to_string();
                }
                for check in service.definition.health_checks.iter().filter(|_| may_probe) {
                    match tokio::time::timeout(check.timeout, attempt(service, check)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(reason)) => {
                            last = format!("{check}: {reason}");
                            passed = false;
                            break;
                        }
                        Err(_) => {
                            last = format!("{check}: no answer within {:?}", check.timeout);
                            passed = false;
                            break;
                        }
                    }
                }
                if passed {
                    return Ok(());
                }
                next_probe = Instant::now() + PROBE_EVERY;
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    service: service.name.clone(),
                    image: service.image.clone(),
                    check: "the process that created it seeing it Ready".into(),
                    after: started.elapsed(),
                    last,
                    logs: tail(service).await,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The error of a container that has exited, with its last log lines;
    /// `None` while it runs.
    async fn exited_error(service: &RunningService) -> Option<Error> {
        let code = service.docker.exit_status(&service.id).await.ok().flatten()?;
        Some(Error::Exited {
            service: service.name.clone(),
            image: service.image.clone(),
            code,
            logs: tail(service).await,
        })
    }

    async fn tail(service: &RunningService) -> String {
        match service.docker.logs(&service.id, Some(LOG_LINES)).await {
            Ok(logs) if logs.trim().is_empty() => "(no output)".to_string(),
            Ok(logs) => logs.trim_end().lines().map(|l| format!("  | {l}")).collect::<Vec<_>>().join("\n"),
            Err(e) => format!("(logs unavailable: {e})"),
        }
    }

    fn host_port(service: &RunningService, port: u16) -> Result<u16, String> {
        service.ports.get(&port).copied().ok_or_else(|| format!("container port {port} is not published"))
    }

    /// One attempt of one check.
    pub(crate) async fn attempt(service: &RunningService, check: &HealthCheck) -> Result<(), String> {
        match &check.probe {
            Probe::Log { message, times } => {
                let logs = service.docker.logs(&service.id, None).await?;
                let seen = logs.matches(message.as_str()).count();
                if seen >= *times {
                    Ok(())
                } else {
                    Err(format!("seen {seen} of {times} times"))
                }
            }
            Probe::Tcp { port } => {
                let mut stream = connect(host_port(service, *port)?).await?;
                // Docker's port proxy accepts a connection even when nothing
                // listens inside, then closes it: a server keeps it open.
                let mut buf = [0u8; 1];
                match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
                    Ok(Ok(0)) => Err("the connection was closed at once (nothing listens yet)".into()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Ok(Ok(_)) | Err(_) => Ok(()),
                }
            }
            Probe::Http { port, path, status } => {
                let mut stream = connect(host_port(service, *port)?).await?;
                let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
                stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
                let mut head = Vec::new();
                let mut buf = [0u8; 512];
                while !head.contains(&b'\n') && head.len() < 4096 {
                    let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
                    if n == 0 {
                        break;
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                let got = parse_http_status(&head).ok_or("no HTTP response")?;
                let ok = match status {
                    Some(want) => got == *want,
                    None => (200..300).contains(&got),
                };
                if ok {
                    Ok(())
                } else {
                    Err(format!("answered {got}"))
                }
            }
            Probe::Command { cmd } => {
                let out = service.docker.exec(&service.id, cmd).await?;
                if out.exit_code == 0 {
                    Ok(())
                } else {
                    Err(format!("exited with {}: {}", out.exit_code, out.stderr.trim()))
                }
            }
            Probe::File { path } => match service.docker.path_exists(&service.id, path).await? {
                true => Ok(()),
                false => Err(format!("{path} does not exist")),
            },
            Probe::PostgresQuery => {
                let mut config = tokio_postgres::Config::new();
                config
                    .host("127.0.0.1")
                    .port(host_port(service, 5432)?)
                    .user(service.env("POSTGRES_USER").unwrap_or("postgres"))
                    .password(service.env("POSTGRES_PASSWORD").unwrap_or(""))
                    .dbname(service.env("POSTGRES_DB").or(service.env("POSTGRES_USER")).unwrap_or("postgres"))
                    .connect_timeout(check.timeout);
                let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(|e| e.to_string())?;
                let driver = tokio::spawn(connection);
                let result = client.simple_query("SELECT 1").await.map(|_| ()).map_err(|e| e.to_string());
                drop(client);
                let _ = driver.await;
                result
            }
            Probe::RedisPing { port } => {
                let mut stream = connect(host_port(service, *port)?).await?;
                stream.write_all(b"PING\r\n").await.map_err(|e| e.to_string())?;
                let mut buf = [0u8; 64];
                let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
                let reply = String::from_utf8_lossy(&buf[..n]);
                if reply.starts_with("+PONG") {
                    Ok(())
                } else if n == 0 {
                    Err("the connection was closed (nothing listens yet)".into())
                } else {
                    Err(format!("answered {:?}", reply.trim()))
                }
            }
        }
    }

    async fn connect(port: u16) -> Result<TcpStream, String> {
        TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())
    }
}

pub(crate) use probe::wait_ready;
