//! Podman as the engine: Debian's `podman`, rootful, serving Docker's API
//! with `podman system service` on a socket of its own, with storage and
//! state of its own under a temporary directory (nothing of the machine's
//! Podman or Docker is touched). The stand-in images are copied in with
//! `docker save | podman load`; then the example suites and the room tests
//! run against it as a child `cargo test` in a fresh session with
//! `DOCKER_HOST` at its socket, and the example suites once more with only
//! `CONTAINER_HOST` set and Docker's socket masked (detection finds
//! Podman); they must pass, their containers must start in Podman, and
//! nothing labelled `cleanroom.managed=true` may be left in it. Needs root
//! (rootful Podman, `unshare -m`).
//!
//! Opt-in (it needs `podman` installed, takes about a minute, and runs a
//! nested `cargo test`), and only under nextest (`cargo test` holds the
//! build directory's lock the nested run needs); `.ci/podman.sh` installs
//! Podman from Debian's packages and runs it:
//!
//! ```sh
//! TEST_PODMAN=1 cargo nextest run -p cleanroom-tests --test podman
//! ```
//!
//! What this machine needs from Podman's configuration, and why, is in
//! `Podman::write_config` and `docs/environments.md`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cleanroom_tests::{fresh_session, REAPER_DEADLINE};

const OPT_IN: &str = "TEST_PODMAN";

/// The images the suites use, as this machine has them in Docker.
const IMAGES: [&str; 3] =
    ["cleanroom-offline/postgres:15", "cleanroom-offline/redis:7", "cleanroom-offline/busybox:1.35"];

/// The example suites and the room tests, by their test targets: one
/// `cargo test --workspace` selection, so that the nested build unifies
/// features as the workspace build before it did and compiles nothing new.
const SUITES: [&str; 3] = ["api", "signup", "rooms"];

/// A `podman system service` of this test's own, and its directory.
struct Podman {
    dir: PathBuf,
    service: Child,
}

