//! Clean rooms: every test gets a room of its own inside a shared server.
//!
//! One trait, [`Room`], is what the harness holds for a test, whatever the
//! service: Postgres databases cloned from a migrated template
//! ([`postgres`]), Redis logical databases leased through the server
//! ([`redis`]), and the rooms a user's service makes with its own hooks
//! ([`hooks`]). [`open`] is the one place that picks the kind, the way sqlx's
//! `TestSupport` serves each database; the harness never switches on it.

mod hooks;
pub(crate) mod keeper;
pub(crate) mod migrations;
pub(crate) mod postgres;
pub(crate) mod redis;
pub(crate) mod redis_pool;
pub(crate) mod run_pool;
pub(crate) mod schema;

use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::Keep;
use crate::service::definition::ServiceKind;
use crate::service::handle::Container;

pub(crate) use postgres::pg_rooms;
pub(crate) use redis::redis_rooms;
pub(crate) use schema::{demand, Demand};

/// What a test's handle is told about its room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RoomName {
    /// A Postgres database of the test's own.
    Database(String),
    /// A Redis logical database.
    Index(u32),
    /// A room a service's own hooks made (`Container::room`).
    Named(String),
}

/// A test's room, held from when a parameter or `current()` first asks for the service
/// until the test ends.
pub(crate) trait Room: Send {
    /// What the test's handle is told.
    fn name(&self) -> RoomName;

    /// The test ended: gives the room back, or keeps it (and says where)
    /// when `keep` says so for this outcome.
    fn end(self: Box<Self>, test: &str, failed: bool, keep: Keep);

    /// No test used the room (it was opened ahead, `harness::ahead`, for a
    /// test that took no handle): given back as it came where it can be,
    /// ended like a passed test's room otherwise.
    fn unused(self: Box<Self>, test: &str) {
        self.end(test, false, Keep::Never);
    }
}

/// Opens a room for `test` in the service `container` runs, as the
/// service's kind says and `demand` asks; `None` when the service has no
/// rooms or the test shares the server. Blocks the calling (test) thread.
/// The error is the message the test fails with.
pub(crate) fn open(
    kind: &ServiceKind,
    container: &Container,
    demand: &Demand,
    test: &str,
) -> Result<Option<Box<dyn Room>>, String> {
    let schema = match demand {
        Demand::Shared => return Ok(None),
        Demand::Room(schema) => schema.as_ref(),
    };
    match kind {
        ServiceKind::Postgres => postgres::open(container, schema).map(Some).map_err(|e| e.to_string()),
        ServiceKind::Redis => redis::open(container).map(Some).map_err(|e| e.to_string()),
        ServiceKind::Generic(_) => hooks::open(container, test),
    }
}

/// A room for a test that `demand` asks of the service `container` runs,
/// when one is at hand: made ahead (a Postgres database cloned, a Redis
/// database leased), so that opening it waits for no server and no runtime.
/// `None` otherwise, and for the rooms of a service's own hooks (they run
/// the user's code). What cleanroom's start thread opens for a process's
/// one test while libtest starts the test's thread (`harness::ahead`).
pub(crate) fn open_at_hand(kind: &ServiceKind, container: &Container, demand: &Demand) -> Option<Box<dyn Room>> {
    let Demand::Room(schema) = demand else { return None };
    match kind {
        ServiceKind::Postgres => postgres::open_at_hand(container, schema.as_ref()),
        ServiceKind::Redis => redis::open_at_hand(container),
        ServiceKind::Generic(_) => None,
    }
}

/// Whether [`open_at_hand`] tries at all: a room of a built-in service.
pub(crate) fn may_open_at_hand(kind: &ServiceKind, demand: &Demand) -> bool {
    matches!(demand, Demand::Room(_)) && matches!(kind, ServiceKind::Postgres | ServiceKind::Redis)
}

/// Returns what this process holds on the servers and never handed out
/// (databases cloned and leased ahead), at its exit: the servers outlive it.
pub(crate) async fn release_pooled() {
    redis::release_ahead().await;
    postgres::release_pooled().await;
}

/// The commands that rerun `test` of this binary alone with its server
/// kept, for the message of a room that is kept.
pub(crate) fn rerun_commands(test: &str) -> String {
    let ignored = crate::catalog::registered_tests().any(|t| t.ignored && t.test_name() == test);
    crate::util::rerun::commands(test, ignored)
}

/// A unique database name for one test: unique across threads (a counter)
/// and processes (the pid and a start time).
pub(crate) fn room_name() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
            & 0xff_ffff
    });
    format!("cleanroom_t_{}_{:06x}_{}", std::process::id(), start, N.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::room_name;

        #[test]
        fn name_rooms_uniquely_with_valid_identifiers() {
            let a = room_name();
            let b = room_name();
            assert_ne!(a, b);
            assert!(a.len() < 63, "{a}");
            assert!(a.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'), "{a}");
        }
    }
}
