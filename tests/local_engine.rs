//! The local engine (`CLEANROOM_ENGINE=local`, docs/engines.md), live:
//! Postgres and Redis run as processes of this machine's binaries, shared by
//! the run, and nothing of a run is left afterwards — no process, no data
//! directory, no container — even after `kill -9` of the whole run.
//!
//! Each test runs a child suite of this binary under a fresh session and
//! then asks `/proc` and the file system, not cleanroom, what is left.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use cleanroom::{Container, GenericContainer, HealthCheck};
use cleanroom_tests::{
    fresh_session, kill_run_with_its_reaper, reaper_pid, run_child, session_containers, REAPER_DEADLINE,
};

const LOCAL: (&str, &str) = ("CLEANROOM_ENGINE", "local");

mod child {
    use super::*;

    pub(super) mod suite {
        cleanroom_tests::postgres_and_redis_tests!("run by the local engine tests": s01 s02 s03 s04 s05 s06 s07 s08);
    }

    pub(super) mod waits {
        use super::*;

        #[cleanroom::test(postgres, redis)]
        #[ignore = "run by the kill test"]
        fn until_killed() {
            println!("cleanroom-test: READY");
            std::thread::sleep(Duration::from_secs(120));
        }
    }

    pub(super) mod deaths {
        use cleanroom::Postgres;

        cleanroom_tests::postgres_tests!("run by the recovery test": d01 d02 d03 d04 d05 d07 d08 d09 d10);

        /// Kills the shared Postgres (its whole process group, as `docker
        /// kill` kills a container) while it holds a connection, then uses it.
        #[cleanroom::test(postgres)]
        #[ignore = "run by the recovery test"]
        async fn d06_killed(postgres: Postgres) {
            let (client, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            client.batch_execute("CREATE TABLE t (v int)").await.unwrap();
            let pid = postgres.container().id().split('-').nth(1).unwrap().to_string();
            let killed = std::process::Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).status().unwrap();
            assert!(killed.success());
            // Long enough for the monitor, which starts watching a second
            // after the start, to see the death before the next test.
            tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
            client.batch_execute("INSERT INTO t VALUES (1)").await.unwrap();
        }
    }

    pub(super) mod image_only {
        use super::*;

        /// A service defined by an image alone.
        #[cleanroom::service]
        fn imaged() -> GenericContainer {
            GenericContainer::new("cleanroom-offline/busybox:1.35").with_cmd(["sleep", "3600"])
        }

        #[cleanroom::test(imaged)]
        #[ignore = "run by the image-only tests"]
        fn needs_it(imaged: Container) {
            assert!(imaged.id().starts_with("local-"), "{}", imaged.id());
        }
    }

    pub(super) mod own_command {
        use super::*;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        /// A service of the user's with a local command: Python's web server
        /// on the port cleanroom picks, serving its own directory.
        #[cleanroom::service]
        fn web() -> GenericContainer {
            GenericContainer::new("cleanroom-offline/busybox:1.35")
                .with_port(8000)
                .with_health_check(HealthCheck::http(8000, "/"))
                .with_local_command([
                    "python3",
                    "-m",
                    "http.server",
                    "{port}",
                    "--bind",
                    "127.0.0.1",
                    "--directory",
                    "{dir}",
                ])
        }

        #[cleanroom::test(web)]
        #[ignore = "run by the local command test"]
        async fn serves(web: Container) {
            let mut stream = tokio::net::TcpStream::connect((web.host(), web.port(8000))).await.unwrap();
            stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.unwrap();
            assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
        }
    }
}

/// Where the local engine keeps `session`'s servers (as `local::dirs` says).
fn session_dir(session: &str) -> PathBuf {
    let uid = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").unwrap().uid()
    };
    PathBuf::from(format!("/dev/shm/cleanroom-local-{uid}")).join(session)
}

/// Every process that works in `session`'s directory or names it on its
/// command line: its servers and their children.
fn processes_of(session: &str) -> Vec<u32> {
    let dir = session_dir(session);
    let needle = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let cwd = std::fs::read_link(entry.path().join("cwd")).ok();
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let named = cmdline.split(|b| *b == 0).any(|arg| {
            let arg = String::from_utf8_lossy(arg);
            arg == needle || arg.contains(&format!("{needle}/"))
        });
        if named || cwd.is_some_and(|c| c.starts_with(&dir)) {
            found.push(pid);
        }
    }
    found
}

