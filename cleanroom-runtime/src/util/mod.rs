//! The bottom layer: small utilities that know nothing of containers or
//! tests, shared by every layer above.
//!
//! - [`hash`]: a stable hash for names that every process of a run must agree on;
//! - [`os`]: what each operating system answers its own way (uid, process
//!   liveness and start times, socket peers, socket path lengths);
//! - [`paths`]: the user's runtime directory, where sockets, locks and marks live;
//! - [`clock`]: wall-clock seconds and the instant the process started;
//! - [`background`]: cleanroom's own tokio runtime, on which all engine work runs;
//! - [`flags`]: the two process-wide facts that lower layers read and the run
//!   layer sets (teardown begun, services shared with the run);
//! - [`percent`]: percent-encoding for URLs and file names;
//! - [`rerun`]: the commands that run one test of this binary again, alone,
//!   with its services kept.

/// Writes one line to the process's stderr, as `eprintln!` would, but past
/// libtest's capture of a test's output: a message about the run (a service
/// starting, a reaper missing, an alert) is not a test's output, and the
/// capture also reaches the runtime's threads when a test built them.
macro_rules! say {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let line = ::std::format!("{}\n", ::std::format_args!($($arg)*));
        let _ = ::std::io::stderr().lock().write_all(line.as_bytes());
    }};
}
pub(crate) use say;

pub(crate) mod background;
pub(crate) mod clock;
pub(crate) mod flags;
pub(crate) mod hash;
pub(crate) mod os;
pub(crate) mod paths;
pub(crate) mod percent;
pub(crate) mod rerun;
