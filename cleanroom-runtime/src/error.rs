//! The one error type of cleanroom. Every message names the service, the image
//! and what to do next.

use std::time::Duration;

use crate::lifecycle::{IllegalTransition, State};

/// Everything that can go wrong while cleanroom provides a container.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No Docker engine answered.
    #[error(
        "docker is not reachable at {host}: {reason}; start the Docker engine, point DOCKER_HOST at one that \
            runs, or run the services from this machine's Postgres and Redis binaries with \
            CLEANROOM_ENGINE=local (docs/engines.md)"
    )]
    DockerUnavailable {
        /// The address tried (DOCKER_HOST, or the default socket).
        host: String,
        /// What the connection attempt said.
        reason: String,
    },

    /// The image is not on this machine and could not be pulled.
    #[error(
        "failed to start {service}: image {image} not found locally and {pull}; build or load the \
            image, or point the service at an image that exists (CLEANROOM_{env}_IMAGE)"
    )]
    ImageNotFound {
        /// The service.
        service: String,
        /// The image reference.
        image: String,
        /// Why it was not pulled (the pull's error, or the pull policy).
        pull: String,
        /// The service name as it appears in environment variables.
        env: String,
    },

    /// Docker refused to create the container.
    #[error("failed to create {service} from image {image}: {reason}; check the service definition")]
    Creation {
        /// The service.
        service: String,
        /// The image reference.
        image: String,
        /// What Docker said.
        reason: String,
        /// Whether the engine failed on its side (an HTTP 5xx, or no answer),
        /// so that the same request may succeed again; decided from the
        /// engine's status, never from the message.
        transient: bool,
    },

    /// The container was created but could not be started or inspected.
    #[error("failed to start {service} (image {image}): {reason}")]
    Start {
        /// The service.
        service: String,
        /// The image reference.
        image: String,
        /// What Docker said.
        reason: String,
    },

    /// Another process of the run was starting the service this process
    /// waited for, and failed: its error, which this process takes over.
    // The creator's reason names the service and its image already.
    #[error("the process of the run that created {service} failed: {reason}")]
    CreatorFailed {
        /// The service.
        service: String,
        /// The image reference.
        image: String,
        /// The creator's error, as it gave it.
        reason: String,
        /// The creator's error's [`Error::is_transient`].
        transient: bool,
    },

    /// The container stopped before it was Ready.
    #[error("{service} (image {image}) exited with code {code} during startup; its last log lines:\n{logs}")]
    Exited {
        /// The service.
        service: String,
        /// The image reference.
        image: String,
        /// The container's exit code.
        code: i64,
        /// The last 20 lines of its output.
        logs: String,
    },

    /// A health check failed in a way that retrying cannot fix.
    #[error("{service} (image {image}) failed its health check {check}: {reason}")]
    Health {
        /// The service.
        service: String,
        /// The image reference.
        image: String,
        /// The check, described.
        check: String,
        /// Why it failed.
        reason: String,
    },

    /// The service was not Ready within its startup timeout.
    #[error(
        "{service} (image {image}) was not ready after {after:?}: the health check {check} never \
            passed (last attempt: {last}); raise the startup timeout or fix the check. Its last log \
            lines:\n{logs}"
    )]
    Timeout {
        /// The service.
        service: String,
        /// The image reference.
        image: String,
        /// The check that did not pass.
        check: String,
        /// How long cleanroom waited.
        after: Duration,
        /// What the last attempt said.
        last: String,
        /// The last 20 lines of the container's output.
        logs: String,
    },

    /// An init command of the service failed in its new container.
    #[error(
        "{service} (image {image}): init command `{command}` exited with code {code}; its \
            stderr:\n{stderr}\nfix the command (GenericContainer::with_init_command or \
            services.{service}.init in cleanroom.toml)"
    )]
    Init {
        /// The service.
        service: String,
        /// The image reference.
        image: String,
        /// The command, its words joined by spaces.
        command: String,
        /// Its exit code (-1 when Docker could not run it).
        code: i64,
        /// What it wrote to stderr (or why Docker could not run it).
        stderr: String,
    },

    /// A resource could not be allocated or a limit was crossed.
    #[error("{service}: resource problem: {reason}")]
    Resource {
        /// The service.
        service: String,
        /// What happened.
        reason: String,
    },

    /// Configuration is invalid.
    #[error("invalid cleanroom configuration: {key}: {reason}")]
    Configuration {
        /// The setting (environment variable, file key).
        key: String,
        /// What is wrong and what is allowed.
        reason: String,
    },

    /// Two services share a name in one test binary.
    #[error(
        "two services are named `{name}`: one in {first}, one in {second}; rename one of the #[cleanroom::service] functions"
    )]
    DuplicateService {
        /// The name.
        name: String,
        /// Where the first was declared.
        first: String,
        /// Where the second was declared.
        second: String,
    },

    /// A lifecycle transition that the state machine does not allow.
    #[error("{service}: illegal lifecycle transition {from:?} -> {to:?}")]
    IllegalTransition {
        /// The service.
        service: String,
        /// The current state.
        from: State,
        /// The requested state.
        to: State,
    },

    /// The process is shutting down and no longer starts services.
    #[error("cleanroom is shutting down; {service} is not started")]
    ShuttingDown {
        /// The service.
        service: String,
    },

    /// Another process of the run created the container first (internal: the
    /// registry attaches to it instead).
    #[error("{service}: another process created its container first: {reason}")]
    NameTaken {
        /// The service.
        service: String,
        /// What Docker said.
        reason: String,
    },

    /// A running service died or turned unhealthy, and its recovery policy
    /// does not (or no longer may) replace it.
    #[error("{service} died and is not replaced ({policy}): {reason}; its last log lines:\n{logs}")]
    ServiceDied {
        /// The service.
        service: String,
        /// What happened to it.
        reason: String,
        /// Why it is not replaced (manual recovery, restarts used up, the
        /// fallback hook said no, or the replacement failed).
        policy: String,
        /// The dead container's last log lines.
        logs: String,
    },

    /// An operation on a running container failed.
    #[error("{service}: {operation} failed: {reason}")]
    Operation {
        /// The service.
        service: String,
        /// What was attempted (exec, logs).
        operation: String,
        /// What Docker said.
        reason: String,
    },
}

