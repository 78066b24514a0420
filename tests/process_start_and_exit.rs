//! Process start and exit: a test process starts only the services its
//! selected tests need, and whatever way it ends (its tests pass or fail, it
//! is signalled, a service fails to start) nothing of its run is left.
//!
//! The `child` module holds `#[ignore]`d suites that the tests below run in a
//! child process of this same binary (so that process start and exit are
//! real) while they watch Docker's own event stream for the child's session.
//! Runs that span several processes, and the reaper, are `tests/runs.rs`.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::Duration;

use cleanroom::{Container, GenericContainer, HealthCheck, Postgres, Redis};
use cleanroom_tests::{
    assert_nothing_left, child_command, docker, fresh_session, run_child, session_containers, EventWatch,
};

const BUSYBOX: &str = "cleanroom-offline/busybox:1.35";

// ----------------------------------------------------------------------------
// Services and fixtures of the child suites
// ----------------------------------------------------------------------------

/// A static web server.
#[cleanroom::service]
fn web() -> GenericContainer {
    GenericContainer::new(BUSYBOX)
        .with_cmd(["httpd", "-f", "-p", "8080", "-h", "/www"])
        .with_port(8080)
        .with_health_check(HealthCheck::http(8080, "/"))
}

/// Dies during startup, after saying why.
#[cleanroom::service]
fn crashing() -> GenericContainer {
    GenericContainer::new(BUSYBOX)
        .with_cmd(["sh", "-c", "echo 'starting up'; echo 'fatal: no config file' >&2; sleep 0.3; exit 3"])
        .with_health_check(HealthCheck::tcp(9000))
}

/// Never becomes ready.
#[cleanroom::service]
fn never_ready() -> GenericContainer {
    GenericContainer::new(BUSYBOX)
        .with_cmd(["sleep", "600"])
        .with_health_check(HealthCheck::file("/tmp/never-there"))
        .with_startup_timeout(Duration::from_secs(2))
}

/// Does nothing but run: tests exec in it to reach other services by name.
#[cleanroom::service]
fn prober() -> GenericContainer {
    GenericContainer::new(BUSYBOX).with_cmd(["sleep", "600"])
}

/// A connected client whose connection task runs on the test's runtime.
#[cleanroom::fixture]
async fn pg_client(postgres: Postgres) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

// ----------------------------------------------------------------------------
// Child suites: ignored here, run by the tests below in a child process
// ----------------------------------------------------------------------------

mod child {
    use super::*;

    pub(super) mod thirty {
        use super::*;

        macro_rules! thirty_tests {
            ($($name:ident)*) => {$(
                #[cleanroom::test(postgres)]
                #[ignore = "run by a_thirty_test_binary_starts_postgres_once"]
                async fn $name(pg_client: tokio_postgres::Client) {
                    let one: i32 = pg_client.query_one("SELECT 1", &[]).await.unwrap().get(0);
                    assert_eq!(one, 1);
                }
            )*};
        }
        thirty_tests!(t01 t02 t03 t04 t05 t06 t07 t08 t09 t10 t11 t12 t13 t14 t15
                      t16 t17 t18 t19 t20 t21 t22 t23 t24 t25 t26 t27 t28 t29 t30);
    }

    pub(super) mod filtered {
        use super::*;

        #[cleanroom::test(redis)]
        #[ignore = "run by a_filtered_run_starts_only_what_its_tests_need"]
        async fn wants_redis(redis: Redis) {
            assert!(redis.port() > 0);
        }

        #[cleanroom::test(postgres, web)]
        #[ignore = "run by a_filtered_run_starts_only_what_its_tests_need"]
        fn wants_postgres_and_web() {}
    }

    pub(super) mod outcomes {
        use super::*;

        #[cleanroom::test(redis)]
        #[ignore = "run by failing_tests_still_leave_nothing_behind"]
        fn passes() {}

        #[cleanroom::test(redis, web)]
        #[ignore = "run by failing_tests_still_leave_nothing_behind"]
        fn fails() {
            panic!("this test fails on purpose");
        }
    }

