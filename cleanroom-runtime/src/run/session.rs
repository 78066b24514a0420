//! A run's identity. Every test process of one `cargo test` or `cargo nextest
//! run` must arrive at the same session id without talking to each other, so
//! that they find the same containers by label.
//!
//! In order: `CLEANROOM_SESSION`; `NEXTEST_RUN_ID` (nextest sets it for every
//! test process of a run); otherwise the parent process — the `cargo test` or
//! nextest process — by its pid and start time, which no later process can
//! share.

use crate::error::Error;

pub(crate) use crate::util::os::ProcessId;

/// Where the session id came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    pub(crate) id: String,
    /// The runner process whose end means the run is over, when known.
    pub(crate) runner: Option<ProcessId>,
}

/// A session id names files in the runtime directory and labels in the
/// engine: letters, digits, `-`, `_` and `.`, starting with a letter or a
/// digit (so no id is `.`, `..` or a hidden file, and none is a path).
pub(crate) fn valid(s: &str) -> bool {
    s.len() <= 64
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// The session of this process.
pub(crate) fn current() -> Result<Session, Error> {
    from_parts(
        std::env::var("CLEANROOM_SESSION").ok(),
        std::env::var("NEXTEST_RUN_ID").ok(),
        ProcessId::parent(),
        std::env::var("CLEANROOM_REAPER_RUNNER").ok().and_then(|r| ProcessId::decode(&r)),
    )
}

pub(crate) fn from_parts(
    explicit: Option<String>,
    nextest: Option<String>,
    parent: Option<ProcessId>,
    runner_override: Option<ProcessId>,
) -> Result<Session, Error> {
    if let Some(s) = explicit {
        if !valid(&s) {
            return Err(Error::Configuration {
                key: "CLEANROOM_SESSION".into(),
                reason: format!(
                    "{s:?} must be 1 to 64 characters of letters, digits, '-', '_' or '.', starting with a letter or \
                     a digit (it names files in the runtime directory and labels in the engine)"
                ),
            });
        }
        return Ok(Session { id: s, runner: runner_override.or(parent) });
    }
    if let Some(run) = nextest.filter(|r| !r.is_empty()) {
        let id: String = run.chars().filter(|c| c.is_ascii_alphanumeric()).take(24).collect();
        return Ok(Session { id: format!("nextest-{id}"), runner: runner_override.or(parent) });
    }
    match parent {
        Some(p) => Ok(Session { id: format!("run-{}-{}", p.pid, p.start), runner: runner_override.or(Some(p)) }),
        None => {
            // No parent to be found: a session of this process alone.
            let nanos =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
            Ok(Session { id: format!("proc-{}-{:x}", std::process::id(), nanos & 0xffff_ffff), runner: None })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    mod should {
        use super::*;

        #[test]
        fn prefer_an_explicit_session() {
            let s = from_parts(Some("mine".into()), Some("abc".into()), None, None).unwrap();
            assert_eq!(s.id, "mine");
        }

        #[test]
        fn reject_ids_that_are_dots_hidden_names_or_paths() {
            for bad in ["..", ".", ".hidden", "-flag", "a/b", "../runs", "", "ci\\x"] {
                assert!(!valid(bad), "{bad:?} must be refused");
                assert!(from_parts(Some(bad.into()), None, None, None).is_err(), "{bad:?}");
            }
            for good in ["ci", "nextest-abc", "run-12-34", "a.b_c-d", "0"] {
                assert!(valid(good), "{good:?}");
            }
        }

        #[test]
        fn reject_a_session_that_cannot_be_a_label() {
            let err = from_parts(Some("a b".into()), None, None, None).unwrap_err();
            assert!(err.to_string().contains("CLEANROOM_SESSION"), "{err}");
        }

        #[test]
        fn share_nextests_run_id_between_processes() {
            let parent = ProcessId { pid: 10, start: 5 };
            let a = from_parts(None, Some("0a1b2c3d-1111-2222-3333-444455556666".into()), Some(parent), None).unwrap();
            let b = from_parts(None, Some("0a1b2c3d-1111-2222-3333-444455556666".into()), Some(parent), None).unwrap();
            assert_eq!(a, b);
            assert_eq!(a.id, "nextest-0a1b2c3d1111222233334444");
        }

        #[test]
        fn derive_the_session_from_the_runner_process() {
            let parent = ProcessId { pid: 4242, start: 99 };
            let s = from_parts(None, None, Some(parent), None).unwrap();
            assert_eq!(s.id, "run-4242-99");
            assert_eq!(s.runner, Some(parent));
        }
    }
}
