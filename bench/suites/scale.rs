//! The cleanroom workload at scale, for the harness's `--scale`: the same
//! test as `suites/cleanroom.rs`, a thousand times (`s000` … `s999`; the
//! filter `s3` selects `s300` … `s399`). Not one of the five approaches: it
//! answers whether wall time grows linearly with the suite, containers
//! started stay two, and the Postgres container's memory stays bounded.

seq_macro::seq!(N in 000..1000 {
    #[cleanroom::test(postgres, redis)]
    async fn s~N(postgres: cleanroom::Postgres, redis: cleanroom::Redis) {
        let pg = cleanroom_bench::connect_postgres(&postgres.url()).await;
        let mut cache = cleanroom_bench::connect_redis(&redis.url()).await;
        cleanroom_bench::workload(&pg, &mut cache, concat!("s", stringify!(N))).await;
    }
});
