//! The `cleanroom` command run as a user runs it: the built binaries, real
//! Docker, the real runtime directory.
//!
//! `cleanroom test` runs `$CARGO test …`. Here `CARGO` is this very test
//! binary, which libtest then runs with the CLI's arguments and environment:
//! a real test process that reports the configuration it resolved.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Output};

const BUSYBOX: &str = "cleanroom-offline/busybox:1.35";

fn cargo_cleanroom(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cargo-cleanroom"));
    // As cargo runs it: `cargo cleanroom ls` is `cargo-cleanroom cleanroom ls`.
    cmd.arg("cleanroom").args(args);
    cmd
}

fn run(mut cmd: Command) -> (i32, String, String) {
    let Output { status, stdout, stderr } = cmd.output().expect("the binary runs");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("the docker CLI runs");
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("t-cli-{tag}-{}-{nanos:x}", std::process::id())
}

fn uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").unwrap().uid()
}

/// A stopped container with cleanroom's labels for `session`, made by this
/// owner (or without `cleanroom.managed` when `managed` is false); `owner`
/// replaces the owner's labels given.
fn labelled_container(
    xdg: &std::path::Path,
    session: &str,
    service: &str,
    managed: bool,
    owner: &[(&str, &str)],
) -> String {
    let mut args = vec!["create".to_string()];
    if managed {
        args.extend(["--label".into(), "cleanroom.managed=true".into()]);
    }
    let mut labels = vec![format!("cleanroom.session={session}"), format!("cleanroom.service={service}")];
    for (key, value) in cleanroom_runtime::admin::owner_labels_in(xdg) {
        let value = owner.iter().find(|(k, _)| *k == key).map_or(value, |(_, v)| v.to_string());
        labels.push(format!("{key}={value}"));
    }
    for label in labels {
        args.extend(["--label".into(), label]);
    }
    args.extend([BUSYBOX.to_string(), "true".to_string()]);
    docker(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn exists(id: &str) -> bool {
    Command::new("docker").args(["inspect", id]).output().unwrap().status.success()
}

/// The lock file of `session` in the runtime directory of `XDG_RUNTIME_DIR=xdg`.
fn lock_file(xdg: &std::path::Path, session: &str) -> PathBuf {
    let dir = xdg.join("cleanroom");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    dir.join(format!("{session}.lock"))
}

/// Held by the tests that run a real `prune`: one would sweep the dead run
/// another one set up before that one looks at it. A file lock, since
/// nextest runs each test in a process of its own.
fn prune_lock() -> File {
    let file = File::create(std::env::temp_dir().join(format!("cleanroom-cli-tests-prune-{}.lock", uid()))).unwrap();
    file.lock().unwrap();
    file
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(tag));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

mod child {
    /// Run by `cleanroom test` in `the_command_line_beats_the_environment_which_beats_the_file`.
    #[test]
    #[ignore = "run through `cleanroom test`"]
    fn child_reports_its_configuration() {
        let c = cleanroom_runtime::Config::from_env().unwrap();
        println!(
            "CHILD keep={:?} pool={} reuse_ttl={:?} startup_timeout={:?}",
            c.keep, c.pool, c.reuse_ttl, c.startup_timeout
        );
    }

    #[test]
    #[ignore = "run through `cleanroom test`"]
    fn child_fails() {
        panic!("failing on purpose");
    }
}

mod should {
    use super::*;

    #[test]
    fn explain_every_command_with_help() {
        for command in [&[][..], &["test"], &["config"], &["ls"], &["prune"], &["report"]] {
            let mut args = command.to_vec();
            args.push("--help");
            let (code, out, _) = run(cargo_cleanroom(&args));
            assert_eq!(code, 0, "{args:?}");
            assert!(
                out.contains(&format!("Usage: cargo cleanroom {}", command.join(" ")).trim_end().to_string()),
                "{args:?}: {out}"
            );
        }
        let (_, out, _) = run(cargo_cleanroom(&["--help"]));
        assert!(out.contains("Exit codes: 0 done"), "{out}");
        let (_, out, _) = run(cargo_cleanroom(&["test", "--help"]));
        for flag in ["--keep", "--reuse", "--pull", "--image-prefix", "--image", "--set", "--config", "--nextest"] {
            assert!(out.contains(flag), "test --help lacks {flag}");
        }
    }

    #[test]
    fn run_as_cleanroom_too() {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cleanroom"));
        cmd.args(["config", "--pool", "7"]).env_remove("CLEANROOM_POOL").env_remove("CLEANROOM_CONFIG");
        let (code, out, _) = run(cmd);
        assert_eq!(code, 0);
        assert!(out.contains("run.pool = \"7\"  (command line: --pool)"), "{out}");
    }

    #[test]
    fn exit_2_on_a_bad_command_line() {
        assert_eq!(run(cargo_cleanroom(&["bogus"])).0, 2);
        assert_eq!(run(cargo_cleanroom(&["config", "--keep"])).0, 2);
        assert_eq!(run(cargo_cleanroom(&["config", "--reuse", "--no-reuse"])).0, 2);
    }

    #[test]
    fn refuse_a_misspelt_flag_of_test_with_exit_2_instead_of_handing_it_to_cargo() {
        // `CARGO` would run this test binary: a flag handed on would run it.
        let mut cmd = cargo_cleanroom(&["test", "--reuce", "-p", "app"]);
        cmd.env("CARGO", "/nonexistent/cargo-must-not-run");
        let (code, out, err) = run(cmd);
        assert_eq!(code, 2, "{out}{err}");
        assert!(err.contains("unknown flag `--reuce` for `cargo cleanroom test`: did you mean `--reuse`?"), "{err}");
        assert!(!err.contains("cargo-must-not-run"), "cargo was not run: {err}");
    }

    #[test]
    fn exit_3_on_a_bad_configuration_naming_the_flag() {
        let (code, _, err) = run(cargo_cleanroom(&["config", "--keep=forever"]));
        assert_eq!(code, 3);
        assert!(
            err.contains("--keep: \"forever\" is not a keep policy; expected one of: never, on-failure, always"),
            "{err}"
        );
        let (code, _, err) = run(cargo_cleanroom(&["test", "--set", "run.kep=1"]));
        assert_eq!(code, 3);
        assert!(err.contains("--set run.kep: unknown key") && err.contains("run.keep"), "{err}");
        let (code, _, err) = run(cargo_cleanroom(&["config", "--set", "services.web.memory=lots"]));
        assert_eq!(code, 3);
        assert!(err.contains("--set services.web.memory=lots: \"lots\" is not a size"), "{err}");
        let dir = temp_dir("badfile");
        let file = dir.join("cleanroom.toml");
        std::fs::write(&file, "[run]\nreuse = \"maybe\"\n").unwrap();
        let (code, _, err) = run(cargo_cleanroom(&["config", "--config", file.to_str().unwrap()]));
        assert_eq!(code, 3);
        assert!(err.contains(&format!("run.reuse in {}: \"maybe\" is not a switch", file.display())), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn exit_4_when_docker_is_not_reachable() {
        for command in ["ls", "prune"] {
            let (code, _, err) = run({
                let mut c = cargo_cleanroom(&[command]);
                c.env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
                c
            });
            assert_eq!(code, 4, "{command}: {err}");
            assert!(err.contains("docker is not reachable at unix:///nonexistent/docker.sock (DOCKER_HOST)"), "{err}");
        }
    }

    #[test]
    fn follow_the_docker_context_and_name_one_that_does_not_exist() {
        let dir = temp_dir("ctx");
        let mut cmd = cargo_cleanroom(&["ls"]);
        cmd.env_remove("DOCKER_HOST").env("DOCKER_CONFIG", &dir).env("DOCKER_CONTEXT", "nowhere");
        let (code, _, err) = run(cmd);
        assert_eq!(code, 4);
        assert!(err.contains("docker context \"nowhere\" (DOCKER_CONTEXT) not found"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A context's endpoint is used: one naming the engine's socket works,
    /// one naming a socket that does not exist fails, naming the context.
    #[test]
    fn reach_docker_through_the_current_context() {
        let dir = temp_dir("ctx-live");
        let write_context = |name: &str, host: &str| {
            use sha2::Digest;
            let hex: String = sha2::Sha256::digest(name.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
            let meta = dir.join("contexts/meta").join(hex);
            std::fs::create_dir_all(&meta).unwrap();
            let json = format!(
                r#"{{"Name":"{name}","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":false}}}}}}"#
            );
            std::fs::write(meta.join("meta.json"), json).unwrap();
        };
        let engine = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        write_context("engine", &engine);
        write_context("nowhere", "unix:///nonexistent/docker.sock");
        let ls = |current: &str| {
            std::fs::write(dir.join("config.json"), format!(r#"{{"currentContext":"{current}"}}"#)).unwrap();
            let mut cmd = cargo_cleanroom(&["ls"]);
            cmd.env_remove("DOCKER_HOST").env_remove("DOCKER_CONTEXT").env("DOCKER_CONFIG", &dir);
            run(cmd)
        };
        let (code, out, err) = ls("engine");
        assert_eq!(code, 0, "{err}");
        assert!(out.starts_with("SESSION"), "{out}");
        let (code, _, err) = ls("nowhere");
        assert_eq!(code, 4);
        assert!(
            err.contains("docker is not reachable at unix:///nonexistent/docker.sock (docker context \"nowhere\" from currentContext in"),
            "{err}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn show_which_layer_each_value_came_from() {
        let dir = temp_dir("layers");
        let file = dir.join("cleanroom.toml");
        std::fs::write(
            &file,
            "[run]\nkeep = \"never\"\npool = 1\npull = \"never\"\n[services.postgres]\nmemory = \"1g\"\n",
        )
        .unwrap();
        let mut cmd = cargo_cleanroom(&["config", "--keep", "always"]);
        cmd.current_dir(&dir)
            .env_remove("CARGO_MANIFEST_DIR")
            .env_remove("CLEANROOM_CONFIG")
            .env_remove("CLEANROOM_PULL")
            .env_remove("CLEANROOM_REUSE_TTL")
            .env("CLEANROOM_KEEP", "on-failure")
            .env("CLEANROOM_POOL", "2");
        let (code, out, err) = run(cmd);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains(&format!("# file: {}", file.display())), "found from the current directory: {out}");
        assert!(out.contains("run.keep = \"always\"  (command line: --keep)"), "{out}");
        assert!(out.contains("run.pool = \"2\"  (environment: CLEANROOM_POOL)"), "{out}");
        assert!(out.contains(&format!("run.pull = \"never\"  (file: run.pull in {})", file.display())), "{out}");
        assert!(out.contains("run.reuse_ttl = 900  (default)"), "{out}");
        assert!(
            out.contains(&format!(
                "services.postgres.memory = \"1g\"  (file: services.postgres.memory in {})",
                file.display()
            )),
            "{out}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_command_line_beats_the_environment_which_beats_the_file() {
        let dir = temp_dir("test");
        let file = dir.join("cleanroom.toml");
        std::fs::write(&file, "[run]\nkeep = \"never\"\npool = 1\nreuse_ttl = 77\n").unwrap();
        let mut cmd = cargo_cleanroom(&[
            "test",
            "--keep=always",
            "--config",
            file.to_str().unwrap(),
            "--exact",
            "child::child_reports_its_configuration",
            "--ignored",
            // The stand-in for cargo is a libtest binary: its options go
            // before `--`, where cargo would take them after it.
            "--nocapture",
        ]);
        cmd.env("CARGO", std::env::current_exe().unwrap())
            .env("CLEANROOM_KEEP", "on-failure")
            .env("CLEANROOM_POOL", "2")
            .env_remove("CLEANROOM_REUSE_TTL")
            .env_remove("CLEANROOM_STARTUP_TIMEOUT");
        let (code, out, err) = run(cmd);
        assert_eq!(code, 0, "{out}{err}");
        assert!(
            out.contains("CHILD keep=Always pool=2 reuse_ttl=77s startup_timeout=None"),
            "flag > environment > file > default: {out}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn exit_with_the_code_of_the_runner() {
        let mut cmd = cargo_cleanroom(&["test", "--exact", "child::child_fails", "--ignored"]);
        cmd.env("CARGO", std::env::current_exe().unwrap());
        let (code, out, _) = run(cmd);
        assert_eq!(code, 101, "{out}");
        assert!(out.contains("failing on purpose"), "{out}");
    }

    /// Cache volumes made by hand with the labels cleanroom gives them (the
    /// live fill and restore are proven in tests/volume_cache.rs); a reused
    /// service's container likewise, never started.
    #[test]
    fn list_and_prune_cache_volumes_and_idle_reused_services_on_request() {
        let _prune = prune_lock();
        let tag = unique("cache");
        // This test's own runtime directory: its `ls` and `prune` judge only
        // what carries its owner's labels, never the developer's own caches.
        let xdg = temp_dir("cache-runtime");
        let owner: Vec<String> =
            cleanroom_runtime::admin::owner_labels_in(&xdg).into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        let labelled = |args: &mut Vec<String>, owner: &[String]| {
            for label in owner {
                args.extend(["--label".to_string(), label.clone()]);
            }
        };
        let cache_volume_of = |name: &str, owner: &[String]| {
            let mut args: Vec<String> = ["volume", "create", "--label", "cleanroom.managed=true"]
                .into_iter()
                .chain(["--label", "cleanroom.cache=volume", "--label", "cleanroom.cache.service=postgres"])
                .map(String::from)
                .collect();
            labelled(&mut args, owner);
            args.push(name.to_string());
            docker(&args.iter().map(String::as_str).collect::<Vec<_>>())
        };
        let cache_volume = |name: &str| cache_volume_of(name, &owner);
        let cli = |args: &[&str]| {
            let mut cmd = cargo_cleanroom(args);
            cmd.env("XDG_RUNTIME_DIR", &xdg);
            run(cmd)
        };
        let (idle, mounted, recent) = (
            format!("cleanroom-cache-{tag}-idle"),
            format!("cleanroom-cache-{tag}-mounted"),
            format!("cleanroom-cache-{tag}-recent"),
        );
        cache_volume(&idle);
        cache_volume(&mounted);
        cache_volume(&recent);
        // The developer's own cache, made from their runtime directory:
        // `prune` from another directory leaves it alone.
        let developers = format!("cleanroom-cache-{tag}-developers");
        let developer_owner: Vec<String> =
            cleanroom_runtime::admin::owner_labels().into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        cache_volume_of(&developers, &developer_owner);
        // Last used an hour ago, as a run records it (mtime of the record).
        // The developer's volume too, as far as this directory's records
        // tell: only its owner labels keep `prune` from it.
        let records = xdg.join("cleanroom").join("caches");
        std::fs::create_dir_all(&records).unwrap();
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for name in [&idle, &mounted, &developers] {
            let record = File::create(records.join(name)).unwrap();
            record.set_modified(hour_ago).unwrap();
        }
        let user = docker(&["create", "-v", &format!("{mounted}:/cache"), BUSYBOX, "true"]);
        let reused_name = format!("cleanroom-reuse-{tag}-web");
        let mut reused_args: Vec<String> = vec!["create".into(), "--name".into(), reused_name.clone()];
        for label in [
            "cleanroom.managed=true".to_string(),
            "cleanroom.reuse=true".to_string(),
            format!("cleanroom.session=reuse-{}", uid()),
            "cleanroom.service=web".to_string(),
        ] {
            reused_args.extend(["--label".to_string(), label]);
        }
        labelled(&mut reused_args, &owner);
        reused_args.extend([BUSYBOX.to_string(), "true".to_string()]);
        let reused = docker(&reused_args.iter().map(String::as_str).collect::<Vec<_>>());
        let volume_exists =
            |name: &str| Command::new("docker").args(["volume", "inspect", name]).output().unwrap().status.success();

        let (code, out, err) = cli(&["ls"]);
        assert_eq!(code, 0, "{err}");
        let row =
            |name: &str| out.lines().find(|l| l.starts_with(name)).map(|l| l.split_whitespace().collect::<Vec<_>>());
        let idle_row = row(&idle).unwrap_or_else(|| panic!("{idle} not listed: {out}"));
        assert_eq!(idle_row[1], "postgres", "{out}");
        assert_eq!(idle_row.last(), Some(&"no"), "not in use: {out}");
        assert_eq!(
            row(&mounted).unwrap_or_else(|| panic!("{mounted} not listed: {out}")).last(),
            Some(&"yes"),
            "{out}"
        );

        let (code, out, err) = cli(&["prune", "--dry-run", "--reused"]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains(&format!("would remove cache volume {idle}")), "{out}");
        assert!(out.contains(&format!("would remove reused service {reused_name}")), "{out}");
        assert!(!out.contains(&mounted), "a volume a container mounts is not pruned: {out}");
        assert!(!out.contains(&recent), "a volume made (or used) in the last two minutes is not pruned: {out}");
        assert!(volume_exists(&idle) && exists(&reused), "a dry run removes nothing");

        let (code, out, err) = cli(&["prune", "--dry-run", "--keep-caches"]);
        assert_eq!(code, 0, "{err}");
        assert!(!out.contains(&idle) && !out.contains(&reused_name), "{out}");

        // For real, without --reused (other tests' reused services between
        // two of their runs would be idle too): the idle cache goes.
        let (code, out, err) = cli(&["prune"]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains(&format!("removed cache volume {idle}")), "{out}");
        assert!(!volume_exists(&idle), "the idle cache volume is still there");
        assert!(volume_exists(&mounted), "prune removed a cache volume a container mounts");
        assert!(exists(&reused), "prune removed a reused service without --reused");

        assert!(volume_exists(&recent), "prune removed a cache volume made a moment ago");
        assert!(volume_exists(&developers), "prune removed the cache of another runtime directory");
        assert!(!out.contains(&developers), "{out}");

        docker(&["rm", "-f", &user, &reused]);
        docker(&["volume", "rm", &mounted, &recent, &developers]);
        let _ = std::fs::remove_dir_all(&xdg);
        let _ = std::fs::remove_file(records.join(&mounted));
    }

    #[test]
    fn list_and_prune_dead_runs_but_leave_live_ones_and_unlabelled_containers() {
        let _prune = prune_lock();
        // A runtime directory of this test's own: no other run's reaper,
        // sweeping at its start, judges these runs (they are not its owner's).
        let xdg = temp_dir("runs-runtime");
        let cli = |args: &[&str]| {
            let mut cmd = cargo_cleanroom(args);
            cmd.env("XDG_RUNTIME_DIR", &xdg);
            run(cmd)
        };
        let dead = unique("dead");
        let live = unique("live");
        // A dead run: its lock file exists and nobody holds it.
        let dead_lock = lock_file(&xdg, &dead);
        File::create(&dead_lock).unwrap();
        // A live run: this test holds its lock, as a reaper does.
        let live_lock =
            File::options().read(true).write(true).create(true).truncate(false).open(lock_file(&xdg, &live)).unwrap();
        live_lock.try_lock().unwrap();
        let dead_id = labelled_container(&xdg, &dead, "db", true, &[]);
        let live_id = labelled_container(&xdg, &live, "db", true, &[]);
        let unmanaged_id = labelled_container(&xdg, &dead, "db", false, &[]);
        // Another runtime directory's run (a live one, for all this machine
        // can tell) whose session's lock lies here, unheld: not ours to judge.
        let foreign = unique("foreign");
        let foreign_lock = lock_file(&xdg, &foreign);
        File::create(&foreign_lock).unwrap();
        let foreign_id = labelled_container(&xdg, &foreign, "db", true, &[("cleanroom.runtime", "0badc0de")]);

        let (code, out, err) = cli(&["ls"]);
        assert_eq!(code, 0, "{err}");
        assert!(out.lines().next().unwrap().starts_with("SESSION"), "{out}");
        let row = |session: &str| {
            out.lines().find(|l| l.starts_with(session)).map(|l| l.split_whitespace().collect::<Vec<_>>())
        };
        let dead_row = row(&dead).unwrap_or_else(|| panic!("{dead} not listed: {out}"));
        assert_eq!(&dead_row[1..5], &["db", "docker", "created", "dead"], "{out}");
        assert_eq!(dead_row[6], uid().to_string());
        let live_row = row(&live).unwrap_or_else(|| panic!("{live} not listed: {out}"));
        assert_eq!(&live_row[1..5], &["db", "docker", "created", "live"], "{out}");
        assert_eq!(out.lines().filter(|l| l.starts_with(&dead)).count(), 1, "ls lists only managed containers: {out}");

        let (code, out, err) = cli(&["prune"]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains(&format!("removed session {dead}")), "{out}");
        assert!(!out.contains(&live), "{out}");
        assert!(!exists(&dead_id), "the dead run's container is still there");
        assert!(exists(&live_id), "prune removed a live run's container");
        assert!(exists(&unmanaged_id), "prune removed a container without cleanroom.managed=true");
        assert!(exists(&foreign_id), "prune removed another runtime directory's run on a lock found here");
        assert!(!out.contains(&foreign), "{out}");

        docker(&["rm", "-f", &live_id, &unmanaged_id, &foreign_id]);
        let _ = std::fs::remove_file(foreign_lock);
        drop(live_lock);
        let _ = std::fs::remove_file(lock_file(&xdg, &live));
        let _ = std::fs::remove_file(dead_lock);
        let _ = std::fs::remove_dir_all(&xdg);
    }

    /// A running container of a run of another machine (its host and
    /// runtime labels not this one's) whose last heartbeat was `beat_age`
    /// seconds ago, as its reaper writes it.
    fn another_machines_run(xdg: &std::path::Path, session: &str, beat_age: i64) -> String {
        let mut args: Vec<String> = vec!["run".into(), "-d".into(), "--rm".into()];
        let mut labels = vec![
            "cleanroom.managed=true".to_string(),
            format!("cleanroom.session={session}"),
            "cleanroom.service=db".to_string(),
        ];
        for (key, value) in cleanroom_runtime::admin::owner_labels_in(xdg) {
            let value = if key == "cleanroom.host" || key == "cleanroom.runtime" { "0badc0de".into() } else { value };
            labels.push(format!("{key}={value}"));
        }
        for label in labels {
            args.extend(["--label".into(), label]);
        }
        args.extend([BUSYBOX.to_string(), "sleep".into(), "300".into()]);
        let id = docker(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let script = format!("echo $(( $(date +%s) - {beat_age} )) > /.cleanroom-heartbeat");
        docker(&["exec", &id, "sh", "-c", &script]);
        id
    }

    /// `prune` judges another machine's runs by their heartbeat, as a
    /// starting run's sweep does: one silent for longer than
    /// `run.remote_idle_ttl` goes, one that beat a moment ago stays.
    #[test]
    fn prune_removes_another_machines_run_only_once_idle_past_its_ttl() {
        let _prune = prune_lock();
        let xdg = temp_dir("remote-runtime");
        let (idle, beating) = (unique("remote-idle"), unique("remote-beating"));
        let idle_id = another_machines_run(&xdg, &idle, 300);
        let beating_id = another_machines_run(&xdg, &beating, 5);
        let mut cmd = cargo_cleanroom(&["prune"]);
        cmd.env("XDG_RUNTIME_DIR", &xdg).env("CLEANROOM_REMOTE_IDLE_TTL", "100");
        let (code, out, err) = run(cmd);
        assert_eq!(code, 0, "{err}");
        let (idle_left, beating_left) = (exists(&idle_id), exists(&beating_id));
        let _ = Command::new("docker").args(["rm", "-f", &idle_id, &beating_id]).output();
        let _ = std::fs::remove_dir_all(&xdg);
        // (Not asserted: that `prune` says so. A run starting meanwhile with
        // the same TTL, as the fault tests' do, may sweep it first.)
        assert!(!idle_left, "a run of another machine silent for 300 s (TTL 100 s) stays: {out}");
        assert!(beating_left, "prune removed a run of another machine that beat 5 s ago: {out}");
        assert!(!out.contains(&beating), "{out}");
    }

    #[test]
    fn print_the_newest_report_and_exit_5_without_one() {
        let runtime = temp_dir("report");
        let report = |args: &[&str]| {
            let mut cmd = cargo_cleanroom(&["report"]);
            cmd.args(args).env("XDG_RUNTIME_DIR", &runtime);
            run(cmd)
        };
        let (code, _, err) = report(&[]);
        assert_eq!(code, 5);
        assert!(err.contains("no report in") && err.contains("reports"), "{err}");

        let reports = runtime.join("cleanroom/reports");
        std::fs::create_dir_all(&reports).unwrap();
        let line = r#"{"schema":1,"pid":1,"session":"s-new","tests":[{"name":"db::inserts","started_micros":5,"acquire":[{"service":"postgres","micros":412000,"room_micros":3800}]}]}"#;
        std::fs::write(reports.join("s-new.jsonl"), format!("{line}\n")).unwrap();
        std::fs::write(reports.join("s-old.jsonl"), line.replace("db::inserts", "old::test")).unwrap();
        let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        File::options().write(true).open(reports.join("s-old.jsonl")).unwrap().set_modified(an_hour_ago).unwrap();
        let (code, out, _) = report(&[]);
        assert_eq!(code, 0);
        let row: Vec<&str> =
            out.lines().find(|l| l.starts_with("db::inserts")).expect(&out).split_whitespace().collect();
        assert_eq!(row, ["db::inserts", "postgres", "412.0", "3.8"]);
        assert!(!out.contains("old::test"), "{out}");
        assert_eq!(report(&["--json"]).1, format!("{line}\n"));
        assert!(report(&["--session", "s-old"]).1.contains("old::test"));
        assert_eq!(report(&["--session", "nope"]).0, 5);
        std::fs::remove_dir_all(runtime).unwrap();
    }
}
