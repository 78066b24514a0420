//! Services as plain data: the public definition (`GenericContainer`, mounts,
//! health checks, watch and recovery policy, room hooks), the built-in
//! Postgres and Redis definitions, and the handles tests receive.
//!
//! The one circle allowed here is a type knot: a definition holds its
//! [`RoomHooks`](definition::RoomHooks), the hooks take a
//! [`Container`](handle::Container) handle, and a handle holds the running
//! service with its definition.

pub(crate) mod definition;
pub(crate) mod handle;
pub(crate) mod health;
pub(crate) mod running;
pub(crate) mod watch;
