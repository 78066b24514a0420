//! The run's report as users get it: several real test processes of one run
//! write one JSON document (`CLEANROOM_REPORT_JSON`), which must match the
//! published schema (docs/report.schema.json) and hold every process's tests
//! and each service once; and what each process prints on stderr at exit.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};

use cleanroom_tests::{assert_nothing_left, child_command, fresh_session, EventWatch};
use serde_json::Value;

mod child {
    cleanroom_tests::postgres_and_redis_tests!("run by the report tests": first second third fourth);

    /// Waits until `check` holds for the metrics of `service` in this process.
    fn wait_for(service: &str, what: &str, check: impl Fn(&cleanroom::Performance) -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !cleanroom::metrics_of(service).is_some_and(|m| check(&m.performance)) {
            assert!(std::time::Instant::now() < deadline, "{service}: {what} never came");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// A known workload: 200 queries and 200 Redis commands, once the first
    /// reading of each server's counters is in (so all of it counts), then
    /// until the monitor has timed a probe of each.
    #[cleanroom::test(postgres, redis)]
    #[ignore = "run by the report tests"]
    async fn runs_a_known_workload(postgres: cleanroom::Postgres, redis: cleanroom::Redis) {
        wait_for("postgres", "the first reading", |p| p.first.is_some());
        wait_for("redis", "the first reading", |p| p.first.is_some());
        let (client, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls).await.unwrap();
        let driver = tokio::spawn(connection);
        for i in 0..200 {
            client.simple_query(&format!("SELECT {i}")).await.unwrap();
        }
        // Its backend writes its statistics when it exits.
        drop(client);
        let _ = driver.await;
        let mut cache = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
        for i in 0..100 {
            let () = redis::AsyncCommands::set(&mut cache, format!("k{i}"), i).await.unwrap();
            let _: i32 = redis::AsyncCommands::get(&mut cache, format!("k{i}")).await.unwrap();
        }
        wait_for("postgres", "a timed probe", |p| p.latency_samples > 0);
        wait_for("redis", "a timed probe", |p| p.latency_samples > 0);
    }

    /// Kills the run's Redis, as an outside `docker kill` would, and ends
    /// once this process's monitor has seen it die.
    #[cleanroom::test(redis)]
    #[ignore = "run by the report tests"]
    fn kills_its_redis(redis: cleanroom::Redis) {
        cleanroom_tests::docker(&["kill", redis.container().id()]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !cleanroom::metrics_of("redis").is_some_and(|m| m.alerts.iter().any(|a| a.kind == "died")) {
            assert!(std::time::Instant::now() < deadline, "the monitor never saw redis die");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

const SCHEMA: &str = include_str!("../docs/report.schema.json");
const REFERENCE: &str = include_str!("../docs/report.md");

/// The errors of `instance` against docs/report.schema.json, if any.
fn schema_errors(instance: &Value) -> Option<String> {
    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    compiler.add_resource("report.schema.json", serde_json::from_str(SCHEMA).unwrap()).unwrap();
    let schema =
        compiler.compile("report.schema.json", &mut schemas).unwrap_or_else(|e| panic!("the schema compiles: {e:#}"));
    schemas.validate(instance, schema).err().map(|e| format!("{e:#}"))
}

/// The example document of docs/report.md.
fn reference_example() -> Value {
    let (_, rest) = REFERENCE.split_once("<!-- example:start -->\n```json\n").expect("docs/report.md has the example");
    let (example, _) = rest.split_once("```").unwrap();
    serde_json::from_str(example).expect("the example is JSON")
}

/// Where cleanroom keeps its reports: `$XDG_RUNTIME_DIR/cleanroom`, else
/// `/tmp/cleanroom-<uid>`.
fn runtime_reports() -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("cleanroom/reports"),
        None => {
            std::env::temp_dir().join(format!("cleanroom-{}/reports", std::fs::metadata("/proc/self").unwrap().uid()))
        }
    }
}

/// Starts this binary on the `child::` tests matching `args`, with the
/// report written to `json` and printed as `mode` says.
fn start(session: &str, json: &Path, mode: &str, args: &[&str]) -> Child {
    let mut args = args.to_vec();
    args.push("--ignored");
    child_command(session, &args)
        .env("CLEANROOM_REPORT_JSON", json)
        .env("CLEANROOM_REPORT", mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the test binary runs as a child")
}

/// Waits for a child and returns its pid, stderr, and output.
fn finish(child: Child) -> (u32, String, Output) {
    let pid = child.id();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{}{stderr}", String::from_utf8_lossy(&output.stdout));
    (pid, stderr, output)
}

/// The lines of the summary a process printed at exit: the headline
/// (`cleanroom: 2 tests; …`) and the indented lines under it.
fn summary_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| {
            l.strip_prefix("cleanroom: ")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()) || rest.starts_with("  "))
        })
        .collect()
}

#[test]
fn the_docs_example_matches_the_schema() {
    let example = reference_example();
    assert_eq!(schema_errors(&example), None);
    // And the schema is strict enough to notice a misspelt field.
    let mut wrong = example.clone();
    wrong["services"][0]["restart"] = Value::from(1);
    assert!(schema_errors(&wrong).is_some(), "an unknown field is an error");
    // A service with limits: a capped tmpfs and network conditions.
    let mut limited = example.clone();
    limited["services"][0]["resources"]["disk_size_limit_bytes"] = Value::from(1 << 20);
    limited["services"][0]["performance"]["network_conditions"] = serde_json::json!({
        "latency_ms": 50.0, "jitter_ms": 0.0, "upload_bytes_per_sec": null,
        "download_bytes_per_sec": 1048576, "reset_rate": 0.25
    });
    assert_eq!(schema_errors(&limited), None);
    limited["services"][0]["performance"]["network_conditions"]["reset_rate"] = Value::from(2.0);
    assert!(schema_errors(&limited).is_some(), "a reset rate is a share");
}

#[test]
fn processes_of_one_run_merge_into_one_document_that_matches_the_schema() {
    let session = fresh_session("report");
    let watch = EventWatch::start(&session);
    let json = std::env::temp_dir().join(format!("{session}.json"));
    // As under `cargo test`: one process after another; then two at once,
    // as under nextest.
    let (first_pid, first_err, _) =
        finish(start(&session, &json, "quiet", &["--exact", "child::first", "child::second"]));
    let third = start(&session, &json, "quiet", &["--exact", "child::third"]);
    let fourth = start(&session, &json, "full", &["--exact", "child::fourth"]);
    let (third_pid, third_err, _) = finish(third);
    let (fourth_pid, fourth_err, _) = finish(fourth);
    assert_nothing_left(&session);
    watch.settle(std::time::Duration::from_secs(10));

    let text = std::fs::read_to_string(&json).expect("the report was written");
    let _ = std::fs::remove_file(&json);
    assert_eq!(text.lines().count(), 1, "one document, not one per process:\n{text}");
    let doc: Value = serde_json::from_str(&text).unwrap();
    if let Some(errors) = schema_errors(&doc) {
        panic!("the report does not match docs/report.schema.json:\n{errors}\n{doc:#}");
    }
    assert_eq!(doc["schema"], 3);
    assert_eq!(doc["session"], session.as_str());

    // Every process, and every test with the process that ran it.
    let processes: Vec<(u64, u64)> = doc["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["pid"].as_u64().unwrap(), p["tests"].as_u64().unwrap()))
        .collect();
    let mut expected = vec![(first_pid as u64, 2), (third_pid as u64, 1), (fourth_pid as u64, 1)];
    let mut seen = processes.clone();
    expected.sort();
    seen.sort();
    assert_eq!(seen, expected, "{doc:#}");
    let tests: BTreeSet<(String, u64)> = doc["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap().to_string(), t["pid"].as_u64().unwrap()))
        .collect();
    let expected: BTreeSet<(String, u64)> =
        [("first", first_pid), ("second", first_pid), ("third", third_pid), ("fourth", fourth_pid)]
            .iter()
            .map(|(n, p)| (format!("child::{n}"), *p as u64))
            .collect();
    assert_eq!(tests, expected);
    assert_eq!(doc["overhead"]["tests"], 4);

    // Each service once, with every container Docker saw made for it, made
    // by the process the document says.
    let services = doc["services"].as_array().unwrap();
    let names: Vec<&str> = services.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["postgres", "redis"], "each service once");
    let created_by: Vec<u64> = doc["processes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["created"].as_array().unwrap().iter().map(move |_| p["pid"].as_u64().unwrap()))
        .collect();
    assert_eq!(created_by.len(), 2, "each service created by one process: {doc:#}");
    for service in services {
        let name = service["name"].as_str().unwrap();
        let creates = watch.events().iter().filter(|e| e.action == "create" && e.service == name).count();
        assert_eq!(service["containers"].as_array().unwrap().len(), creates, "{name}: containers as Docker saw them");
        let creator =
            service["created_by_pid"].as_u64().unwrap_or_else(|| panic!("{name} was created by a process of the run"));
        assert!(created_by.contains(&creator));
        let image_var = format!("CLEANROOM_{}_IMAGE", name.to_uppercase());
        if let Ok(image) = std::env::var(&image_var) {
            assert_eq!(service["image"], image.as_str(), "{name}");
        }
        assert!(service["time_to_ready_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{name}: {service:#}");
        assert_eq!(service["restarts"], 0, "{name}");
    }

    // The runtime directory keeps the same document for `cleanroom report`.
    let kept = runtime_reports().join(format!("{session}.json"));
    let kept: Value = serde_json::from_str(&std::fs::read_to_string(&kept).unwrap()).unwrap();
    assert_eq!(kept, doc, "the runtime directory's copy is the same merged document");
    let _ = std::fs::remove_file(runtime_reports().join(format!("{session}.json")));

    // stderr: quiet is one line from a process that started a service or ran
    // more than one test, nothing from one that attached and ran one;
    // full is every service. (No service had trouble in this run.)
    let first = summary_lines(&first_err);
    assert_eq!(first.len(), 1, "{first_err}");
    assert!(first[0].starts_with("cleanroom: 2 tests; ") && first[0].ends_with("; no alerts"), "{first_err}");
    let third_created = doc["processes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["pid"] == third_pid && !p["created"].as_array().unwrap().is_empty());
    assert_eq!(summary_lines(&third_err).len(), usize::from(third_created), "{third_err}");
    let fourth = summary_lines(&fourth_err);
    assert!(fourth[0].starts_with("cleanroom: 1 test; "), "{fourth_err}");
    for name in ["postgres", "redis"] {
        assert!(
            fourth.iter().any(|l| l.starts_with(&format!("cleanroom:   {name}  "))),
            "{name} in the full summary:\n{fourth_err}"
        );
    }
}

/// Latency, throughput and a transaction count in the report: a known
/// workload (200 queries, 200 Redis commands) shows, at least, as itself.
#[test]
fn a_known_workload_shows_as_latency_throughput_and_transactions() {
    let session = fresh_session("report-perf");
    let json = std::env::temp_dir().join(format!("{session}.json"));
    let child = child_command(&session, &["--ignored", "--exact", "child::runs_a_known_workload"])
        .env("CLEANROOM_REPORT_JSON", &json)
        .env("CLEANROOM_REPORT", "full")
        // Probes often enough to be timed in a short test (its own
        // definition: no other test's services are shared).
        .env("CLEANROOM_POSTGRES_HEALTH_INTERVAL", "0.2")
        .env("CLEANROOM_REDIS_HEALTH_INTERVAL", "0.2")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (_, stderr, _) = finish(child);
    assert_nothing_left(&session);
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    let _ = std::fs::remove_file(runtime_reports().join(format!("{session}.json")));
    assert_eq!(schema_errors(&doc), None);
    let perf = |name: &str| {
        doc["services"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap()["performance"].clone()
    };
    let (pg, rd) = (perf("postgres"), perf("redis"));
    println!("postgres {pg:#}\nredis {rd:#}");
    assert_eq!(pg["unit"], "transactions");
    assert!(pg["operations"].as_u64().unwrap() >= 200, "{pg:#}");
    assert!(pg["operations_per_sec"].as_f64().unwrap() > 0.0, "{pg:#}");
    assert!(pg["rows"].as_u64().unwrap() > 0, "{pg:#}");
    assert_eq!(rd["unit"], "commands");
    assert!(rd["operations"].as_u64().unwrap() >= 200, "{rd:#}");
    assert!(rd["operations_per_sec"].as_f64().unwrap() > 0.0, "{rd:#}");
    for p in [&pg, &rd] {
        assert!(p["latency_samples"].as_u64().unwrap() > 0 && p["latency_mean_ms"].as_f64().unwrap() > 0.0, "{p:#}");
    }
    let lines = summary_lines(&stderr);
    assert!(lines.iter().any(|l| l.contains(" transactions, ") && l.contains("latency mean ")), "{stderr}");
}

#[test]
fn a_service_that_died_gets_its_full_lines_even_in_quiet_mode() {
    let session = fresh_session("report-trouble");
    let json = std::env::temp_dir().join(format!("{session}.json"));
    // A first process starts the services; the second attaches, kills
    // Redis and sees it die.
    let (_, first_err, _) = finish(start(&session, &json, "quiet", &["--exact", "child::first"]));
    assert!(summary_lines(&first_err).iter().all(|l| !l.contains("trouble")), "{first_err}");
    let (pid, stderr, _) = finish(start(&session, &json, "quiet", &["--exact", "child::kills_its_redis"]));
    assert_nothing_left(&session);

    let lines = summary_lines(&stderr);
    assert!(lines[0].starts_with("cleanroom: 1 test; ") && lines[0].ends_with("; trouble with redis"), "{stderr}");
    assert!(lines.iter().any(|l| l.starts_with("cleanroom:   redis  ")), "redis's full line:\n{stderr}");
    assert!(lines.iter().any(|l| l.starts_with("cleanroom:     ! ") && l.contains(" died: ")), "the death:\n{stderr}");
    assert!(!lines.iter().any(|l| l.starts_with("cleanroom:   postgres  ")), "postgres had no trouble:\n{stderr}");

    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    let _ = std::fs::remove_file(runtime_reports().join(format!("{session}.json")));
    assert_eq!(schema_errors(&doc), None);
    let redis = doc["services"].as_array().unwrap().iter().find(|s| s["name"] == "redis").unwrap();
    let died: Vec<&Value> = redis["alerts"].as_array().unwrap().iter().filter(|a| a["kind"] == "died").collect();
    assert_eq!(died.len(), 1, "one death, once, in the merged document: {redis:#}");
    assert!(doc["processes"].as_array().unwrap().iter().any(|p| p["pid"] == pid));
}