    pub(super) mod waits {
        use super::*;

        #[cleanroom::test(redis)]
        #[ignore = "run by the signal tests"]
        fn until_signalled() {
            println!("cleanroom-test: READY");
            std::io::stdout().flush().unwrap();
            std::thread::sleep(Duration::from_secs(120));
        }
    }

    pub(super) mod network {
        use super::*;

        /// The aliases of container `id` on `network`.
        fn aliases(id: &str, network: &str) -> String {
            docker(&[
                "inspect",
                "-f",
                &format!("{{{{json (index .NetworkSettings.Networks \"{network}\").Aliases}}}}"),
                id,
            ])
        }

        #[cleanroom::test(postgres, prober)]
        #[ignore = "run by services_reach_each_other_by_name_on_a_network_removed_with_the_run"]
        fn reaches_postgres_by_its_service_name(postgres: Postgres, prober: Container) {
            let session = cleanroom::environment().session().unwrap().to_string();
            // The run's one network, found by its session label; its name
            // carries the session and the owner's key.
            let networks = docker(&["network", "ls", "-q", "--filter", &format!("label=cleanroom.session={session}")]);
            let ids: Vec<&str> = networks.lines().collect();
            assert_eq!(ids.len(), 1, "one network for the run: {ids:?}");
            let network = docker(&["network", "inspect", "-f", "{{.Name}}", ids[0]]).trim().to_string();
            assert!(network.starts_with(&format!("cleanroom-{session}-")), "{network}");
            let labels = docker(&["network", "inspect", "-f", "{{json .Labels}}", &network]);
            assert!(labels.contains(&format!("\"cleanroom.session\":\"{session}\"")), "{labels}");
            assert!(labels.contains("\"cleanroom.managed\":\"true\""), "{labels}");
            assert!(aliases(postgres.container().id(), &network).contains("\"postgres\""));
            assert!(aliases(prober.id(), &network).contains("\"prober\""));
            let reached = prober.exec_blocking(["sh", "-c", "nc -w 5 postgres 5432 </dev/null"]).unwrap();
            assert_eq!(reached.exit_code, 0, "prober could not reach postgres:5432 by name: {reached:?}");
            // The same command fails for a name nobody answers to.
            let unknown = prober.exec_blocking(["sh", "-c", "nc -w 2 nobody-by-this-name 5432 </dev/null"]).unwrap();
            assert_ne!(unknown.exit_code, 0, "{unknown:?}");
            println!("cleanroom-test: REACHED");
        }
    }

    pub(super) mod failures {
        use super::*;

        #[cleanroom::test(postgres)]
        #[ignore = "run by the failure tests"]
        fn needs_postgres() {}

        #[cleanroom::test(redis)]
        #[ignore = "run by the failure tests"]
        fn needs_redis() {}

        #[cleanroom::test(crashing)]
        #[ignore = "run by a_container_that_exits_during_startup_reports_its_last_logs"]
        fn needs_crashing() {}

        #[cleanroom::test(never_ready)]
        #[ignore = "run by a_startup_timeout_names_the_check_that_never_passed"]
        fn needs_never_ready() {}
    }
}

// ----------------------------------------------------------------------------
// Tests that run a child suite and ask Docker what happened
// ----------------------------------------------------------------------------

/// Runs a child suite in a fresh session, watching Docker, and checks that
/// nothing of it is left afterwards.
fn watched_run(tag: &str, args: &[&str], env: &[(&str, &str)]) -> (cleanroom_tests::ChildRun, EventWatch) {
    let session = fresh_session(tag);
    let watch = EventWatch::start(&session);
    let run = run_child(&session, args, env);
    assert_nothing_left(&session);
    watch.settle(Duration::from_secs(10));
    (run, watch)
}

