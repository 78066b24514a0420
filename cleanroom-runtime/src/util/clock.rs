//! Time as cleanroom records it.

use std::sync::OnceLock;
use std::time::Instant;

/// When this process started, as near as cleanroom can tell (its start hook).
pub(crate) static PROCESS_START: OnceLock<Instant> = OnceLock::new();

/// Seconds since the Unix epoch.
pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
