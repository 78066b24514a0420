//! The room-acquisition micro-benchmark: what a clean room (a Postgres
//! database, a Redis logical database) costs a test, with the Postgres pool
//! on and off. docs/isolation.md quotes its numbers.
//!
//! ```text
//! cargo test -p cleanroom-bench --features suites --test rooms -- --ignored --exact bench_room_acquisition --nocapture
//! ```
//!
//! `bench_room_acquisition` runs the `#[ignore]`d workload in `bench_suite` in
//! child processes of this same binary, each in a session of its own, and
//! reads the per-test acquisition times from the run's JSON report.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cleanroom::{Postgres, Redis};

#[cleanroom::fixture]
async fn db(postgres: Postgres) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

#[cleanroom::fixture]
async fn cache(redis: Redis) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap()
}

mod bench_suite {
    use super::*;
    use redis::AsyncCommands;

    macro_rules! workload_tests {
        ($($name:ident)*) => {$(
            /// The benchmark workload: a table, 20 inserts and a count; 20 SETs and a GET.
            #[cleanroom::test(postgres, redis)]
            #[ignore = "run by bench_room_acquisition"]
            async fn $name(db: tokio_postgres::Client, mut cache: redis::aio::MultiplexedConnection) {
                db.batch_execute("CREATE TABLE items (id int PRIMARY KEY, name text)").await.unwrap();
                for i in 0..20 {
                    db.execute("INSERT INTO items VALUES ($1, 'x')", &[&i]).await.unwrap();
                }
                let n: i64 = db.query_one("SELECT count(*) FROM items", &[]).await.unwrap().get(0);
                assert_eq!(n, 20);
                for i in 0..20 {
                    let () = cache.set(format!("k{i}"), i).await.unwrap();
                }
                let v: i32 = cache.get("k19").await.unwrap();
                assert_eq!(v, 19);
            }
        )*};
    }
    workload_tests!(w01 w02 w03 w04 w05 w06 w07 w08 w09 w10 w11 w12 w13 w14 w15 w16 w17 w18 w19 w20
                    w21 w22 w23 w24 w25 w26 w27 w28 w29 w30 w31 w32 w33 w34 w35 w36 w37 w38 w39 w40);
}

// ----------------------------------------------------------------------------
// Running the workload in a child process and asking Docker what is left
// ----------------------------------------------------------------------------

/// A session id no other run uses, so that Docker can be asked about this
/// run's containers alone.
fn fresh_session() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("t-bench-{}-{}-{nanos:x}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

/// A run of this binary as a child process: how it ended, and how long it took.
struct ChildRun {
    output: Output,
    elapsed: Duration,
}

impl ChildRun {
    fn passed(&self) -> bool {
        self.output.status.success()
    }

    fn text(&self) -> String {
        format!("{}{}", String::from_utf8_lossy(&self.output.stdout), String::from_utf8_lossy(&self.output.stderr))
    }
}

/// Runs this binary with `args` in `session` and waits for it.
fn run_child(session: &str, args: &[&str], env: &[(&str, &str)]) -> ChildRun {
    let mut cmd = Command::new(std::env::current_exe().expect("the test binary knows its path"));
    cmd.args(args).env("CLEANROOM_SESSION", session).env("RUST_BACKTRACE", "0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let output = cmd.output().expect("the test binary runs as a child");
    ChildRun { output, elapsed: start.elapsed() }
}

/// What Docker still has of `session`: containers, networks and volumes.
fn left_of(session: &str) -> Vec<String> {
    let filter = format!("label=cleanroom.session={session}");
    let mut left = Vec::new();
    for what in [&["ps", "-aq"][..], &["network", "ls", "-q"], &["volume", "ls", "-q"]] {
        let out = Command::new("docker").args(what).args(["--filter", &filter]).output().expect("the docker CLI runs");
        assert!(out.status.success(), "docker {what:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        left.extend(String::from_utf8_lossy(&out.stdout).lines().map(str::to_string));
    }
    left
}

/// Asserts that nothing of `session` is left in Docker once its reaper had
/// time to remove the run (its grace period, plus removal).
fn assert_nothing_left(session: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline && !left_of(session).is_empty() {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left = left_of(session);
    assert!(left.is_empty(), "containers, networks or volumes of session {session} outlived their run: {left:?}");
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Runs the 40-test workload with the Postgres pool on and off, three times
/// each (interleaved), and prints p50/p95 per service of the room alone
/// (once the service is Ready) and of the whole wait from asking for a handle
/// to having it (the first tests also wait for the server to start), as
/// measured inside the test process.
///
/// `cargo test -p cleanroom-bench --features suites --test rooms -- --ignored --exact bench_room_acquisition --nocapture`
#[test]
#[ignore = "benchmark; run it explicitly"]
fn bench_room_acquisition() {
    let mut samples: std::collections::BTreeMap<(String, &str), Vec<f64>> = Default::default();
    let mut rooms: std::collections::BTreeMap<(String, &str), Vec<f64>> = Default::default();
    let mut walls: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    for _rep in 0..3 {
        for (label, pool) in [("pool on (4)", "4"), ("pool off", "0")] {
            let session = fresh_session();
            let report = std::env::temp_dir().join(format!("{session}.jsonl"));
            let run = run_child(
                &session,
                &["--ignored", "bench_suite::", "--test-threads", "2"],
                &[("CLEANROOM_POOL", pool), ("CLEANROOM_REPORT_JSON", report.to_str().unwrap())],
            );
            assert!(run.passed(), "{}", run.text());
            walls.entry(label).or_default().push(run.elapsed.as_secs_f64());
            let text = std::fs::read_to_string(&report).unwrap();
            std::fs::remove_file(&report).unwrap();
            for line in text.lines() {
                let doc: serde_json::Value = serde_json::from_str(line).unwrap();
                for test in doc["tests"].as_array().unwrap() {
                    for a in test["acquire"].as_array().unwrap() {
                        let service = a["service"].as_str().unwrap().to_string();
                        let ms = a["micros"].as_f64().unwrap() / 1000.0;
                        let room_ms = a["room_micros"].as_f64().unwrap() / 1000.0;
                        samples.entry((service.clone(), label)).or_default().push(ms);
                        rooms.entry((service, label)).or_default().push(room_ms);
                    }
                }
            }
            assert_nothing_left(&session);
        }
    }
    println!(
        "\n| service | pool | tests | room p50 ms | room p95 ms | handle p50 ms | handle p95 ms | handle max ms |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for ((service, label), mut v) in samples {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let mut r = rooms.remove(&(service.clone(), label)).unwrap();
        r.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "| {service} | {label} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            v.len(),
            percentile(&r, 0.5),
            percentile(&r, 0.95),
            percentile(&v, 0.5),
            percentile(&v, 0.95),
            v.last().unwrap()
        );
    }
    for (label, w) in walls {
        println!("wall time, 40 tests, {label}: {:?} s", w.iter().map(|s| format!("{s:.1}")).collect::<Vec<_>>());
    }
}
