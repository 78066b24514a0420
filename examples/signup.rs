//! A small application's integration tests, written with cleanroom the way a
//! user would: real Postgres through tokio-postgres, real Redis through the
//! redis crate, fixtures injected by name.

use cleanroom::{Postgres, Redis};
use redis::AsyncCommands;

/// A connected Postgres client with the application's schema.
#[cleanroom::fixture]
async fn db(postgres: Postgres) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    // Tests run in parallel against one server: serialise the schema setup.
    client
        .batch_execute(
            "BEGIN;
             SELECT pg_advisory_xact_lock(1);
             CREATE TABLE IF NOT EXISTS users (id bigserial PRIMARY KEY, email text UNIQUE NOT NULL, name text NOT NULL);
             COMMIT;",
        )
        .await
        .unwrap();
    client
}

/// A Redis connection.
#[cleanroom::fixture]
async fn cache(redis: Redis) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap()
}

/// What the application does on sign-up: store the user, cache the name.
async fn sign_up(
    db: &tokio_postgres::Client,
    cache: &mut redis::aio::MultiplexedConnection,
    email: &str,
    name: &str,
) -> i64 {
    let id: i64 = db
        .query_one("INSERT INTO users (email, name) VALUES ($1, $2) RETURNING id", &[&email, &name])
        .await
        .unwrap()
        .get(0);
    let () = cache.set(format!("user:{id}:name"), name).await.unwrap();
    id
}

#[cleanroom::test(postgres, redis)]
async fn signs_up_and_caches_the_name(db: tokio_postgres::Client, mut cache: redis::aio::MultiplexedConnection) {
    let id = sign_up(&db, &mut cache, "ada@example.com", "Ada").await;
    let cached: String = cache.get(format!("user:{id}:name")).await.unwrap();
    assert_eq!(cached, "Ada");
}

#[cleanroom::test(postgres, redis)]
async fn rejects_a_second_sign_up_with_the_same_email(db: tokio_postgres::Client) {
    db.execute("INSERT INTO users (email, name) VALUES ('grace@example.com', 'Grace')", &[]).await.unwrap();
    let again = db.execute("INSERT INTO users (email, name) VALUES ('grace@example.com', 'Grace')", &[]).await;
    assert!(again.is_err(), "the unique constraint holds");
}

#[cleanroom::test(postgres)]
fn sync_tests_get_the_same_connection_details(postgres: Postgres) {
    assert_eq!(postgres.host(), "127.0.0.1");
    assert!(postgres.url().starts_with("postgres://"));
}
