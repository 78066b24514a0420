//! Orchestration of a run: the process-wide registry that starts each service
//! once ([`registry`], [`start`], [`network`]; a process that attaches does
//! it on its start thread, [`attach`]), what happens when one dies
//! ([`recovery`]) and when the process ends ([`teardown`]), the session that
//! names the run, and the reaper that removes what the run made once its
//! last process is gone ([`reaper`]), with what it relies on: who is alive
//! ([`liveness`]), what the run's processes share on disk ([`marks`]), the
//! orphan sweep ([`sweep`]) and the keeper of reused services ([`keeper`]).

pub(crate) mod attach;
pub(crate) mod existing;
pub(crate) mod heartbeat;
pub(crate) mod keeper;
mod lazy_engine;
pub(crate) mod local;
pub(crate) mod liveness;
pub(crate) mod marks;
mod network;
pub(crate) mod reaper;
mod recovery;
pub(crate) mod registry;
pub(crate) mod session;
pub(crate) mod start;
pub(crate) mod sweep;
mod teardown;
