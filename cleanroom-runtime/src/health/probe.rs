//! Probing a running container's checks: until it is Ready, and once per
//! health tick while it runs.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::Error;
use crate::external::resp::{self, Resp};
use crate::service::health::{HealthCheck, Probe};
use crate::service::running::RunningService;

/// How many log lines an error about a failed start carries.
const LOG_LINES: usize = 20;

/// Waits until every check of `service` passes, in order, or fails with
/// the check that never passed, or with the container's exit.
pub(crate) async fn wait_ready(service: &RunningService, deadline: Instant) -> Result<(), Error> {
    let started = Instant::now();
    for check in &service.definition.health_checks {
        let mut last: String;
        let mut failed = 0u32;
        loop {
            if crate::util::flags::shutting_down() {
                return Err(Error::ShuttingDown { service: service.name.clone() });
            }
            let budget = check.timeout.min(deadline.saturating_duration_since(Instant::now()));
            match tokio::time::timeout(budget, attempt(service, check)).await {
                Ok(Ok(())) => break,
                Ok(Err(reason)) => last = reason,
                Err(_) => last = format!("no answer within {budget:?}"),
            }
            // Asked only once an attempt failed: a container that just
            // started has seldom exited, and the question costs a request.
            if let Some(err) = exited_error(service).await {
                return Err(err);
            }
            let wait = retry_wait(check.interval, failed);
            failed += 1;
            if Instant::now() + wait >= deadline {
                return Err(Error::Timeout {
                    service: service.name.clone(),
                    image: service.image.clone(),
                    check: check.to_string(),
                    after: started.elapsed(),
                    last,
                    logs: tail(service).await,
                });
            }
            tokio::time::sleep(wait).await;
        }
    }
    Ok(())
}

/// The wait after the `failed`-th failed attempt (from 0) while a service
/// starts: 10 ms, doubling, up to the check's interval. A server that needs
/// a few milliseconds more than the first attempt gave it is not kept
/// waiting a whole interval; one that takes long is asked at the interval.
fn retry_wait(interval: Duration, failed: u32) -> Duration {
    let ramp = Duration::from_millis(10).saturating_mul(1u32 << failed.min(16));
    ramp.min(interval)
}

/// For a process that attaches to a container another process of the
/// run is bringing up: waits for that process's word (`creator`: `Ok` its
/// ready mark, `Err` its failure or its death, `None` while it works),
/// running the checks itself only every 2 s (in case the creator died
/// without a word), so that twenty attaching processes do not hammer the
/// container and the engine with probes while it starts.
///
/// Without `may_probe` (the service has init commands, which passing
/// checks say nothing about) only the creator's word counts.
pub(crate) async fn wait_attached(
    service: &RunningService,
    deadline: Instant,
    may_probe: bool,
    creator: impl Fn() -> Option<Result<(), Error>>,
) -> Result<(), Error> {
    const PROBE_EVERY: Duration = Duration::from_secs(2);
    let started = Instant::now();
    let mut next_probe = started + PROBE_EVERY;
    let mut last = "not probed yet".to_string();
    loop {
        if let Some(said) = creator() {
            return said;
        }
        if crate::util::flags::shutting_down() {
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
    let code = service.engine.exit_status(&service.id).await.ok().flatten()?;
    Some(Error::Exited { service: service.name.clone(), image: service.image.clone(), code, logs: tail(service).await })
}

async fn tail(service: &RunningService) -> String {
    match service.engine.logs(&service.id, Some(LOG_LINES)).await {
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
            let logs = service.engine.logs(&service.id, None).await?;
            let seen = logs.matches(message.as_str()).count();
            if seen >= *times {
                Ok(())
            } else {
                Err(format!("seen {seen} of {times} times"))
            }
        }
        Probe::Tcp { port } => {
            let mut stream = connect(service, host_port(service, *port)?).await?;
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
            let mut stream = connect(service, host_port(service, *port)?).await?;
            let host = service.host();
            let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n");
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
            let out = service.engine.exec(&service.id, cmd).await?;
            if out.exit_code == 0 {
                Ok(())
            } else {
                Err(format!("exited with {}: {}", out.exit_code, out.stderr.trim()))
            }
        }
        Probe::File { path } => match service.engine.path_exists(&service.id, path).await? {
            true => Ok(()),
            false => Err(format!("{path} does not exist")),
        },
        Probe::PostgresQuery => postgres_query(service, "SELECT 1", check.timeout).await.map(drop),
        Probe::RedisPing { port } => {
            // A server with a password answers PING only after AUTH.
            let password = service.env(crate::service::definition::REDIS_PASSWORD_ENV);
            let said = |e: std::io::Error| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => "the connection was closed (nothing listens yet)".to_string(),
                _ => e.to_string(),
            };
            let mut stream =
                resp::connect(service.host(), host_port(service, *port)?, None, password).await.map_err(said)?;
            match resp::call(&mut stream, &["PING"]).await.map_err(said)? {
                Resp::Simple(pong) if pong == "PONG" => Ok(()),
                Resp::Error(e) => Err(format!("answered -{e}")),
                other => Err(format!("answered {other:?}")),
            }
        }
    }
}

