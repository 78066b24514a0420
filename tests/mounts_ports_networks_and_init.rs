//! Live tests of the customizers that go beyond a container's settings:
//! bind mounts and named volumes, fixed port mappings, the entrypoint, extra
//! networks, health checks from the file and init commands. Each is set once
//! in code and once in `cleanroom.toml`, and read back from `docker inspect`.
//! Where settings come from, and which of code, file and environment wins, is
//! `tests/config_file_and_environment.rs`.
//!
//! The services take their paths, names and ports from variables the parent
//! test sets, so every test runs `#[ignore]`d child tests of this binary in a
//! child process of its own session, and then asks Docker what is left.

use std::collections::BTreeMap;

use cleanroom::{Container, GenericContainer, HealthCheck, Mount};
use cleanroom_tests::{assert_nothing_left, docker, fresh_session, run_child, EventWatch};

const BUSYBOX: &str = "cleanroom-offline/busybox:1.35";
/// Serves a page on port 80, through the entrypoint `sh -c`.
const SERVE: &str = "mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 80 -h /www";
/// Proves it ran: a file in the volume, with a line read from the bind mount.
const SEED: &str = "echo seeded > /cache/init && cat /fixtures/hello.txt >> /cache/init";

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by the parent test"))
}

/// Every customizer, in code.
#[cleanroom::service]
fn coded() -> GenericContainer {
    GenericContainer::new(BUSYBOX)
        .with_entrypoint_exec(["sh", "-c"])
        .with_cmd([SERVE])
        .with_port_mapping(var("CUSTOMIZE_HOST_PORT").parse().unwrap(), 80)
        .with_health_check(HealthCheck::http(80, "/"))
        .with_mount(Mount::bind(var("CUSTOMIZE_FIXTURES"), "/fixtures").read_only())
        .with_volume(var("CUSTOMIZE_VOLUME"), "/cache")
        .with_init_command(["sh", "-c", SEED])
        .with_network(var("CUSTOMIZE_NETWORK"))
}

/// A plain service the file customizes; its own health check never passes,
/// so it starts only if the file's checks replace it.
#[cleanroom::service]
fn filed() -> GenericContainer {
    GenericContainer::new(BUSYBOX).with_cmd(["sleep", "600"]).with_health_check(HealthCheck::file("/never-there"))
}

/// Its second init command fails.
#[cleanroom::service]
fn failing_init() -> GenericContainer {
    GenericContainer::new(BUSYBOX).with_cmd(["sleep", "600"]).with_init_command(["true"]).with_init_command([
        "sh",
        "-c",
        "echo broken seed >&2; exit 3",
    ])
}

/// A slow init command that leaves one line per run of it.
#[cleanroom::service]
fn counted() -> GenericContainer {
    GenericContainer::new(BUSYBOX).with_cmd(["sleep", "600"]).with_init_command([
        "sh",
        "-c",
        "sleep 3; echo once >> /tmp/init-count",
    ])
}

#[cleanroom::service]
fn missing_bind() -> GenericContainer {
    GenericContainer::new(BUSYBOX).with_cmd(["sleep", "600"]).with_bind_mount("/no/such/cleanroom/dir", "/x")
}

#[cleanroom::service]
fn missing_network() -> GenericContainer {
    GenericContainer::new(BUSYBOX).with_cmd(["sleep", "600"]).with_network("cleanroom-test-no-such-network")
}

fn inspect(id: &str, format: &str) -> String {
    docker(&["inspect", "-f", format, id]).trim().to_string()
}

fn json(id: &str, what: &str) -> serde_json::Value {
    serde_json::from_str(&inspect(id, &format!("{{{{json {what}}}}}"))).unwrap()
}

fn exec(c: &Container, cmd: &[&str]) -> (i64, String) {
    let out = c.exec_blocking(cmd.iter().copied()).unwrap();
    (out.exit_code, out.stdout)
}