impl Podman {
    fn start() -> Podman {
        let dir = std::env::temp_dir().join(format!("cleanroom-podman-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Podman::write_config(&dir);
        let log = std::fs::File::create(dir.join("service.log")).unwrap();
        let socket = dir.join("podman.sock");
        let service = Podman::command(&dir)
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", socket.display()))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("podman runs (install it: apt-get install podman)");
        let podman = Podman { dir, service };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "podman system service did not listen within 20 s: {}", podman.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        podman
    }

    /// Rootful Podman on a machine without systemd and with cgroup v1:
    /// cgroupfs as the cgroup manager and a file as the events backend
    /// (journald and systemd are not there). Everything it keeps lives in
    /// `dir`. Its default limits for a container's open files and processes
    /// are above the hard limits this machine gives root (without
    /// CAP_SYS_RESOURCE runc cannot raise them: "error setting rlimit type
    /// 7"), so the containers get this process's own; processes at most
    /// 32768, the hard limit Podman sets for itself and its conmon.
    fn write_config(dir: &Path) {
        let limit = |name: &str| -> u64 {
            let out = Command::new("sh").args(["-c", &format!("ulimit -H{name}")]).output().unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(u64::MAX)
        };
        let (files, processes) = (limit("n"), limit("u").min(32768));
        let d = dir.display();
        std::fs::write(
            dir.join("containers.conf"),
            format!(
                "[containers]\n\
                 default_ulimits = [\"nofile={files}:{files}\", \"nproc={processes}:{processes}\"]\n\
                 [engine]\n\
                 cgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"file\"\n\
                 events_logfile_path = \"{d}/events.log\"\n\
                 tmp_dir = \"{d}/tmp\"\n\
                 [network]\n\
                 network_config_dir = \"{d}/networks\"\n"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("storage.conf"),
            format!("[storage]\ndriver = \"overlay\"\ngraphroot = \"{d}/root\"\nrunroot = \"{d}/runroot\"\n"),
        )
        .unwrap();
    }

    fn command(dir: &Path) -> Command {
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", dir.join("storage.conf"));
        cmd
    }

    fn host(&self) -> String {
        format!("unix://{}", self.dir.join("podman.sock").display())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("service.log")).unwrap_or_default()
    }

    /// Runs `podman` with `args` and returns its stdout; panics if it fails.
    fn cli(&self, args: &[&str]) -> String {
        let out = Podman::command(&self.dir).args(args).output().unwrap();
        assert!(out.status.success(), "podman {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `docker save | podman load`: Podman stores them as
    /// `localhost/cleanroom-offline/…`, and its Docker API answers to the
    /// names without `localhost/`.
    fn load_images(&self) {
        let mut save = Command::new("docker").arg("save").args(IMAGES).stdout(Stdio::piped()).spawn().unwrap();
        let load =
            Podman::command(&self.dir).args(["load", "--quiet"]).stdin(save.stdout.take().unwrap()).output().unwrap();
        assert!(save.wait().unwrap().success(), "docker save {IMAGES:?} failed");
        assert!(load.status.success(), "podman load failed: {}", String::from_utf8_lossy(&load.stderr));
    }

    /// Everything labelled `cleanroom.managed=true`: containers, networks,
    /// volumes, but for the volume cache, which outlives runs on purpose
    /// (docs/caches.md). The storage is this test's own, so all of it is the
    /// runs'.
    fn managed(&self) -> Vec<String> {
        let filter = "label=cleanroom.managed=true";
        let cache: Vec<String> = self
            .cli(&["volume", "ls", "-q", "--filter", "label=cleanroom.cache=volume"])
            .lines()
            .map(|id| format!("volume {id}"))
            .collect();
        let mut out = Vec::new();
        for (kind, args) in [
            ("container", &["ps", "-aq", "--filter", filter][..]),
            ("network", &["network", "ls", "-q", "--filter", filter]),
            ("volume", &["volume", "ls", "-q", "--filter", filter]),
        ] {
            out.extend(self.cli(args).lines().map(|id| format!("{kind} {id}")));
        }
        out.retain(|o| !cache.contains(o));
        out
    }
}

impl Podman {
    /// Waits for the reaper, then asserts that nothing of cleanroom's is left.
    fn assert_nothing_left(&self) {
        let deadline = Instant::now() + REAPER_DEADLINE;
        while !self.managed().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(self.managed(), Vec::<String>::new(), "cleanroom's objects outlived the run in Podman");
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Whatever a failed run left, then the service (this test's child,
        // by its pid), then the storage.
        let started = Instant::now();
        let _ = Podman::command(&self.dir).args(["rm", "-af", "-t", "0"]).output();
        let _ = self.service.kill();
        let _ = self.service.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
        eprintln!("podman: service stopped and storage removed in {:.1} s", started.elapsed().as_secs_f64());
    }
}

/// How the nested run finds Podman.
enum Found {
    /// `DOCKER_HOST` at Podman's socket.
    DockerHost,
    /// Nothing but `CONTAINER_HOST`, with Docker's socket masked (a bind
    /// mount of `/dev/null` over it in a mount namespace of the run's own):
    /// no Docker socket answers.
    ContainerHost,
}

/// What a nested run did: the tests that passed, the containers of its
/// session that started in Podman, how long it took.
struct Ran {
    passed: usize,
    starts: usize,
    took: Duration,
}

/// Whose containers a nested run's tests make.
#[derive(Clone, Copy)]
enum Sessions {
    /// The session the nested run is given.
    Given,
    /// Sessions the tests make themselves (runs in a container).
    TheirOwn,
}

/// Runs `suites` (test targets of the workspace) on `podman` as a nested
/// `cargo test` in a fresh session, and asserts they passed in Podman;
/// `filter`: the tests of theirs to run (all when empty); `sessions`: whose
/// containers prove that Podman ran them.
fn run_suites(podman: &Podman, suites: &[&str], filter: &[&str], found: Found, sessions: Sessions) -> Ran {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let cargo_bin = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cargo = match found {
        Found::DockerHost => {
            let mut cmd = Command::new(&cargo_bin);
            // The docker CLI the room tests ask (events, what is left)
            // follows DOCKER_HOST to Podman too.
            cmd.env("DOCKER_HOST", podman.host());
            cmd
        }
        Found::ContainerHost => {
            let mut cmd = Command::new("unshare");
            cmd.args(["-m", "sh", "-c", "mount --bind /dev/null /var/run/docker.sock && exec \"$0\" \"$@\""])
                .arg(&cargo_bin)
                .env_remove("DOCKER_HOST")
                .env("CONTAINER_HOST", podman.host());
            cmd
        }
    };
    // (The benchmarks have a `rooms` target too, behind a feature.)
    cargo.current_dir(workspace).args(["test", "--workspace", "--exclude", "cleanroom-bench"]);
    for suite in suites {
        cargo.args(["--test", suite]);
    }
    if !filter.is_empty() {
        cargo.arg("--").args(filter);
    }
    // Nothing of the outer nextest run: its run and binary ids would name
    // this test binary in the suites' own messages, and what it sets for a
    // test binary (this package's CARGO_*, the library path) would make the
    // nested cargo rebuild the workspace.
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        let outer = name.starts_with("NEXTEST")
            || name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_")
            || ["CARGO_MANIFEST_DIR", "CARGO_MANIFEST_PATH", "CARGO_CRATE_NAME", "CARGO_PRIMARY_PACKAGE"]
                .contains(&name.as_ref())
            || ["CARGO_TARGET_TMPDIR", "OUT_DIR", "LD_LIBRARY_PATH"].contains(&name.as_ref());
        if outer {
            cargo.env_remove(key);
        }
    }
    let session = fresh_session("podman");
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs().to_string();
    let started = Instant::now();
    let run = cargo.env("CLEANROOM_SESSION", &session).env_remove("CLEANROOM_CONFIG").output().unwrap();
    let took = started.elapsed();
    let text = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "{suites:?} failed on Podman:\n{text}\n--- podman system service:\n{}", podman.log());
    let passed: usize = text
        .lines()
        .filter_map(|l| l.strip_prefix("test result: ok. "))
        .filter_map(|l| l.split(' ').next()?.parse::<usize>().ok())
        .sum();
    // It was Podman that ran them: in this session, or (tests that make
    // sessions of their own) since the run began; the storage is this
    // test's own.
    let label = match sessions {
        Sessions::Given => format!("label=cleanroom.session={session}"),
        Sessions::TheirOwn => "label=cleanroom.managed=true".to_string(),
    };
    let starts = podman
        .cli(&["events", "--stream=false", "--since", &since, "--filter", "event=start", "--filter", &label])
        .lines()
        .count();
    assert!(starts > 0, "no container of cleanroom's ({label}) started in Podman:\n{text}");
    Ran { passed, starts, took }
}

#[test]
fn the_example_suites_and_the_room_tests_pass_on_podman_and_leave_nothing_in_it() {
    if std::env::var_os(OPT_IN).is_none() {
        eprintln!(
            "SKIPPED (opt-in): set {OPT_IN}=1 and run under nextest with podman installed: \
             {OPT_IN}=1 cargo nextest run -p cleanroom-tests --test podman (or bash .ci/podman.sh)"
        );
        return;
    }
    assert!(
        std::env::var_os("NEXTEST").is_some(),
        "run this test under cargo nextest: cargo test holds the build directory's lock that the nested run needs"
    );
    let started = Instant::now();
    let podman = Podman::start();
    podman.load_images();
    let loaded = started.elapsed();
    assert_eq!(podman.managed(), Vec::<String>::new(), "a fresh Podman holds nothing of cleanroom's");

    let all = run_suites(&podman, &SUITES, &[], Found::DockerHost, Sessions::Given);
    assert!(all.passed >= 16, "the example suites and the room tests ran ({} passed)", all.passed);
    // A run's reaper removes it once cargo has exited.
    podman.assert_nothing_left();
    // Found without DOCKER_HOST: the example suites (they ask no docker CLI).
    let found = run_suites(&podman, &SUITES[..2], &[], Found::ContainerHost, Sessions::Given);
    assert!(found.passed >= 9, "the example suites ran ({} passed)", found.passed);
    podman.assert_nothing_left();
    // Tests in a container with Podman's socket mounted reach the services
    // at their network's gateway (or where CLEANROOM_HOST says): published
    // on every address, which Podman 4.3 does not take 0.0.0.0 to mean.
    let in_container = run_suites(
        &podman,
        &["environments"],
        &["tests_in_a_container_with_the_socket_mounted"],
        Found::DockerHost,
        Sessions::TheirOwn,
    );
    assert!(in_container.passed >= 2, "the tests in a container ran ({} passed)", in_container.passed);
    podman.assert_nothing_left();
    eprintln!(
        "podman: images loaded in {:.1} s; with DOCKER_HOST {} tests passed in {:.1} s, {} containers started in \
         Podman; found through CONTAINER_HOST with no Docker socket answering, {} passed in {:.1} s, {} started; \
         tests in a container with the socket mounted, {} passed in {:.1} s; whole proof {:.1} s",
        loaded.as_secs_f64(),
        all.passed,
        all.took.as_secs_f64(),
        all.starts,
        found.passed,
        found.took.as_secs_f64(),
        found.starts,
        in_container.passed,
        in_container.took.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
