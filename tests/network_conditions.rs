//! Network conditions between a test and its services, through a proxy of
//! the test's own: each limit's effect measured (a round trip that takes at
//! least the latency twice, a transfer that takes at least what the
//! bandwidth implies, a cut that fails a query and then lets one through),
//! and one test's conditions never reaching another test's handle.

use std::time::{Duration, Instant};

use cleanroom::{Container, GenericContainer, HealthCheck, NetworkConditions, Postgres, Redis};

const BUSYBOX: &str = "cleanroom-offline/busybox:1.35";

/// A page server whose every test handle has 100 ms of added latency, from
/// its definition.
#[cleanroom::service]
fn slow_web() -> GenericContainer {
    GenericContainer::new(BUSYBOX)
        .with_entrypoint_exec(["sh", "-c"])
        .with_cmd(["mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 80 -h /www"])
        .with_port(80)
        .with_health_check(HealthCheck::http(80, "/"))
        .with_network_conditions(NetworkConditions { latency: Duration::from_millis(100), ..Default::default() })
}

/// The host port Docker published for `port` of the container: what a
/// handle without conditions hands out.
fn published(container: &Container, port: u16) -> u16 {
    let out = cleanroom_tests::docker(&["port", container.id(), &format!("{port}/tcp")]);
    let line = out.lines().find(|l| l.starts_with("127.0.0.1:")).expect("published on 127.0.0.1");
    line.rsplit(':').next().unwrap().trim().parse().unwrap()
}

async fn connect(postgres: &Postgres) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

#[cleanroom::test(postgres)]
async fn added_latency_slows_every_round_trip(postgres: Postgres) {
    let direct = published(postgres.container(), 5432);
    assert_eq!(postgres.port(), direct, "no conditions: the published port");
    postgres.network().latency(Duration::from_millis(150));
    assert_ne!(postgres.port(), direct, "through this test's proxy now");
    let client = connect(&postgres).await;
    let asked = Instant::now();
    client.simple_query("SELECT 1").await.unwrap();
    let took = asked.elapsed();
    assert!(took >= Duration::from_millis(300), "150 ms each way: {took:?}");
    assert!(postgres.network().bytes_sent() > 0 && postgres.network().bytes_received() > 0);
}

#[cleanroom::test(postgres)]
async fn a_cut_fails_queries_until_it_ends(postgres: Postgres) {
    let network = postgres.network();
    let client = connect(&postgres).await;
    client.simple_query("SELECT 1").await.unwrap();
    network.cut_for(Duration::from_secs(2));
    assert!(client.simple_query("SELECT 1").await.is_err(), "the open connection was cut");
    let refused = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls).await;
    assert!(refused.is_err(), "a new connection is refused while cut");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let client = connect(&postgres).await;
    client.simple_query("SELECT 1").await.expect("served again once the cut is over");
}

#[cleanroom::test(redis)]
async fn a_download_limit_slows_a_transfer_to_its_rate(redis: Redis) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let network = redis.network();
    let mut cache = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let value = "x".repeat(256 * 1024);
    let () = redis::AsyncCommands::set(&mut cache, "big", &value).await.unwrap();
    network.download(256 * 1024);
    // In the protocol itself: a client library may give up on a slow reply.
    let mut stream = tokio::net::TcpStream::connect((redis.host(), redis.port())).await.unwrap();
    let asked = Instant::now();
    stream.write_all(format!("SELECT {}\r\nGET big\r\n", redis.db()).as_bytes()).await.unwrap();
    let expected = "+OK\r\n".len() + format!("${}\r\n", value.len()).len() + value.len() + 2;
    let mut reply = vec![0u8; expected];
    stream.read_exact(&mut reply).await.unwrap();
    let took = asked.elapsed();
    assert!(reply.ends_with(b"xx\r\n"), "the whole value came back");
    assert!(took >= Duration::from_millis(900), "256 KiB at 256 KiB/s: {took:?}");
}

#[cleanroom::test(redis)]
async fn an_upload_limit_slows_what_the_test_sends(redis: Redis) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    redis.network().upload(256 * 1024);
    let mut stream = tokio::net::TcpStream::connect((redis.host(), redis.port())).await.unwrap();
    let value = "y".repeat(256 * 1024);
    let command = format!("*3\r\n$3\r\nSET\r\n$6\r\nupload\r\n${}\r\n{value}\r\n", value.len());
    let asked = Instant::now();
    stream.write_all(command.as_bytes()).await.unwrap();
    let mut reply = [0u8; 5];
    stream.read_exact(&mut reply).await.unwrap();
    let took = asked.elapsed();
    assert_eq!(&reply, b"+OK\r\n");
    assert!(took >= Duration::from_millis(900), "256 KiB at 256 KiB/s: {took:?}");
}

