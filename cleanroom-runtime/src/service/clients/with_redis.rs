//! `redis`: a client and a connection manager for the test's logical
//! database.

use crate::service::handle::Redis;

#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
impl Redis {
    /// A redis client for this handle's logical database (the test's own).
    /// Making it connects to nothing.
    ///
    /// ```no_run
    /// # async fn demo(redis: cleanroom_runtime::Redis) {
    /// let mut conn = redis.client().get_multiplexed_async_connection().await.unwrap();
    /// # }
    /// ```
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).unwrap_or_else(|e| {
            panic!("cleanroom: redis does not accept the URL {}: {e}", self.url());
        })
    }

    /// A connection manager (a multiplexed connection that reconnects) for
    /// this handle's logical database, on the runtime that awaits it.
    ///
    /// ```no_run
    /// # async fn demo(redis: cleanroom_runtime::Redis) {
    /// use redis::AsyncCommands;
    /// let mut cache = redis.connection_manager().await;
    /// let () = cache.set("key", "value").await.unwrap();
    /// # }
    /// ```
    ///
    /// # Panics
    /// If redis cannot connect, with its error.
    pub async fn connection_manager(&self) -> redis::aio::ConnectionManager {
        self.client()
            .get_connection_manager()
            .await
            .unwrap_or_else(|e| super::connect_failed("redis", "redis", &self.url(), e))
    }
}
