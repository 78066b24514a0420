//! The floor: the workload in plain `#[tokio::test]`s against a Postgres and
//! a Redis already running (the harness starts them as for `#[sqlx::test]`,
//! but with Postgres asking no password, and sets `DATABASE_URL` and
//! `REDIS_URL`). No framework and no isolation:
//! every test works in the one shared database and keeps out of the others'
//! way only by naming its table and keys. Nothing a framework that isolates
//! tests does can be faster; the suite alone is what the runner and the
//! workload cost by themselves (docs/benchmarks.md compares with it).

seq_macro::seq!(N in 000..160 {
    #[tokio::test]
    async fn t~N() {
        let pg = cleanroom_bench::connect_postgres(&cleanroom_bench::env_url("DATABASE_URL")).await;
        let mut cache = cleanroom_bench::connect_redis(&cleanroom_bench::env_url("REDIS_URL")).await;
        cleanroom_bench::workload(&pg, &mut cache, concat!("t", stringify!(N))).await;
    }
});
