//! The workload with cleanroom: services started once for the run, a fresh
//! database and Redis DB per test, nothing left afterwards.

seq_macro::seq!(N in 000..160 {
    #[cleanroom::test(postgres, redis)]
    async fn t~N(postgres: cleanroom::Postgres, redis: cleanroom::Redis) {
        let pg = cleanroom_bench::connect_postgres(&postgres.url()).await;
        let mut cache = cleanroom_bench::connect_redis(&redis.url()).await;
        cleanroom_bench::workload(&pg, &mut cache, concat!("t", stringify!(N))).await;
    }
});