/// Asserts that nothing of `session` is left within [`REAPER_DEADLINE`]:
/// no process, no directory, no container.
fn assert_nothing_local_left(session: &str) {
    let deadline = Instant::now() + REAPER_DEADLINE;
    while Instant::now() < deadline && (!processes_of(session).is_empty() || session_dir(session).exists()) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(processes_of(session), Vec::<u32>::new(), "processes of session {session} outlived their run");
    assert!(!session_dir(session).exists(), "{} outlived its run", session_dir(session).display());
    assert_eq!(session_containers(session), Vec::<String>::new(), "the local engine made no container");
}

/// The `engine` of each service in a report file.
fn engines_in_report(path: &std::path::Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let doc: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let mut out: Vec<(String, String)> = doc["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_string(), s["engine"].as_str().unwrap_or("").to_string()))
        .collect();
    out.sort();
    out
}

#[test]
fn a_suite_runs_on_local_binaries_and_leaves_nothing() {
    let session = fresh_session("local");
    let report = std::env::temp_dir().join(format!("{session}.json"));
    let run = run_child(
        &session,
        &["--ignored", "child::suite::", "--test-threads", "4"],
        &[LOCAL, ("CLEANROOM_REPORT_JSON", report.to_str().unwrap())],
    );
    let text = run.text();
    assert!(run.passed(), "{text}");
    assert!(text.contains("8 passed"), "{text}");
    assert_eq!(text.matches("runs on the local engine").count(), 2, "postgres and redis started once each: {text}");
    let engines = engines_in_report(&report);
    let _ = std::fs::remove_file(&report);
    assert_eq!(engines, [("postgres".into(), "local".into()), ("redis".into(), "local".into())]);
    eprintln!("local engine suite: {:.2} s", run.elapsed.as_secs_f64());
    assert_nothing_local_left(&session);
}

#[test]
fn processes_of_one_run_share_one_postgres_and_redis() {
    let session = fresh_session("local-shared");
    let mut texts = String::new();
    for i in 1..=3 {
        let run = run_child(&session, &["--ignored", "--exact", &format!("child::suite::s0{i}")], &[LOCAL]);
        assert!(run.passed(), "{}", run.text());
        texts.push_str(&run.text());
    }
    assert_eq!(texts.matches("runs on the local engine").count(), 2, "started by the first process only: {texts}");
    assert_nothing_local_left(&session);
}

#[test]
fn eight_processes_of_one_nextest_run_start_each_server_once() {
    let run_id =
        format!("0000{:x}-10ca-4bad-beef-{:012x}", std::process::id(), fresh_session("id").len() as u64 ^ 0x10ca1);
    let session = cleanroom_tests::nextest_session(&run_id);
    // Like nextest: one process per test, all started together, all with
    // the run's NEXTEST_RUN_ID and no other hint.
    let started = Instant::now();
    let children: Vec<_> = (1..=8)
        .map(|i| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--ignored", "--exact", &format!("child::suite::s{i:02}")])
                .env_remove("CLEANROOM_SESSION")
                .env("NEXTEST_RUN_ID", &run_id)
                .env(LOCAL.0, LOCAL.1)
                .env("RUST_BACKTRACE", "0")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut texts = String::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{text}");
        texts.push_str(&text);
    }
    eprintln!("eight processes at once on the local engine: {:.2} s", started.elapsed().as_secs_f64());
    assert_eq!(texts.matches("runs on the local engine").count(), 2, "one postgres and one redis: {texts}");
    assert_nothing_local_left(&session);
}

#[test]
fn kill_9_of_a_whole_run_leaves_nothing_once_the_next_run_starts() {
    let killed = fresh_session("local-killed");
    // A runtime directory of the test's own: no other test's reaper judges
    // these runs, so what is swept below is the next run's doing.
    let runtime = std::env::temp_dir().join(&killed);
    std::fs::create_dir_all(&runtime).unwrap();
    let here = ("XDG_RUNTIME_DIR", runtime.to_str().unwrap());
    kill_run_with_its_reaper(&killed, &[LOCAL, here]);
    // Detached, the servers outlive their run: nothing of it is left to stop
    // them.
    assert!(!processes_of(&killed).is_empty(), "the servers outlived the killed run");
    let killed_files = runtime.join("cleanroom/runs").join(&killed);
    assert!(killed_files.is_dir(), "the killed run left its run directory");

    // The next run's reaper finds the killed run's lock free, with no
    // container engine to ask: its servers and its run directory go all
    // the same.
    let next = fresh_session("local-next");
    let away = ("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    let run = run_child(&next, &["--ignored", "--exact", "child::suite::s01"], &[LOCAL, here, away]);
    assert!(run.passed(), "{}", run.text());
    assert_nothing_local_left(&killed);
    assert_nothing_local_left(&next);
    assert!(!killed_files.exists(), "{} outlived the run that swept it", killed_files.display());
    let _ = std::fs::remove_dir_all(&runtime);
}

#[test]
fn without_a_reaper_each_process_stops_its_own_servers_at_exit() {
    let session = fresh_session("local-noreaper");
    let run = run_child(
        &session,
        &["--ignored", "child::suite::", "--test-threads", "4"],
        &[LOCAL, ("CLEANROOM_NO_REAPER", "1")],
    );
    assert!(run.passed(), "{}", run.text());
    assert!(reaper_pid(&session).is_none(), "no reaper served {session}");
    assert_nothing_local_left(&session);
}

#[test]
fn a_local_postgres_killed_mid_run_is_replaced_and_the_test_using_it_is_told_why() {
    let session = fresh_session("local-death");
    let run = run_child(&session, &["--ignored", "--test-threads", "1", "child::deaths::"], &[LOCAL]);
    let text = run.text();
    assert!(!run.passed(), "the test whose Postgres died fails:\n{text}");
    assert!(text.contains("test child::deaths::d06_killed ... FAILED"), "{text}");
    assert!(text.contains("cleanroom: postgres died under test `child::deaths::d06_killed`"), "{text}");
    for n in 7..=10 {
        assert!(
            text.contains(&format!("test child::deaths::d{n:02} ... ok")),
            "d{n:02} runs on the replacement:\n{text}"
        );
    }
    assert!(text.contains("9 passed; 1 failed"), "{text}");
    assert_eq!(text.matches("postgres runs on the local engine").count(), 2, "started, then replaced: {text}");
    assert_nothing_local_left(&session);
}

#[test]
fn a_service_defined_by_an_image_alone_is_refused_with_the_fixes() {
    let session = fresh_session("local-image");
    let run = run_child(&session, &["--ignored", "child::image_only::"], &[LOCAL]);
    let text = run.text();
    assert!(!run.passed(), "{text}");
    for needle in ["service `imaged`", "runs no images", "with_local_command", "[services.imaged]"] {
        assert!(text.contains(needle), "{needle} in:\n{text}");
    }
    assert_nothing_local_left(&session);
}

#[test]
fn a_local_command_from_the_configuration_file_runs_an_image_only_service() {
    let session = fresh_session("local-file");
    let file = std::env::temp_dir().join(format!("{session}.toml"));
    std::fs::write(&file, "[services.imaged]\nlocal = [\"sleep\", \"3600\"]\n").unwrap();
    let run = run_child(
        &session,
        &["--ignored", "child::image_only::"],
        &[LOCAL, ("CLEANROOM_CONFIG", file.to_str().unwrap())],
    );
    let _ = std::fs::remove_file(&file);
    assert!(run.passed(), "{}", run.text());
    assert_nothing_local_left(&session);
}

#[test]
fn a_service_runs_its_own_local_command() {
    let session = fresh_session("local-web");
    let run = run_child(&session, &["--ignored", "child::own_command::"], &[LOCAL]);
    assert!(run.passed(), "{}", run.text());
    assert_nothing_local_left(&session);
}

#[test]
fn an_unknown_engine_is_a_configuration_error_listing_the_choices() {
    let session = fresh_session("local-bogus");
    let run = run_child(&session, &["--ignored", "--exact", "child::suite::s01"], &[("CLEANROOM_ENGINE", "bogus")]);
    let text = run.text();
    assert!(!run.passed(), "{text}");
    assert!(text.contains("CLEANROOM_ENGINE"), "{text}");
    assert!(text.contains("expected one of: docker, local, auto"), "{text}");
}
