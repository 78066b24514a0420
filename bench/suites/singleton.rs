//! The workload with plain testcontainers-rs and a hand-rolled `static`
//! singleton through its blocking API: what users write to go fast. One
//! container pair per test process, shared by its tests (who keep out of each
//! other's way by naming), never stopped: statics are not dropped.

use std::sync::OnceLock;

use cleanroom_bench::baseline::{Postgres, Redis};
use testcontainers::runners::SyncRunner;
use testcontainers::{Container, ImageExt};

static POSTGRES: OnceLock<Container<Postgres>> = OnceLock::new();
static REDIS: OnceLock<Container<Redis>> = OnceLock::new();

fn postgres_url() -> String {
    let pg = POSTGRES.get_or_init(|| {
        Postgres::default()
            .with_label(cleanroom_bench::BENCH_LABEL, cleanroom_bench::bench_cell())
            .start()
            .expect("start postgres")
    });
    Postgres::url(pg.get_host().unwrap(), pg.get_host_port_ipv4(5432).unwrap())
}

fn redis_url() -> String {
    let redis = REDIS.get_or_init(|| {
        Redis::default()
            .with_label(cleanroom_bench::BENCH_LABEL, cleanroom_bench::bench_cell())
            .start()
            .expect("start redis")
    });
    Redis::url(redis.get_host().unwrap(), redis.get_host_port_ipv4(6379).unwrap())
}

fn each_test(test: &str) {
    let (pg_url, redis_url) = (postgres_url(), redis_url());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = cleanroom_bench::connect_postgres(&pg_url).await;
        let mut cache = cleanroom_bench::connect_redis(&redis_url).await;
        cleanroom_bench::workload(&client, &mut cache, test).await;
    });
}

seq_macro::seq!(N in 000..160 {
    #[test]
    fn t~N() {
        each_test(concat!("t", stringify!(N)));
    }
});
