//! `tokio-postgres`: a connected client, and the configuration the
//! `deadpool-postgres` pool is made from.

use crate::service::handle::Postgres;

impl Postgres {
    /// tokio-postgres's configuration of this handle's database.
    #[cfg_attr(docsrs, doc(cfg(any(feature = "tokio-postgres", feature = "deadpool-postgres"))))]
    pub fn config(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config.host(self.host()).port(self.port()).user(self.user()).password(self.password()).dbname(self.database());
        config
    }

    /// A tokio-postgres client on this handle's database. Its connection
    /// task is spawned on the runtime that awaits this (the test's), and
    /// ends when the client is dropped.
    ///
    /// ```no_run
    /// # async fn demo(postgres: cleanroom_runtime::Postgres) {
    /// let client = postgres.client().await;
    /// let row = client.query_one("SELECT current_database()", &[]).await.unwrap();
    /// # }
    /// ```
    ///
    /// # Panics
    /// If tokio-postgres cannot connect, with its error; outside a tokio
    /// runtime.
    #[cfg(feature = "tokio-postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio-postgres")))]
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = self
            .config()
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| super::connect_failed("tokio-postgres", "postgres", &self.masked_url(), e));
        tokio::spawn(async move {
            // A connection that ends with an error shows it in the next
            // query's error; nothing to add here.
            let _ = connection.await;
        });
        client
    }
}
