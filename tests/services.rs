//! Services against the real Docker engine, written the way a user writes
//! them: Postgres, Redis and generic services handed to tests, their health
//! checks gating readiness, fixtures built on them, and exec and logs in their
//! containers.
//!
//! Every test here runs directly. What a test process starts and leaves when
//! it exits is `tests/process_start_and_exit.rs`.

use std::io::{Read, Write};
use std::net::TcpStream;

use cleanroom::{Container, GenericContainer, HealthCheck, Postgres, Redis};
use cleanroom_tests::docker;

const BUSYBOX: &str = "cleanroom-offline/busybox:1.35";

// ----------------------------------------------------------------------------
// Services and fixtures
// ----------------------------------------------------------------------------

/// A static web server.
#[cleanroom::service]
fn web() -> GenericContainer {
    GenericContainer::new(BUSYBOX)
        .with_cmd(["httpd", "-f", "-p", "8080", "-h", "/www"])
        .with_port(8080)
        .with_health_check(HealthCheck::http(8080, "/"))
}

/// Ready only once a file exists, which takes a moment: a command check gates it.
#[cleanroom::service]
fn slow_by_command() -> GenericContainer {
    GenericContainer::new(BUSYBOX)
        .with_cmd(["sh", "-c", "sleep 1 && touch /tmp/ready && exec sleep 600"])
        .with_health_check(HealthCheck::command(["test", "-e", "/tmp/ready"]))
}

/// The same, gated by a file check instead.
#[cleanroom::service]
fn slow_by_file() -> GenericContainer {
    GenericContainer::new(BUSYBOX)
        .with_cmd(["sh", "-c", "sleep 1 && touch /tmp/ready && exec sleep 600"])
        .with_health_check(HealthCheck::file("/tmp/ready"))
}

/// Announces itself in its output, then serves: a log check and a TCP check gate it.
#[cleanroom::service]
fn announced() -> GenericContainer {
    GenericContainer::new(BUSYBOX)
        .with_cmd(["sh", "-c", "echo 'warming up'; sleep 1; echo 'server ready'; exec httpd -f -p 7000 -h /www"])
        .with_port(7000)
        .with_health_check(HealthCheck::log("server ready"))
        .with_health_check(HealthCheck::tcp(7000))
}

/// A connected client whose connection task runs on the test's runtime.
#[cleanroom::fixture]
async fn pg_client(postgres: Postgres) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// The server's version, through another (async) fixture.
#[cleanroom::fixture]
async fn server_version(pg_client: tokio_postgres::Client) -> String {
    pg_client.query_one("SHOW server_version", &[]).await.unwrap().get(0)
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

// ----------------------------------------------------------------------------
// Tests that run directly
// ----------------------------------------------------------------------------

#[cleanroom::test(postgres)]
async fn postgres_round_trips_a_query(pg_client: tokio_postgres::Client) {
    pg_client.batch_execute("CREATE TABLE IF NOT EXISTS round_trip (id int primary key, name text)").await.unwrap();
    pg_client
        .execute("INSERT INTO round_trip VALUES (1, 'ada') ON CONFLICT (id) DO UPDATE SET name = 'ada'", &[])
        .await
        .unwrap();
    let name: String = pg_client.query_one("SELECT name FROM round_trip WHERE id = 1", &[]).await.unwrap().get(0);
    assert_eq!(name, "ada");
}

#[cleanroom::test(redis)]
async fn redis_round_trips_a_value(redis: Redis) {
    use redis::AsyncCommands;
    assert!(redis.url().starts_with("redis://127.0.0.1:"), "{}", redis.url());
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let () = conn.set("live:greeting", "hello").await.unwrap();
    let got: String = conn.get("live:greeting").await.unwrap();
    assert_eq!(got, "hello");
}

#[cleanroom::test(web)]
async fn a_generic_service_passes_its_http_check(web: Container) {
    let port = web.port(8080);
    let (status, body) = tokio::task::spawn_blocking(move || http_get(port, "/index.html")).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body.trim(), "ok");
}

#[cleanroom::test(web)]
fn sync_tests_exec_in_the_container_and_read_its_logs(web: Container) {
    let out = web.exec_blocking(["cat", "/www/index.html"]).unwrap();
    assert_eq!((out.exit_code, out.stdout.as_str()), (0, "ok\n"));
    let failing = web.exec_blocking(["sh", "-c", "echo oops >&2; exit 7"]).unwrap();
    assert_eq!((failing.exit_code, failing.stderr.as_str()), (7, "oops\n"));
    web.logs_blocking().unwrap(); // httpd -f logs nothing; the call itself must work
}

#[cleanroom::test(postgres)]
fn sync_tests_get_async_fixtures(postgres: Postgres, server_version: String) {
    assert!(server_version.chars().next().is_some_and(|c| c.is_ascii_digit()), "{server_version}");
    assert_eq!(postgres.host(), "127.0.0.1");
    assert_eq!(postgres.user(), "cleanroom");
    assert_eq!(postgres.password().len(), 32, "a random password");
    let url = postgres.url();
    assert!(
        url.starts_with("postgres://cleanroom:")
            && url.ends_with(&format!(":{}/{}", postgres.port(), postgres.database()))
    );
}

#[cleanroom::test(postgres, flavor = "multi_thread", worker_threads = 2)]
async fn multi_thread_tests_use_the_same_server(postgres: Postgres, pg_client: tokio_postgres::Client) {
    assert_eq!(tokio::runtime::Handle::current().runtime_flavor(), tokio::runtime::RuntimeFlavor::MultiThread);
    let n: i32 = pg_client.query_one("SELECT 41 + 1", &[]).await.unwrap().get(0);
    assert_eq!(n, 42);
    let seed = cleanroom::environment().get_or_create_container("postgres", || unreachable!()).await.unwrap();
    assert_eq!(seed.id(), postgres.container().id(), "the seed API hands out the macros' singleton");
}

#[cleanroom::test(web)]
async fn containers_are_labelled_and_published_on_loopback_only(web: Container) {
    let bindings = docker(&["inspect", "--format", "{{json .HostConfig.PortBindings}}", web.id()]);
    assert!(bindings.contains("\"HostIp\":\"127.0.0.1\""), "{bindings}");
    assert!(!bindings.contains("0.0.0.0"), "{bindings}");
    let labels = docker(&["inspect", "--format", "{{json .Config.Labels}}", web.id()]);
    assert!(labels.contains("\"cleanroom.managed\":\"true\""), "{labels}");
    let session = cleanroom::environment().session().unwrap();
    assert!(labels.contains(&format!("\"cleanroom.session\":\"{session}\"")), "{labels}");
}

#[cleanroom::test(slow_by_command, slow_by_file)]
fn command_and_file_checks_gate_readiness(slow_by_command: Container, slow_by_file: Container) {
    for service in [slow_by_command, slow_by_file] {
        let out = service.exec_blocking(["test", "-e", "/tmp/ready"]).unwrap();
        assert_eq!(out.exit_code, 0, "{} was handed out before its check passed", service.name());
    }
}

#[cleanroom::test(announced)]
async fn log_and_tcp_checks_gate_readiness(announced: Container) {
    let logs = announced.logs().await.unwrap();
    assert!(logs.contains("server ready"), "handed out before its log line: {logs:?}");
    let port = announced.port(7000);
    let (status, _) = tokio::task::spawn_blocking(move || http_get(port, "/index.html")).await.unwrap();
    assert_eq!(status, 200);
}
