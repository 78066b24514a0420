//! The client integrations, live: each accessor reaches the test's own room
//! through its client, and a build without the feature has none of the
//! client's code.

use std::process::Command;

use cleanroom::{Postgres, Redis};

async fn current_database_sqlx(conn: impl sqlx::PgExecutor<'_>) -> String {
    sqlx::query_scalar("SELECT current_database()::text").fetch_one(conn).await.unwrap()
}

#[cleanroom::test(postgres)]
async fn sqlx_pool_connects_to_the_tests_own_database(postgres: Postgres) {
    let pool: sqlx::PgPool = postgres.pool().await;
    assert_eq!(current_database_sqlx(&pool).await, postgres.database());
    assert!(postgres.database().starts_with("cleanroom_t_"), "{}", postgres.database());
}

#[cleanroom::test(postgres)]
async fn sqlx_connect_options_name_the_tests_own_database(postgres: Postgres) {
    use sqlx::ConnectOptions;
    let options: sqlx::postgres::PgConnectOptions = postgres.connect_options();
    assert_eq!(options.get_database(), Some(postgres.database()));
    let mut conn = options.connect().await.unwrap();
    assert_eq!(current_database_sqlx(&mut conn).await, postgres.database());
}

#[cleanroom::test(postgres, flavor = "multi_thread", worker_threads = 2)]
async fn sqlx_pool_from_current_in_a_spawned_task(postgres: Postgres) {
    let seen = tokio::spawn(async {
        let pool = cleanroom::current().postgres().pool().await;
        current_database_sqlx(&pool).await
    })
    .await
    .unwrap();
    assert_eq!(seen, postgres.database());
}

#[cleanroom::test(postgres)]
async fn tokio_postgres_client_runs_its_connection_on_the_tests_runtime(postgres: Postgres) {
    let client: tokio_postgres::Client = postgres.client().await;
    let database: String = client.query_one("SELECT current_database()", &[]).await.unwrap().get(0);
    assert_eq!(database, postgres.database());
    // The connection task goes on serving queries after the first.
    let n: i32 = client.query_one("SELECT 41 + 1", &[]).await.unwrap().get(0);
    assert_eq!(n, 42);
}

#[cleanroom::test(postgres)]
async fn deadpool_pool_hands_out_clients_on_the_tests_own_database(postgres: Postgres) {
    let pool: deadpool_postgres::Pool = postgres.deadpool();
    let client = pool.get().await.unwrap();
    let database: String = client.query_one("SELECT current_database()", &[]).await.unwrap().get(0);
    assert_eq!(database, postgres.database());
}

/// The logical database a redis connection is on, as the server says.
async fn server_side_db(conn: &mut impl redis::aio::ConnectionLike) -> u32 {
    let info: String = redis::cmd("CLIENT").arg("INFO").query_async(conn).await.unwrap();
    let db = info.split_whitespace().find_map(|field| field.strip_prefix("db=")).expect("CLIENT INFO has db=");
    db.parse().unwrap()
}

#[cleanroom::test(redis)]
async fn redis_client_opens_the_tests_own_logical_database(redis: Redis) {
    let client: redis::Client = redis.client();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    assert!(redis.db() >= 1, "not the shared database 0");
    assert_eq!(server_side_db(&mut conn).await, redis.db());
}

#[cleanroom::test(redis)]
async fn redis_connection_manager_is_on_the_tests_own_logical_database(redis: Redis) {
    use redis::AsyncCommands;
    let mut manager: redis::aio::ConnectionManager = redis.connection_manager().await;
    assert_eq!(server_side_db(&mut manager).await, redis.db());
    let () = manager.set("greeting", "hello").await.unwrap();
    let back: String = manager.get("greeting").await.unwrap();
    assert_eq!(back, "hello");
}

/// The crates each feature brings that a default build of the facade must
/// not have (tokio-postgres is not among them: cleanroom itself uses it to
/// make rooms, so its feature adds only the methods).
const CLIENT_CRATES: [&str; 4] = ["sqlx", "sqlx-postgres", "deadpool-postgres", "redis"];

/// The packages in `cleanroom`'s normal dependency tree with `features`.
fn facade_tree(features: &[&str]) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let mut cmd = Command::new(cargo);
    cmd.args([
        "tree",
        "--offline",
        "--manifest-path",
        manifest,
        "-p",
        "cleanroom-test",
        "-e",
        "normal",
        "--prefix",
        "none",
    ]);
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    let out = cmd.output().expect("cargo tree runs");
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.split_whitespace().next()).map(String::from).collect()
}

#[test]
fn a_default_build_of_the_facade_has_no_client_crate() {
    let tree = facade_tree(&[]);
    assert!(tree.iter().any(|p| p == "cleanroom-test-runtime"), "the tree was read: {tree:?}");
    for krate in CLIENT_CRATES {
        assert!(!tree.iter().any(|p| p == krate), "`{krate}` is in a default build of cleanroom: {tree:?}");
    }
}

#[test]
fn each_feature_brings_its_own_client_only() {
    for (feature, brings) in [("sqlx", "sqlx"), ("deadpool-postgres", "deadpool-postgres"), ("redis", "redis")] {
        let tree = facade_tree(&[feature]);
        for krate in CLIENT_CRATES {
            let present = tree.iter().any(|p| p == krate);
            let expected = krate == brings || (feature == "sqlx" && krate == "sqlx-postgres");
            assert_eq!(present, expected, "feature `{feature}`: `{krate}` present = {present}");
        }
    }
}
