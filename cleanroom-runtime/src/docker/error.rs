//! Docker's answers as an [`EngineError`]: the operation, the HTTP status
//! (when the engine answered) and its message, taken from bollard's errors
//! without reading their text.

use testcontainers::bollard::errors::Error as Bollard;

use crate::engine::EngineError;

/// Docker's errors are the engine trait's: the operation, the HTTP status
/// and the message.
pub(crate) type DockerError = EngineError;

impl EngineError {
    /// From bollard's error: its server errors keep their status.
    pub(crate) fn from_bollard(op: &'static str, error: Bollard) -> Self {
        match error {
            Bollard::DockerResponseServerError { status_code, message } => {
                DockerError::new(op, Some(status_code), message)
            }
            other => DockerError::new(op, None, other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::DockerError;
        use testcontainers::bollard::errors::Error as Bollard;

        fn server(status_code: u16) -> DockerError {
            DockerError::from_bollard(
                "create container",
                Bollard::DockerResponseServerError { status_code, message: "m".into() },
            )
        }

        #[test]
        fn judge_by_the_status_not_the_message() {
            assert!(server(404).is_not_found());
            assert!(server(409).is_conflict());
            assert!(!server(409).is_not_found());
            assert!(server(500).is_transient());
            assert!(server(503).is_transient());
            assert!(!server(400).is_transient());
            assert!(!server(404).is_transient());
        }

        #[test]
        fn take_an_engine_that_did_not_answer_as_transient() {
            assert!(DockerError::new("ping", None, "connection reset by peer").is_transient());
        }

        #[test]
        fn name_the_operation_and_the_status() {
            assert_eq!(server(500).to_string(), "create container failed: the engine answered 500: m");
        }
    }
}
