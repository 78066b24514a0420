//! The engine's answers as a type: the operation, the HTTP status (when the
//! engine answered) and its message. Whether an error is "not found", a name
//! conflict or worth retrying is decided here, from the status, and nowhere
//! else.

use std::fmt;

use testcontainers::bollard::errors::Error as Bollard;

/// A failed request to the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DockerError {
    /// What cleanroom asked: `create container`, `remove volume`, …
    pub(crate) op: &'static str,
    /// The engine's HTTP status; `None` when it did not answer (connection
    /// refused or reset, timeout) or the failure was on this side.
    pub(crate) status: Option<u16>,
    pub(crate) message: String,
}

impl DockerError {
    pub(crate) fn new(op: &'static str, status: Option<u16>, message: impl Into<String>) -> Self {
        DockerError { op, status, message: message.into() }
    }

    /// From bollard's error: its server errors keep their status.
    pub(crate) fn from_bollard(op: &'static str, error: Bollard) -> Self {
        match error {
            Bollard::DockerResponseServerError { status_code, message } => {
                DockerError::new(op, Some(status_code), message)
            }
            other => DockerError::new(op, None, other.to_string()),
        }
    }

    /// From testcontainers' error for a container it created and started:
    /// the bollard error inside keeps its status.
    pub(crate) fn from_testcontainers(error: testcontainers::TestcontainersError) -> Self {
        use testcontainers::core::error::ClientError as C;
        use testcontainers::TestcontainersError as T;
        match error {
            T::Client(C::CreateContainer(e)) => DockerError::from_bollard("create container", e),
            T::Client(C::StartContainer(e)) => DockerError::from_bollard("start container", e),
            T::Client(C::InspectContainer(e)) => DockerError::from_bollard("inspect container", e),
            T::Client(C::PullImage { err, .. }) => DockerError::from_bollard("pull image", err),
            other => DockerError::new("start container", None, other.to_string()),
        }
    }

    /// The engine has no such object.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }

    /// The name is taken (a container or network of that name exists).
    pub(crate) fn is_conflict(&self) -> bool {
        self.status == Some(409)
    }

    /// Whether the same request may succeed if sent again: the engine failed
    /// on its side (5xx: a port another container just took, a storage
    /// hiccup) or did not answer at all. A 4xx is a mistake in the request.
    pub(crate) fn is_transient(&self) -> bool {
        match self.status {
            Some(status) => status >= 500,
            None => true,
        }
    }
}

impl fmt::Display for DockerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(status) => write!(f, "{} failed: the engine answered {status}: {}", self.op, self.message),
            None => write!(f, "{} failed: {}", self.op, self.message),
        }
    }
}

impl std::error::Error for DockerError {}

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
