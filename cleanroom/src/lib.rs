//! Real containers for Rust integration tests: each service is started once
//! for the whole test binary, every test gets a clean room inside it, and
//! nothing is left behind.
//!
//! ```no_run
//! use cleanroom::{Postgres, Redis};
//!
//! /// A connected client; its connection runs on the test's runtime.
//! #[cleanroom::fixture]
//! async fn db(postgres: Postgres) -> tokio_postgres::Client {
//!     let (client, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls).await.unwrap();
//!     tokio::spawn(connection);
//!     client
//! }
//!
//! #[cleanroom::test(postgres(migrations = "migrations"), redis)]
//! async fn signs_up(db: tokio_postgres::Client, redis: Redis) {
//!     // `db` is connected to a database of this test's own, cloned from the
//!     // migrated template; `redis.url()` points at a logical database of its own.
//!     db.execute("INSERT INTO users (email) VALUES ('ada@example.com')", &[]).await.unwrap();
//! }
//!
//! #[cleanroom::test(postgres)]
//! fn sync_tests_work_too(postgres: Postgres) {
//!     assert_eq!(postgres.host(), "127.0.0.1"); // with a local engine
//! }
//! # fn main() {}
//! ```
//!
//! # Services
//!
//! Built in: `postgres` ([`Postgres`] handle) and `redis` ([`Redis`] handle).
//! Any image becomes a service with [`service`]:
//!
//! ```no_run
//! use cleanroom::{Container, GenericContainer, HealthCheck};
//!
//! #[cleanroom::service]
//! fn web() -> GenericContainer {
//!     GenericContainer::new("cleanroom-offline/busybox:1.35")
//!         .with_cmd(["httpd", "-f", "-p", "8080", "-h", "/www"])
//!         .with_port(8080)
//!         .with_health_check(HealthCheck::http(8080, "/"))
//! }
//!
//! #[cleanroom::test(web)]
//! async fn serves_pages(web: Container) {
//!     let port = web.port(8080); // the host port, on 127.0.0.1
//!     # let _ = port;
//! }
//! # fn main() {}
//! ```
//!
//! # Parameters
//!
//! Parameters are injected **by name**: a name listed in the attribute is that
//! service's handle; any other name is the [`fixture`] function of that name
//! in scope (bring fixtures from other modules in with `use`). Fixtures may
//! take services and other fixtures. Within one test each fixture and service
//! is resolved once and shared (a fixture used twice must be `Clone`).
//! `#[from(name)] other: T` injects `name` under another parameter name.
//!
//! # Attribute options
//!
//! | option | meaning |
//! | --- | --- |
//! | `postgres`, `redis`, `web` | the services the test needs (started before it runs) |
//! | `postgres(migrations = "dir")` | migrations applied once into a template: sqlx, refinery and diesel layouts are detected and their history table written; plain `NNN_name.sql` files in name order (`docs/migrations.md`) |
//! | `postgres(migrations = "dir", tool = "sqlx")` | the migration tool named: `"sqlx"`, `"refinery"`, `"diesel"` or `"sql"` |
//! | `postgres(init = "seed.sql")` | data loaded into the template after the migrations |
//! | `postgres(shared)`, `redis(shared)` | no room: the server's main database |
//!
//! Paths are relative to the crate's `Cargo.toml`, and checked when the test
//! compiles. A test that lists `postgres` without a schema gets the one
//! `[services.postgres] migrations = "…"` (with `init`, `migrations_tool`) in
//! `cleanroom.toml` declares, or the one a fixture it uses asks for with
//! `#[cleanroom::fixture(postgres(migrations = "…"))]`.
//! | `flavor = "multi_thread"` | run an async test on a multi-thread runtime (`"current_thread"` is the default) |
//! | `worker_threads = 2` | with `multi_thread`: its number of workers |
//! | `crate = "path"` | where cleanroom is when the dependency is renamed (also on `fixture` and `service`) |
//!
//! `#[ignore]`, `#[should_panic]` and `-> Result<(), E>` work as with `#[test]`.
//!
//! The crate is published as `cleanroom-test` with its library named
//! `cleanroom`, so `cargo add --dev cleanroom-test` needs nothing renamed. A
//! crate that renames the dependency (`cr = { package = "cleanroom-test", … }`)
//! or reaches cleanroom through another crate says where it is, on every
//! attribute, as with tokio's `crate = "…"`:
//!
//! ```ignore
//! #[cr::fixture(crate = "cr")]
//! fn answer() -> u32 { 42 }
//!
//! #[cr::test(crate = "cr", redis)]
//! async fn t(answer: u32, redis: cr::Redis) {}
//! ```
//! Do not add `#[test]` or `#[tokio::test]`: the attribute makes the test
//! and its runtime itself (stacking them is a compile error, except a plain
//! `#[test]` written *above* `#[cleanroom::test]`, which rustc expands first
//! and which would register the test twice).
//!
//! # The running test: [`current()`]
//!
//! A helper that takes no parameters (an application's `spawn_app()`) gets
//! the running test's handles from [`current()`]: the same rooms its
//! parameters get. It works on the test's own thread, in tasks spawned on
//! the test's runtime (either flavor), in `spawn_blocking` and
//! `block_in_place`, and in the test's fixtures.
//!
//! ```no_run
//! async fn spawn_app() -> tokio_postgres::Client {
//!     let postgres = cleanroom::current().postgres(); // the one line that changes
//!     let (client, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls).await.unwrap();
//!     tokio::spawn(connection);
//!     client
//! }
//!
//! #[cleanroom::test(postgres, flavor = "multi_thread")]
//! async fn signs_up() {
//!     let app = tokio::spawn(spawn_app()).await.unwrap(); // a spawned task finds the test too
//!     # let _ = app;
//! }
//! # fn main() {}
//! ```
//!
//! The test must declare the services it asks for (in its attribute or
//! through a fixture): `current().service("web")` for an undeclared `web`
//! panics, naming the test and the fix, and starts nothing. Outside a test,
//! on a `std::thread` the test spawned, or in a process-scoped fixture it
//! panics too; get the handle on the test's thread and move it in, or use
//! [`try_current()`].
//!
//! # Process-scoped fixtures
//!
//! `#[cleanroom::fixture(scope = "process")]` is built once per test
//! process, by the first test that asks, and every test gets a clone: for
//! tracing set-up, a configuration read from disk, an expensive client of
//! something that is not a cleanroom service.
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! #[cleanroom::fixture(scope = "process")]
//! async fn settings() -> Arc<String> {
//!     Arc::new(tokio::fs::read_to_string("tests/settings.toml").await.unwrap())
//! }
//!
//! #[cleanroom::test]
//! fn reads_settings(settings: Arc<String>) {
//!     assert!(!settings.is_empty());
//! }
//! # fn main() {}
//! ```
//!
//! - Its value must be `Clone + Send + Sync + 'static` (an `Arc` of it
//!   otherwise): a compile error at the return type says so.
//! - It may take only other process fixtures. A service's handle or a
//!   per-test fixture would hand one test's room to every test: a compile
//!   error at that parameter.
//! - An async one runs on a runtime of cleanroom's that lives as long as the
//!   process, not on the first test's (which ends with that test): tasks it
//!   spawns, such as a connection's driver, keep serving every later test.
//! - If building it panics, every test that needs it fails with that first
//!   reason; it is not built again. Its value is never dropped (like any
//!   `static`).
//!
//! # Client integrations
//!
//! The handles keep their plain accessors (`host`, `port`, `user`,
//! `password`, `database`, `url`) for any client. Features add the types
//! each client expects; none is on by default, and a build without a
//! feature has none of that client's crates.
//!
//! | feature | adds | for |
//! | --- | --- | --- |
//! | `sqlx` | `postgres.pool().await -> sqlx::PgPool`, `postgres.connect_options() -> PgConnectOptions` | sqlx **0.9** (its `postgres` and `runtime-tokio` features; sqlx 0.9 needs Rust 1.94) |
//! | `tokio-postgres` | `postgres.client().await -> tokio_postgres::Client` (its connection task spawned on the test's runtime), `postgres.config()` | tokio-postgres 0.7 |
//! | `deadpool-postgres` | `postgres.deadpool() -> deadpool_postgres::Pool`, `postgres.config()` | deadpool-postgres 0.14 |
//! | `redis` | `redis.client() -> redis::Client`, `redis.connection_manager().await` | redis 1 (`tokio-comp`, `connection-manager`) |
//!
//! Each connects to the handle's room (the test's own database), on the
//! runtime that awaits it; each panics with the client's error if it
//! cannot connect. Your own dependency on the client must be the same
//! major version.
//!
//! ```text
//! # Cargo.toml
//! [dev-dependencies]
//! cleanroom = { version = "0.1", features = ["sqlx", "redis"] }
//! ```
//!
//! # When services start and stop
//!
//! At process start cleanroom reads libtest's arguments (filters, `--exact`,
//! `--skip`, `--ignored`, `--include-ignored`), works out which services the
//! selected tests need (through their fixtures too) and starts them in
//! parallel. `--list` starts nothing. All test processes of one run (every
//! binary of a `cargo test`, every process of a `cargo nextest run`) share one
//! container per service: exactly one process creates it, the others attach.
//! A reaper process, started on demand by the test binary itself, removes the
//! run's containers when its last test process is gone — after a normal exit,
//! a failure, Ctrl-C or `kill -9`. Containers carry the labels
//! `cleanroom.managed=true` and `cleanroom.session=<id>`, and publish their
//! ports on 127.0.0.1 only with a local engine (a remote engine: see
//! `docs/environments.md`). See `docs/runs.md`.
//!
//! See `docs/isolation.md` for what each service's room guarantees and
//! `docs/expansion.md` for what the macros generate.
//!
//! # Configuration
//!
//! Defaults < `cleanroom.toml` (the nearest from the crate's directory up to
//! the workspace root, or `CLEANROOM_CONFIG=path`) < `CLEANROOM_*`
//! variables < the `cargo cleanroom` command line. Unknown keys and bad
//! values are errors naming the file, the key and the allowed values.
//! `docs/configuration.md` lists every setting; it is generated from
//! [`SETTINGS`] and [`SERVICE_SETTINGS`].
//!
//! ```toml
//! [run]
//! keep = "on-failure"
//! image_prefix = "localhost:5000/"
//!
//! [services.postgres]
//! memory = "512MiB"
//! args = ["-c", "shared_buffers=64MB"]
//!
//! # Everything a GenericContainer builder sets, for any service:
//! [services.web]
//! ports = [8080, "18080:80"]                 # with_port, with_port_mapping
//! mounts = [{ type = "bind", source = "tests/fixtures", target = "/www", read_only = true },
//!           { type = "volume", source = "web-cache", target = "/cache" }]
//! health = [{ http = { port = 80, path = "/" } }]   # replaces the code's checks
//! init = [["sh", "-c", "mkdir -p /cache/in"]]       # once per container, after Ready
//! networks = ["backend"]                            # existing networks to join too
//! ```
//!
//! | variable | key in `cleanroom.toml` | meaning | default |
//! | --- | --- | --- | --- |
//! | `CLEANROOM_CONFIG` | — | the file to read instead of searching | found |
//! | `CLEANROOM_<SERVICE>_IMAGE` | `services.<name>.image` | image of a service | `postgres:17-alpine`, `redis:7-alpine`, the function's |
//! | `CLEANROOM_<SERVICE>_MEMORY`, `_CPUS`, `_PIDS`, `_SHM_SIZE` | `services.<name>.memory`, ... | resource limits ([`GenericContainer::with_memory_limit`], ...) | none |
//! | `CLEANROOM_IMAGE_PREFIX` | `run.image_prefix` | put before images that name no registry | unset |
//! | `CLEANROOM_PULL` | `run.pull` | `missing`, `always` (once per run) or `never` | `missing` |
//! | `CLEANROOM_STARTUP_TIMEOUT` | `run.startup_timeout` | seconds a service may take to be Ready | 60 |
//! | `CLEANROOM_KEEP` | `run.keep` | keep test databases: `never`, `on-failure`, `always` | `on-failure` |
//! | `CLEANROOM_POOL` | `run.pool` | Postgres databases cloned ahead of demand (0: off) | 4 |
//! | `CLEANROOM_SESSION` | — | the id that labels this run's containers | `NEXTEST_RUN_ID`, else the runner process |
//! | `CLEANROOM_HOST` | — | the host published ports are reached at (docs/environments.md) | the engine's host for `DOCKER_HOST=tcp://…`, else (in a container) its network's gateway, else `127.0.0.1` |
//! | `TESTCONTAINERS_HOST_OVERRIDE` | — | testcontainers' name for `CLEANROOM_HOST` (which wins) | unset |
//! | `CLEANROOM_REUSE` | `run.reuse` | keep services for the next run (matched by their full definition) | off |
//! | `CLEANROOM_REUSE_TTL` | `run.reuse_ttl` | seconds a reused service outlives the last run that used it | 900 |
//! | `CLEANROOM_REAPER_GRACE` | `run.reaper_grace` | seconds the reaper waits for the next test process while the runner runs | 3 |
//! | `CLEANROOM_NO_REAPER` | `run.no_reaper` | no reaper; each process removes its own containers and shares none | off |
//! | `CLEANROOM_ENGINE` | `run.engine` | what runs the services: `docker`, `local` (this machine's Postgres and Redis binaries, docs/engines.md) or `auto` (Docker if it answers, else local) | `docker` |
//! | `CLEANROOM_POSTGRES_BIN` | `run.postgres_bin` | the directory the local engine takes `initdb` and `postgres` from | `PATH`, `/usr/lib/postgresql/<major>/bin`, Homebrew's prefix |
//! | `CLEANROOM_REPORT` | `run.report` | the summary on stderr at exit: `quiet`, `full`, `off` | `quiet` |
//! | `CLEANROOM_REPORT_JSON` | `run.report_json` | also write the run's report (one JSON document, docs/report.md) to this file | unset |
//! | `CLEANROOM_VOLUME_CACHE` | `run.volume_cache` | keep Postgres's initialised cluster and templates in a volume: a cold start skips initdb and unchanged migrations | on |
//! | `CLEANROOM_CACHE_TTL`, `CLEANROOM_CACHE_VOLUME_TTL` | `run.cache_ttl`, `caches.volume.ttl` (one setting, two names) | seconds an unused cache volume is kept | 604800 (7 days) |
//! | `CLEANROOM_REMOTE_IDLE_TTL` | `run.remote_idle_ttl` | on an engine several machines share: seconds a run of another machine may go without a heartbeat before it is removed | 1800 (30 minutes) |
//! | `CLEANROOM_REDIS_LEASE_TTL` | `run.redis_lease_ttl` | seconds a Redis room's lease lasts unless its holder renews it (every third of it, while its test runs) | 600 (10 minutes) |
//! | `CLEANROOM_CACHE_SIZE`, `CLEANROOM_CACHE_VOLUME_MAX_SIZE` | `run.cache_size`, `caches.volume.max_size` (one setting, two names) | total size of cache volumes above which the least recently used go | `1GiB` |
//! | `CLEANROOM_CACHE_VOLUME_EVICTION` | `caches.volume.eviction` | which cache volumes go first over `run.cache_size`: `lru`, `lfu`, `mru`, `ttl` | `lru` |
//! | `CLEANROOM_CACHE_CONTAINER_EVICTION`, `CLEANROOM_CACHE_CONTAINER_MAX_COUNT` | `caches.container.eviction`, `caches.container.max_count` | idle reused services: which go first, and how many may wait | `lru`, no cap |
//! | `CLEANROOM_CACHE_NETWORK_EVICTION`, `CLEANROOM_CACHE_NETWORK_MAX_COUNT` | `caches.network.eviction`, `caches.network.max_count` | idle networks of reused services: which go first, and how many may wait | `lfu`, no cap |
//! | `CLEANROOM_CACHE_IMAGE_EVICTION`, `CLEANROOM_CACHE_IMAGE_TTL`, `CLEANROOM_CACHE_IMAGE_MAX_SIZE` | `caches.image.eviction`, `caches.image.ttl`, `caches.image.max_size` | images cleanroom pulled itself (never the user's): which go first, their TTL, their total size | `ttl`, kept, no cap |
//! | `DOCKER_HOST`, `DOCKER_CONTEXT` | — | the engine, chosen as the docker CLI chooses | the current context |
//!
//! # Without the macros
//!
//! [`environment`] hands out the same singletons:
//!
//! ```no_run
//! # async fn demo() -> Result<(), cleanroom::Error> {
//! let pg = cleanroom::environment().get_or_create_container("postgres", || unreachable!("built in")).await?;
//! # let _ = pg; Ok(()) }
//! ```
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms, unreachable_pub)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use cleanroom_macros::{fixture, service, test};
pub use cleanroom_runtime::{
    current, environment, image_env_var, lifecycle_of, metrics_of, try_current, Alert, Container, Counters, Current,
    Environment, Error, ExecOutput, GenericContainer, Health, HealthCheck, Keep, LimitAction, Mount, MountKind,
    Network, NetworkConditions, Performance, Postgres, Recovery, Redis, Result, RoomHooks, ServiceFailure,
    ServiceMetrics, Setting, State, DEFAULT_POSTGRES_IMAGE, DEFAULT_REDIS_IMAGE, DEFAULT_STARTUP_TIMEOUT,
    MANAGED_LABEL, SERVICE_LABEL, SERVICE_SETTINGS, SESSION_LABEL, SETTINGS,
};

/// Not public API: the one door from generated code into the runtime.
#[doc(hidden)]
pub mod __private {
    pub use cleanroom_runtime::__private::*;
    pub use inventory;

    /// The built-in services under the names users write. Generated code
    /// glob-imports them where it names what a test or fixture depends on, so
    /// that a misspelt `postgres` or `redis` gets the compiler's "a struct
    /// with a similar name exists" like a misspelt fixture does; a glob
    /// import never hides a name of the user's own.
    pub mod builtin_names {
        pub use cleanroom_runtime::__private::{postgres, redis};
    }
}
