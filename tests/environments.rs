//! cleanroom where the tests and the engine are not on one loopback: a
//! remote engine over TCP, and over TLS (docs/environments.md).
//!
//! The proof runs this test binary's child tests inside a network namespace
//! the test makes, joined to this machine by a veth pair with addresses the
//! test chooses (`10.213.<x>.1` here, `.2` there): inside, 127.0.0.1 is not
//! the engine's host. The engine is forwarded onto the veth address by
//! `socat` (plain TCP, or TLS with a CA and certificates the test makes with
//! the `openssl` CLI). Everything is removed afterwards, on failure too.
//!
//! Needs root, `ip` (iproute2), `socat` and, for TLS, `openssl`; where one is
//! missing the test says so loudly on stderr and does not run.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use cleanroom_tests::{assert_nothing_left, engine_socket, fresh_session};

/// The child tests' variable naming the host they must be given.
const EXPECTED_HOST: &str = "ENVIRONMENTS_TEST_ENGINE_HOST";

mod child {
    use super::EXPECTED_HOST;
    use cleanroom::{Postgres, Redis};
    use std::io::{Read, Write};

    /// What a test sees when the engine is elsewhere: both services on the
    /// engine's host, nothing of theirs on 127.0.0.1, a room of its own in
    /// Postgres, and a Redis that answers only with its password.
    async fn reach_both_on_the_engines_host(postgres: Postgres, redis: Redis) {
        let host = std::env::var(EXPECTED_HOST).expect("set by the parent test");
        assert_eq!(postgres.host(), host);
        assert_eq!(redis.host(), host);
        assert!(!listens_on_loopback(postgres.port()), "127.0.0.1 is not the engine's host in this namespace");

        let (client, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        // Both tests create the same table: each in a database of its own.
        client.batch_execute("CREATE TABLE proof (v int); INSERT INTO proof VALUES (1)").await.unwrap();
        let database: String = client.query_one("SELECT current_database()", &[]).await.unwrap().get(0);
        assert_eq!(database, postgres.database());

        let password = redis.password().expect("a Redis reachable beyond loopback has a password");
        assert!(redis.url().contains(password), "the URL carries it");
        let mut cache = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
        let () = redis::AsyncCommands::set(&mut cache, "proof", 1).await.unwrap();

        let mut bare = std::net::TcpStream::connect((redis.host(), redis.port())).unwrap();
        bare.write_all(b"PING\r\n").unwrap();
        let mut reply = [0u8; 64];
        let n = bare.read(&mut reply).unwrap();
        let reply = String::from_utf8_lossy(&reply[..n]);
        assert!(reply.starts_with("-NOAUTH"), "Redis answered {reply:?} without its password");
    }

    /// Whether anything listens on `127.0.0.1:port`. A connection to a
    /// port of the ephemeral range that nothing listens on can, now and
    /// then, be given that same port as its own and connect to itself (TCP's
    /// simultaneous open; once in a CI run): that is no listener.
    fn listens_on_loopback(port: u16) -> bool {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok_and(|s| s.local_addr().ok() != s.peer_addr().ok())
    }

    #[cleanroom::test(postgres, redis)]
    #[ignore = "run inside a network namespace by the remote engine tests"]
    async fn first_test_reaches_the_remote_engines_services(postgres: Postgres, redis: Redis) {
        reach_both_on_the_engines_host(postgres, redis).await;
    }

    #[cleanroom::test(postgres, redis)]
    #[ignore = "run inside a network namespace by the remote engine tests"]
    async fn second_test_reaches_them_in_rooms_of_its_own(postgres: Postgres, redis: Redis) {
        reach_both_on_the_engines_host(postgres, redis).await;
    }

    /// What the page says: the proof that the file came from this process.
    pub(super) const PAGE: &str = "served from the client's files";

    /// A web server whose page is bind-mounted from a directory that only
    /// this process can see (in a container, its own `/tmp`): the engine
    /// gets a copy. The path is the run's, so that its processes agree on
    /// the definition.
    #[cleanroom::service]
    fn site() -> cleanroom::GenericContainer {
        let dir = super::site_dir(&std::env::var("CLEANROOM_SESSION").unwrap_or_default());
        std::fs::create_dir_all(&dir).unwrap();
        let written = dir.join(format!(".index-{}", std::process::id()));
        std::fs::write(&written, PAGE).unwrap();
        std::fs::rename(&written, dir.join("index.html")).unwrap();
        cleanroom::GenericContainer::new("cleanroom-offline/busybox:1.35")
            .with_cmd(["httpd", "-f", "-p", "8080", "-h", "/www"])
            .with_bind_mount(dir.display().to_string(), "/www")
            .with_port(8080)
            .with_health_check(cleanroom::HealthCheck::http(8080, "/index.html"))
    }

    #[cleanroom::test(site)]
    #[ignore = "run inside a network namespace by the remote engine tests"]
    fn a_bind_mounts_files_reach_an_engine_that_cannot_see_them(site: cleanroom::Container) {
        let out = site.exec_blocking(["cat", "/www/index.html"]).unwrap();
        assert_eq!(out.stdout.trim(), PAGE);
    }
}

/// Where the `site` service's page is written, per run.
fn site_dir(session: &str) -> PathBuf {
    std::env::temp_dir().join(format!("cleanroom-site-{session}"))
}

/// Why this machine cannot make the namespace, if it cannot.
fn cannot(tools: &[&str]) -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if uid.as_deref() != Some("0") {
        return Some("not root: making a network namespace and a veth pair needs root".into());
    }
    for tool in tools {
        let found = Command::new("sh").args(["-c", &format!("command -v {tool}")]).output();
        if !found.is_ok_and(|o| o.status.success()) {
            return Some(format!("`{tool}` is not installed (Debian: apt-get install -y socat iproute2 openssl)"));
        }
    }
    None
}

