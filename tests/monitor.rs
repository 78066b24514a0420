//! Services are watched while tests run: a death is recovered and explained,
//! an out-of-memory kill is reported, a CPU limit crossed is throttled.

use std::time::{Duration, Instant};

use cleanroom::{Container, GenericContainer, HealthCheck, LimitAction, Postgres, Recovery, State};
use cleanroom_tests::{assert_nothing_left, docker, fresh_session, run_child};

mod child {
    use super::*;

    pub(super) mod deaths {
        use super::*;

        cleanroom_tests::postgres_tests!("run by the monitor tests":
            t01 t02 t03 t04 t05 t06 t07 t08 t09 t11 t12 t13 t14 t15 t16 t17 t18 t19 t20);

        /// Kills the shared Postgres while it holds a connection to it, as an
        /// outside `docker kill` would, then uses the connection.
        #[cleanroom::test(postgres)]
        #[ignore = "run by the monitor tests"]
        async fn t10_killed(postgres: Postgres) {
            let (client, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            client.batch_execute("CREATE TABLE t (v int)").await.unwrap();
            docker(&["kill", postgres.container().id()]);
            client.batch_execute("INSERT INTO t VALUES (1)").await.unwrap();
        }
    }
}

/// Every object in `value` (recursively) that has `"name": name`.
fn objects_named<'a>(value: &'a serde_json::Value, name: &str, out: &mut Vec<&'a serde_json::Value>) {
    match value {
        serde_json::Value::Object(map) => {
            if map.get("name").and_then(|n| n.as_str()) == Some(name) {
                out.push(value);
            }
            map.values().for_each(|v| objects_named(v, name, out));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| objects_named(v, name, out)),
        _ => {}
    }
}

#[test]
fn a_postgres_killed_mid_run_is_replaced_and_the_test_using_it_is_told_why() {
    let session = fresh_session("death");
    let report = std::env::temp_dir().join(format!("cleanroom-{session}.json"));
    let _ = std::fs::remove_file(&report);
    let run = run_child(
        &session,
        &["--ignored", "--test-threads", "1", "child::deaths::"],
        &[("CLEANROOM_REPORT_JSON", report.to_str().unwrap())],
    );
    let text = run.text();
    assert!(!run.passed(), "the test whose Postgres died fails:\n{text}");
    assert!(text.contains("test child::deaths::t10_killed ... FAILED"), "{text}");
    assert!(
        text.contains("cleanroom: postgres died under test `child::deaths::t10_killed`: its container"),
        "the failure says the service died under the test:\n{text}"
    );
    assert!(text.contains("exited with code 137"), "{text}");
    // Its own error is a closed connection or the server's goodbye,
    // depending on timing; either way it is still shown.
    assert!(
        text.contains("called `Result::unwrap()` on an `Err` value: Error { kind:"),
        "the test's own error is kept:\n{text}"
    );
    for n in 11..=20 {
        assert!(text.contains(&format!("test child::deaths::t{n} ... ok")), "t{n} runs on the replacement:\n{text}");
    }
    assert!(text.contains("19 passed; 1 failed"), "{text}");

    // The report shows one restart and the death.
    let json = std::fs::read_to_string(&report).expect("the run wrote its report");
    let _ = std::fs::remove_file(&report);
    let docs: Vec<serde_json::Value> = match serde_json::from_str::<serde_json::Value>(&json) {
        Ok(doc) => vec![doc],
        Err(_) => json.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect(),
    };
    let mut services = Vec::new();
    for doc in &docs {
        objects_named(doc, "postgres", &mut services);
    }
    let restarts: Vec<i64> = services.iter().filter_map(|s| s.get("restarts").and_then(|r| r.as_i64())).collect();
    assert_eq!(restarts.iter().sum::<i64>(), 1, "the report shows one restart: {json}");
    assert!(json.contains("\"died\""), "the death is an alert in the report: {json}");
    assert_nothing_left(&session);
}

