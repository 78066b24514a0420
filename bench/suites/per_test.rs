//! The workload with plain testcontainers-rs, a container pair per test: the
//! style its maintainers recommend (module images, the async runner,
//! containers removed when the test's handles drop). The two containers start
//! concurrently, the baseline's best case.

use cleanroom_bench::baseline::{Postgres, Redis};
use testcontainers::runners::AsyncRunner;
use testcontainers::ImageExt;

async fn each_test(test: &str) {
    let cell = cleanroom_bench::bench_cell();
    let (pg, redis) = tokio::join!(
        Postgres::default().with_label(cleanroom_bench::BENCH_LABEL, &cell).start(),
        Redis::default().with_label(cleanroom_bench::BENCH_LABEL, &cell).start(),
    );
    let (pg, redis) = (pg.expect("start postgres"), redis.expect("start redis"));
    let pg_url = Postgres::url(pg.get_host().await.unwrap(), pg.get_host_port_ipv4(5432).await.unwrap());
    let redis_url = Redis::url(redis.get_host().await.unwrap(), redis.get_host_port_ipv4(6379).await.unwrap());
    let client = cleanroom_bench::connect_postgres(&pg_url).await;
    let mut cache = cleanroom_bench::connect_redis(&redis_url).await;
    cleanroom_bench::workload(&client, &mut cache, test).await;
}

seq_macro::seq!(N in 000..160 {
    #[tokio::test]
    async fn t~N() {
        each_test(concat!("t", stringify!(N))).await;
    }
});