/// What the parent set up, read back in the child from Docker.
fn check_customized(c: &Container) {
    let id = c.id();
    let host_port: u16 = var("CUSTOMIZE_HOST_PORT").parse().unwrap();
    // Entrypoint: Docker gets it whole, and the command after it.
    assert_eq!(json(id, ".Config.Entrypoint"), serde_json::json!(["sh", "-c"]));
    assert_eq!(json(id, ".Config.Cmd"), serde_json::json!([SERVE]));
    // Ports: the fixed mapping, on 127.0.0.1 only.
    let bindings = json(id, ".HostConfig.PortBindings");
    assert_eq!(
        bindings["80/tcp"],
        serde_json::json!([{ "HostIp": "127.0.0.1", "HostPort": host_port.to_string() }]),
        "{bindings}"
    );
    assert_eq!(c.port(80), host_port);
    // Mounts.
    let mounts: BTreeMap<String, serde_json::Value> = json(id, ".Mounts")
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["Destination"].as_str().unwrap().to_string(), m.clone()))
        .collect();
    let bind = &mounts["/fixtures"];
    assert_eq!(
        (bind["Type"].as_str(), bind["Source"].as_str(), bind["RW"].as_bool()),
        (Some("bind"), Some(&*var("CUSTOMIZE_FIXTURES")), Some(false)),
        "{bind}"
    );
    let volume = &mounts["/cache"];
    assert_eq!(
        (volume["Type"].as_str(), volume["Name"].as_str(), volume["RW"].as_bool()),
        (Some("volume"), Some(&*var("CUSTOMIZE_VOLUME")), Some(true)),
        "{volume}"
    );
    assert_eq!(exec(c, &["cat", "/fixtures/hello.txt"]), (0, "fixture\n".to_string()));
    assert_ne!(exec(c, &["touch", "/fixtures/new"]).0, 0, "the bind mount is read-only");
    // The volume: cleanroom's when it made it, untouched when it existed.
    let labels = docker(&["volume", "inspect", "-f", "{{json .Labels}}", &var("CUSTOMIZE_VOLUME")]);
    let labels: serde_json::Value = serde_json::from_str(labels.trim()).unwrap();
    let session = var("CLEANROOM_SESSION");
    if std::env::var("CUSTOMIZE_VOLUME_EXISTS").is_ok() {
        assert_eq!(
            labels["cleanroom.session"],
            serde_json::Value::Null,
            "an existing volume is used as it is: {labels}"
        );
    } else {
        assert_eq!(
            (labels["cleanroom.managed"].as_str(), labels["cleanroom.session"].as_str()),
            (Some("true"), Some(&*session)),
            "{labels}"
        );
    }
    // The init command ran, once, before the test.
    assert_eq!(exec(c, &["cat", "/cache/init"]), (0, "seeded\nfixture\n".to_string()));
    // Networks: the run's and the extra one.
    let networks = json(id, ".NetworkSettings.Networks");
    assert!(networks.get(var("CUSTOMIZE_NETWORK")).is_some(), "{networks}");
    // (`cleanroom-<session>`, with `-p<pid>` for a process without a reaper)
    let run_network = format!("cleanroom-{session}");
    assert!(networks.as_object().unwrap().keys().any(|k| k.starts_with(&run_network)), "{networks}");
    println!("cleanroom-test: CHECKED");
}

mod child {
    use super::*;

    #[cleanroom::test(coded)]
    #[ignore = "run by the customizer tests"]
    fn coded_is_customized(coded: Container) {
        check_customized(&coded);
    }

    #[cleanroom::test(filed)]
    #[ignore = "run by the customizer tests with a configuration file"]
    fn filed_is_customized(filed: Container) {
        check_customized(&filed);
        let random = json(filed.id(), ".HostConfig.PortBindings")["8080/tcp"][0].clone();
        assert_eq!(random["HostIp"], "127.0.0.1");
        assert_eq!(random["HostPort"], "", "a bare port in `ports` is published on a random port");
        assert!(filed.try_port(8080).is_some());
    }

    #[cleanroom::test(failing_init)]
    #[ignore = "run by the customizer tests"]
    fn needs_failing_init(failing_init: Container) {
        let _ = failing_init;
    }

    #[cleanroom::test(counted)]
    #[ignore = "run by the customizer tests"]
    fn counted_ran_its_init_once(counted: Container) {
        assert_eq!(exec(&counted, &["cat", "/tmp/init-count"]), (0, "once\n".to_string()));
        println!("cleanroom-test: CHECKED");
    }

    #[cleanroom::test(missing_bind)]
    #[ignore = "run by the customizer tests"]
    fn needs_missing_bind(missing_bind: Container) {
        let _ = missing_bind;
    }

