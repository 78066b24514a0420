//! Existing servers (`CLEANROOM_POSTGRES_URL`, `CLEANROOM_REDIS_URL`): no
//! container is started, every test still gets a room of its own, and the
//! run removes exactly the databases and keys it made there — never the
//! server's own, nor another owner's — even after a `kill -9`.
//!
//! The "existing" servers are this test's own: a Postgres and a Redis it
//! starts with `docker run` (they carry no cleanroom label, so cleanroom
//! sees them as any server), and asks directly what is on them afterwards.

use std::process::Command;
use std::time::{Duration, Instant};

use cleanroom_tests::{
    fresh_session, kill_run_with_its_reaper, run_child, session_containers, start_waiting, REAPER_DEADLINE,
};

mod child {
    pub(super) mod suite {
        cleanroom_tests::postgres_and_redis_tests!("run by the existing-server tests": s01 s02 s03 s04 s05 s06);
    }

    pub(super) mod waits {
        #[cleanroom::test(postgres, redis)]
        #[ignore = "run by the kill test"]
        async fn until_killed(postgres: cleanroom::Postgres, redis: cleanroom::Redis) {
            let (client, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            client.batch_execute("CREATE TABLE t (v int)").await.unwrap();
            let mut cache = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
            let () = redis::AsyncCommands::set(&mut cache, "left-by-a-killed-run", 1).await.unwrap();
            println!("cleanroom-test: READY");
            tokio::time::sleep(std::time::Duration::from_secs(120)).await;
        }
    }

    pub(super) mod prune {
        /// `cargo cleanroom prune` as the CLI runs it (caches left alone):
        /// prints what went from the existing servers configured here.
        #[test]
        #[ignore = "run by the prune test"]
        fn plain() {
            let options = cleanroom_runtime::admin::PruneOptions { keep_caches: true, ..Default::default() };
            for what in cleanroom_runtime::admin::prune(options).unwrap().existing {
                println!("PRUNED {what}");
            }
        }
    }
}

/// A server this test starts and removes: not cleanroom's.
struct Server {
    id: String,
    port: u16,
}

impl Server {
    fn start(image: &str, port: u16, env: &[&str]) -> Server {
        let mut args = vec!["run", "-d", "--rm", "-l", "cleanroom-test.existing-server=true", "-p"];
        let publish = format!("127.0.0.1::{port}");
        args.push(&publish);
        for e in env {
            args.extend(["-e", e]);
        }
        args.push(image);
        let id = cleanroom_tests::docker(&args).trim().to_string();
        let mapped = cleanroom_tests::docker(&["port", &id, &port.to_string()]);
        let port = mapped.lines().next().and_then(|l| l.rsplit(':').next()).unwrap().trim().parse().unwrap();
        Server { id, port }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.id]).output();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// A Postgres started for the test, with an application database of its own.
fn postgres() -> (Server, String) {
    let server = Server::start(
        "cleanroom-offline/postgres:15",
        5432,
        &["POSTGRES_USER=admin", "POSTGRES_PASSWORD=admin-pw", "POSTGRES_DB=postgres"],
    );
    let url = format!("postgres://admin:admin-pw@127.0.0.1:{}/postgres", server.port);
    let deadline = Instant::now() + Duration::from_secs(60);
    while runtime().block_on(tokio_postgres::connect(&url, tokio_postgres::NoTls)).is_err() {
        assert!(Instant::now() < deadline, "the test's own Postgres did not start");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The official image restarts the server once after its init: wait for
    // a connection that holds.
    std::thread::sleep(Duration::from_millis(500));
    while sql(&url, "SELECT 1").is_err() {
        assert!(Instant::now() < deadline, "the test's own Postgres did not settle");
        std::thread::sleep(Duration::from_millis(200));
    }
    (server, url)
}

/// Runs `query` and returns the first column of each row.
fn sql(url: &str, query: &str) -> Result<Vec<String>, String> {
    runtime().block_on(async {
        let (client, connection) =
            tokio_postgres::connect(url, tokio_postgres::NoTls).await.map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let rows = client.simple_query(query).await.map_err(|e| e.to_string())?;
        Ok(rows
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_string()),
                _ => None,
            })
            .collect())
    })
}

/// Databases whose comment claims them for `session`.
fn claimed_by(url: &str, session: &str) -> Vec<String> {
    sql(
        url,
        &format!(
            "SELECT datname FROM pg_database WHERE shobj_description(oid, 'pg_database') LIKE \
             'cleanroom.managed session={session} %' ORDER BY 1"
        ),
    )
    .unwrap()
}

