//! Migrations the way sqlx, refinery and diesel lay them out and record
//! them, live: against a room, each tool's own runner (the real crate) finds
//! nothing to apply, and down migrations never ran. A failing migration
//! names the file, the line and the server's words, and fails every test
//! that needs its template at once. docs/migrations.md lists the rules.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cleanroom::Postgres;
use cleanroom_tests::{
    assert_nothing_left, child_command, docker, fresh_session, runs_on_docker, session_containers, EventWatch,
};

fn fixture(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(dir)
}

async fn client(postgres: &Postgres) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

async fn table_exists(db: &tokio_postgres::Client, table: &str) -> bool {
    db.query_one("SELECT to_regclass($1) IS NOT NULL", &[&table]).await.unwrap().get(0)
}

/// `(version, installed_on)` of every row of `_sqlx_migrations`, as text.
async fn sqlx_history(db: &tokio_postgres::Client) -> Vec<(i64, String, i64)> {
    db.query("SELECT version, installed_on::text, execution_time FROM _sqlx_migrations ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// A directory with sqlx's reversible `.up.sql`/`.down.sql` pairs is sqlx's:
/// detected, no `tool` needed.
#[cleanroom::test(postgres(migrations = "fixtures/sqlx"))]
async fn sqlx_finds_nothing_to_apply_and_no_down_migration_ran(postgres: Postgres) {
    let db = client(&postgres).await;
    let before = sqlx_history(&db).await;
    let versions: Vec<i64> = before.iter().map(|(v, ..)| *v).collect();
    assert_eq!(versions, [20240101000000, 20240102000000, 20240103000000]);
    assert!(before.iter().all(|(_, _, time)| *time >= 0), "execution times are recorded: {before:?}");
    assert!(table_exists(&db, "posts").await && !table_exists(&db, "down_migration_ran").await);
    let indexed: bool = db
        .query_one("SELECT EXISTS (SELECT 1 FROM pg_indexes WHERE indexname = 'users_by_email')", &[])
        .await
        .unwrap()
        .get(0);
    assert!(indexed, "the -- no-transaction migration ran outside a transaction (CREATE INDEX CONCURRENTLY)");

    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&postgres.url()).await.unwrap();
    let migrator = sqlx::migrate::Migrator::new(fixture("sqlx")).await.unwrap();
    migrator.run(&pool).await.expect("sqlx accepts the room's history: checksums and versions match");
    assert_eq!(sqlx_history(&db).await, before, "sqlx applied nothing");
    pool.close().await;
}

/// Plain `NNN_name.sql` files stay plain SQL unless a tool is named; named,
/// they are sqlx's simple migrations.
#[cleanroom::test(postgres(migrations = "fixtures/plain_for_sqlx", tool = "sqlx"))]
async fn a_named_tool_turns_plain_files_into_its_migrations(postgres: Postgres) {
    let db = client(&postgres).await;
    let before = sqlx_history(&db).await;
    assert_eq!(before.len(), 2);
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&postgres.url()).await.unwrap();
    sqlx::migrate::Migrator::new(fixture("plain_for_sqlx")).await.unwrap().run(&pool).await.unwrap();
    assert_eq!(sqlx_history(&db).await, before, "sqlx applied nothing");
    pool.close().await;
}

/// `V<n>__name.sql` is refinery's, found in subdirectories too.
#[cleanroom::test(postgres(migrations = "fixtures/refinery"))]
async fn refinery_reports_nothing_to_apply(postgres: Postgres) {
    let mut db = client(&postgres).await;
    let migrations = refinery::load_sql_migrations(fixture("refinery")).unwrap();
    assert_eq!(migrations.len(), 2);
    let report = refinery::Runner::new(&migrations).run_async(&mut db).await.expect("refinery accepts the history");
    assert!(report.applied_migrations().is_empty(), "refinery applied {:?}", report.applied_migrations());
    let rows: i64 = db.query_one("SELECT count(*) FROM refinery_schema_history", &[]).await.unwrap().get(0);
    assert_eq!(rows, 2);
}

/// `<version>_<name>/up.sql` directories are diesel's; a sync test, as
/// diesel's connection is.
#[cleanroom::test(postgres(migrations = "fixtures/diesel"))]
fn diesel_has_no_pending_migration_and_no_down_migration_ran(postgres: Postgres) {
    use diesel::Connection;
    use diesel_migrations::MigrationHarness;
    let mut conn = diesel::PgConnection::establish(&postgres.url()).unwrap();
    let source = diesel_migrations::FileBasedMigrations::from_path(fixture("diesel")).unwrap();
    let pending = conn.pending_migrations(source).unwrap();
    let names: Vec<String> = pending.iter().map(|m| m.name().to_string()).collect();
    assert!(names.is_empty(), "diesel would apply {names:?}");
    let applied: Vec<String> = conn.applied_migrations().unwrap().iter().map(|v| v.to_string()).collect();
    assert_eq!(applied, ["20240102000000", "20240101000000"]);
    use diesel::RunQueryDsl;
    let down = diesel::sql_query("SELECT 1 FROM pg_tables WHERE tablename = 'down_migration_ran'").execute(&mut conn);
    assert_eq!(down.unwrap(), 0, "no down migration ran");
}

