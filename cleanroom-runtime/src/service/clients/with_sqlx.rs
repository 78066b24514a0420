//! `sqlx` (0.9): a pool and connect options for the test's database.

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::service::handle::Postgres;

#[cfg_attr(docsrs, doc(cfg(feature = "sqlx")))]
impl Postgres {
    /// Options that connect sqlx to this handle's database (the test's own):
    /// host, port, user, password and database set; change the rest as
    /// sqlx allows before connecting.
    ///
    /// ```no_run
    /// # async fn demo(postgres: cleanroom_runtime::Postgres) {
    /// use sqlx::ConnectOptions;
    /// let mut conn = postgres.connect_options().connect().await.unwrap();
    /// # }
    /// ```
    pub fn connect_options(&self) -> PgConnectOptions {
        PgConnectOptions::new()
            .host(self.host())
            .port(self.port())
            .username(self.user())
            .password(self.password())
            .database(self.database())
    }

    /// A sqlx pool on this handle's database, connected (one connection is
    /// opened before it returns), on the runtime that awaits it.
    ///
    /// ```no_run
    /// # async fn demo(postgres: cleanroom_runtime::Postgres) {
    /// let pool = postgres.pool().await;
    /// let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&pool).await.unwrap();
    /// # }
    /// ```
    ///
    /// # Panics
    /// If sqlx cannot connect, with sqlx's error; use
    /// [`Postgres::connect_options`] with `PgPoolOptions` to handle it
    /// yourself.
    pub async fn pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(5)
            .connect_with(self.connect_options())
            .await
            .unwrap_or_else(|e| super::connect_failed("sqlx", "postgres", &self.masked_url(), e))
    }
}
