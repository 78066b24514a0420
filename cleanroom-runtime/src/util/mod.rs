//! The bottom layer: small utilities that know nothing of containers or
//! tests, shared by every layer above.
//!
//! - [`hash`]: a stable hash for names that every process of a run must agree on;
//! - [`paths`]: the user's runtime directory, where sockets, locks and marks live;
//! - [`clock`]: wall-clock seconds and the instant the process started;
//! - [`background`]: cleanroom's own tokio runtime, on which all engine work runs;
//! - [`flags`]: the two process-wide facts that lower layers read and the run
//!   layer sets (teardown begun, services shared with the run).

pub(crate) mod background;
pub(crate) mod clock;
pub(crate) mod flags;
pub(crate) mod hash;
pub(crate) mod paths;
