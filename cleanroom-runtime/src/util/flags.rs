//! Process-wide facts that lower layers read and the run layer sets, so that
//! rooms and health checks need not reach up into the registry.

use std::sync::atomic::{AtomicBool, Ordering};

static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);
static SHARES_SERVICES: AtomicBool = AtomicBool::new(false);

/// Whether teardown has begun in this process.
pub(crate) fn shutting_down() -> bool {
    SHUTTING_DOWN.load(Ordering::SeqCst)
}

/// Marks teardown as begun; `true` if it already was.
pub(crate) fn begin_shutdown() -> bool {
    SHUTTING_DOWN.swap(true, Ordering::SeqCst)
}

/// Whether this process shares its services with the other processes of its
/// run (a reaper serves the run).
pub(crate) fn shares_services() -> bool {
    SHARES_SERVICES.load(Ordering::SeqCst)
}

pub(crate) fn set_shares_services(shared: bool) {
    SHARES_SERVICES.store(shared, Ordering::SeqCst);
}

/// How this process hands work to the keeper of its run's Postgres pools
/// (its reaper), when the reaper keeps them: set by the run layer once
/// attached.
static POOL_KEEPER: std::sync::OnceLock<fn(&str) -> bool> = std::sync::OnceLock::new();

pub(crate) fn set_pool_keeper(tell: fn(&str) -> bool) {
    let _ = POOL_KEEPER.set(tell);
}

/// Hands `what` to the keeper of the run's pools; `false` when there is
/// none (the caller does the work itself).
pub(crate) fn tell_pool_keeper(what: &str) -> bool {
    POOL_KEEPER.get().is_some_and(|tell| tell(what))
}

/// Whether the run's pools have a keeper this process can hand work to.
pub(crate) fn has_pool_keeper() -> bool {
    POOL_KEEPER.get().is_some()
}

/// Where this process takes the Redis rooms its run's keeper leased ahead
/// (the root of the run's pools, one directory per server), and the name
/// the keeper leases them in: set by the run layer once attached to a
/// reaper that keeps them.
static REDIS_KEEPER: std::sync::OnceLock<(std::path::PathBuf, String)> = std::sync::OnceLock::new();

pub(crate) fn set_redis_keeper(root: std::path::PathBuf, holder: String) {
    let _ = REDIS_KEEPER.set((root, holder));
}

/// The run's Redis pools' root and the keeper's holder name, when the
/// run's reaper keeps them.
pub(crate) fn redis_keeper() -> Option<&'static (std::path::PathBuf, String)> {
    REDIS_KEEPER.get()
}