/// Logs in to the built-in Postgres's main database as its superuser, runs
/// `sql` and disconnects: the readiness check, and the read of its counters
/// (`health::perf`).
pub(crate) async fn postgres_query(
    service: &RunningService,
    sql: &str,
    timeout: Duration,
) -> Result<Vec<tokio_postgres::SimpleQueryMessage>, String> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(service.host())
        .port(host_port(service, 5432)?)
        .user(service.env("POSTGRES_USER").unwrap_or("postgres"))
        .password(service.env("POSTGRES_PASSWORD").unwrap_or(""))
        .dbname(service.env("POSTGRES_DB").or(service.env("POSTGRES_USER")).unwrap_or("postgres"))
        .connect_timeout(timeout);
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(|e| e.to_string())?;
    let driver = tokio::spawn(connection);
    let result = client.simple_query(sql).await.map_err(|e| e.to_string());
    drop(client);
    let _ = driver.await;
    result
}

async fn connect(service: &RunningService, port: u16) -> Result<TcpStream, String> {
    not_to_itself(TcpStream::connect((service.host(), port)).await.map_err(|e| e.to_string())?)
}

/// Refuses a connection to itself. A port of the ephemeral range that
/// nothing listens on yet (the local engine's servers take such ports) can
/// be given to the connection as its own, which then connects to itself
/// (TCP's simultaneous open): a TCP check would see a quiet open connection,
/// as a server makes, and holding the port would keep the server from
/// binding it.
fn not_to_itself(stream: TcpStream) -> Result<TcpStream, String> {
    match (stream.local_addr(), stream.peer_addr()) {
        (Ok(local), Ok(peer)) if local == peer => Err("nothing listens yet (the connection reached itself)".into()),
        _ => Ok(stream),
    }
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
    mod should {
        use super::super::{not_to_itself, parse_http_status, retry_wait};
        use std::time::Duration;

        #[test]
        fn retry_soon_while_a_service_starts_then_at_the_interval() {
            let ms = |n| Duration::from_millis(n);
            let waits: Vec<Duration> = (0..6).map(|n| retry_wait(ms(100), n)).collect();
            assert_eq!(waits, [ms(10), ms(20), ms(40), ms(80), ms(100), ms(100)]);
            assert_eq!(retry_wait(ms(5), 0), ms(5), "an interval shorter than the ramp is kept");
            assert_eq!(retry_wait(Duration::from_secs(2), 40), Duration::from_secs(2), "no overflow");
        }

        #[tokio::test]
        async fn refuse_a_connection_that_reached_itself() {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let to_a_server = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
            assert!(not_to_itself(to_a_server).is_ok());

            // What a connection to a port nothing listens on does now and
            // then, made on purpose: bound to the port it connects to.
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let own = socket.local_addr().unwrap();
            let itself = socket.connect(own).await.unwrap();
            assert_eq!(itself.local_addr().unwrap(), itself.peer_addr().unwrap());
            let err = not_to_itself(itself).unwrap_err();
            assert!(err.contains("nothing listens"), "{err}");
        }

        #[test]
        fn read_the_status_of_an_http_status_line() {
            assert_eq!(parse_http_status(b"HTTP/1.0 200 OK\r\nServer: x\r\n"), Some(200));
            assert_eq!(parse_http_status(b"HTTP/1.1 404 Not Found\r\n"), Some(404));
            assert_eq!(parse_http_status(b"garbage"), None);
            assert_eq!(parse_http_status(b""), None);
        }
    }
}
