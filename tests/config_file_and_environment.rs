//! Live tests of where a service's settings come from: set in code, then
//! changed by `cleanroom.toml` and the environment (each beating the one
//! before), read back from `docker inspect`; how the file is found; image
//! substitution and pull policies; and a broken configuration stopping the
//! run before any container starts. Mounts, ports, networks, the entrypoint,
//! health checks and init commands are `tests/mounts_ports_networks_and_init.rs`.
//!
//! The file tests run `#[ignore]`d child tests of this binary in a child
//! process with `CLEANROOM_CONFIG` pointing at a file written for the test,
//! because configuration is read once per process.

use cleanroom::{Container, GenericContainer};
use cleanroom_tests::{assert_nothing_left, docker, fresh_session, run_child, EventWatch};

const BUSYBOX: &str = "cleanroom-offline/busybox:1.35";

/// Every customizer set in code.
#[cleanroom::service]
fn limited() -> GenericContainer {
    GenericContainer::new(BUSYBOX)
        .with_cmd(["sleep", "600"])
        .with_env("GREETING", "hello")
        .with_label("team", "config-tests")
        .with_memory_limit(64 * 1024 * 1024)
        .with_cpus(0.5)
        .with_pids_limit(32)
        .with_shm_size(16 * 1024 * 1024)
}

/// A service whose image names no registry, so that only `run.image_prefix`
/// makes it one of the local images; the file sets the rest.
#[cleanroom::service]
fn filed() -> GenericContainer {
    GenericContainer::new("busybox:1.35").with_cmd(["sleep", "600"]).with_env("FROM_CODE", "1").with_pids_limit(8)
}

/// A service on a local image, for the pull policies.
#[cleanroom::service]
fn pulled() -> GenericContainer {
    GenericContainer::new(BUSYBOX).with_cmd(["sleep", "600"])
}

fn inspect(id: &str, format: &str) -> String {
    docker(&["inspect", "-f", format, id]).trim().to_string()
}

mod should {
    use super::*;

