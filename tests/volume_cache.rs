//! The volume cache against the real engine: a first cold run fills a named
//! volume with the initialised cluster and the template its migrations made;
//! a second cold run (a new session, new containers) copies it instead of
//! running initdb and the migrations; a run with `CLEANROOM_CACHE_TTL=0`
//! removes it when it ends. A restored cluster is as clean as a fresh one:
//! what a `shared` test wrote into the main database does not come back.
//!
//! Each run is this binary started again on its `#[ignore]`d child test, with
//! a `cleanroom.toml` that gives Postgres an environment variable no other
//! test sets: the cache key covers the environment, so this test has a cache
//! volume of its own while other tests run.

use std::path::Path;

use cleanroom_tests::{assert_nothing_left, docker, fresh_session, run_child, ChildRun};
use serde_json::Value;

mod child {
    /// Runs first (libtest orders by name), so that in the first run the
    /// fill made after the migrations copies the table it writes into the
    /// main database: a restored cluster must not hand it to a later run.
    #[cleanroom::test(postgres(shared))]
    #[ignore = "run by the volume cache tests"]
    async fn a_shared_database_starts_empty(postgres: cleanroom::Postgres) {
        let (db, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        let leftovers: i64 =
            db.query_one("SELECT count(*) FROM pg_tables WHERE tablename = 'leftover'", &[]).await.unwrap().get(0);
        assert_eq!(leftovers, 0, "a table an earlier run's shared test wrote came back from the volume cache");
        db.batch_execute("CREATE TABLE leftover (v int); INSERT INTO leftover VALUES (1)").await.unwrap();
    }

    /// Prints the container's cache volume and which backend built the
    /// template (and when): every clone inherits that row, so two runs that
    /// print the same row used one template, built once.
    #[cleanroom::test(postgres(migrations = "fixtures/migrations"))]
    #[ignore = "run by the volume cache tests"]
    async fn reads_the_migrated_schema(postgres: cleanroom::Postgres) {
        let (db, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        let accounts: i64 = db.query_one("SELECT count(*) FROM accounts", &[]).await.unwrap().get(0);
        assert_eq!(accounts, 0, "a fresh clone of the migrated template");
        let row = db.query_one("SELECT built_by, built_at::text FROM template_build", &[]).await.unwrap();
        let (by, at): (i32, String) = (row.get(0), row.get(1));
        println!("TEMPLATE_BUILD={by}@{at}");
        let id = postgres.container().id().to_string();
        let volumes = cleanroom_tests::docker(&["inspect", "-f", "{{range .Mounts}}{{.Name}} {{end}}", &id]);
        let volume = volumes
            .split_whitespace()
            .find(|v| v.starts_with("cleanroom-cache-postgres-"))
            .expect("a cache volume is mounted");
        println!("CACHE_VOLUME={volume}");
        // What the first check did with what the start found in the cache.
        let done = cleanroom_tests::docker(&["exec", &id, "cat", "/tmp/cleanroom-volume-cache.done"]);
        println!("CACHE_DONE={}", done.trim());
    }
}

/// Runs `script` in a throwaway container with `volume` mounted at `/c`;
/// its output.
fn in_volume(volume: &str, script: &str) -> String {
    docker(&[
        "run",
        "--rm",
        "--label",
        "cleanroom.test=volume-cache",
        "-v",
        &format!("{volume}:/c"),
        "cleanroom-offline/busybox:1.35",
        "sh",
        "-c",
        script,
    ])
}

/// The generations in `volume`, oldest first: each one's name, whether it
/// is settled (`.clean`), whether it still needs recovery (`backup_label`),
/// and how many WAL segments it holds.
fn generations(volume: &str) -> Vec<(String, bool, bool, usize)> {
    let listing = in_volume(
        volume,
        "for d in /c/gen-*; do [ -f \"$d/.complete\" ] || continue; \
         echo \"${d##*/} $([ -f \"$d/.clean\" ] && echo 1 || echo 0) $([ -f \"$d/backup_label\" ] && echo 1 || echo 0) \
         $(ls \"$d/pg_wal\" | grep -c '^[0-9A-F]\\{24\\}$')\"; done",
    );
    listing
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[1] == "1", f[2] == "1", f[3].parse().unwrap())
        })
        .collect()
}

