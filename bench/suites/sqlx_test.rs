//! The workload with `#[sqlx::test]`, as sqlx users write it: a Postgres and a
//! Redis already running (the harness starts them with `docker run` before
//! the suite, as a team's CI `services:` would, and sets `DATABASE_URL` and
//! `REDIS_URL`); sqlx gives each test a database of its own on that server
//! (created from `DATABASE_URL`, dropped when the test passes); the tests
//! share the Redis and keep out of each other's way by naming their keys.

seq_macro::seq!(N in 000..160 {
    #[sqlx::test(migrations = false)]
    async fn t~N(pool: sqlx::PgPool) {
        let mut cache = cleanroom_bench::connect_redis(&cleanroom_bench::env_url("REDIS_URL")).await;
        cleanroom_bench::workload_sqlx(&pool, &mut cache, concat!("t", stringify!(N))).await;
    }
});
