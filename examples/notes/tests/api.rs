//! The notes service's integration tests, as a team writes them after
//! porting to cleanroom: `spawn_app()` takes no parameters and finds the
//! test's own database and cache through `cleanroom::current()`; each test
//! says which services it needs.
//!
//! The migrations are declared once, in `cleanroom.toml` (sqlx's layout):
//! the app runs its own migrator at start-up, as in production, and finds
//! nothing to apply. Before the port, `spawn_app()` created a database by hand
//! (named after a random UUID), ran the migrations into it, flushed Redis, and
//! left the database behind; see docs/migrating.md.

use cleanroom_example_notes::{AppState, NewNote, Note};
use reqwest::StatusCode;

/// The service, running on a port of its own for one test.
struct TestApp {
    address: String,
    http: reqwest::Client,
    db: sqlx::PgPool,
}

impl TestApp {
    async fn create(&self, title: &str, body: &str) -> Note {
        let response = self
            .http
            .post(format!("{}/notes", self.address))
            .json(&NewNote { title: title.into(), body: body.into() })
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.unwrap()
    }

    /// The note and the `x-cache` header, or the status when it is not 200.
    async fn read(&self, id: i64) -> Result<(Note, String), StatusCode> {
        let response = self.http.get(format!("{}/notes/{id}", self.address)).send().await.unwrap();
        if response.status() != StatusCode::OK {
            return Err(response.status());
        }
        let cache = response.headers()["x-cache"].to_str().unwrap().to_string();
        Ok((response.json().await.unwrap(), cache))
    }

    async fn delete(&self, id: i64) -> StatusCode {
        self.http.delete(format!("{}/notes/{id}", self.address)).send().await.unwrap().status()
    }
}

/// Starts the service on the test's own database and cache. The one line
/// that changed in the port is `cleanroom::current()`.
async fn spawn_app() -> TestApp {
    let test = cleanroom::current();
    let db = test.postgres().pool().await;
    // As at start-up in production: the template already holds the schema
    // and its `_sqlx_migrations` rows, so this applies nothing.
    cleanroom_example_notes::MIGRATOR.run(&db).await.expect("the migrations are already applied");
    let cache = test.redis().connection_manager().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(cleanroom_example_notes::serve(listener, AppState { db: db.clone(), cache }));
    TestApp { address, http: reqwest::Client::new(), db }
}

#[cleanroom::test(postgres, redis)]
async fn health_check_answers_ok() {
    let app = spawn_app().await;
    let response = app.http.get(format!("{}/health", app.address)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "ok");
}

#[cleanroom::test(postgres, redis)]
async fn a_note_is_stored_then_served_from_the_cache() {
    let app = spawn_app().await;
    let note = app.create("groceries", "milk, eggs").await;
    assert_eq!(app.read(note.id).await, Ok((note.clone(), "miss".to_string())));
    assert_eq!(app.read(note.id).await, Ok((note, "hit".to_string())));
}

#[cleanroom::test(postgres, redis)]
async fn a_missing_note_is_not_found() {
    let app = spawn_app().await;
    assert_eq!(app.read(4242).await, Err(StatusCode::NOT_FOUND));
    assert_eq!(app.delete(4242).await, StatusCode::NOT_FOUND);
}

#[cleanroom::test(postgres, redis)]
async fn deleting_a_note_drops_its_cached_copy() {
    let app = spawn_app().await;
    let note = app.create("draft", "to be removed").await;
    assert_eq!(app.read(note.id).await.unwrap().1, "miss", "now cached");
    assert_eq!(app.delete(note.id).await, StatusCode::NO_CONTENT);
    assert_eq!(app.read(note.id).await, Err(StatusCode::NOT_FOUND), "not served from the cache");
}

/// Every test starts from the migrated, empty schema and an empty cache,
/// whatever the tests running beside it wrote.
#[cleanroom::test(postgres, redis, flavor = "multi_thread", worker_threads = 2)]
async fn every_test_starts_with_no_notes_and_an_empty_cache() {
    let app = spawn_app().await;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM notes").fetch_one(&app.db).await.unwrap();
    assert_eq!(count, 0);
    let mut cache = cleanroom::current().redis().connection_manager().await;
    let keys: i64 = redis::cmd("DBSIZE").query_async(&mut cache).await.unwrap();
    assert_eq!(keys, 0);
    // Ids restart too: the first note of this test is note 1.
    assert_eq!(app.create("first", "of this test").await.id, 1);
}

/// The app's migrator found the schema recorded as sqlx records it: one
/// row per migration, with sqlx's own checksum, none applied by the test.
#[cleanroom::test(postgres, redis)]
async fn the_apps_own_migrator_finds_nothing_to_apply() {
    let app = spawn_app().await;
    let rows: Vec<(i64, bool)> = sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(rows, [(1, true)], "the template's row, from cleanroom");
    let database: String = sqlx::query_scalar("SELECT current_database()").fetch_one(&app.db).await.unwrap();
    assert!(database.starts_with("cleanroom_"), "a room of this test's own: {database}");
}