/// A service that fills its 64 MiB of memory two seconds after it is Ready.
#[cleanroom::service]
fn hog() -> GenericContainer {
    GenericContainer::new("cleanroom-offline/busybox:1.35")
        .with_cmd(["sh", "-c", "touch /tmp/ready; sleep 2; x=aaaaaaaaaa; while true; do x=$x$x; done"])
        .with_health_check(HealthCheck::file("/tmp/ready"))
        .with_memory_limit(64 * 1024 * 1024)
        .with_recovery(Recovery::Manual)
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what} did not happen within {timeout:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cleanroom::test(hog)]
fn a_service_over_its_memory_limit_is_oom_killed_and_reported(hog: Container) {
    let id = hog.id().to_string();
    wait_until("the OOM kill", Duration::from_secs(60), || cleanroom::metrics_of("hog").is_some_and(|m| m.oom_killed));
    // Docker agrees, in its own record: manual recovery removes the dead
    // container, so its state may be gone already, its events are not.
    let since = (std::time::SystemTime::now() - Duration::from_secs(600))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    wait_until("Docker to record the OOM kill", Duration::from_secs(30), || {
        let until =
            (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 1).to_string();
        let filter = format!("container={id}");
        let events = docker(&[
            "events",
            "--since",
            &since,
            "--until",
            &until,
            "--filter",
            &filter,
            "--filter",
            "event=oom",
            "--format",
            "{{.Action}}",
        ]);
        events.lines().any(|l| l.trim() == "oom")
    });
    wait_until("recovery to give up", Duration::from_secs(30), || {
        cleanroom::lifecycle_of("hog").is_some_and(|l| l.state() == State::Failed)
    });
    let metrics = cleanroom::metrics_of("hog").unwrap();
    let oom = metrics.alerts.iter().find(|a| a.kind == "oom").expect("an oom alert");
    assert!(oom.message.contains("lack of memory"), "{oom:?}");
    assert_eq!(metrics.restarts, 0, "manual recovery does not restart");
    let err =
        cleanroom::environment().get_or_create_container_blocking("hog", || unreachable!("declared")).unwrap_err();
    assert!(matches!(err, cleanroom::Error::ServiceDied { .. }), "{err}");
    assert!(err.to_string().contains("recovery is manual"), "{err}");
}

/// A service that keeps a CPU busy under a limit of one CPU, throttled when
/// it uses more than a fifth of it.
#[cleanroom::service]
fn spinner() -> GenericContainer {
    GenericContainer::new("cleanroom-offline/busybox:1.35")
        .with_cmd(["sh", "-c", "touch /tmp/ready; while true; do :; done"])
        .with_health_check(HealthCheck::file("/tmp/ready"))
        .with_cpus(1.0)
        .on_limit(LimitAction::Throttle, 0.2, 0.9)
}

#[cleanroom::test(spinner)]
fn throttling_lowers_the_cpu_limit_of_a_busy_service(spinner: Container) {
    let id = spinner.id().to_string();
    let nano_cpus = || docker(&["inspect", "--format", "{{.HostConfig.NanoCpus}}", &id]).trim().parse::<i64>().unwrap();
    assert_eq!(nano_cpus(), 1_000_000_000);
    wait_until("throttling", Duration::from_secs(60), || nano_cpus() < 1_000_000_000);
    assert!(nano_cpus() <= 500_000_000, "halved at least once: {}", nano_cpus());
    // The alert is recorded once the engine took the update, a moment after
    // the container shows it.
    let throttled = || cleanroom::metrics_of("spinner").unwrap().alerts.iter().any(|a| a.kind == "throttled");
    wait_until("the throttled alert", Duration::from_secs(10), throttled);
    let metrics = cleanroom::metrics_of("spinner").unwrap();
    assert!(metrics.alerts.iter().any(|a| a.kind == "cpu"), "{:?}", metrics.alerts);
    assert!(
        metrics.alerts.iter().any(|a| a.kind == "throttled" && a.message.contains("to 0.50 CPUs")),
        "{:?}",
        metrics.alerts
    );
    assert!(metrics.resources.samples >= 3, "{:?}", metrics.resources);
    assert!(metrics.resources.cpu_peak_percent > 20.0, "{:?}", metrics.resources);
}