/// One run: its output, and its report.
struct Run {
    child: ChildRun,
    report: Value,
}

impl Run {
    fn line(&self, key: &str) -> String {
        let text = self.child.text();
        let prefix = format!("{key}=");
        text.lines()
            .find_map(|l| l.split_once(&prefix).map(|(_, value)| value.trim()))
            .unwrap_or_else(|| panic!("the child printed no {key}:\n{text}"))
            .to_string()
    }

    fn cache(&self, name: &str) -> (u64, u64) {
        let c = &self.report["caches"][name];
        (c["hits"].as_u64().unwrap_or(0), c["misses"].as_u64().unwrap_or(0))
    }

    /// The phases of the run's Postgres start, in ms.
    fn phase(&self, phase: &str) -> f64 {
        let services = self.report["services"].as_array().expect("the report lists services");
        let pg = services.iter().find(|s| s["name"] == "postgres").expect("postgres is in the report");
        pg["starts"][0][phase].as_f64().unwrap_or_else(|| panic!("no {phase} in {pg}"))
    }
}

fn run(session: &str, dir: &Path, config: &Path, extra: &[(&str, &str)]) -> Run {
    run_filtered(session, dir, config, extra, "child::")
}

/// A directory and a `cleanroom.toml` of `key`'s own: the cache key covers
/// the environment, so the test has a cache volume of its own.
fn own_cache(key: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(key);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("cleanroom.toml");
    std::fs::write(&config, format!("[services.postgres]\nenv = {{ CLEANROOM_CACHE_TEST = \"{key}\" }}\n")).unwrap();
    (dir, config)
}

fn run_filtered(session: &str, dir: &Path, config: &Path, extra: &[(&str, &str)], filter: &str) -> Run {
    let json = dir.join(format!("{session}.json"));
    let mut env = vec![
        ("CLEANROOM_CONFIG", config.to_str().unwrap()),
        ("CLEANROOM_REPORT_JSON", json.to_str().unwrap()),
        ("CLEANROOM_VOLUME_CACHE", "true"),
    ];
    env.extend_from_slice(extra);
    let child = run_child(session, &[filter, "--ignored", "--nocapture", "--test-threads=1"], &env);
    assert!(child.passed(), "the child run failed:\n{}", child.text());
    let report = serde_json::from_str(&std::fs::read_to_string(&json).expect("the run wrote its report")).unwrap();
    Run { child, report }
}

/// Held by each test of this file: one's `CLEANROOM_CACHE_TTL=0` run evicts
/// every idle cache of this user, the other's too, between its runs. A file
/// lock, since nextest runs each test in a process of its own.
fn cache_lock() -> std::fs::File {
    let file = std::fs::File::create(std::env::temp_dir().join("cleanroom-tests-volume-cache.lock")).unwrap();
    file.lock().unwrap();
    file
}

fn volume_exists(name: &str) -> bool {
    !docker(&["volume", "ls", "-q", "--filter", &format!("name=^{name}$")]).trim().is_empty()
}

