//! The engine of a service this process attached to from its record: Docker,
//! connected on first use. A test process that only runs its test against a
//! service another process made never connects at all.

use futures_util::StreamExt;

use super::registry::global;
use crate::docker::Docker;
use crate::engine::{Ended, Engine, EngineError, EngineFuture, EngineStream, ExecOutput, StatSample};

/// Docker, reached through the registry's one connection when first needed.
#[derive(Debug)]
pub(crate) struct LazyDocker;

async fn docker() -> Result<Docker, EngineError> {
    global().docker().await.map_err(|e| EngineError::new("connect", None, e.to_string()))
}

/// A stream that connects first, then yields what `open` makes of the engine.
fn lazily<T: Send + 'static>(
    open: impl FnOnce(Docker) -> EngineStream<Result<T, EngineError>> + Send + 'static,
) -> EngineStream<Result<T, EngineError>> {
    let stream = async move {
        match docker().await {
            Ok(docker) => open(docker),
            Err(e) => Box::pin(futures_util::stream::once(async move { Err(e) })) as EngineStream<_>,
        }
    };
    Box::pin(futures_util::stream::once(stream).flatten())
}

impl Engine for LazyDocker {
    fn kind(&self) -> crate::engine::EngineKind {
        crate::engine::EngineKind::Docker
    }

    fn exec<'a>(&'a self, id: &'a str, cmd: &'a [String]) -> EngineFuture<'a, Result<ExecOutput, EngineError>> {
        Box::pin(async move { docker().await?.exec(id, cmd).await })
    }

    fn logs<'a>(&'a self, id: &'a str, tail: Option<usize>) -> EngineFuture<'a, Result<String, EngineError>> {
        Box::pin(async move { docker().await?.logs(id, tail).await })
    }

    fn path_exists<'a>(&'a self, id: &'a str, path: &'a str) -> EngineFuture<'a, Result<bool, EngineError>> {
        Box::pin(async move { docker().await?.path_exists(id, path).await })
    }

    fn exit_status<'a>(&'a self, id: &'a str) -> EngineFuture<'a, Result<Option<i64>, EngineError>> {
        Box::pin(async move { docker().await?.exit_status(id).await })
    }

    fn ended<'a>(&'a self, id: &'a str) -> EngineFuture<'a, Option<Ended>> {
        Box::pin(async move { docker().await.ok()?.ended(id).await })
    }

    fn remove<'a>(&'a self, id: &'a str) -> EngineFuture<'a, Result<(), EngineError>> {
        Box::pin(async move { docker().await?.remove(id).await })
    }

    fn kill<'a>(&'a self, id: &'a str) -> EngineFuture<'a, Result<(), EngineError>> {
        Box::pin(async move { docker().await?.kill(id).await })
    }

    fn events(&self, id: &str) -> EngineStream<Result<(String, Option<String>), EngineError>> {
        let id = id.to_string();
        lazily(move |docker| Box::pin(docker.container_events(&id)))
    }

    fn stats(&self, id: &str) -> EngineStream<Result<StatSample, EngineError>> {
        let id = id.to_string();
        lazily(move |docker| Box::pin(docker.stats(&id)))
    }

    fn cpu_limit<'a>(&'a self, id: &'a str) -> EngineFuture<'a, Result<i64, EngineError>> {
        Box::pin(async move { docker().await?.nano_cpus(id).await })
    }

    fn set_cpu_limit<'a>(&'a self, id: &'a str, nano_cpus: i64) -> EngineFuture<'a, Result<(), EngineError>> {
        Box::pin(async move { docker().await?.set_nano_cpus(id, nano_cpus).await })
    }
}
