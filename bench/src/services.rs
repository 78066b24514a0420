//! The servers a team's CI job starts as `services:` before `cargo test`, for
//! the `#[sqlx::test]` approach: a Postgres and a Redis from cleanroom's
//! images, started with `docker run -d` (both at once), published on
//! 127.0.0.1 random ports, labelled so that the harness counts and removes
//! them, and waited for the way a health check would: until Postgres accepts
//! a login and Redis answers PING.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long the servers get to become ready before the cell fails.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How often readiness is probed: finer than a CI health check's interval
/// (seconds), so the approach is measured at its best.
const PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// The two servers' container ports.
const POSTGRES_PORT: u16 = 5432;
const REDIS_PORT: u16 = 6379;

/// A running pair: what the suite is told (`DATABASE_URL`, `REDIS_URL`) and
/// what [`Services::remove`] removes.
#[derive(Debug)]
pub struct Services {
    ids: Vec<String>,
    pub database_url: String,
    pub redis_url: String,
}

/// The `docker run` arguments of one server: detached, labelled with
/// `label` (`key=value`), its port published on a random port of 127.0.0.1.
pub fn run_args(image: &str, label: &str, port: u16, env: &[(&str, &str)], cmd: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["run", "-d", "--label", label, "-p"].map(String::from).to_vec();
    args.push(format!("127.0.0.1::{port}"));
    for (key, value) in env {
        args.extend(["-e".to_string(), format!("{key}={value}")]);
    }
    args.push(image.to_string());
    args.extend(cmd.iter().map(|c| c.to_string()));
    args
}

/// The host port in `docker port`'s answer (`127.0.0.1:49153`, one line per
/// binding).
pub fn host_port(docker_port: &str) -> Option<u16> {
    docker_port.lines().find_map(|line| line.trim().rsplit_once(':')?.1.parse().ok())
}

fn image(service: &str) -> String {
    let (name, tag) = cleanroom_bench::image(service);
    format!("{name}:{tag}")
}

fn failure(what: &str, out: &Output) -> String {
    format!("{what} failed: {}", String::from_utf8_lossy(&out.stderr).trim())
}

impl Services {
    /// Starts both servers and waits until they are ready; on failure removes
    /// whatever it started and says what went wrong.
    ///
    /// With `trust`, Postgres asks for no password (the floor): a debug
    /// build's SCRAM login costs every connection tens of milliseconds of
    /// key derivation, which cleanroom's own Postgres (MD5) does not pay
    /// either, so a floor that paid it would be no floor.
    pub fn start(label: &str, trust: bool) -> Result<Services, String> {
        let (pg_image, redis_image) = (image("postgres"), image("redis"));
        // As the baselines' Postgres (bench/src/baseline.rs): user, password
        // and database `postgres`, fsync off.
        let mut pg_env =
            vec![("POSTGRES_USER", "postgres"), ("POSTGRES_PASSWORD", "postgres"), ("POSTGRES_DB", "postgres")];
        if trust {
            pg_env.push(("POSTGRES_HOST_AUTH_METHOD", "trust"));
        }
        let runs = [
            run_args(&pg_image, label, POSTGRES_PORT, &pg_env, &["-c", "fsync=off"]),
            run_args(&redis_image, label, REDIS_PORT, &[], &[]),
        ];
        // Both at once, as a CI runner starts its services.
        let children: Vec<_> = runs
            .iter()
            .map(|args| {
                Command::new("docker")
                    .args(args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
            })
            .collect();
        let mut services = Services { ids: Vec::new(), database_url: String::new(), redis_url: String::new() };
        let mut errors = Vec::new();
        for (child, image) in children.into_iter().zip([&pg_image, &redis_image]) {
            match child.and_then(|c| c.wait_with_output()) {
                Ok(out) if out.status.success() => {
                    services.ids.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
                }
                Ok(out) => errors.push(failure(&format!("docker run {image}"), &out)),
                Err(e) => errors.push(format!("docker run {image}: {e}")),
            }
        }
        if !errors.is_empty() {
            services.remove();
            return Err(errors.join("; "));
        }
        match services.ports().and_then(|(pg, redis)| {
            services.database_url = format!("postgres://postgres:postgres@127.0.0.1:{pg}/postgres");
            services.redis_url = format!("redis://127.0.0.1:{redis}");
            services.wait_ready()
        }) {
            Ok(()) => Ok(services),
            Err(e) => {
                let logs = services.logs();
                services.remove();
                Err(format!("{e}{logs}"))
            }
        }
    }

    fn ports(&self) -> Result<(u16, u16), String> {
        let port = |id: &str, port: u16| {
            let out = Command::new("docker")
                .args(["port", id, &format!("{port}/tcp")])
                .output()
                .map_err(|e| format!("docker port: {e}"))?;
            if !out.status.success() {
                return Err(failure(&format!("docker port {id} {port}"), &out));
            }
            let text = String::from_utf8_lossy(&out.stdout);
            host_port(&text).ok_or_else(|| format!("docker port {id} {port} printed no host port: {text:?}"))
        };
        Ok((port(&self.ids[0], POSTGRES_PORT)?, port(&self.ids[1], REDIS_PORT)?))
    }

    /// Probes both servers every [`PROBE_INTERVAL`] until Postgres accepts
    /// a login (and a `SELECT 1`) and Redis answers PING.
    fn wait_ready(&self) -> Result<(), String> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        rt.block_on(async {
            let deadline = Instant::now() + READY_TIMEOUT;
            let (mut pg_ready, mut redis_ready) = (false, false);
            let mut last = String::new();
            loop {
                if !pg_ready {
                    match postgres_answers(&self.database_url).await {
                        Ok(()) => pg_ready = true,
                        Err(e) => last = format!("Postgres at {}: {e}", self.database_url),
                    }
                }
                if !redis_ready {
                    match redis_answers(&self.redis_url).await {
                        Ok(()) => redis_ready = true,
                        Err(e) => last = format!("Redis at {}: {e}", self.redis_url),
                    }
                }
                if pg_ready && redis_ready {
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    return Err(format!(
                        "the servers were not ready within {} s (last: {last})",
                        READY_TIMEOUT.as_secs()
                    ));
                }
                tokio::time::sleep(PROBE_INTERVAL).await;
            }
        })
    }

