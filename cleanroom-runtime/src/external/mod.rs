//! Existing servers: a built-in service pointed at a Postgres or Redis that
//! already runs (`CLEANROOM_POSTGRES_URL`, `CLEANROOM_REDIS_URL`,
//! `[services.<name>] url`). No container is started; tests still get rooms
//! of their own, and cleanroom removes exactly what it made there.
//!
//! An existing server is not cleanroom's, so everything cleanroom makes on it
//! carries a [`Claim`]: whose run made it (the session, the owner key of
//! this user, machine and runtime directory, and without a reaper the
//! process). The run's end removes what its claim covers; a starting run and
//! `cargo cleanroom prune --url` remove what provably dead runs of this owner
//! left (the same judgement as for containers: docs/reliability.md).

pub(crate) mod postgres;
pub(crate) mod redis;
pub(crate) mod resp;
mod url;

pub(crate) use url::{ServerKind, ServerUrl};

use crate::engine::{Ended, Engine, EngineError, EngineFuture, EngineKind, EngineStream, ExecOutput, StatSample};

/// Whose run made a database, a template or a Redis lease on an existing
/// server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claim {
    /// The run's session.
    pub(crate) session: String,
    /// This user, machine and runtime directory (`owner_key`).
    pub(crate) owner: String,
    /// The process, when the run has no reaper (each process removes its
    /// own at exit).
    pub(crate) process: Option<String>,
}

impl Claim {
    /// The claim as text: `session=… owner=… [process=…]`. Session ids and
    /// process ids hold no spaces or `=`.
    pub(crate) fn encode(&self) -> String {
        let mut text = format!("session={} owner={}", self.session, self.owner);
        if let Some(process) = &self.process {
            text.push_str(&format!(" process={process}"));
        }
        text
    }

    /// A claim from [`Claim::encode`]'s text.
    pub(crate) fn decode(text: &str) -> Option<Claim> {
        let (mut session, mut owner, mut process) = (None, None, None);
        for part in text.split_whitespace() {
            match part.split_once('=') {
                Some(("session", v)) => session = Some(v.to_string()),
                Some(("owner", v)) => owner = Some(v.to_string()),
                Some(("process", v)) => process = Some(v.to_string()),
                _ => {}
            }
        }
        Some(Claim { session: session?, owner: owner?, process })
    }
}

/// A service on an existing server: where it is, whose run this is, and for
/// Redis the databases it may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Existing {
    pub(crate) url: ServerUrl,
    pub(crate) claim: Claim,
    /// The logical databases allowed (Redis).
    pub(crate) databases: Option<redis::DatabaseRange>,
}

/// The engine of a service that runs on an existing server: there is no
/// container, so nothing to exec into, read logs of or remove.
#[derive(Debug)]
pub(crate) struct ExistingServer {
    /// The server's address, password masked, for messages.
    pub(crate) address: String,
}

impl ExistingServer {
    fn unsupported(&self, op: &'static str) -> EngineError {
        EngineError::new(
            op,
            None,
            format!(
                "the service runs on the existing server {}, not in a container cleanroom started; \
                 unset its `url` (CLEANROOM_<SERVICE>_URL) to run it in a container",
                self.address
            ),
        )
    }
}

impl Engine for ExistingServer {
    fn kind(&self) -> EngineKind {
        EngineKind::Existing
    }

    fn exec<'a>(&'a self, _id: &'a str, _cmd: &'a [String]) -> EngineFuture<'a, Result<ExecOutput, EngineError>> {
        Box::pin(async move { Err(self.unsupported("exec")) })
    }

    fn logs<'a>(&'a self, _id: &'a str, _tail: Option<usize>) -> EngineFuture<'a, Result<String, EngineError>> {
        Box::pin(async move { Err(self.unsupported("logs")) })
    }

    fn path_exists<'a>(&'a self, _id: &'a str, _path: &'a str) -> EngineFuture<'a, Result<bool, EngineError>> {
        Box::pin(async move { Err(self.unsupported("read a file")) })
    }

    fn exit_status<'a>(&'a self, _id: &'a str) -> EngineFuture<'a, Result<Option<i64>, EngineError>> {
        Box::pin(async { Ok(None) })
    }

    fn ended<'a>(&'a self, _id: &'a str) -> EngineFuture<'a, Option<Ended>> {
        Box::pin(async { None })
    }

    /// The server is not cleanroom's: what cleanroom made on it goes with
    /// the run's end, the server stays.
    fn remove<'a>(&'a self, _id: &'a str) -> EngineFuture<'a, Result<(), EngineError>> {
        Box::pin(async { Ok(()) })
    }

    fn kill<'a>(&'a self, _id: &'a str) -> EngineFuture<'a, Result<(), EngineError>> {
        Box::pin(async move { Err(self.unsupported("kill")) })
    }

    /// No events: a server cleanroom did not start never "dies" to it; its
    /// health checks still say when it stops answering.
    fn events(&self, _id: &str) -> EngineStream<Result<(String, Option<String>), EngineError>> {
        Box::pin(futures_util::stream::pending())
    }

    fn stats(&self, _id: &str) -> EngineStream<Result<StatSample, EngineError>> {
        Box::pin(futures_util::stream::pending())
    }

    fn cpu_limit<'a>(&'a self, _id: &'a str) -> EngineFuture<'a, Result<i64, EngineError>> {
        Box::pin(async { Ok(0) })
    }

    fn set_cpu_limit<'a>(&'a self, _id: &'a str, _nano_cpus: i64) -> EngineFuture<'a, Result<(), EngineError>> {
        Box::pin(async move { Err(self.unsupported("set a CPU limit")) })
    }
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::Claim;

        #[test]
        fn read_back_the_claims_they_write() {
            let reaper = Claim { session: "nextest-1.a_b".into(), owner: "0123abcd".into(), process: None };
            assert_eq!(reaper.encode(), "session=nextest-1.a_b owner=0123abcd");
            assert_eq!(Claim::decode(&reaper.encode()), Some(reaper));
            let own = Claim { session: "s".into(), owner: "o".into(), process: Some("123:456".into()) };
            assert_eq!(Claim::decode(&own.encode()), Some(own));
            assert_eq!(Claim::decode("a comment of somebody else"), None);
            assert_eq!(Claim::decode("session=s"), None, "no owner: not a claim");
        }
    }
}