    #[cleanroom::test(missing_network)]
    #[ignore = "run by the customizer tests"]
    fn needs_missing_network(missing_network: Container) {
        let _ = missing_network;
    }
}

/// A directory with `fixtures/hello.txt`, and a port nothing listens on.
struct Setup {
    dir: std::path::PathBuf,
    port: u16,
    network: String,
    volume: String,
    session: String,
}

impl Setup {
    /// Makes the directory and a network labelled with the test's session
    /// (not cleanroom's label: cleanroom must not remove it).
    fn new(tag: &str) -> Setup {
        let session = fresh_session(tag);
        let dir = std::env::temp_dir().join(format!("cleanroom-{session}"));
        std::fs::create_dir_all(dir.join("fixtures")).unwrap();
        std::fs::write(dir.join("fixtures/hello.txt"), "fixture\n").unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let network = format!("cleanroom-test-net-{session}");
        docker(&["network", "create", "--label", &format!("cleanroom-test.session={session}"), &network]);
        Setup { dir, port, network, volume: format!("cleanroom-test-vol-{session}"), session }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("CUSTOMIZE_HOST_PORT", self.port.to_string()),
            ("CUSTOMIZE_FIXTURES", self.dir.join("fixtures").display().to_string()),
            ("CUSTOMIZE_VOLUME", self.volume.clone()),
            ("CUSTOMIZE_NETWORK", self.network.clone()),
        ]
    }

    fn run(&self, test: &str, extra: &[(&str, String)]) -> cleanroom_tests::ChildRun {
        let mut env = self.env();
        env.extend(extra.iter().cloned());
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run_child(&self.session, &["--ignored", "--exact", test, "--nocapture"], &env)
    }

    /// Whether Docker still has the test's network and volume.
    fn left(&self) -> (bool, bool) {
        let filter = format!("label=cleanroom-test.session={}", self.session);
        let networks = docker(&["network", "ls", "-q", "--filter", &filter]);
        let volume = docker(&["volume", "ls", "-q", "--filter", &format!("name=^{}$", self.volume)]);
        (!networks.trim().is_empty(), !volume.trim().is_empty())
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker").args(["network", "rm", &self.network]).output();
        let _ = std::process::Command::new("docker").args(["volume", "rm", &self.volume]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

mod should {
    use super::*;

    #[test]
    fn give_docker_mounts_ports_entrypoint_networks_and_init_set_in_code() {
        let setup = Setup::new("cust-code");
        let run = setup.run("child::coded_is_customized", &[]);
        assert!(run.passed() && run.text().contains("cleanroom-test: CHECKED"), "{}", run.text());
        // The reaper removed the container and the volume cleanroom made
        // (labelled with the session), and left the network it only joined.
        assert_nothing_left(&setup.session);
        assert_eq!(setup.left(), (true, false), "the test's network stays, the run's volume is gone");
    }

    /// Without a reaper the process that made the volume removes it at exit.
    #[test]
    fn remove_the_volume_it_made_at_exit_without_a_reaper() {
        let setup = Setup::new("cust-noreaper");
        let run = setup.run("child::coded_is_customized", &[("CLEANROOM_NO_REAPER", "1".into())]);
        assert!(run.passed() && run.text().contains("cleanroom-test: CHECKED"), "{}", run.text());
        assert!(!run.text().contains("could not remove"), "{}", run.text());
        assert_eq!(setup.left(), (true, false), "the volume went with the process");
        assert_nothing_left(&setup.session);
    }

    #[test]
    fn give_docker_mounts_ports_entrypoint_checks_networks_and_init_set_in_the_file() {
        let setup = Setup::new("cust-file");
        // An existing volume is used, and left alone.
        docker(&["volume", "create", "--label", &format!("cleanroom-test.session={}", setup.session), &setup.volume]);
        let config = setup.dir.join("cleanroom.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[services.filed]
entrypoint = ["sh", "-c"]
cmd = ["{SERVE}"]
ports = [8080, "{port}:80"]
mounts = [
  {{ type = "bind", source = "fixtures", target = "/fixtures", read_only = true }},
  {{ type = "volume", source = "{volume}", target = "/cache" }},
]
health = [{{ http = {{ port = 80, path = "/" }} }}, {{ file = "/www/index.html" }}]
health_timeout = 1
startup_timeout = 30
init = [["sh", "-c", "{SEED}"]]
networks = ["{network}"]
"#,
                port = setup.port,
                volume = setup.volume,
                network = setup.network,
            ),
        )
        .unwrap();
        let run = setup.run(
            "child::filed_is_customized",
            &[("CLEANROOM_CONFIG", config.display().to_string()), ("CUSTOMIZE_VOLUME_EXISTS", "1".into())],
        );
        assert!(run.passed() && run.text().contains("cleanroom-test: CHECKED"), "{}", run.text());
        assert_nothing_left(&setup.session);
        assert_eq!(setup.left(), (true, true), "the test's network and its own volume stay");
    }

    #[test]
    fn fail_the_start_naming_the_init_command_its_exit_code_and_stderr() {
        let watch = EventWatch::start(&fresh_session("cust-init-fails"));
        let run = run_child(watch.session(), &["--ignored", "--exact", "child::needs_failing_init"], &[]);
        let text = run.text();
        assert!(!run.passed(), "{text}");
        let expected = format!("failing_init (image {BUSYBOX}): init command `sh -c echo broken seed >&2; exit 3` exited with code 3; its stderr:\nbroken seed\n");
        assert!(text.contains(&expected), "want {expected:?} in:\n{text}");
        watch.settle(std::time::Duration::from_secs(10));
        assert_eq!(watch.starts_of("failing_init"), 1, "a failing init command is not retried");
        assert_nothing_left(watch.session());
    }

    /// Two processes of one run at once: one creates the container and runs
    /// the (slow) init command; the other attaches and waits for it to be
    /// done, and does not run it again.
    #[test]
    fn run_init_commands_once_in_the_process_that_creates_the_container() {
        let watch = EventWatch::start(&fresh_session("cust-init-once"));
        let children: Vec<_> = (0..2)
            .map(|_| {
                cleanroom_tests::child_command(
                    watch.session(),
                    &["--ignored", "--exact", "child::counted_ran_its_init_once", "--nocapture"],
                )
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(out.status.success() && text.contains("cleanroom-test: CHECKED"), "{text}");
        }
        assert_eq!(watch.starts_of("counted"), 1);
        assert_nothing_left(watch.session());
    }

    #[test]
    fn refuse_a_bind_mount_whose_host_path_does_not_exist_before_creating_anything() {
        let watch = EventWatch::start(&fresh_session("cust-bind"));
        let run = run_child(watch.session(), &["--ignored", "--exact", "child::needs_missing_bind"], &[]);
        let expected = "invalid cleanroom configuration: service `missing_bind`, bind mount of /x: the host path /no/such/cleanroom/dir does not exist";
        assert!(!run.passed() && run.text().contains(expected), "want {expected:?} in:\n{}", run.text());
        assert_eq!(watch.created_services(), Vec::<String>::new());
    }

    #[test]
    fn refuse_a_missing_bind_source_in_the_file_naming_the_key_and_the_path() {
        let dir = std::env::temp_dir().join(format!("cleanroom-cust-badbind-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("cleanroom.toml");
        std::fs::write(
            &config,
            "[services.filed]\nmounts = [{ type = \"bind\", source = \"absent\", target = \"/x\" }]\n",
        )
        .unwrap();
        let watch = EventWatch::start(&fresh_session("cust-badbind"));
        let run = run_child(
            watch.session(),
            &["--ignored", "--exact", "child::filed_is_customized"],
            &[("CLEANROOM_CONFIG", config.to_str().unwrap())],
        );
        let expected = format!(
            "services.filed.mounts in {}: entry 1: the bind mount's host path {} does not exist (a relative source is taken from the file's directory, {})",
            config.display(),
            dir.join("absent").display(),
            dir.display()
        );
        assert!(!run.passed() && run.text().contains(&expected), "want {expected:?} in:\n{}", run.text());
        assert_eq!(watch.created_services(), Vec::<String>::new());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn name_a_network_that_does_not_exist() {
        let session = fresh_session("cust-nonet");
        let run = run_child(&session, &["--ignored", "--exact", "child::needs_missing_network"], &[]);
        let expected = "could not connect it to the network cleanroom-test-no-such-network";
        assert!(!run.passed() && run.text().contains(expected), "want {expected:?} in:\n{}", run.text());
        assert!(run.text().contains("cleanroom joins existing networks only"), "{}", run.text());
        assert_nothing_left(&session);
    }
}
