//! The local engine: services as processes of this machine instead of
//! containers, for machines without a container engine (issue #18, "Local
//! binaries"; docs/engines.md). Postgres is `initdb` + `postgres` on a free
//! loopback port with its data in memory, Redis is `redis-server`, and a
//! service of the user's runs the local command its definition declares.
//!
//! Like `docker/`, this layer knows processes, directories and programs,
//! not definitions: `run/local.rs` decides what to start and when.

pub(crate) mod args;
pub(crate) mod binaries;
pub(crate) mod dirs;
pub(crate) mod process;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub(crate) use process::Server;

use crate::engine::{Ended, Engine, EngineError, EngineFuture, EngineStream, ExecOutput, StatSample};

/// How long a server may take to stop on its stop signal before its
/// process group is killed.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(3);

/// One local server as the engine of its service.
#[derive(Debug)]
pub(crate) struct LocalEngine {
    pub(crate) server: Server,
    /// Its exit code, once this process (the one that started it, and so
    /// its parent) collected it.
    exited: Arc<OnceLock<i64>>,
}

impl LocalEngine {
    /// The engine of a server this process started: `child` is collected
    /// when it ends, and its exit code kept.
    pub(crate) fn started(server: Server, child: std::process::Child) -> LocalEngine {
        let exited = Arc::new(OnceLock::new());
        let seen = exited.clone();
        let mut child = child;
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                #[cfg(unix)]
                let code = status
                    .code()
                    .or(std::os::unix::process::ExitStatusExt::signal(&status).map(|s| 128 + s))
                    .unwrap_or(-1);
                #[cfg(windows)]
                let code = status.code().unwrap_or(-1);
                let _ = seen.set(i64::from(code));
            }
        });
        LocalEngine { server, exited }
    }

    /// The engine of a server another process of the run started.
    pub(crate) fn attached(server: Server) -> LocalEngine {
        LocalEngine { server, exited: Arc::new(OnceLock::new()) }
    }

    fn exit_code(&self) -> Option<i64> {
        if let Some(code) = self.exited.get() {
            return Some(*code);
        }
        // Not this process's child: gone is all that can be told.
        (!self.server.is_running()).then_some(-1)
    }
}

fn unsupported(op: &'static str, what: &str) -> EngineError {
    EngineError::new(op, Some(501), format!("the local engine (CLEANROOM_ENGINE=local) {what}; run it on Docker"))
}

impl Engine for LocalEngine {
    fn kind(&self) -> crate::engine::EngineKind {
        crate::engine::EngineKind::Local
    }

    /// Runs `cmd` on this machine, in the server's directory: there is no
    /// container to run it in.
    fn exec<'a>(&'a self, _id: &'a str, cmd: &'a [String]) -> EngineFuture<'a, Result<ExecOutput, EngineError>> {
        let cmd = cmd.to_vec();
        let dir = self.server.dir.clone();
        let env = self.server.env.clone();
        Box::pin(async move {
            let Some((program, args)) = cmd.split_first() else {
                return Err(EngineError::new("exec", Some(400), "an empty command"));
            };
            let (program, args) = (program.clone(), args.to_vec());
            let out = tokio::task::spawn_blocking(move || {
                std::process::Command::new(&program).args(&args).current_dir(&dir).envs(&env).output()
            })
            .await
            .map_err(|e| EngineError::new("exec", None, e.to_string()))?
            .map_err(|e| {
                EngineError::new("exec", Some(404), format!("could not run {:?} on this machine: {e}", cmd[0]))
            })?;
            Ok(ExecOutput {
                exit_code: i64::from(out.status.code().unwrap_or(-1)),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            })
        })
    }

    fn logs<'a>(&'a self, _id: &'a str, tail: Option<usize>) -> EngineFuture<'a, Result<String, EngineError>> {
        Box::pin(async move {
            let log = self.server.log();
            Ok(match tail {
                Some(n) => process::tail(&log, n),
                None => std::fs::read_to_string(&log).unwrap_or_default(),
            })
        })
    }

    /// A relative path is looked for in the server's directory, an absolute
    /// one on this machine.
    fn path_exists<'a>(&'a self, _id: &'a str, path: &'a str) -> EngineFuture<'a, Result<bool, EngineError>> {
        Box::pin(async move { Ok(self.server.dir.join(path).exists()) })
    }

    fn exit_status<'a>(&'a self, _id: &'a str) -> EngineFuture<'a, Result<Option<i64>, EngineError>> {
        Box::pin(async move { Ok(self.exit_code()) })
    }

    fn ended<'a>(&'a self, _id: &'a str) -> EngineFuture<'a, Option<Ended>> {
        Box::pin(async move { self.exit_code().map(|code| Ended { code, oom_killed: false }) })
    }

    fn remove<'a>(&'a self, _id: &'a str) -> EngineFuture<'a, Result<(), EngineError>> {
        let server = self.server.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || process::stop(&server, STOP_GRACE))
                .await
                .map_err(|e| EngineError::new("remove", None, e.to_string()))
        })
    }

    fn kill<'a>(&'a self, _id: &'a str) -> EngineFuture<'a, Result<(), EngineError>> {
        Box::pin(async move {
            process::kill(&self.server);
            Ok(())
        })
    }

    /// One event, `die` with the exit code, once the server is gone (its
    /// pid is watched, 10 times a second); Docker's other events have no
    /// counterpart here.
    fn events(&self, _id: &str) -> EngineStream<Result<(String, Option<String>), EngineError>> {
        let watched = LocalEngine { server: self.server.clone(), exited: self.exited.clone() };
        Box::pin(futures_util::stream::once(async move {
            loop {
                if let Some(code) = watched.exit_code() {
                    return Ok(("die".to_string(), Some(code.to_string())));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }))
    }

    /// No resource samples yet.
    fn stats(&self, _id: &str) -> EngineStream<Result<StatSample, EngineError>> {
        Box::pin(futures_util::stream::empty())
    }

    fn cpu_limit<'a>(&'a self, _id: &'a str) -> EngineFuture<'a, Result<i64, EngineError>> {
        Box::pin(async move { Err(unsupported("read the CPU limit", "sets no CPU limits")) })
    }

    fn set_cpu_limit<'a>(&'a self, _id: &'a str, _nano_cpus: i64) -> EngineFuture<'a, Result<(), EngineError>> {
        Box::pin(async move { Err(unsupported("update the CPU limit", "sets no CPU limits")) })
    }
}
