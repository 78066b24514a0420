//! Health probing: waits until a new container passes its checks, in order,
//! or until the process that created it marked it ready; and one probe of a
//! check, which the monitor repeats while the service runs. What a check is
//! lives with the definition ([`crate::service::health`]).

pub(crate) mod perf;
pub(crate) mod probe;

pub(crate) use probe::wait_ready;
