//! Live tests of configuration: what the builder's customizers and
//! `cleanroom.toml` ask for, read back from `docker inspect`; image
//! substitution; and a broken configuration stopping the run before any
//! container starts.
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
        let run = run_child(
            &session,
            CHILD,
            &[("CLEANROOM_CONFIG", path.to_str().unwrap()), ("CLEANROOM_FILED_PIDS", "40")],
        );
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
            "invalid cleanroom configuration: services.filed.memroy in {}: unknown key; expected one of: image, memory, cpus, pids, shm_size, env, cmd, args, labels, tmpfs",
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
        assert_child_fails("cfg-env", &path, &[("CLEANROOM_FILED_MEMORY", "lots")], "CLEANROOM_FILED_MEMORY: \"lots\" is not a size");
        std::fs::remove_file(path).unwrap();
    }
}
