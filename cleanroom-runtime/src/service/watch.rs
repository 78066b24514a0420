//! How a service is watched while it runs and what happens when it fails:
//! plain data on the definition, read by the monitor and by the run layer's
//! recovery.

use std::time::Duration;

/// What cleanroom does when a running service dies or turns unhealthy.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Recovery {
    /// Replace it with a fresh container from the same definition, waiting
    /// 250 ms, 500 ms, 1 s… between attempts, at most `max_restarts` times per
    /// run in each test process. Tests that ask for it meanwhile wait.
    Automatic {
        /// Replacements allowed before cleanroom gives up.
        max_restarts: u32,
    },
    /// Do not replace it: tests that ask for it afterwards fail at once with
    /// the death and the container's last log lines.
    Manual,
    /// Ask the hook, with what happened, whether to replace it (as
    /// `Automatic` would, without its limit).
    Fallback(fn(&ServiceFailure) -> bool),
}

impl Default for Recovery {
    fn default() -> Self {
        Recovery::Automatic { max_restarts: 3 }
    }
}

/// What happened to a service, for [`Recovery::Fallback`] hooks and error
/// messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceFailure {
    /// The service's name.
    pub service: String,
    /// The container that failed.
    pub container: String,
    /// What happened, in words ("its container exited with code 137").
    pub reason: String,
    /// The container's last log lines.
    pub logs: String,
    /// Replacements so far in this process.
    pub restarts: u32,
}

/// What cleanroom does when a container's CPU or memory use stays over its
/// threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LimitAction {
    /// Say so (on stderr and in the report). The default.
    #[default]
    Alert,
    /// Halve the container's CPU limit while it runs (`docker update
    /// --cpus`); for memory, alert only.
    Throttle,
    /// Replace the container (through [`Recovery`]).
    Restart,
    /// Kill the container; its death then goes through [`Recovery`].
    Kill,
}

/// How a service is watched while it runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Watch {
    pub(crate) recovery: Recovery,
    pub(crate) health_interval: Duration,
    pub(crate) limit_action: LimitAction,
    /// Fraction of the CPU limit.
    pub(crate) cpu_threshold: f64,
    /// Fraction of the memory limit.
    pub(crate) memory_threshold: f64,
}

impl Default for Watch {
    fn default() -> Self {
        Watch {
            recovery: Recovery::default(),
            health_interval: Duration::from_secs(5),
            limit_action: LimitAction::Alert,
            cpu_threshold: 0.9,
            memory_threshold: 0.9,
        }
    }
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::*;

        #[test]
        fn recover_automatically_and_boundedly_by_default() {
            assert!(matches!(Recovery::default(), Recovery::Automatic { max_restarts: 3 }));
            assert_eq!(Watch::default().limit_action, LimitAction::Alert);
        }
    }
}