mod child {
    /// Two tests that need the same failing template.
    #[cleanroom::test(postgres(migrations = "fixtures/sqlx_bad"))]
    #[ignore = "run by the failing migration tests"]
    fn first(postgres: cleanroom::Postgres) {
        let _ = postgres.url();
    }

    #[cleanroom::test(postgres(migrations = "fixtures/sqlx_bad"))]
    #[ignore = "run by the failing migration tests"]
    fn second(postgres: cleanroom::Postgres) {
        let _ = postgres.url();
    }
}

fn assert_names_the_failure(text: &str) {
    assert!(text.contains("0002_posts.up.sql"), "the file: {text}");
    assert!(text.contains("syntax error at or near \"TABEL\""), "the server's message: {text}");
    assert!(text.contains("(line 2, column 8)"), "the statement's line: {text}");
}

/// Everything the Postgres server of `session` logs, from its first line
/// until it is removed: its container is found as soon as it runs, and
/// followed. Docker only.
fn follow_postgres_log(session: &str) -> std::thread::JoinHandle<String> {
    let filter = [format!("label=cleanroom.session={session}"), "label=cleanroom.service=postgres".to_string()];
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        let id = loop {
            // Running: `docker logs --follow` of a container not yet
            // started returns at once, with nothing.
            let found =
                docker(&["ps", "-q", "--filter", &filter[0], "--filter", &filter[1], "--filter", "status=running"]);
            if let Some(id) = found.lines().next() {
                break id.to_string();
            }
            assert!(Instant::now() < deadline, "no postgres container of the session appeared");
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = std::process::Command::new("docker").args(["logs", "--follow", &id]).output().unwrap();
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    })
}

/// In one process (`cargo test`): both tests fail with the migration's
/// failure; the template is tried once: the server saw the failing
/// statement once, not once per test.
#[test]
fn a_failing_migration_fails_every_test_of_its_template_in_one_process() {
    let session = fresh_session("mig-fail-one");
    let log = runs_on_docker().then(|| follow_postgres_log(&session));
    let out = child_command(&session, &["--ignored", "child::", "--test-threads=2"]).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{text}");
    assert_names_the_failure(&text);
    assert!(text.contains("2 failed"), "both tests fail: {text}");
    assert_nothing_left(&session);
    if let Some(log) = log {
        let log = log.join().unwrap();
        let runs =
            log.lines().filter(|l| l.contains("ERROR:") && l.contains("syntax error at or near \"TABEL\"")).count();
        assert_eq!(runs, 1, "the failing migration ran once for both tests; the server's log:\n{log}");
    }
}

mod fails_running {
    #[cleanroom::test(postgres(migrations = "fixtures/sqlx_fails_running"))]
    #[ignore = "run by a_migration_failing_as_it_runs_names_its_statement_and_the_servers_context"]
    fn needs_it(postgres: cleanroom::Postgres) {
        let _ = postgres.url();
    }
}

/// An error of running (a duplicate key inside a `DO` body) comes with no
/// position in the file: the message still names the line of the statement
/// that failed, found by running the statements one by one, and the
/// server's context.
#[test]
fn a_migration_failing_as_it_runs_names_its_statement_and_the_servers_context() {
    let session = fresh_session("mig-fail-running");
    let out = child_command(&session, &["--ignored", "--exact", "fails_running::needs_it"]).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("sqlx_fails_running/0002_seed.up.sql"), "the file: {text}");
    assert!(
        text.contains("duplicate key value violates unique constraint \"accounts_pkey\""),
        "the server's message: {text}"
    );
    assert!(text.contains("(in the statement on line 4)"), "the failing statement's line: {text}");
    assert!(text.contains("detail: Key (id)=(1) already exists."), "the server's detail: {text}");
    assert!(text.contains("where: ") && text.contains("PL/pgSQL function inline_code_block"), "its context: {text}");
    assert_nothing_left(&session);
}