#[test]
fn services_reach_each_other_by_name_on_a_network_removed_with_the_run() {
    let session = fresh_session("network");
    let report_path = std::env::temp_dir().join(format!("cleanroom-network-{}.json", std::process::id()));
    let run = run_child(
        &session,
        &["--ignored", "--exact", "child::network::reaches_postgres_by_its_service_name", "--nocapture"],
        &[("CLEANROOM_REPORT_JSON", report_path.to_str().unwrap())],
    );
    assert!(run.passed() && run.text().contains("cleanroom-test: REACHED"), "{}", run.text());
    // Checks networks and volumes of the session too.
    assert_nothing_left(&session);
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    assert_eq!(report["caches"]["network"]["misses"], 1, "the run's network is made once: {}", report["caches"]);
    std::fs::remove_file(report_path).unwrap();
}

#[test]
fn a_thirty_test_binary_starts_postgres_once() {
    let (run, watch) = watched_run("thirty", &["--ignored", "child::thirty::", "--test-threads", "4"], &[]);
    assert!(run.passed(), "{}", run.text());
    assert!(run.text().contains("30 passed"), "{}", run.text());
    assert_eq!(watch.starts_of("postgres"), 1, "events: {:?}", watch.events());
    assert_eq!(watch.created_services(), ["postgres"], "events: {:?}", watch.events());
}

#[test]
fn a_filtered_run_starts_only_what_its_tests_need() {
    let (run, watch) = watched_run("filtered", &["--ignored", "child::filtered::wants_redis"], &[]);
    assert!(run.passed(), "{}", run.text());
    assert!(run.text().contains("1 passed"), "{}", run.text());
    assert_eq!(watch.created_services(), ["redis"], "events: {:?}", watch.events());

    let (run, watch) =
        watched_run("filtered-exact", &["--ignored", "--exact", "child::filtered::wants_postgres_and_web"], &[]);
    assert!(run.passed(), "{}", run.text());
    let mut created = watch.created_services();
    created.sort();
    assert_eq!(created, ["postgres", "web"], "events: {:?}", watch.events());
}

#[test]
fn listing_tests_starts_nothing() {
    for args in [&["--list"][..], &["--list", "--ignored"], &["--list", "--format", "terse", "--ignored"]] {
        let (run, watch) = watched_run("list", args, &[]);
        assert!(run.passed(), "{}", run.text());
        assert!(run.text().contains("child::thirty::t01"), "{}", run.text());
        assert!(watch.events().is_empty(), "listing {args:?} touched Docker: {:?}", watch.events());
    }
}

#[test]
fn failing_tests_still_leave_nothing_behind() {
    let (run, watch) = watched_run("outcomes", &["--ignored", "child::outcomes::"], &[]);
    assert!(!run.passed(), "one child test fails on purpose:\n{}", run.text());
    assert!(run.text().contains("1 passed; 1 failed"), "{}", run.text());
    assert_eq!(watch.starts_of("redis"), 1);
    assert_eq!(watch.starts_of("web"), 1);
}

fn signal_removes_everything(signal: &str, expected_code: i32) {
    let session = fresh_session("signal");
    let watch = EventWatch::start(&session);
    let mut child = child_command(&session, &["--ignored", "--exact", "child::waits::until_signalled", "--nocapture"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.any(|l| l.is_ok_and(|l| l.contains("cleanroom-test: READY"))), "the child test never started");
    assert_eq!(session_containers(&session).len(), 1, "redis runs while the test waits");
    let status = std::process::Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(expected_code), "exits as the signal would have: {status:?}");
    assert_nothing_left(&session);
    watch.settle(Duration::from_secs(10));
}

#[test]
fn sigterm_removes_everything() {
    signal_removes_everything("-TERM", 143);
}

#[test]
fn sigint_removes_everything() {
    signal_removes_everything("-INT", 130);
}

/// The process group of `pid`, from `/proc/<pid>/stat`.
fn process_group(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // pid (comm) state ppid pgrp …: comm may hold spaces, so after its ')'.
    stat.rsplit_once(')').unwrap().1.split_whitespace().nth(2).unwrap().parse().unwrap()
}