/// Skips loudly: the test did not prove anything here. Under CI (`CI` set,
/// as `.ci/run` sets it) that is a failure, not a skip.
fn skip(test: &str, why: &str) {
    assert!(std::env::var_os("CI").is_none(), "{test} must run under CI but cannot: {why}");
    eprintln!("\n!!! SKIPPED {test}: {why}. The remote-engine proof did not run on this machine. !!!\n");
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program} runs: {e}"));
    assert!(out.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// A network namespace joined to this machine by a veth pair, and the
/// forwarder that serves the engine on this side's address. Dropped, it
/// removes all of it.
struct Namespace {
    name: String,
    host_link: String,
    /// This machine's address on the pair: the engine's host, seen from inside.
    host_addr: String,
    forwarder: Option<Child>,
    dir: PathBuf,
}

impl Namespace {
    fn new(tag: &str) -> Namespace {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        // An address block no interface has yet (only ones this test made),
        // chosen and taken under a lock: nextest runs these tests in
        // processes of their own at the same time.
        let lock = std::fs::File::create(std::env::temp_dir().join("cleanroom-env-netns.lock")).unwrap();
        lock.lock().unwrap();
        let taken =
            String::from_utf8_lossy(&Command::new("ip").args(["-o", "addr"]).output().unwrap().stdout).into_owned();
        let x = (0..230)
            .map(|i| 16 + (pid * 7 + n * 31 + i) % 230)
            .find(|x| !taken.contains(&format!("10.213.{x}.")))
            .expect("a free 10.213.x.0/30");
        let ns = Namespace {
            name: format!("cleanroom-{tag}-{pid}-{n}"),
            host_link: format!("crh{}{n}", pid % 100_000),
            host_addr: format!("10.213.{x}.1"),
            forwarder: None,
            dir: std::env::temp_dir().join(format!("cleanroom-env-{tag}-{pid}-{n}")),
        };
        let inner_link = format!("crn{}{n}", pid % 100_000);
        let inner_addr = format!("10.213.{x}.2/30");
        std::fs::create_dir_all(&ns.dir).unwrap();
        run("ip", &["netns", "add", &ns.name]);
        run("ip", &["link", "add", &ns.host_link, "type", "veth", "peer", "name", &inner_link]);
        run("ip", &["link", "set", &inner_link, "netns", &ns.name]);
        run("ip", &["addr", "add", &format!("{}/30", ns.host_addr), "dev", &ns.host_link]);
        run("ip", &["link", "set", &ns.host_link, "up"]);
        run("ip", &["netns", "exec", &ns.name, "ip", "addr", "add", &inner_addr, "dev", &inner_link]);
        run("ip", &["netns", "exec", &ns.name, "ip", "link", "set", &inner_link, "up"]);
        run("ip", &["netns", "exec", &ns.name, "ip", "link", "set", "lo", "up"]);
        drop(lock);
        ns
    }

    /// Serves the engine's socket on `host_addr:port` with `listen` (a socat
    /// address without its `bind`), and waits until it accepts.
    fn forward(&mut self, port: u16, listen: &str) {
        // socat sets no TLS session id context, so with `verify=1` OpenSSL
        // refuses a client that resumes a session ("session id context
        // uninitialized"), as rustls does from its second connection on:
        // this forwarder issues no session tickets (dockerd's Go TLS needs
        // no such help).
        let conf = self.dir.join("openssl.cnf");
        std::fs::write(
            &conf,
            "openssl_conf = default_conf\n[default_conf]\nssl_conf = ssl_sect\n[ssl_sect]\n\
             system_default = system_default_sect\n[system_default_sect]\nNumTickets = 0\nOptions = NoTicket\n",
        )
        .unwrap();
        // A process group of its own: socat forks a child per connection,
        // and a child whose client vanished with the namespace would wait
        // forever; the whole group is ended with the namespace.
        let child = Command::new("socat")
            .process_group(0)
            .env("OPENSSL_CONF", conf)
            .arg(format!("{listen},bind={},fork,reuseaddr", self.host_addr))
            .arg(format!("UNIX-CONNECT:{}", engine_socket().display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat starts");
        self.forwarder = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect((self.host_addr.as_str(), port)).is_err() {
            assert!(Instant::now() < deadline, "socat never listened on {}:{port}", self.host_addr);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// This test binary's child tests, run inside the namespace with `env`.
    fn run_children(&self, session: &str, env: &[(&str, String)]) -> std::process::Output {
        let exe = std::env::current_exe().unwrap();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name])
            .arg(exe)
            .args(["--ignored", "child::"])
            .env("CLEANROOM_SESSION", session)
            .env(EXPECTED_HOST, &self.host_addr)
            .env("RUST_BACKTRACE", "0");
        for name in ["CLEANROOM_HOST", "TESTCONTAINERS_HOST_OVERRIDE", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"] {
            cmd.env_remove(name);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("ip netns exec runs")
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Some(mut child) = self.forwarder.take() {
            // The connections' children first, so that socat collects them;
            // then socat itself, collected here.
            let parent = child.id();
            for pid in running_in_group(parent).into_iter().filter(|p| *p != parent) {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).output();
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while running_in_group(parent).len() > 1 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{parent}")]).output();
            let _ = child.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
        // Deleting the namespace removes its end of the pair, and so the
        // pair; deleted again in case the namespace was never made.
        let _ = Command::new("ip").args(["link", "del", &self.host_link]).stderr(Stdio::null()).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The processes of process group `group` that run (zombies, gone but not
/// yet collected by whoever adopted them, are not counted).
fn running_in_group(group: u32) -> Vec<u32> {
    let out = Command::new("pgrep").args(["-g", &group.to_string()]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.split_whitespace().next());
            state.is_some_and(|s| s != "Z")
        })
        .collect()
}

fn assert_children_passed(output: &std::process::Output) {
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && text.contains("3 passed"), "the child tests failed:\n{text}");
}

#[test]
fn a_remote_engine_over_tcp_serves_tests_in_another_network_namespace() {
    if let Some(why) = cannot(&["ip", "socat"]) {
        return skip("a_remote_engine_over_tcp_serves_tests_in_another_network_namespace", &why);
    }
    let mut ns = Namespace::new("tcp");
    ns.forward(2375, "TCP-LISTEN:2375");
    let session = fresh_session("remote-tcp");
    let watch = cleanroom_tests::EventWatch::start(&session);
    let env = [("DOCKER_HOST", format!("tcp://{}:2375", ns.host_addr))];
    // Two processes of one run at once, as nextest runs them: one creates
    // each service, the other attaches and must take the creator's Redis
    // password (its own random one would be refused).
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| ns.run_children(&session, &env));
        let b = s.spawn(|| ns.run_children(&session, &env));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_children_passed(&a);
    assert_children_passed(&b);
    assert_eq!(
        (watch.starts_of("postgres"), watch.starts_of("redis"), watch.starts_of("site")),
        (1, 1, 1),
        "one of each for the run"
    );
    assert_nothing_left(&session);
    let _ = std::fs::remove_dir_all(site_dir(&session));
    // socat and every child it forked for a connection go with the namespace.
    let group = ns.forwarder.as_ref().unwrap().id();
    drop(ns);
    let left = running_in_group(group);
    assert!(left.is_empty(), "socat processes outlived the test: {left:?}");
}

/// A CA, a server certificate for `addr` and a client certificate, as the
/// docker CLI expects them in `DOCKER_CERT_PATH` (`ca.pem`, `cert.pem`,
/// `key.pem`), plus the server's (`server.pem`, `server-key.pem`).
fn make_certificates(dir: &Path, addr: &str) {
    let sh = |script: &str| {
        let out = Command::new("sh").args(["-c", script]).current_dir(dir).output().unwrap();
        assert!(out.status.success(), "{script} failed: {}", String::from_utf8_lossy(&out.stderr));
    };
    let key = "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out";
    sh(&format!("{key} ca-key.pem"));
    sh("openssl req -x509 -new -key ca-key.pem -subj /CN=cleanroom-test-ca -days 1 -out ca.pem \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign");
    for (name, subject, ext) in [
        ("server", addr, format!("subjectAltName=IP:{addr}\nextendedKeyUsage=serverAuth\n")),
        ("client", "cleanroom-test-client", "extendedKeyUsage=clientAuth\n".to_string()),
    ] {
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        sh(&format!("{key} {name}-key.pem"));
        sh(&format!("openssl req -new -key {name}-key.pem -subj /CN={subject} -out {name}.csr"));
        sh(&format!(
            "openssl x509 -req -in {name}.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 1 \
             -extfile {name}.ext -out {name}.pem"
        ));
    }
    std::fs::copy(dir.join("client.pem"), dir.join("cert.pem")).unwrap();
    std::fs::copy(dir.join("client-key.pem"), dir.join("key.pem")).unwrap();
}

#[test]
fn a_remote_engine_over_tls_serves_tests_in_another_network_namespace() {
    if let Some(why) = cannot(&["ip", "socat", "openssl"]) {
        return skip("a_remote_engine_over_tls_serves_tests_in_another_network_namespace", &why);
    }
    let mut ns = Namespace::new("tls");
    make_certificates(&ns.dir, &ns.host_addr);
    let certs = ns.dir.display().to_string();
    // verify=1: the engine answers only a client with a certificate of this CA.
    ns.forward(
        2376,
        &format!(
            "OPENSSL-LISTEN:2376,cert={certs}/server.pem,key={certs}/server-key.pem,cafile={certs}/ca.pem,verify=1"
        ),
    );
    let session = fresh_session("remote-tls");
    let docker_host = format!("tcp://{}:2376", ns.host_addr);

    // Without the client certificate the engine is not reached: the test
    // below really speaks TLS with it.
    let refused = ns.run_children(&session, &[("DOCKER_HOST", docker_host.clone())]);
    assert!(!refused.status.success(), "plain HTTP to the TLS port must not reach the engine");
    assert_nothing_left(&session);
    let _ = std::fs::remove_dir_all(site_dir(&session));

    let session = fresh_session("remote-tls");
    let output = ns.run_children(
        &session,
        &[("DOCKER_HOST", docker_host), ("DOCKER_TLS_VERIFY", "1".into()), ("DOCKER_CERT_PATH", certs)],
    );
    assert_children_passed(&output);
    assert_nothing_left(&session);
    let _ = std::fs::remove_dir_all(site_dir(&session));
}

/// Tests that reach the engine's host at an address detection cannot know
/// (a gateway, an engine behind a forwarded port): the override names it.
/// Inside the namespace the engine's socket is a file like any other, so the
/// engine is local while its ports are not on this 127.0.0.1.
#[test]
fn the_host_override_names_where_tests_reach_services_cleanroom_host_first() {
    if let Some(why) = cannot(&["ip"]) {
        return skip("the_host_override_names_where_tests_reach_services_cleanroom_host_first", &why);
    }
    let ns = Namespace::new("override");
    let local = ("DOCKER_HOST", format!("unix://{}", engine_socket().display()));

    let session = fresh_session("override-tc");
    let output = ns.run_children(&session, &[local.clone(), ("TESTCONTAINERS_HOST_OVERRIDE", ns.host_addr.clone())]);
    assert_children_passed(&output);
    assert_nothing_left(&session);
    let _ = std::fs::remove_dir_all(site_dir(&session));

    // CLEANROOM_HOST wins over testcontainers' variable, here an address
    // nothing answers on.
    let session = fresh_session("override-cr");
    let output = ns.run_children(
        &session,
        &[local, ("CLEANROOM_HOST", ns.host_addr.clone()), ("TESTCONTAINERS_HOST_OVERRIDE", "192.0.2.1".into())],
    );
    assert_children_passed(&output);
    assert_nothing_left(&session);
    let _ = std::fs::remove_dir_all(site_dir(&session));
}

#[test]
fn a_host_override_that_is_not_a_host_fails_the_tests_at_once_naming_it() {
    let session = fresh_session("override-bad");
    let run = cleanroom_tests::run_child(
        &session,
        &["--ignored", "child::first_test_reaches_the_remote_engines_services"],
        &[("CLEANROOM_HOST", "tcp://docker:2375"), (EXPECTED_HOST, "docker")],
    );
    let text = run.text();
    assert!(!run.passed(), "{text}");
    assert!(
        text.contains("invalid cleanroom configuration: CLEANROOM_HOST: \"tcp://docker:2375\" is not a host")
            && text.contains("without a scheme, port or path"),
        "{text}"
    );
    assert_nothing_left(&session);
}

/// A `container:` job: the tests run in a container with the engine's socket
/// mounted (this test binary, bind-mounted into the local Postgres image,
/// which has this machine's glibc), on a network of the job's own, and reach
/// the services at that network's gateway: found by asking the engine, or
/// named by `CLEANROOM_HOST`. The container lives on after the tests, as a
/// job's container does, until the run's reaper is done.
fn run_tests_in_a_container(tag: &str, host_override: bool) {
    let exe = std::env::current_exe().unwrap();
    let session = fresh_session(tag);
    // The job's own network, as GitHub makes one for a `container:` job.
    let network = JobNetwork::new(&session);
    let gateway = network.gateway();
    let image = std::env::var("CLEANROOM_POSTGRES_IMAGE").unwrap_or_else(|_| "postgres:17-alpine".into());
    let mut cmd = Command::new("docker");
    cmd.args(["run", "--rm", "--network", &network.name, "--label", &format!("cleanroom.session={session}")])
        .args(["-v", &format!("{}:/var/run/docker.sock", engine_socket().display())])
        .args(["-v", &format!("{0}:{0}:ro", exe.parent().unwrap().display())])
        .args(["-e", &format!("CLEANROOM_SESSION={session}"), "-e", &format!("{EXPECTED_HOST}={gateway}")])
        .args(["-e", "RUST_BACKTRACE=0"]);
    if host_override {
        cmd.args(["-e", &format!("CLEANROOM_HOST={gateway}")]);
    }
    for name in ["CLEANROOM_POSTGRES_IMAGE", "CLEANROOM_REDIS_IMAGE", "CLEANROOM_PULL"] {
        if let Ok(value) = std::env::var(name) {
            cmd.args(["-e", &format!("{name}={value}")]);
        }
    }
    // The tests, then as long as the run's reaper runs.
    let script = r#""$0" --ignored child:: ; rc=$?
        while grep -qs CLEANROOM_REAPER= /proc/[0-9]*/environ; do sleep 0.2; done
        exit $rc"#;
    cmd.args(["--entrypoint", "sh", &image, "-c", script]).arg(&exe);
    let output = cmd.output().expect("docker run runs");
    assert_children_passed(&output);
    drop(network);
    assert_nothing_left(&session);
}

#[test]
fn tests_in_a_container_with_the_socket_mounted_find_the_services_at_their_networks_gateway() {
    run_tests_in_a_container("in-container", false);
}

#[test]
fn tests_in_a_container_with_the_socket_mounted_reach_services_through_the_host_override() {
    run_tests_in_a_container("in-container-override", true);
}

/// A network of the test's own for the tests' container, labelled with its
/// session and removed when dropped.
struct JobNetwork {
    name: String,
}

impl JobNetwork {
    fn new(session: &str) -> JobNetwork {
        let name = format!("cleanroom-job-{session}");
        cleanroom_tests::docker(&["network", "create", "--label", &format!("cleanroom.session={session}"), &name]);
        JobNetwork { name }
    }

    fn gateway(&self) -> String {
        let gateway = cleanroom_tests::docker(&[
            "network",
            "inspect",
            &self.name,
            "-f",
            "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
        ]);
        let gateway = gateway.trim().to_string();
        assert!(!gateway.is_empty(), "network {} has no gateway", self.name);
        gateway
    }
}

impl Drop for JobNetwork {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["network", "rm", &self.name]).output();
    }
}
