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
//!     assert_eq!(postgres.host(), "127.0.0.1");
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
//! | `postgres(migrations = "dir")` | `.sql` files applied once into a template, in name order |
//! | `postgres(init = "seed.sql")` | data loaded into the template after the migrations |
//! | `postgres(shared)`, `redis(shared)` | no room: the server's main database |
//! | `flavor = "multi_thread"` | run an async test on a multi-thread runtime (`"current_thread"` is the default) |
//! | `worker_threads = 2` | with `multi_thread`: its number of workers |
//!
//! `#[ignore]`, `#[should_panic]` and `-> Result<(), E>` work as with `#[test]`.
//! Do not add `#[test]` or `#[tokio::test]`: the attribute makes the test
//! and its runtime itself (stacking them is a compile error, except a plain
//! `#[test]` written *above* `#[cleanroom::test]`, which rustc expands first
//! and which would register the test twice).
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
//! ports on 127.0.0.1 only. See `docs/runs.md`.
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
//! | `CLEANROOM_REUSE` | `run.reuse` | keep services for the next run (matched by their full definition) | off |
//! | `CLEANROOM_REUSE_TTL` | `run.reuse_ttl` | seconds a reused service outlives the last run that used it | 900 |
//! | `CLEANROOM_REAPER_GRACE` | `run.reaper_grace` | seconds the reaper waits for the next test process while the runner runs | 3 |
//! | `CLEANROOM_NO_REAPER` | `run.no_reaper` | no reaper; each process removes its own containers and shares none | off |
//! | `CLEANROOM_REPORT` | `run.report` | the summary on stderr at exit: `quiet`, `full`, `off` | `quiet` |
//! | `CLEANROOM_REPORT_JSON` | `run.report_json` | also write the run's report (one JSON document, docs/report.md) to this file | unset |
//! | `CLEANROOM_VOLUME_CACHE` | `run.volume_cache` | keep Postgres's initialised cluster and templates in a volume: a cold start skips initdb and unchanged migrations | on |
//! | `CLEANROOM_CACHE_TTL` | `run.cache_ttl` | seconds an unused cache volume is kept | 604800 (7 days) |
//! | `CLEANROOM_CACHE_SIZE` | `run.cache_size` | total size of cache volumes above which the least recently used go | `1GiB` |
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

pub use cleanroom_macros::{fixture, service, test};
pub use cleanroom_runtime::{
    environment, image_env_var, lifecycle_of, metrics_of, Alert, Container, Environment, Error, ExecOutput,
    GenericContainer, Health, HealthCheck, Keep, LimitAction, Mount, MountKind, Postgres, Recovery, Redis, Result,
    RoomHooks, ServiceFailure, ServiceMetrics, Setting, State, DEFAULT_POSTGRES_IMAGE, DEFAULT_REDIS_IMAGE,
    DEFAULT_STARTUP_TIMEOUT, MANAGED_LABEL, SERVICE_LABEL, SERVICE_SETTINGS, SESSION_LABEL, SETTINGS,
};

/// Not public API: the one door from generated code into the runtime.
#[doc(hidden)]
pub mod __private {
    pub use cleanroom_runtime::__private::*;
    pub use inventory;
}
