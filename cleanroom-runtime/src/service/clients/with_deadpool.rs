//! `deadpool-postgres`: a pool of tokio-postgres clients.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

use crate::service::handle::Postgres;

#[cfg_attr(docsrs, doc(cfg(feature = "deadpool-postgres")))]
impl Postgres {
    /// A deadpool-postgres pool on this handle's database. It connects on
    /// first use, on the runtime that asks (the test's).
    ///
    /// ```no_run
    /// # async fn demo(postgres: cleanroom_runtime::Postgres) {
    /// let pool = postgres.deadpool();
    /// let client = pool.get().await.unwrap();
    /// client.execute("SELECT 1", &[]).await.unwrap();
    /// # }
    /// ```
    pub fn deadpool(&self) -> Pool {
        let manager = Manager::from_config(
            self.config(),
            tokio_postgres::NoTls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        Pool::builder(manager)
            .max_size(8)
            .build()
            .expect("cleanroom: a deadpool pool without timeouts needs no runtime to build")
    }
}