/// In processes of one run (as under nextest): the process that built the
/// template records the failure on the server; the other fails with it
/// without running the migrations again.
#[test]
fn a_failing_migration_fails_the_other_processes_of_the_run_without_a_rebuild() {
    let session = fresh_session("mig-fail-many");
    let children: Vec<_> = ["child::first", "child::second"]
        .iter()
        .map(|test| {
            child_command(&session, &["--ignored", "--exact", test])
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
        assert_names_the_failure(text);
    }
    let told =
        texts.iter().filter(|t| t.contains("another process of this run met this building the template")).count();
    assert_eq!(told, 1, "exactly one process ran the migrations:\n{}", texts.join("\n----\n"));
    assert_nothing_left(&session);
}

/// A fixture that needs a migrated database: tests that use it get diesel's
/// schema without repeating it.
#[cleanroom::fixture(postgres(migrations = "fixtures/diesel"))]
fn diesel_db(postgres: Postgres) -> String {
    postgres.url()
}

mod declared {
    use super::*;

    /// Lists only `postgres`: the schema comes from `cleanroom.toml`.
    #[cleanroom::test(postgres)]
    #[ignore = "run by the declared-once tests"]
    async fn lists_only_postgres(postgres: Postgres) {
        let db = client(&postgres).await;
        assert!(table_exists(&db, "users").await && table_exists(&db, "_sqlx_migrations").await);
        println!("DECLARED_ONCE_OK");
    }

    /// The attribute overrides the file.
    #[cleanroom::test(postgres(migrations = "fixtures/refinery"))]
    #[ignore = "run by the declared-once tests"]
    async fn names_its_own(postgres: Postgres) {
        let db = client(&postgres).await;
        assert!(table_exists(&db, "refinery_schema_history").await);
        assert!(!table_exists(&db, "_sqlx_migrations").await, "not the file's schema");
        println!("ATTRIBUTE_OVERRIDES_OK");
    }

    /// A fixture's demand beats the file's default.
    #[cleanroom::test(postgres)]
    #[ignore = "run by the declared-once tests"]
    async fn gets_its_fixtures(diesel_db: String) {
        let (db, connection) = tokio_postgres::connect(&diesel_db, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        assert!(table_exists(&db, "__diesel_schema_migrations").await);
        assert!(!table_exists(&db, "_sqlx_migrations").await, "not the file's schema");
        println!("FIXTURE_DEMAND_OK");
    }
}

mod conflict {
    use super::*;

    #[cleanroom::test(postgres(migrations = "fixtures/sqlx"))]
    #[ignore = "run by the declared-once tests"]
    fn two_demands(diesel_db: String) {
        let _ = diesel_db;
    }
}

/// A directory with a `cleanroom.toml` whose `[services.postgres]` names
/// sqlx migrations relative to the file, in a copy of the sqlx fixture.
fn config_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cleanroom-declared-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("db/migrations")).unwrap();
    for entry in std::fs::read_dir(fixture("sqlx")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join("db/migrations").join(path.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        dir.join("cleanroom.toml"),
        "[services.postgres]\nmigrations = \"db/migrations\"\nmigrations_tool = \"sqlx\"\n",
    )
    .unwrap();
    dir
}

/// `[services.postgres] migrations` reaches a test that lists only
/// `postgres`; the attribute and a fixture's attribute override it.
#[test]
fn migrations_declared_once_reach_every_test_that_names_none() {
    let dir = config_dir("once");
    let session = fresh_session("mig-declared");
    let config = dir.join("cleanroom.toml");
    let out = child_command(&session, &["--ignored", "declared::", "--nocapture"])
        .env("CLEANROOM_CONFIG", &config)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    for line in ["DECLARED_ONCE_OK", "ATTRIBUTE_OVERRIDES_OK", "FIXTURE_DEMAND_OK"] {
        assert!(text.contains(line), "{line}: {text}");
    }
    assert_nothing_left(&session);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A test whose attribute and fixture ask for different schemas fails
/// before its body, naming both.
#[test]
fn two_different_demands_fail_the_test_naming_both() {
    let session = fresh_session("mig-conflict");
    let out = child_command(&session, &["--ignored", "--exact", "conflict::two_demands"]).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("two different schemas are asked for"), "{text}");
    assert!(text.contains("the attribute of `two_demands`") && text.contains("fixture `diesel_db`"), "{text}");
    assert_nothing_left(&session);
}

mod missing {
    use super::*;

    #[cleanroom::test(postgres)]
    #[ignore = "run by a_missing_directory_in_cleanroom_toml_fails_its_tests_before_postgres_starts"]
    fn first(postgres: Postgres) {
        let _ = postgres.url();
    }

    #[cleanroom::test(postgres)]
    #[ignore = "run by a_missing_directory_in_cleanroom_toml_fails_its_tests_before_postgres_starts"]
    fn second(postgres: Postgres) {
        let _ = postgres.url();
    }
}

/// A migrations directory that `cleanroom.toml` names and that does not
/// exist is found at the run's start: it is said once, naming the file, the
/// service, where its relative paths start and the fix; the tests that need
/// it fail with it; and no Postgres is started for them.
#[test]
fn a_missing_directory_in_cleanroom_toml_fails_its_tests_before_postgres_starts() {
    let dir = std::env::temp_dir().join(format!("cleanroom-missing-{}", fresh_session("dir")));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("cleanroom.toml");
    std::fs::write(&config, "[services.postgres]\nmigrations = \"db/missing\"\n").unwrap();
    let session = fresh_session("mig-missing");
    let watch = runs_on_docker().then(|| EventWatch::start(&session));
    let out = child_command(&session, &["--ignored", "missing::", "--test-threads=2"])
        .env("CLEANROOM_CONFIG", &config)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("2 failed"), "both tests fail: {text}");
    // The first thing cleanroom says, before any test ran.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().find(|l| l.starts_with("cleanroom: ")).unwrap_or_else(|| panic!("nothing said: {text}"));
    for part in [
        format!("postgres migrations of [services.postgres] in {}", config.display()),
        format!("cannot read the directory {}", dir.join("db/missing").display()),
        format!("relative paths in {} start from that file's directory", config.display()),
        "fix the path, or create the directory".to_string(),
    ] {
        assert!(first.contains(&part), "the first message says {part:?}: {first}\n{text}");
    }
    let said = text.lines().filter(|l| l.contains("found at the run's start")).collect::<Vec<_>>();
    assert_eq!(said.len(), 1, "said once, at the start: {text}");
    assert!(said[0].contains("missing::first") && said[0].contains("missing::second"), "{}", said[0]);
    let failed_with_it = text.matches("panicked at").count();
    assert_eq!(failed_with_it, 2, "each test fails with the stored message: {text}");
    assert_eq!(text.matches("cannot read the directory").count(), 3, "once at the start, once per test: {text}");
    if let Some(watch) = watch {
        assert_eq!(watch.starts_of("postgres"), 0, "no postgres started: {:?}", watch.events());
        assert!(watch.created_services().is_empty(), "nothing was created: {:?}", watch.events());
    }
    assert!(session_containers(&session).is_empty());
    assert_nothing_left(&session);
}