#[test]
fn a_second_cold_run_copies_the_cluster_and_skips_initdb_and_migrations() {
    let _serial = cache_lock();
    let key = fresh_session("vcache");
    let (dir, config) = own_cache(&key);

    let first_session = fresh_session("vcache-1");
    let first = run(&first_session, &dir, &config, &[]);
    let volume = first.line("CACHE_VOLUME");
    assert_eq!(first.cache("volume"), (0, 1), "the first run finds the cache empty: {}", first.report["caches"]);
    assert_eq!(first.cache("postgres_template").1, 1, "the first run runs the migrations: {}", first.report["caches"]);
    // The fill ran against the real server, never the image entrypoint's
    // temporary init server (which, shutting down under it, made Postgres
    // log FATAL and the monitor raise an alert).
    for service in first.report["services"].as_array().expect("the report lists services") {
        let alerts = service["alerts"].as_array().map_or(0, Vec::len);
        assert_eq!(alerts, 0, "the cold run of {} reports no alert: {}", service["name"], service["alerts"]);
    }
    assert!(!first.child.text().contains("FATAL"), "the cold run's output has no FATAL:\n{}", first.child.text());
    assert_nothing_left(&first_session);
    assert!(volume_exists(&volume), "the cache volume {volume} outlives the run's reaper");
    let labels = docker(&["volume", "inspect", "-f", "{{json .Labels}}", &volume]);
    let labels: Value = serde_json::from_str(&labels).unwrap();
    assert_eq!(labels["cleanroom.managed"], "true", "{labels}");
    assert_eq!(labels["cleanroom.cache"], "volume", "{labels}");
    assert!(labels.get("cleanroom.session").is_none(), "a cache volume belongs to no run: {labels}");
    assert!(first.line("CACHE_DONE").starts_with("filled "), "the first check filled the empty cache");
    // The fill after the migrations ran while tests could run: it settled
    // its copy (cleaned by a server of its own, shut down cleanly, one WAL
    // segment), so that a restore needs neither recovery nor clean-up.
    let generations = generations(&volume);
    let newest = generations.last().expect("the first run left a complete generation");
    assert!(newest.1 && !newest.2 && newest.3 == 1, "the newest generation is settled: {generations:?}");

    let second_session = fresh_session("vcache-2");
    let second = run(&second_session, &dir, &config, &[]);
    assert_eq!(second.line("CACHE_VOLUME"), volume, "the same definition, the same cache");
    assert_eq!(second.cache("volume"), (1, 0), "the second run copies the cluster: {}", second.report["caches"]);
    let (hits, misses) = second.cache("postgres_template");
    assert!(
        hits >= 1 && misses == 0,
        "the second run finds the migrated template in the copied cluster: {}",
        second.report["caches"]
    );
    assert_eq!(
        second.line("TEMPLATE_BUILD"),
        first.line("TEMPLATE_BUILD"),
        "the template the first run built (same backend, same time): the migrations did not run again"
    );
    assert_eq!(second.line("CACHE_DONE"), "settled", "a settled generation needs no clean-up at restore");
    // The measurement, for the record (timing goals live in the benchmarks).
    eprintln!(
        "volume cache: postgres health phase {:.0} ms cold and empty (initdb, the checks, the fill), \
         {:.0} ms cold from the cache (the copy, the cleaning, the checks)",
        first.phase("health_ms"),
        second.phase("health_ms"),
    );
    assert_nothing_left(&second_session);
    assert!(volume_exists(&volume), "the cache volume {volume} outlives the second run too");

    // A generation the fill could not settle (an image without setpriv, gosu
    // or su-exec; an older cleanroom's) is cleaned by the first check of the
    // run that restores it.
    in_volume(&volume, "rm -f /c/gen-*/.clean");
    let unsettled_session = fresh_session("vcache-u");
    let unsettled = run(&unsettled_session, &dir, &config, &[]);
    assert_eq!(
        unsettled.cache("volume"),
        (1, 0),
        "an unsettled generation is restored: {}",
        unsettled.report["caches"]
    );
    assert_eq!(unsettled.line("CACHE_DONE"), "cleaned", "and cleaned by the first check");
    assert_nothing_left(&unsettled_session);

    // A cache made by another major version of Postgres (a moving tag) is
    // left alone: the server would refuse it. Pretend the cached clusters
    // are version 14's.
    in_volume(&volume, "for d in /c/gen-*; do echo 14 > \"$d/PG_VERSION\"; done");
    // A TTL of 0: the run's reaper removes the cache once the run's
    // containers are gone.
    let third_session = fresh_session("vcache-3");
    let third = run(&third_session, &dir, &config, &[("CLEANROOM_CACHE_TTL", "0")]);
    assert_eq!(
        third.cache("volume"),
        (0, 1),
        "a cluster of another major version is not restored: {}",
        third.report["caches"]
    );
    assert_eq!(third.cache("postgres_template").1, 1, "so the migrations run again: {}", third.report["caches"]);
    assert_nothing_left(&third_session);
    let deadline = std::time::Instant::now() + cleanroom_tests::REAPER_DEADLINE;
    while volume_exists(&volume) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(!volume_exists(&volume), "CLEANROOM_CACHE_TTL=0 removes the cache volume when the run ends");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Where the role migrations live while the test that changes them runs: a
/// directory of this test's own, outside the source tree.
const ROLE_MIGRATIONS: &str = "/tmp/cleanroom-tests-role-migrations";

mod roles {
    /// A migration that makes a role (cluster-wide, not in any database),
    /// from `CLEANROOM_POSTGRES_MIGRATIONS` (the test makes the directory
    /// at run time; an attribute's path is checked when the test compiles).
    #[cleanroom::test(postgres)]
    #[ignore = "run by the volume cache tests"]
    async fn migrated_with_a_role(postgres: cleanroom::Postgres) {
        let (db, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        let items: i64 = db.query_one("SELECT count(*) FROM items", &[]).await.unwrap().get(0);
        assert_eq!(items, 0);
        println!("ROLE_MIGRATIONS_OK");
        let volumes = cleanroom_tests::docker(&[
            "inspect",
            "-f",
            "{{range .Mounts}}{{.Name}} {{end}}",
            postgres.container().id(),
        ]);
        let volume = volumes.split_whitespace().find(|v| v.starts_with("cleanroom-cache-postgres-")).unwrap();
        println!("CACHE_VOLUME={volume}");
    }
}

/// A restored cluster is exactly a fresh one: a role a migration made in the
/// run that filled the cache is not there when the next run's migrations (a
/// new file: a new template) run again, so `CREATE ROLE` succeeds.
#[test]
fn a_role_a_migration_made_does_not_come_back_from_the_cache() {
    let _serial = cache_lock();
    let key = fresh_session("vcache-role");
    let (dir, config) = own_cache(&key);
    let migrations = Path::new(ROLE_MIGRATIONS);
    let _ = std::fs::remove_dir_all(migrations);
    std::fs::create_dir_all(migrations).unwrap();
    std::fs::write(
        migrations.join("001_role.sql"),
        "CREATE ROLE cleanroom_reader NOLOGIN; CREATE TABLE items (id int); GRANT SELECT ON items TO cleanroom_reader;",
    )
    .unwrap();
    let run_roles = |session: &str, extra: &[(&str, &str)]| {
        let mut env = vec![("CLEANROOM_POSTGRES_MIGRATIONS", ROLE_MIGRATIONS)];
        env.extend_from_slice(extra);
        run_filtered(session, &dir, &config, &env, "roles::")
    };
    let first_session = fresh_session("vcache-role-1");
    let first = run_roles(&first_session, &[]);
    assert!(first.child.passed(), "{}", first.child.text());
    assert_eq!(first.cache("volume"), (0, 1), "the first run fills the cache: {}", first.report["caches"]);
    assert_nothing_left(&first_session);

    // A new migration: a new template, built on the restored cluster.
    std::fs::write(migrations.join("002_more.sql"), "CREATE TABLE more (id int);").unwrap();
    let second_session = fresh_session("vcache-role-2");
    // (Not CLEANROOM_CACHE_TTL=0 to remove the cache at the end: that would
    // evict every idle cache of this user, other tests' too.)
    let second = run_roles(&second_session, &[]);
    let text = second.child.text();
    assert!(second.child.passed(), "the role's migration runs again on the restored cluster:\n{text}");
    assert!(text.contains("ROLE_MIGRATIONS_OK"), "{text}");
    assert_eq!(second.cache("volume"), (1, 0), "the second run restored the cluster: {}", second.report["caches"]);
    assert_nothing_left(&second_session);
    docker(&["volume", "rm", &second.line("CACHE_VOLUME")]);
    let _ = std::fs::remove_dir_all(migrations);
    let _ = std::fs::remove_dir_all(&dir);
}