/// Jitter spreads the round trips around the latency.
#[cleanroom::test(redis)]
async fn jitter_spreads_round_trips_around_the_latency(redis: Redis) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    redis.network().latency(Duration::from_millis(100)).jitter(Duration::from_millis(100));
    let mut stream = tokio::net::TcpStream::connect((redis.host(), redis.port())).await.unwrap();
    let mut took = Vec::new();
    for _ in 0..10 {
        let asked = Instant::now();
        stream.write_all(b"PING\r\n").await.unwrap();
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).await.unwrap();
        took.push(asked.elapsed());
    }
    let (min, max) = (took.iter().min().unwrap(), took.iter().max().unwrap());
    // Each way is uniform within 0–200 ms: ten round trips within 30 ms of
    // each other would be a near impossibility.
    assert!(*max - *min >= Duration::from_millis(30), "round trips {took:?}");
    assert!(*max <= Duration::from_millis(1500), "never beyond latency + jitter by much: {took:?}");
}

#[cleanroom::test(redis)]
async fn every_new_connection_is_reset_at_a_reset_rate_of_one(redis: Redis) {
    redis.network().reset_rate(1.0);
    let client = redis::Client::open(redis.url()).unwrap();
    assert!(client.get_multiplexed_async_connection().await.is_err(), "reset as it arrives");
    redis.network().reset_rate(0.0);
    let mut cache = client.get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("PING").query_async(&mut cache).await.unwrap();
}

/// The definition's conditions apply to every test's handle, each through a
/// proxy of its own; a test that does not ask for conditions on a service
/// without them gets the published port (checked in the first test above,
/// which runs beside these).
#[cleanroom::test(slow_web)]
async fn a_definitions_conditions_reach_every_tests_handle(slow_web: Container) {
    assert_ne!(slow_web.port(80), published(&slow_web, 80), "through a proxy");
    let asked = Instant::now();
    let mut stream = tokio::net::TcpStream::connect((slow_web.host(), slow_web.port(80))).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut page = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut page).await.unwrap();
    let took = asked.elapsed();
    assert!(page.contains("hello"), "{page}");
    assert!(took >= Duration::from_millis(200), "100 ms each way: {took:?}");
    let m = cleanroom::metrics_of("slow_web").expect("metrics of a started service");
    let conditions = m.performance.network_conditions.clone().expect("the definition's conditions, for the report");
    assert_eq!((conditions.latency_ms, conditions.download_bytes_per_sec, conditions.reset_rate), (100.0, None, 0.0));
    assert!(m.performance.proxied_received_bytes >= page.len() as u64, "beside the bytes: {:?}", m.performance);
}

#[cleanroom::test(postgres)]
async fn one_tests_conditions_never_reach_another_test(postgres: Postgres) {
    // Runs beside the tests above, which slowed and cut their own handles.
    assert_eq!(postgres.port(), published(postgres.container(), 5432));
    let client = connect(&postgres).await;
    client.simple_query("SELECT 1").await.unwrap();
}

/// What goes through a handle's proxies counts in the service's metrics
/// (and so in the report).
#[cleanroom::test(redis)]
async fn what_goes_through_the_proxies_is_counted_in_the_metrics(redis: Redis) {
    let before = cleanroom::metrics_of("redis").map_or(0, |m| m.performance.proxied_received_bytes);
    let sent = async move {
        let network = redis.network();
        let mut cache = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
        let () = redis::AsyncCommands::set(&mut cache, "counted", "x".repeat(10_000)).await.unwrap();
        let _: String = redis::AsyncCommands::get(&mut cache, "counted").await.unwrap();
        drop(cache);
        network.bytes_received()
    }
    .await;
    assert!(sent >= 10_000, "the handle counted {sent} bytes back");
    let after = cleanroom::metrics_of("redis").map_or(0, |m| m.performance.proxied_received_bytes);
    assert!(after - before >= 10_000, "counted in the metrics: {before} then {after}");
}