mod rollback {
    use super::*;

    #[cleanroom::test(postgres(migrations = "fixtures/sqlx_fails_running"))]
    #[ignore = "run by a_failing_sqlx_migration_rolls_back_its_own_statements_and_keeps_the_earlier_ones"]
    fn a_needs_the_failing_template(postgres: Postgres) {
        let _ = postgres.url();
    }

    /// Runs after the build failed: opens the database it was built in
    /// (kept until the next build) through the server's main database.
    #[cleanroom::test(postgres(shared))]
    #[ignore = "run by a_failing_sqlx_migration_rolls_back_its_own_statements_and_keeps_the_earlier_ones"]
    async fn b_inspects_the_build(postgres: Postgres) {
        let main = client(&postgres).await;
        let builds: Vec<String> = main
            .query("SELECT datname FROM pg_database WHERE datname LIKE 'cleanroom_tpl_%_build'", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(builds.len(), 1, "the failed build is left for the next one to drop: {builds:?}");
        let url = format!("{}/{}", postgres.url().rsplit_once('/').unwrap().0, builds[0]);
        let (build, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        let versions: Vec<i64> = build
            .query("SELECT version FROM _sqlx_migrations ORDER BY version", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(versions, [1], "the first migration stayed committed, the failing one left no row");
        assert!(table_exists(&build, "accounts").await, "the first migration's table stayed");
        let rows: i64 = build.query_one("SELECT count(*) FROM accounts", &[]).await.unwrap().get(0);
        assert_eq!(rows, 0, "the failing migration's first INSERT, which succeeded, was rolled back with it");
        println!("ROLLED_BACK_OK");
    }
}

/// sqlx runs each migration in a transaction of its own: when the second
/// fails, its statements that had succeeded are rolled back with it, and the
/// first migration, committed before, stays with its history row.
#[test]
fn a_failing_sqlx_migration_rolls_back_its_own_statements_and_keeps_the_earlier_ones() {
    let session = fresh_session("mig-rollback");
    let out =
        child_command(&session, &["--ignored", "rollback::", "--test-threads=1", "--nocapture"]).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("1 passed; 1 failed"), "the build fails, the inspection passes: {text}");
    assert!(text.contains("ROLLED_BACK_OK"), "{text}");
    assert!(text.contains("duplicate key value violates unique constraint"), "{text}");
    assert_nothing_left(&session);
}