    #[cleanroom::test(limited)]
    fn give_docker_every_limit_and_setting_made_in_code(limited: Container) {
        let id = limited.id();
        assert_eq!(inspect(id, "{{.HostConfig.Memory}}"), (64 * 1024 * 1024).to_string());
        assert_eq!(inspect(id, "{{.HostConfig.NanoCpus}}"), "500000000");
        assert_eq!(inspect(id, "{{.HostConfig.PidsLimit}}"), "32");
        assert_eq!(inspect(id, "{{.HostConfig.ShmSize}}"), (16 * 1024 * 1024).to_string());
        assert!(inspect(id, "{{json .Config.Env}}").contains("\"GREETING=hello\""));
        assert_eq!(inspect(id, "{{index .Config.Labels \"team\"}}"), "config-tests");
        assert_eq!(inspect(id, "{{json .Config.Cmd}}"), r#"["sleep","600"]"#);
    }

    /// The file and environment of this child's parent test decide these
    /// values; see `apply_the_file_and_environment_to_a_service_defined_in_code`.
    #[cleanroom::test(filed)]
    #[ignore = "run by the configuration tests with a configuration file"]
    fn child_filed_matches_its_configuration(filed: Container) {
        let id = filed.id();
        assert_eq!(inspect(id, "{{.Config.Image}}"), BUSYBOX, "run.image_prefix made busybox:1.35 the local image");
        assert_eq!(inspect(id, "{{.HostConfig.Memory}}"), (96 * 1024 * 1024).to_string(), "memory from the file");
        assert_eq!(inspect(id, "{{.HostConfig.NanoCpus}}"), "250000000", "cpus from the file");
        assert_eq!(inspect(id, "{{.HostConfig.PidsLimit}}"), "40", "pids: the environment beats the file and the code");
        assert_eq!(inspect(id, "{{.HostConfig.ShmSize}}"), (8 * 1024 * 1024).to_string(), "shm_size from the file");
        let env = inspect(id, "{{json .Config.Env}}");
        assert!(env.contains("\"FROM_FILE=yes\"") && env.contains("\"FROM_CODE=1\""), "{env}");
        assert_eq!(inspect(id, "{{index .Config.Labels \"origin\"}}"), "file");
        assert_eq!(inspect(id, "{{json .Config.Cmd}}"), r#"["sh","-c","sleep 600"]"#, "cmd replaced, args appended");
        assert_eq!(inspect(id, "{{json .HostConfig.Tmpfs}}"), r#"{"/scratch":"size=1m"}"#);
        println!("cleanroom-test: CHECKED");
    }

    fn write_config(tag: &str, text: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("cleanroom-{tag}-{}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    const CHILD: &[&str] = &["--ignored", "--exact", "should::child_filed_matches_its_configuration", "--nocapture"];

    #[test]
    fn apply_the_file_and_environment_to_a_service_defined_in_code() {
        let path = write_config(
            "filed",
            r#"
[run]
image_prefix = "cleanroom-offline/"

[services.filed]
memory = "96MiB"
cpus = 0.25
pids = 48
shm_size = "8m"
env = { FROM_FILE = "yes" }
cmd = ["sh", "-c"]
args = ["sleep 600"]
labels = { origin = "file" }
tmpfs = { "/scratch" = "size=1m" }
"#,
        );
        let session = fresh_session("cfg-file");
        let run =
            run_child(&session, CHILD, &[("CLEANROOM_CONFIG", path.to_str().unwrap()), ("CLEANROOM_FILED_PIDS", "40")]);
        assert!(run.passed() && run.text().contains("cleanroom-test: CHECKED"), "{}", run.text());
        assert_nothing_left(&session);
        std::fs::remove_file(path).unwrap();
    }

    /// Runs the child test with `CLEANROOM_CONFIG=config` (and `env`): it
    /// must fail saying `expected` before any container of its session is
    /// created, as Docker's event stream shows.
    fn assert_child_fails(tag: &str, config: &std::path::Path, env: &[(&str, &str)], expected: &str) {
        let mut env = env.to_vec();
        env.push(("CLEANROOM_CONFIG", config.to_str().unwrap()));
        assert_child_fails_with(tag, &env, expected);
    }

    fn assert_child_fails_with(tag: &str, env: &[(&str, &str)], expected: &str) {
        let watch = EventWatch::start(&fresh_session(tag));
        let run = run_child(watch.session(), CHILD, env);
        assert!(!run.passed());
        assert!(run.text().contains(expected), "want {expected:?} in:\n{}", run.text());
        assert_eq!(watch.created_services(), Vec::<String>::new(), "a container was created");
    }

    #[test]
    fn put_the_image_prefix_before_the_image_and_say_which_image_is_missing() {
        let path = write_config("prefix", "[run]\nimage_prefix = \"cleanroom-offline/absent/\"\n");
        assert_child_fails("cfg-prefix", &path, &[], "image cleanroom-offline/absent/busybox:1.35 not found locally");
        std::fs::remove_file(path).unwrap();
    }

    /// cargo sets `CARGO_MANIFEST_DIR` for test processes: the file is looked
    /// for from there up to the workspace root.
    #[test]
    fn find_the_file_from_the_crates_directory_up_to_the_workspace_root() {
        let root = std::env::temp_dir().join(format!("cleanroom-ws-{}", std::process::id()));
        let member = root.join("crates/app");
        std::fs::create_dir_all(&member).unwrap();
        std::fs::write(root.join("Cargo.toml"), "[workspace]\nmembers = [\"crates/app\"]\n").unwrap();
        std::fs::write(member.join("Cargo.toml"), "[package]\nname = \"app\"\n").unwrap();
        std::fs::write(root.join("cleanroom.toml"), "[run]\nimage_prefix = \"cleanroom-offline/found/\"\n").unwrap();
        assert_child_fails_with(
            "cfg-found",
            &[("CARGO_MANIFEST_DIR", member.to_str().unwrap())],
            "image cleanroom-offline/found/busybox:1.35 not found locally",
        );
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn refuse_to_start_with_an_unknown_key_in_the_file() {
        let path = write_config("typo", "[services.filed]\nmemroy = \"1g\"\n");
        let expected = format!(
            "invalid cleanroom configuration: services.filed.memroy in {}: unknown key; expected one of: image, memory, cpus, pids, shm_size, disk_read_bps, disk_write_bps, disk_read_iops, disk_write_iops, disk_device, disk_size, network_latency, network_jitter, network_upload, network_download, network_reset_rate, env, cmd, args, labels, tmpfs",
            path.display()
        );
        assert_child_fails("cfg-typo", &path, &[], &expected);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn refuse_to_start_with_a_configuration_file_that_cannot_be_read() {
        let path = std::env::temp_dir().join(format!("cleanroom-absent-{}.toml", std::process::id()));
        let expected = format!("invalid cleanroom configuration: {} (CLEANROOM_CONFIG or found from the crate's directory): cannot read the file", path.display());
        assert_child_fails("cfg-absent", &path, &[], &expected);
    }

    #[test]
    fn refuse_to_start_with_a_bad_value_in_the_environment() {
        let path = write_config("env", "");
        assert_child_fails(
            "cfg-env",
            &path,
            &[("CLEANROOM_FILED_MEMORY", "lots")],
            "CLEANROOM_FILED_MEMORY: \"lots\" is not a size",
        );
        std::fs::remove_file(path).unwrap();
    }

    // ------------------------------------------------------------------
    // Pull policies (`run.pull`). Nothing can be pulled on the machines
    // these tests run on, so `always` can only be shown to try.
    // ------------------------------------------------------------------

    #[cleanroom::test(pulled)]
    #[ignore = "run by the pull policy tests"]
    fn child_pulled_runs(pulled: Container) {
        assert_eq!(inspect(pulled.id(), "{{.Config.Image}}"), BUSYBOX);
        println!("cleanroom-test: RAN");
    }

    const PULLED: &[&str] = &["--ignored", "--exact", "should::child_pulled_runs", "--nocapture"];

    #[test]
    fn refuse_at_once_to_pull_an_absent_image_under_never() {
        let absent = "cleanroom-offline/absent-for-pull-never:1";
        let watch = EventWatch::start(&fresh_session("pull-never"));
        let run =
            run_child(watch.session(), PULLED, &[("CLEANROOM_PULL", "never"), ("CLEANROOM_PULLED_IMAGE", absent)]);
        assert!(!run.passed());
        let expected = format!("image {absent} not found locally and pulling is off (CLEANROOM_PULL=never)");
        assert!(run.text().contains(&expected), "want {expected:?} in:\n{}", run.text());
        assert!(!run.text().contains("the pull failed"), "a pull was tried:\n{}", run.text());
        assert_eq!(watch.created_services(), Vec::<String>::new(), "a container was created");
        assert_nothing_left(watch.session());
    }

    #[test]
    fn use_a_present_image_without_pulling_it_under_missing() {
        let pulls = ImagePulls::start(BUSYBOX);
        let session = fresh_session("pull-missing");
        let report_path = std::env::temp_dir().join(format!("cleanroom-pull-missing-{}.json", std::process::id()));
        let run = run_child(
            &session,
            PULLED,
            &[("CLEANROOM_PULL", "missing"), ("CLEANROOM_REPORT_JSON", report_path.to_str().unwrap())],
        );
        assert!(run.passed() && run.text().contains("cleanroom-test: RAN"), "{}", run.text());
        assert_eq!(pulls.pulls(), 0, "docker pulled {BUSYBOX}, which is on this machine");
        let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
        assert_eq!(report["caches"]["image"]["hits"], 1, "the image cache counts a present image as a hit: {report}");
        assert_eq!(report["caches"]["image"]["misses"], 0, "{report}");
        std::fs::remove_file(report_path).unwrap();
        assert_nothing_left(&session);
    }

    /// Two processes of one run start at once with `always`: both fail
    /// naming the image, but only one of them tried the pull; the other
    /// waited for its outcome.
    #[test]
    fn try_to_pull_a_present_image_once_per_run_under_always() {
        let session = fresh_session("pull-always");
        let children: Vec<_> = (0..2)
            .map(|_| {
                cleanroom_tests::child_command(&session, PULLED)
                    .env("CLEANROOM_PULL", "always")
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let texts: Vec<String> = children
            .into_iter()
            .map(|c| {
                let out = c.wait_with_output().unwrap();
                assert!(!out.status.success());
                format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
            })
            .collect();
        for text in &texts {
            let expected = format!("run.pull is `always` and the pull of {BUSYBOX} failed");
            assert!(text.contains(&expected), "want {expected:?} in:\n{text}");
        }
        let waited = texts.iter().filter(|t| t.contains("another process of this run pulled it and failed")).count();
        assert_eq!(waited, 1, "one process pulls for the run, the other waits for it:\n{}", texts.join("\n----\n"));
        assert_nothing_left(&session);
    }
}

/// Docker's `pull` events for one image, from a live event stream: a tag
/// made and removed on the image proves the stream is connected.
struct ImagePulls {
    child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    image: String,
}

impl ImagePulls {
    fn start(image: &str) -> ImagePulls {
        use std::io::BufRead;
        let mut child = std::process::Command::new("docker")
            .args([
                "events",
                "--filter",
                "type=image",
                "--format",
                "{{.Action}} {{.Actor.ID}} {{index .Actor.Attributes \"name\"}}",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let (repo, _) = image.rsplit_once(':').unwrap();
        let marker = format!("{repo}:events-marker-{}", std::process::id());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !lines.lock().unwrap().iter().any(|l| l.contains(&marker)) {
            docker(&["tag", image, &marker]);
            docker(&["rmi", &marker]);
            std::thread::sleep(std::time::Duration::from_millis(100));
            assert!(std::time::Instant::now() < deadline, "docker events never showed the marker tag");
        }
        ImagePulls { child, lines, image: image.to_string() }
    }

    /// Pulls of the image seen so far.
    fn pulls(&self) -> usize {
        self.lines.lock().unwrap().iter().filter(|l| l.starts_with("pull ") && l.contains(&self.image)).count()
    }
}

impl Drop for ImagePulls {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
