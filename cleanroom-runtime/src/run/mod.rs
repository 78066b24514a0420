//! Orchestration of a run: the process-wide registry that starts each service
//! once ([`registry`], [`start`], [`network`]), what happens when one dies
//! ([`recovery`]) and when the process ends ([`teardown`]), the session that
//! names the run, and the reaper that removes what the run made once its
//! last process is gone.

mod network;
pub(crate) mod reaper;
mod recovery;
pub(crate) mod registry;
pub(crate) mod session;
mod start;
mod teardown;