    /// The last lines of both servers' logs, for an error message.
    fn logs(&self) -> String {
        let mut out = String::new();
        for id in &self.ids {
            if let Ok(o) = Command::new("docker").args(["logs", "--tail", "15", id]).output() {
                out.push_str(&format!(
                    "\n  logs of {id}:\n{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ));
            }
        }
        out
    }

    /// Removes both servers and their anonymous volumes (what a CI job's end
    /// does): the databases `#[sqlx::test]` left on the server go with it.
    pub fn remove(self) {
        crate::docker::remove(&self.ids);
    }
}

async fn postgres_answers(url: &str) -> Result<(), String> {
    let connect = tokio_postgres::connect(url, tokio_postgres::NoTls);
    let (client, connection) = tokio::time::timeout(Duration::from_secs(2), connect)
        .await
        .map_err(|_| "no answer within 2 s".to_string())?
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(connection);
    let answer = client.simple_query("SELECT 1").await.map(|_| ()).map_err(|e| e.to_string());
    drop(client);
    let _ = driver.await;
    answer
}

async fn redis_answers(url: &str) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut conn = tokio::time::timeout(Duration::from_secs(2), client.get_multiplexed_async_connection())
        .await
        .map_err(|_| "no answer within 2 s".to_string())?
        .map_err(|e| e.to_string())?;
    let pong: String = redis::cmd("PING").query_async(&mut conn).await.map_err(|e| e.to_string())?;
    if pong == "PONG" {
        Ok(())
    } else {
        Err(format!("PING answered {pong:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    mod should {
        use super::*;

        #[test]
        fn run_a_labelled_server_published_on_a_random_loopback_port() {
            let args = run_args(
                "cleanroom-offline/postgres:15",
                "cleanroom.bench=b1-sqlx",
                5432,
                &[("POSTGRES_PASSWORD", "postgres")],
                &["-c", "fsync=off"],
            );
            assert_eq!(
                args.join(" "),
                "run -d --label cleanroom.bench=b1-sqlx -p 127.0.0.1::5432 -e POSTGRES_PASSWORD=postgres \
                 cleanroom-offline/postgres:15 -c fsync=off"
            );
        }

        #[test]
        fn read_the_host_port_docker_published() {
            assert_eq!(host_port("127.0.0.1:49153\n"), Some(49153));
            assert_eq!(host_port("0.0.0.0:32768\n[::]:32768\n"), Some(32768));
            assert_eq!(host_port(""), None);
            assert_eq!(host_port("Error: No public port '5432/tcp' published"), None);
        }
    }
}