impl Error {
    /// Whether retrying the same operation may succeed, as opposed to a
    /// mistake that must be fixed first. cleanroom retries transient errors
    /// while it creates and starts a container (three more attempts, with
    /// backoff); permanent ones fail at once.
    ///
    /// | variant | |
    /// |---|---|
    /// | `Start`, `Timeout`, `Operation`, `Resource` | transient |
    /// | `Creation` | transient when the engine failed on its side (HTTP 5xx, e.g. a port already taken) or did not answer; otherwise permanent (a bad definition) |
    /// | `Exited` | transient (a container that crashed while starting may start next time) |
    /// | `CreatorFailed` | as the creator's own error was |
    /// | `DockerUnavailable`, `ImageNotFound`, `Health`, `Init`, `Configuration`, `DuplicateService`, `IllegalTransition`, `ShuttingDown`, `NameTaken`, `ServiceDied` | permanent |
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Start { .. }
            | Error::Timeout { .. }
            | Error::Operation { .. }
            | Error::Resource { .. }
            | Error::Exited { .. } => true,
            Error::Creation { transient, .. } | Error::CreatorFailed { transient, .. } => *transient,
            _ => false,
        }
    }
}

impl From<IllegalTransition> for Error {
    fn from(e: IllegalTransition) -> Self {
        Error::IllegalTransition { service: e.service, from: e.from, to: e.to }
    }
}

/// `Result` with cleanroom's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    mod should {
        use super::super::*;

        #[test]
        fn retry_transient_errors_and_not_permanent_ones() {
            let creation = |transient: bool| Error::Creation {
                service: "db".into(),
                image: "i".into(),
                reason: "create container failed".into(),
                transient,
            };
            assert!(creation(true).is_transient(), "the engine failed on its side");
            assert!(!creation(false).is_transient(), "a bad definition is permanent");
            assert!(Error::Start { service: "db".into(), image: "i".into(), reason: "x".into() }.is_transient());
            assert!(!Error::DockerUnavailable { host: "h".into(), reason: "r".into() }.is_transient());
            let missing =
                Error::ImageNotFound { service: "db".into(), image: "i".into(), pull: "p".into(), env: "DB".into() };
            assert!(!missing.is_transient());
            let init = Error::Init {
                service: "db".into(),
                image: "i".into(),
                command: "false".into(),
                code: 1,
                stderr: String::new(),
            };
            assert!(!init.is_transient(), "a failing init command fails the same way again");
            let waited = |transient: bool| Error::CreatorFailed {
                service: "db".into(),
                image: "i".into(),
                reason: init.to_string(),
                transient,
            };
            assert!(!waited(false).is_transient(), "the creator's permanent error stays permanent for its waiters");
            assert!(waited(true).is_transient());
            let died = Error::ServiceDied {
                service: "db".into(),
                reason: "r".into(),
                policy: "p".into(),
                logs: String::new(),
            };
            assert!(!died.is_transient());
        }
    }
}
