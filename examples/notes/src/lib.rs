//! Notes: a small HTTP service that keeps notes in Postgres and caches the
//! ones it has read in Redis.
//!
//! - `GET /health` answers `ok`.
//! - `POST /notes` with `{"title": "…", "body": "…"}` stores a note: `201`
//!   and the note with its id.
//! - `GET /notes/{id}` reads it, from the cache when it is there (the
//!   `x-cache` header says `hit` or `miss`); `404` when there is none.
//! - `DELETE /notes/{id}` removes it and its cached copy: `204`, or `404`.
//!
//! Its schema is `migrations/`, in sqlx's layout; [`MIGRATOR`] applies it
//! at start-up, as most sqlx applications do.
#![warn(missing_docs, rust_2018_idioms)]
#![forbid(unsafe_code)]

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Row};

/// The schema, embedded from `migrations/`: `MIGRATOR.run(&pool)` applies
/// what the database lacks and records it in `_sqlx_migrations`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// How long a cached note is kept, in seconds.
pub const CACHE_TTL_SECONDS: u64 = 300;

/// What the handlers share: the database pool and the cache.
#[derive(Clone)]
pub struct AppState {
    /// The notes.
    pub db: PgPool,
    /// Notes read recently, as JSON under `note:<id>`.
    pub cache: ConnectionManager,
}

/// A stored note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// Its id.
    pub id: i64,
    /// Its title.
    pub title: String,
    /// Its text.
    pub body: String,
}

/// A note to store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewNote {
    /// Its title.
    pub title: String,
    /// Its text.
    pub body: String,
}

/// The service's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/notes", axum::routing::post(create_note))
        .route("/notes/{id}", get(get_note).delete(delete_note))
        .with_state(state)
}

/// Serves `router` on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> std::io::Result<()> {
    axum::serve(listener, router(state)).await
}

/// A failure the client sees as `500` with its text.
#[derive(Debug)]
pub struct AppError(String);

impl<E: std::fmt::Display> From<E> for AppError {
    fn from(error: E) -> Self {
        AppError(error.to_string())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, self.0).into_response()
    }
}

fn cache_key(id: i64) -> String {
    format!("note:{id}")
}

async fn create_note(
    State(state): State<AppState>,
    Json(new): Json<NewNote>,
) -> Result<(StatusCode, Json<Note>), AppError> {
    let row = sqlx::query("INSERT INTO notes (title, body) VALUES ($1, $2) RETURNING id")
        .bind(&new.title)
        .bind(&new.body)
        .fetch_one(&state.db)
        .await?;
    Ok((StatusCode::CREATED, Json(Note { id: row.get("id"), title: new.title, body: new.body })))
}

async fn get_note(State(mut state): State<AppState>, Path(id): Path<i64>) -> Result<Response, AppError> {
    let cached: Option<String> = state.cache.get(cache_key(id)).await?;
    if let Some(json) = cached {
        let note: Note = serde_json::from_str(&json)?;
        return Ok(([("x-cache", "hit")], Json(note)).into_response());
    }
    let row = sqlx::query("SELECT id, title, body FROM notes WHERE id = $1").bind(id).fetch_optional(&state.db).await?;
    let Some(row) = row else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    let note = Note { id: row.get("id"), title: row.get("title"), body: row.get("body") };
    let () = state.cache.set_ex(cache_key(id), serde_json::to_string(&note)?, CACHE_TTL_SECONDS).await?;
    Ok(([("x-cache", "miss")], Json(note)).into_response())
}

async fn delete_note(State(mut state): State<AppState>, Path(id): Path<i64>) -> Result<StatusCode, AppError> {
    let deleted = sqlx::query("DELETE FROM notes WHERE id = $1").bind(id).execute(&state.db).await?.rows_affected();
    let _: i64 = state.cache.del(cache_key(id)).await?;
    Ok(if deleted == 0 { StatusCode::NOT_FOUND } else { StatusCode::NO_CONTENT })
}