/// Ctrl-C in a terminal signals the whole foreground process group: the
/// test process stops as SIGINT says, and the run's reaper, which left that
/// group when it started, is not hit; it removes the run.
#[test]
fn ctrl_c_stops_the_run_but_not_its_reaper_which_removes_everything() {
    let session = fresh_session("ctrl-c");
    let mut cmd = child_command(&session, &["--ignored", "--exact", "child::waits::until_signalled", "--nocapture"]);
    // A terminal's foreground job: a process group of its own.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    /// Killed if the test fails before it ends.
    struct Reaped(std::process::Child);
    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Reaped(cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap());
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    assert!(lines.any(|l| l.is_ok_and(|l| l.contains("cleanroom-test: READY"))), "the child test never started");
    let reaper = cleanroom_tests::reaper_pid(&session).expect("the run has a reaper");
    let group = process_group(child.0.id());
    assert_ne!(process_group(reaper), group, "the reaper left the test process's group");
    let status = std::process::Command::new("kill").args(["-INT", "--", &format!("-{group}")]).status().unwrap();
    assert!(status.success());
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(130), "exits as SIGINT would have: {status:?}");
    // Its grace period has seconds to run: a reaper killed by the signal
    // would be gone already.
    let state = std::fs::read_to_string(format!("/proc/{reaper}/stat")).unwrap_or_default();
    let state = state.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().next().unwrap_or("")).unwrap_or("");
    assert!(!state.is_empty() && state != "Z", "the reaper outlived Ctrl-C (state {state:?})");
    assert_nothing_left(&session);
}

#[test]
fn docker_unreachable_fails_fast_with_the_address_tried() {
    let (run, watch) = watched_run(
        "nodocker",
        &["--ignored", "child::failures::needs_"],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock"), ("CLEANROOM_STARTUP_TIMEOUT", "120")],
    );
    let text = run.text();
    assert!(!run.passed(), "{text}");
    // Every affected test fails, each with the message naming the socket.
    assert!(text.contains("0 passed; 4 failed"), "{text}");
    let expected = "docker is not reachable at unix:///nonexistent/docker.sock (DOCKER_HOST)";
    assert_eq!(text.matches(expected).count(), 4, "{text}");
    // Far below the startup timeout (120 s here): nothing waited for it.
    assert!(run.elapsed < Duration::from_secs(20), "took {:?}", run.elapsed);
    assert!(watch.events().is_empty());
}

#[test]
fn a_missing_image_is_named_in_the_error() {
    let (run, _watch) = watched_run(
        "noimage",
        &["--ignored", "--exact", "child::failures::needs_postgres"],
        &[("CLEANROOM_POSTGRES_IMAGE", "cleanroom-offline/absent:0"), ("CLEANROOM_PULL", "never")],
    );
    let text = run.text();
    assert!(!run.passed(), "{text}");
    assert!(text.contains("failed to start postgres: image cleanroom-offline/absent:0 not found locally"), "{text}");
    assert!(text.contains("CLEANROOM_POSTGRES_IMAGE"), "the message says how to fix it: {text}");
}

#[test]
fn a_container_that_exits_during_startup_reports_its_last_logs() {
    let (run, watch) = watched_run("crash", &["--ignored", "--exact", "child::failures::needs_crashing"], &[]);
    let text = run.text();
    assert!(!run.passed(), "{text}");
    assert!(text.contains(&format!("crashing (image {BUSYBOX}) exited with code 3 during startup")), "{text}");
    assert!(text.contains("starting up") && text.contains("fatal: no config file"), "{text}");
    assert_eq!(watch.starts_of("crashing"), 1);
}

#[test]
fn a_startup_timeout_names_the_check_that_never_passed() {
    let (run, _watch) = watched_run("timeout", &["--ignored", "--exact", "child::failures::needs_never_ready"], &[]);
    let text = run.text();
    assert!(!run.passed(), "{text}");
    assert!(text.contains("never_ready (image"), "{text}");
    assert!(text.contains("the health check file /tmp/never-there existing never passed"), "{text}");
}
