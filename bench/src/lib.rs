//! The benchmark workload, shared by the five suites so that they differ only
//! in how they get their containers.
//!
//! Per test: connect to Postgres, create a table, 20 inserts, a count; connect
//! to Redis, 20 SETs and a GET. The harness that runs the suites is
//! `src/main.rs` (`cargo run -p cleanroom-bench --release`).

use redis::AsyncCommands;

#[cfg(feature = "suites")]
pub mod baseline;

/// The images all five suites use: cleanroom's configuration variables
/// (`CLEANROOM_POSTGRES_IMAGE`, `CLEANROOM_REDIS_IMAGE`) or its defaults, so
/// that the baselines never run a different image than cleanroom.
pub fn image(service: &str) -> (String, String) {
    let default = match service {
        "postgres" => "postgres:17-alpine",
        "redis" => "redis:7-alpine",
        other => panic!("no image for {other}"),
    };
    let var = format!("CLEANROOM_{}_IMAGE", service.to_uppercase());
    let image = std::env::var(var).ok().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| default.to_string());
    split_image(&image)
}

/// `name:tag` into its parts (a `:` inside a registry's host:port is not a tag).
pub fn split_image(image: &str) -> (String, String) {
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name.to_string(), tag.to_string()),
        _ => (image.to_string(), "latest".to_string()),
    }
}

/// The label the baselines put on their containers so that the harness can
/// count them from Docker's events and remove what they leak:
/// `cleanroom.bench=<cell>` (`CLEANROOM_BENCH_CELL`, set by the harness).
pub const BENCH_LABEL: &str = "cleanroom.bench";

/// The value of [`BENCH_LABEL`] for this run.
pub fn bench_cell() -> String {
    std::env::var("CLEANROOM_BENCH_CELL").unwrap_or_else(|_| "manual".to_string())
}

/// A Postgres client on `url`, its connection driven on the current runtime.
pub async fn connect_postgres(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    tokio::spawn(connection);
    client
}

/// A Redis connection on `url`.
pub async fn connect_redis(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap_or_else(|e| panic!("bad Redis URL {url}: {e}"))
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"))
}

/// The work one test does. `test` names its table and keys, so tests that
/// share a server (the singleton baseline) do not collide.
pub async fn workload(pg: &tokio_postgres::Client, redis: &mut redis::aio::MultiplexedConnection, test: &str) {
    let table = format!("items_{test}");
    pg.batch_execute(&format!("CREATE TABLE {table} (id serial PRIMARY KEY, name text NOT NULL)"))
        .await
        .expect("create table");
    let insert = pg.prepare(&format!("INSERT INTO {table} (name) VALUES ($1)")).await.expect("prepare");
    for i in 0..20 {
        pg.execute(&insert, &[&format!("item-{i}")]).await.expect("insert");
    }
    let count: i64 = pg.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await.expect("count").get(0);
    assert_eq!(count, 20);
    redis_workload(redis, test).await;
}

/// The same work with sqlx, through the `PgPool` `#[sqlx::test]` gives the
/// test (its own database): the statements are the same, and sqlx prepares
/// the insert once per connection and caches it, as `workload` prepares it
/// once. Redis as in `workload`.
#[cfg(feature = "suites")]
pub async fn workload_sqlx(pg: &sqlx::PgPool, redis: &mut redis::aio::MultiplexedConnection, test: &str) {
    use sqlx::AssertSqlSafe;
    let table = format!("items_{test}");
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE TABLE {table} (id serial PRIMARY KEY, name text NOT NULL)")))
        .execute(pg)
        .await
        .expect("create table");
    let insert = format!("INSERT INTO {table} (name) VALUES ($1)");
    for i in 0..20 {
        sqlx::query(AssertSqlSafe(insert.as_str())).bind(format!("item-{i}")).execute(pg).await.expect("insert");
    }
    let count: i64 =
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {table}"))).fetch_one(pg).await.expect("count");
    assert_eq!(count, 20);
    redis_workload(redis, test).await;
}

/// The Redis half of the work: 20 SETs and a GET of keys named by `test`.
async fn redis_workload(redis: &mut redis::aio::MultiplexedConnection, test: &str) {
    for i in 0..20 {
        let () = redis.set(format!("{test}:{i}"), i).await.expect("SET");
    }
    let last: i64 = redis.get(format!("{test}:19")).await.expect("GET");
    assert_eq!(last, 19);
}

/// A required variable of the environment the harness sets for a suite
/// (`DATABASE_URL`, `REDIS_URL` for `#[sqlx::test]`), or a panic that says
/// how to run the suite.
pub fn env_url(var: &str) -> String {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty()).unwrap_or_else(|| {
        panic!(
            "{var} is not set: this suite runs against servers the harness starts; run it with \
             `cargo run -p cleanroom-bench --release -- --approaches sqlx-test` (or `floor`), or set {var} to a running server's URL"
        )
    })
}
