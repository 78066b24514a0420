//! The handles as the clients Rust projects use expect them, each behind a
//! feature named after its client so that a build without it has none of
//! that client's code: `sqlx`, `tokio-postgres`, `deadpool-postgres`,
//! `redis`. They only read a handle's plain accessors.
//!
//! Connections are made on the runtime that awaits them (the test's), the
//! way each client expects: a pool or connection made in one test lives as
//! long as that test's runtime.

#[cfg(feature = "deadpool-postgres")]
mod with_deadpool;
#[cfg(feature = "redis")]
mod with_redis;
#[cfg(feature = "sqlx")]
mod with_sqlx;
#[cfg(any(feature = "tokio-postgres", feature = "deadpool-postgres"))]
mod with_tokio_postgres;

/// The panic a client integration raises when it cannot connect: which
/// client, where (without the password), and the client's own words.
#[cfg(any(feature = "sqlx", feature = "tokio-postgres", feature = "redis"))]
fn connect_failed(client: &str, service: &str, url: &str, error: impl std::fmt::Display) -> ! {
    panic!(
        "cleanroom: {client} could not connect to {service} at {url}: {error}; the service was Ready, so this is \
         most often a connection limit or a server that died under the test (its logs: `Container::logs`)"
    )
}
