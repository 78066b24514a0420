//! Runs the notes service: `DATABASE_URL`, `REDIS_URL`, and `LISTEN`
//! (default `127.0.0.1:3000`). Applies the migrations the database lacks first.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let database_url = std::env::var("DATABASE_URL").map_err(|_| "set DATABASE_URL to the notes database")?;
    let redis_url = std::env::var("REDIS_URL").map_err(|_| "set REDIS_URL to the cache")?;
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let db = sqlx::PgPool::connect(&database_url).await?;
    cleanroom_example_notes::MIGRATOR.run(&db).await?;
    let cache = redis::Client::open(redis_url)?.get_connection_manager().await?;
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    cleanroom_example_notes::serve(listener, cleanroom_example_notes::AppState { db, cache }).await?;
    Ok(())
}
