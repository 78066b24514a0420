//! A crate that depends on cleanroom as `cr` (Cargo.toml: `cr = { package =
//! "cleanroom-test", … }`): with `crate = "cr"` every attribute's generated
//! code names `cr`, and there is no `cleanroom` in this crate's scope at all.

use std::sync::atomic::{AtomicUsize, Ordering};

static SETUPS: AtomicUsize = AtomicUsize::new(0);

#[cr::fixture(crate = "cr")]
fn setup() -> usize {
    SETUPS.fetch_add(1, Ordering::SeqCst) + 1
}

#[cr::fixture(crate = "cr")]
async fn doubled(setup: usize) -> usize {
    setup * 2
}

/// Listed by a test that is never run: its definition and registration
/// compile under the renamed path, and nothing starts.
#[cr::service(crate = "cr")]
fn web() -> cr::GenericContainer {
    cr::GenericContainer::new("cleanroom-offline/busybox:1.35").with_cmd(["sleep", "60"])
}

#[cr::test(crate = "cr")]
fn a_sync_test_resolves_fixtures_through_the_renamed_crate(setup: usize, doubled: usize) {
    assert_eq!(doubled, setup * 2);
}

#[cr::test(crate = "cr", flavor = "multi_thread")]
async fn an_async_test_runs_on_its_own_runtime(doubled: usize) {
    tokio::task::yield_now().await;
    assert!(doubled >= 2);
}

#[cr::test(crate = "cr", redis)]
async fn a_built_in_service_reaches_the_test(redis: cr::Redis) {
    let mut stream = tokio::net::TcpStream::connect((redis.host(), redis.port())).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(b"PING\r\n").await.unwrap();
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, b"+PONG\r\n");
}

#[cr::test(crate = "::cr", web)]
#[ignore = "compiles only: it shows a user service listed under the renamed path"]
fn a_user_service_is_listed_through_the_renamed_crate(web: cr::Container) {
    let _ = web;
}
