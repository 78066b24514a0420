//! How a service answers while the run goes on, read cheaply: the monitor
//! times its health probes (latency), and reads the built-in servers' own
//! counters of work — `pg_stat_database` for Postgres, `INFO stats` for
//! Redis — when the service becomes Ready in the process that made it, on
//! each of its health ticks, and once more at exit in a process that read
//! them before. The report derives throughput from the first and last
//! readings (docs/report.md).

use std::time::Duration;

use crate::external::resp;
use crate::metrics::Counters;
use crate::service::health::Probe;
use crate::service::running::RunningService;

/// How long one reading may take before it is given up.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Which server's counters `service` has, from its health checks: the
/// built-in Postgres and Redis checks say what they are.
fn kind(service: &RunningService) -> Option<&'static str> {
    service.definition.health_checks.iter().find_map(|c| match c.probe {
        Probe::PostgresQuery => Some("transactions"),
        Probe::RedisPing { .. } => Some("commands"),
        _ => None,
    })
}

/// Reads the server's counters and records them in this process's metrics;
/// nothing for a service without counters, or a server that does not
/// answer within [`READ_TIMEOUT`].
pub(crate) async fn read_into_metrics(service: &RunningService) {
    let Some(unit) = kind(service) else { return };
    let reading = match unit {
        "transactions" => tokio::time::timeout(READ_TIMEOUT, postgres(service)).await,
        _ => tokio::time::timeout(READ_TIMEOUT, redis(service)).await,
    };
    if let Ok(Ok(mut counters)) = reading {
        crate::metrics::service(&service.name, |m| {
            counters.operations += m.performance.retired.operations;
            counters.rows += m.performance.retired.rows;
            m.performance.read(unit, counters)
        });
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The query that reads a database's counters, in [`postgres`] summed over
/// every database, and by the rooms for one database before they drop it.
pub(crate) const COUNTERS_SQL: &str = "SELECT coalesce(sum(xact_commit + xact_rollback), 0)::bigint, \
     coalesce(sum(tup_returned + tup_fetched + tup_inserted + tup_updated + tup_deleted), 0)::bigint \
     FROM pg_stat_database";

/// Commits and rollbacks, and rows, summed over every database.
async fn postgres(service: &RunningService) -> Result<Counters, String> {
    let rows = super::probe::postgres_query(service, COUNTERS_SQL, READ_TIMEOUT).await;
    let row = rows?
        .into_iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .ok_or("no row")?;
    let number = |i: usize| row.get(i).and_then(|v| v.parse::<u64>().ok()).ok_or("not a number");
    Ok(Counters { at_ms: now_ms(), operations: number(0)?, rows: number(1)? })
}

/// Commands processed, and key lookups (hits and misses), from `INFO stats`.
async fn redis(service: &RunningService) -> Result<Counters, String> {
    let port = service.ports.get(&6379).copied().ok_or("port 6379 is not published")?;
    let host = service.host();
    // A server with a password answers only after AUTH.
    let password = service.env(crate::service::definition::REDIS_PASSWORD_ENV);
    let mut stream = resp::connect(host, port, None, password).await.map_err(|e| e.to_string())?;
    let reply = resp::call(&mut stream, &["INFO", "stats"]).await.map_err(|e| e.to_string())?;
    let text = reply.text().ok_or_else(|| format!("INFO stats answered {reply:?}"))?;
    parse_info(&text).ok_or_else(|| "no counters in INFO stats".to_string())
}

/// `total_commands_processed` and `keyspace_hits + keyspace_misses`.
fn parse_info(text: &str) -> Option<Counters> {
    let field =
        |name: &str| text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse::<u64>().ok());
    Some(Counters {
        at_ms: now_ms(),
        operations: field("total_commands_processed")?,
        rows: field("keyspace_hits").unwrap_or(0) + field("keyspace_misses").unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::*;

        #[test]
        fn read_the_counters_of_redis_info() {
            let text = "# Stats\r\ntotal_connections_received:3\r\ntotal_commands_processed:412\r\n\
                        keyspace_hits:150\r\nkeyspace_misses:50\r\n";
            let got = parse_info(text).unwrap();
            assert_eq!((got.operations, got.rows), (412, 200));
            assert!(parse_info("# Stats\r\n").is_none());
        }
    }
}
