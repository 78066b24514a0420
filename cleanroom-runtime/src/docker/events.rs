//! What the engine reports about a running container: its events and its
//! stats stream.

use std::collections::HashMap;

use futures_util::StreamExt;

use super::{Docker, DockerError};
use crate::engine::StatSample;

impl Docker {
    /// Docker's events about one container (`die`, `oom`, `health_status`…)
    /// from now on, as `(action, exit code attribute)`.
    pub(crate) fn container_events(
        &self,
        id: &str,
    ) -> impl futures_util::Stream<Item = Result<(String, Option<String>), DockerError>> + Send + 'static {
        use testcontainers::bollard::query_parameters::EventsOptionsBuilder;
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("container".to_string(), vec![id.to_string()]),
        ]);
        let options = EventsOptionsBuilder::new().filters(&filters).build();
        self.client.events(Some(options)).map(|event| {
            event.map_err(|e| DockerError::from_bollard("events", e)).map(|e| {
                let exit =
                    e.actor.as_ref().and_then(|a| a.attributes.as_ref()).and_then(|a| a.get("exitCode").cloned());
                (e.action.unwrap_or_default(), exit)
            })
        })
    }

    /// Docker's stats stream for one container: one sample a second, over
    /// one connection.
    pub(crate) fn stats(
        &self,
        id: &str,
    ) -> impl futures_util::Stream<Item = Result<StatSample, DockerError>> + Send + 'static {
        use testcontainers::bollard::query_parameters::StatsOptionsBuilder;
        let options = StatsOptionsBuilder::new().stream(true).one_shot(false).build();
        self.client.stats(id, Some(options)).map(|s| {
            s.map_err(|e| DockerError::from_bollard("stats", e)).map(|s| {
                let cpu = s.cpu_stats.unwrap_or_default();
                let mem = s.memory_stats.unwrap_or_default();
                // Memory in use as the docker CLI shows it: without the page
                // cache the kernel can drop.
                let cache = mem
                    .stats
                    .as_ref()
                    .and_then(|m| m.get("inactive_file").or_else(|| m.get("total_inactive_file")).copied());
                let (rx, tx) = s
                    .networks
                    .unwrap_or_default()
                    .values()
                    .fold((0, 0), |(rx, tx), n| (rx + n.rx_bytes.unwrap_or(0), tx + n.tx_bytes.unwrap_or(0)));
                // Reads and writes, in bytes and in operations (cgroup v1
                // reports both; v2 leaves the operations out).
                let by_op = |entries: Option<Vec<testcontainers::bollard::models::ContainerBlkioStatEntry>>| {
                    entries.unwrap_or_default().iter().fold((0, 0), |(r, w), e| {
                        match e.op.as_deref().map(str::to_ascii_lowercase).as_deref() {
                            Some("read") => (r + e.value.unwrap_or(0), w),
                            Some("write") => (r, w + e.value.unwrap_or(0)),
                            _ => (r, w),
                        }
                    })
                };
                let blkio = s.blkio_stats.unwrap_or_default();
                let (read, write) = by_op(blkio.io_service_bytes_recursive);
                let block_ops_counted = blkio.io_serviced_recursive.is_some();
                let ops = by_op(blkio.io_serviced_recursive);
                StatSample {
                    cpu_total: cpu.cpu_usage.and_then(|u| u.total_usage).unwrap_or(0),
                    system_total: cpu.system_cpu_usage.unwrap_or(0),
                    online_cpus: cpu.online_cpus.unwrap_or(1).max(1),
                    memory: mem.usage.unwrap_or(0).saturating_sub(cache.unwrap_or(0)),
                    memory_limit: mem.limit.unwrap_or(0),
                    network: (rx, tx),
                    block: (read, write),
                    block_ops: ops,
                    block_ops_counted,
                }
            })
        })
    }
}