fn cleanroom_databases(url: &str) -> Vec<String> {
    sql(url, "SELECT datname FROM pg_database WHERE datname LIKE 'cleanroom\\_%' ORDER BY 1").unwrap()
}

/// Waits until the server runs nothing for cleanroom's connections: a
/// statement a killed process sent (a `CREATE DATABASE` on its way) is
/// finished, so what the process left is all there to be counted.
fn settle(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while sql(url, "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'cleanroom%' AND state <> 'idle'")
        .unwrap()
        != ["0"]
    {
        assert!(Instant::now() < deadline, "the killed run's connections did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn redis_server() -> Server {
    let server = Server::start("cleanroom-offline/redis:7", 6379, &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while redis_query(server.port, 0, &["PING"]).is_err() {
        assert!(Instant::now() < deadline, "the test's own Redis did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

fn redis_query(port: u16, db: u32, args: &[&str]) -> redis::RedisResult<redis::Value> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/{db}"))?;
    let mut conn = client.get_connection()?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(&mut conn)
}

fn dbsize(port: u16, db: u32) -> i64 {
    match redis_query(port, db, &["DBSIZE"]).unwrap() {
        redis::Value::Int(n) => n,
        other => panic!("DBSIZE: {other:?}"),
    }
}

fn leases(port: u16) -> Vec<String> {
    match redis_query(port, 15, &["KEYS", "cleanroom:lease:*"]).unwrap() {
        redis::Value::Array(keys) => keys
            .into_iter()
            .map(|k| match k {
                redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
                other => format!("{other:?}"),
            })
            .collect(),
        other => panic!("KEYS: {other:?}"),
    }
}

/// Waits until `done`, for as long as a run's reaper may take.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + REAPER_DEADLINE;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn env<'a>(pg: &'a str, redis: &'a str) -> [(&'static str, &'a str); 3] {
    [("CLEANROOM_POSTGRES_URL", pg), ("CLEANROOM_REDIS_URL", redis), ("CLEANROOM_REDIS_DATABASES", "8-15")]
}

/// A run in `session` killed with its reaper (`kill -9` of both), once the
/// statements it left running on the Postgres at `url` are done.
fn kill_a_run(session: &str, vars: [(&str, &str); 3], url: &str) {
    kill_run_with_its_reaper(session, &vars);
    settle(url);
}

/// The server's own databases and keys, another owner's marked database and
/// an unmarked one with cleanroom's prefix all stay; what the run made goes.
#[test]
fn a_run_on_existing_servers_removes_exactly_what_it_made() {
    let (pg, url) = postgres();
    let cache = redis_server();
    sql(&url, "CREATE DATABASE app_data").unwrap();
    sql(&url, "CREATE DATABASE cleanroom_t_by_hand").unwrap();
    sql(&url, "CREATE DATABASE cleanroom_t_foreign").unwrap();
    sql(&url, "COMMENT ON DATABASE cleanroom_t_foreign IS 'cleanroom.managed session=x owner=somebody-else'").unwrap();
    redis_query(cache.port, 0, &["SET", "user:zero", "1"]).unwrap();
    redis_query(cache.port, 3, &["SET", "user:three", "1"]).unwrap();
    let redis_url = format!("redis://127.0.0.1:{}", cache.port);

    for no_reaper in ["0", "1"] {
        let session = fresh_session("existing");
        let report = std::env::temp_dir().join(format!("{session}.json"));
        let mut vars = env(&url, &redis_url).to_vec();
        vars.extend([("CLEANROOM_NO_REAPER", no_reaper), ("CLEANROOM_REPORT_JSON", report.to_str().unwrap())]);
        let run = run_child(&session, &["--ignored", "child::suite::", "--test-threads", "3"], &vars);
        assert!(run.passed(), "no_reaper={no_reaper}: {}", run.text());
        assert!(run.text().contains("6 passed"), "{}", run.text());
        assert!(session_containers(&session).is_empty(), "no container was started");
        let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        let _ = std::fs::remove_file(&report);
        let engines: Vec<(String, String)> = doc["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["name"].as_str().unwrap().to_string(), s["engine"].as_str().unwrap().to_string()))
            .collect();
        assert!(engines.contains(&("postgres".into(), "existing".into())), "{engines:?}");
        assert!(engines.contains(&("redis".into(), "existing".into())), "{engines:?}");

        eventually(&format!("the run's databases outlived it (no_reaper={no_reaper})"), || {
            claimed_by(&url, &session).is_empty()
        });
        eventually(&format!("the run's leases outlived it: {:?}", leases(cache.port)), || {
            leases(cache.port).is_empty()
        });
        let expected = ["cleanroom_t_by_hand", "cleanroom_t_foreign"];
        eventually(&format!("only what this run made goes (no_reaper={no_reaper})"), || {
            cleanroom_databases(&url) == expected
        });
        assert!(sql(&url, "SELECT 1 FROM pg_database WHERE datname = 'app_data'").unwrap().len() == 1);
        for db in 8..15 {
            assert_eq!(dbsize(cache.port, db), 0, "room {db} is flushed");
        }
        assert_eq!((dbsize(cache.port, 0), dbsize(cache.port, 3)), (1, 1), "databases outside 8-15 are untouched");
    }
    drop((pg, cache));
}

/// A run killed with its reaper leaves its databases and its lease; the
/// next run on the same servers removes them, and `prune --url` finds
/// nothing more. A live run's are never touched.
#[test]
fn what_a_killed_run_left_on_an_existing_server_goes_with_the_next_run() {
    let (pg, url) = postgres();
    let cache = redis_server();
    let redis_url = format!("redis://127.0.0.1:{}", cache.port);
    let vars = env(&url, &redis_url);

    let orphaned = fresh_session("existing-killed");
    kill_a_run(&orphaned, vars, &url);
    let left = claimed_by(&url, &orphaned);
    assert!(!left.is_empty(), "the killed run left its template and database");
    assert!(!leases(cache.port).is_empty(), "and its Redis lease");

    let live = fresh_session("existing-live");
    let mut alive = start_waiting(&live, &vars);
    let live_databases = claimed_by(&url, &live);
    assert!(!live_databases.is_empty());

    // The live run's process cloned one ahead into its run's pool.
    let pooled = || -> Vec<String> {
        let claimed = claimed_by(&url, &live);
        pool_files(&cleanroom_runtime::admin::runtime_dir()).into_iter().filter(|f| claimed.contains(f)).collect()
    };
    eventually("the live run's pool holds a clone", || !pooled().is_empty());
    let live_pool = pooled();

    let next = fresh_session("existing-next");
    let run = run_child(&next, &["--ignored", "child::suite::s01"], &vars);
    assert!(run.passed(), "{}", run.text());
    assert!(claimed_by(&url, &orphaned).is_empty(), "the next run removed the killed run's databases: {left:?}");
    // The next run's reaper swept what dead runs left, not the live run's
    // pool (which it used to take for a container that is gone).
    let files = pool_files(&cleanroom_runtime::admin::runtime_dir());
    assert!(live_pool.iter().all(|f| files.contains(f)), "a live run's pool is untouched: {live_pool:?} -> {files:?}");
    let still = claimed_by(&url, &live);
    assert!(
        live_databases.iter().all(|d| still.contains(d)),
        "a live run's databases are untouched (its pool may have cloned more): {live_databases:?} -> {still:?}"
    );
    let live_leases = leases(cache.port);
    assert_eq!(live_leases.len(), 1, "only the live run's lease is left: {live_leases:?}");
    for db in 8..15 {
        let key = format!("cleanroom:lease:{db}");
        if !live_leases.contains(&key) {
            assert_eq!(dbsize(cache.port, db), 0, "room {db}, leased by no live run, is flushed");
        }
    }

    let pruned = cleanroom_runtime::admin::prune_server(&url, None, false).unwrap();
    assert!(pruned.removed.is_empty(), "prune finds nothing more to remove: {pruned:?}");
    assert!(pruned.kept.iter().any(|k| k.contains(&live)), "and says the live run's stay: {pruned:?}");

    let _ = alive.kill();
    let _ = alive.wait();
    // Its pool goes with its run.
    eventually("the live run's pool went with it", || {
        let files = pool_files(&cleanroom_runtime::admin::runtime_dir());
        !live_pool.iter().any(|f| files.contains(f))
    });
    drop((pg, cache));
}

/// The names of the files in every `pgpool` directory under `dir` (the
/// databases the run pools hold), hidden ones left out.
fn pool_files(dir: &std::path::Path) -> Vec<String> {
    fn walk(dir: &std::path::Path, in_pool: bool, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                if !name.starts_with('.') {
                    walk(&entry.path(), in_pool || name == "pgpool", out);
                }
            } else if in_pool && !name.starts_with('.') {
                out.push(name);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, false, &mut out);
    out
}

/// `prune --url` removes what a killed run left, and nothing else.
#[test]
fn prune_url_removes_what_a_killed_run_left() {
    let (pg, url) = postgres();
    let cache = redis_server();
    let redis_url = format!("redis://127.0.0.1:{}", cache.port);
    let orphaned = fresh_session("existing-prune");
    kill_a_run(&orphaned, env(&url, &redis_url), &url);
    assert!(!claimed_by(&url, &orphaned).is_empty());
    // The server is this test's: every database with cleanroom's prefix on
    // it is the killed run's (one it was cloning when killed has its name
    // but not yet its comment).
    let left = cleanroom_databases(&url);

    let dry = cleanroom_runtime::admin::prune_server(&url, None, true).unwrap();
    assert_eq!(dry.removed.len(), left.len(), "a dry run lists them: {dry:?} {left:?}");
    assert_eq!(cleanroom_databases(&url), left, "and removes nothing");
    let pruned = cleanroom_runtime::admin::prune_server(&url, None, false).unwrap();
    assert_eq!(pruned.removed.len(), left.len(), "{pruned:?}");
    assert!(cleanroom_databases(&url).is_empty(), "{:?}", cleanroom_databases(&url));
    let redis = cleanroom_runtime::admin::prune_server(&redis_url, Some("8-15"), false).unwrap();
    assert_eq!(redis.removed.len(), 1, "the killed run's Redis room: {redis:?}");
    assert!(leases(cache.port).is_empty());
    for db in 8..15 {
        assert_eq!(dbsize(cache.port, db), 0);
    }

    // Plain `prune`, without --url, sweeps the servers configured for the
    // built-in services too. (A runtime directory of the test's own: the
    // killed run is judged by its lock there.)
    let runtime = std::env::temp_dir().join(fresh_session("existing-prune-dir"));
    std::fs::create_dir_all(&runtime).unwrap();
    let [pg_url, redis_url_var, range] = env(&url, &redis_url);
    let here = ("XDG_RUNTIME_DIR", runtime.to_str().unwrap());
    let again = fresh_session("existing-prune-again");
    kill_run_with_its_reaper(&again, &[pg_url, redis_url_var, range, here]);
    settle(&url);
    assert!(!claimed_by(&url, &again).is_empty(), "the second killed run left its databases");
    let pruner = fresh_session("existing-pruner");
    let run = run_child(
        &pruner,
        &["--ignored", "--exact", "child::prune::plain", "--nocapture"],
        &[pg_url, redis_url_var, range, here],
    );
    assert!(run.passed(), "{}", run.text());
    assert!(cleanroom_databases(&url).is_empty(), "{:?}\n{}", cleanroom_databases(&url), run.text());
    assert!(run.text().contains("PRUNED database cleanroom_"), "{}", run.text());
    assert!(leases(cache.port).is_empty(), "{}", run.text());
    let _ = std::fs::remove_dir_all(&runtime);
    drop((pg, cache));
}

/// A role without CREATEDB is told the grant; an existing Redis without the
/// databases cleanroom may use is told the setting. Nothing hangs.
#[test]
fn what_an_existing_server_lacks_is_a_clear_error() {
    let (pg, url) = postgres();
    let cache = redis_server();
    sql(&url, "CREATE ROLE plain LOGIN PASSWORD 'plain-pw'").unwrap();
    let plain = url.replace("admin:admin-pw", "plain:plain-pw");
    let session = fresh_session("existing-grant");
    let run =
        run_child(&session, &["--ignored", "--exact", "child::suite::s01"], &[("CLEANROOM_POSTGRES_URL", &plain)]);
    assert!(!run.passed());
    assert!(run.text().contains(r#"ALTER ROLE "plain" CREATEDB"#), "{}", run.text());

    let redis_url = format!("redis://127.0.0.1:{}", cache.port);
    let run = run_child(
        &fresh_session("existing-range"),
        &["--ignored", "--exact", "child::suite::s01"],
        &[("CLEANROOM_POSTGRES_URL", &url), ("CLEANROOM_REDIS_URL", &redis_url)],
    );
    assert!(!run.passed());
    assert!(run.text().contains("CLEANROOM_REDIS_DATABASES=first-last"), "{}", run.text());

    let run = run_child(
        &fresh_session("existing-bad-url"),
        &["--ignored", "--exact", "child::suite::s01"],
        &[("CLEANROOM_POSTGRES_URL", "localhost:5432")],
    );
    assert!(!run.passed());
    assert!(run.text().contains("CLEANROOM_POSTGRES_URL") && run.text().contains("no scheme"), "{}", run.text());
    drop((pg, cache));
}

/// The beat a run's heartbeat database holds, and the server's clock: both
/// in seconds, on the server.
fn beat_and_now(url: &str, session: &str) -> Option<(i64, i64)> {
    let rows = sql(
        url,
        &format!(
            "SELECT shobj_description(oid, 'pg_database') || ' now=' || floor(extract(epoch FROM now()))::bigint \
             FROM pg_database WHERE datname LIKE 'cleanroom\\_%\\_run' AND shobj_description(oid, 'pg_database') \
             LIKE 'cleanroom.managed session={session} %'"
        ),
    )
    .unwrap();
    let text = rows.first()?;
    let field = |key: &str| text.split_whitespace().find_map(|p| p.strip_prefix(key)?.parse::<i64>().ok());
    Some((field("beat=")?, field("now=")?))
}

/// A runtime directory of its own for a run of "another machine": its owner
/// labels differ from this process's, and its lock is not here to ask.
fn elsewhere(session: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("{session}-elsewhere"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// A run of another owner (another runtime directory: another machine, as
/// far as this one can tell) cannot be proven dead from here: killed, what
/// it made stays while its heartbeat on the server is younger than
/// `run.remote_idle_ttl` by the server's clock, and goes with the next run
/// once it is older. A live run of another owner, which beats, stays.
#[test]
fn another_owners_run_on_an_existing_server_goes_only_once_idle_past_the_ttl() {
    const TTL: i64 = 10;
    let (pg, url) = postgres();
    let cache = redis_server();
    let redis_url = format!("redis://127.0.0.1:{}", cache.port);
    let vars = env(&url, &redis_url);
    let ttl = TTL.to_string();
    let from = |dir: &std::path::Path| -> Vec<(&str, String)> {
        let mut v: Vec<(&str, String)> = vars.iter().map(|(k, v)| (*k, v.to_string())).collect();
        v.push(("XDG_RUNTIME_DIR", dir.to_str().unwrap().to_string()));
        v.push(("CLEANROOM_REMOTE_IDLE_TTL", ttl.clone()));
        v
    };

    let killed = fresh_session("existing-remote-killed");
    let killed_dir = elsewhere(&killed);
    let killed_vars = from(&killed_dir);
    let killed_refs: Vec<(&str, &str)> = killed_vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    kill_run_with_its_reaper(&killed, &killed_refs);
    settle(&url);
    let left = claimed_by(&url, &killed);
    assert!(left.iter().any(|d| d.ends_with("_run")), "the killed run left its heartbeat: {left:?}");

    let live = fresh_session("existing-remote-live");
    let live_dir = elsewhere(&live);
    let live_vars = from(&live_dir);
    let live_refs: Vec<(&str, &str)> = live_vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut alive = start_waiting(&live, &live_refs);
    let live_databases = claimed_by(&url, &live);
    assert!(!live_databases.is_empty());

    // A sweep whose TTL has not passed since the killed run's last beat.
    let patient = fresh_session("existing-remote-patient");
    let mut long: Vec<(&str, &str)> = vars.to_vec();
    long.push(("CLEANROOM_REMOTE_IDLE_TTL", "3600"));
    let run = run_child(&patient, &["--ignored", "child::suite::s01"], &long);
    assert!(run.passed(), "{}", run.text());
    assert_eq!(claimed_by(&url, &killed), left, "another owner's run is not removed before its beat is idle");

    // Once the killed run's beat is older than the TTL on the server's clock.
    eventually("the killed run's beat grew older than the TTL on the server's clock", || {
        beat_and_now(&url, &killed).is_some_and(|(beat, now)| now - beat > TTL)
    });
    let next = fresh_session("existing-remote-next");
    let mut short: Vec<(&str, &str)> = vars.to_vec();
    short.push(("CLEANROOM_REMOTE_IDLE_TTL", &ttl));
    let run = run_child(&next, &["--ignored", "child::suite::s01"], &short);
    assert!(run.passed(), "{}", run.text());
    assert!(claimed_by(&url, &killed).is_empty(), "the idle run's databases went: {left:?}");
    let still = claimed_by(&url, &live);
    assert!(
        live_databases.iter().all(|d| still.contains(d)),
        "a live run of another owner, which beats, is untouched: {live_databases:?} -> {still:?}"
    );

    let _ = alive.kill();
    let _ = alive.wait();
    for dir in [killed_dir, live_dir] {
        let _ = std::fs::remove_dir_all(dir);
    }
    drop((pg, cache));
}
