//! Services as plain data: the public definition (`GenericContainer`, mounts,
//! health checks, watch and recovery policy, room hooks), the built-in
//! Postgres and Redis definitions, and the handles tests receive (with
//! their client integrations, each behind a feature of its client's name).
//!
//! The one circle allowed here is a type knot: a definition holds its
//! [`RoomHooks`](definition::RoomHooks), the hooks take a
//! [`Container`](handle::Container) handle, and a handle holds the running
//! service with its definition.

#[cfg(any(feature = "sqlx", feature = "tokio-postgres", feature = "deadpool-postgres", feature = "redis"))]
mod clients;
pub(crate) mod definition;
pub(crate) mod handle;
pub(crate) mod health;
pub(crate) mod migration_tool;
pub(crate) mod running;
pub(crate) mod watch;
