//! The command lines the local engine runs: `initdb`, `postgres`,
//! `redis-server`, and a service's own local command with its placeholders
//! filled in.

use std::collections::BTreeMap;
use std::path::Path;

/// `initdb` for a throwaway cluster: the run's superuser, UTF-8 with the C
/// locale (whatever the machine's), no fsync. Logins over TCP need the
/// password (MD5, as the container's); the cluster's own Unix socket, in a
/// directory only the run can reach, trusts its superuser so that the
/// password can be set after a cached cluster is copied.
pub(crate) fn initdb(data: &Path, user: &str) -> Vec<String> {
    [
        "-D",
        &data.to_string_lossy(),
        "-U",
        user,
        "-E",
        "UTF8",
        "--locale=C",
        "--no-sync",
        "--auth-local=trust",
        "--auth-host=md5",
    ]
    .map(String::from)
    .to_vec()
}

/// `postgres` tuned as the container is (nothing must survive a crash),
/// listening on loopback only, its socket in `socket_dir`.
pub(crate) fn postgres(data: &Path, port: u16, socket_dir: &Path) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "-D".into(),
        data.to_string_lossy().into_owned(),
        "-p".into(),
        port.to_string(),
        "-k".into(),
        socket_dir.to_string_lossy().into_owned(),
    ];
    for setting in [
        "listen_addresses=127.0.0.1",
        "fsync=off",
        "synchronous_commit=off",
        "full_page_writes=off",
        "password_encryption=md5",
    ] {
        args.extend(["-c".to_string(), setting.to_string()]);
    }
    args
}

/// `redis-server` as the container runs it: no persistence, one logical
/// database a test at a time, loopback only, a password when the definition
/// has one.
pub(crate) fn redis(port: u16, dir: &Path, databases: u32, password: Option<&str>) -> Vec<String> {
    let mut args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--databases",
        &databases.to_string(),
        "--dir",
        &dir.to_string_lossy(),
        "--daemonize",
        "no",
    ]
    .map(String::from)
    .to_vec();
    if let Some(password) = password {
        args.extend(["--requirepass".to_string(), password.to_string()]);
    }
    args
}

/// A service's local command with its placeholders filled in: `{port}` (the
/// host port of its first port), `{port:<container port>}`, `{dir}` (a
/// directory of its own, removed with it).
pub(crate) fn local_command(cmd: &[String], ports: &BTreeMap<u16, u16>, first: Option<u16>, dir: &Path) -> Vec<String> {
    cmd.iter()
        .map(|arg| {
            let mut arg = arg.replace("{dir}", &dir.to_string_lossy());
            for (container, host) in ports {
                arg = arg.replace(&format!("{{port:{container}}}"), &host.to_string());
            }
            if let Some(host) = first.and_then(|p| ports.get(&p)) {
                arg = arg.replace("{port}", &host.to_string());
            }
            arg
        })
        .collect()
}

/// The variables a local command gets besides the definition's: its ports,
/// `CLEANROOM_PORT` (the first) and `CLEANROOM_PORT_<container port>`, and
/// `CLEANROOM_DIR`.
pub(crate) fn local_env(ports: &BTreeMap<u16, u16>, first: Option<u16>, dir: &Path) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> =
        ports.iter().map(|(c, h)| (format!("CLEANROOM_PORT_{c}"), h.to_string())).collect();
    if let Some(host) = first.and_then(|p| ports.get(&p)) {
        env.insert("CLEANROOM_PORT".into(), host.to_string());
    }
    env.insert("CLEANROOM_DIR".into(), dir.to_string_lossy().into_owned());
    env
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::*;
        use std::path::PathBuf;

        #[test]
        fn run_initdb_for_a_throwaway_cluster_with_the_runs_superuser() {
            let args = initdb(Path::new("/d/data"), "cleanroom");
            assert_eq!(&args[..4], ["-D", "/d/data", "-U", "cleanroom"]);
            for flag in ["--no-sync", "-E", "UTF8", "--auth-host=md5", "--auth-local=trust"] {
                assert!(args.contains(&flag.to_string()), "{flag} in {args:?}");
            }
        }

        #[test]
        fn run_postgres_on_loopback_without_durability() {
            let args = postgres(Path::new("/d/data"), 54321, Path::new("/d"));
            let line = args.join(" ");
            assert!(line.starts_with("-D /d/data -p 54321 -k /d "), "{line}");
            for setting in ["listen_addresses=127.0.0.1", "fsync=off", "synchronous_commit=off", "full_page_writes=off"]
            {
                assert!(line.contains(&format!("-c {setting}")), "{setting} in {line}");
            }
        }

        #[test]
        fn run_redis_without_persistence_and_with_a_password_only_when_given() {
            let args = redis(6380, Path::new("/d"), 64, None);
            let line = args.join(" ");
            assert!(line.contains("--port 6380 --bind 127.0.0.1 --save  --appendonly no --databases 64 --dir /d"));
            assert!(!line.contains("requirepass"));
            let args = redis(6380, Path::new("/d"), 64, Some("pw"));
            assert_eq!(&args[args.len() - 2..], ["--requirepass", "pw"]);
        }

        #[test]
        fn fill_in_ports_and_the_directory_of_a_local_command() {
            let ports = BTreeMap::from([(80, 40001), (443, 40002)]);
            let cmd: Vec<String> =
                ["srv", "--port={port}", "--tls={port:443}", "--data={dir}/x"].map(String::from).into();
            let dir = PathBuf::from("/d/web");
            assert_eq!(
                local_command(&cmd, &ports, Some(80), &dir),
                ["srv", "--port=40001", "--tls=40002", "--data=/d/web/x"]
            );
            let env = local_env(&ports, Some(80), &dir);
            assert_eq!(env["CLEANROOM_PORT"], "40001");
            assert_eq!(env["CLEANROOM_PORT_443"], "40002");
            assert_eq!(env["CLEANROOM_DIR"], "/d/web");
        }
    }
}
