//! The built-in services' definitions, `postgres` and `redis`: official images by default,
//! overridable per service with `CLEANROOM_POSTGRES_IMAGE` and
//! `CLEANROOM_REDIS_IMAGE`.

use crate::service::definition::{GenericContainer, ServiceKind, ServiceSpec, REDIS_PASSWORD_ENV};
use crate::service::health::HealthCheck;

/// The Postgres image used unless configured otherwise.
pub const DEFAULT_POSTGRES_IMAGE: &str = "postgres:17-alpine";
/// The Redis image used unless configured otherwise.
pub const DEFAULT_REDIS_IMAGE: &str = "redis:7-alpine";

/// How many logical databases the built-in Redis has: one a test at a time.
pub(crate) const REDIS_DATABASES: u32 = 64;

/// The built-in Postgres service.
pub(crate) static POSTGRES: ServiceSpec =
    ServiceSpec { name: "postgres", module_path: "cleanroom", kind: ServiceKind::Postgres };
/// The built-in Redis service.
pub(crate) static REDIS: ServiceSpec =
    ServiceSpec { name: "redis", module_path: "cleanroom", kind: ServiceKind::Redis };

/// A password nobody can guess, new for every run.
fn random_password() -> String {
    crate::util::hash::random_hex()
}

/// The definition of the Postgres service: a throwaway server tuned for tests
/// (no fsync, data in memory), Ready only when a real login succeeds.
///
/// Logins use MD5 rather than SCRAM: a SCRAM login derives its key with 4096
/// rounds of PBKDF2 on the client, ~200 ms per connection in a debug build
/// (which is how tests are built), paid by every test that connects. The
/// password is still random per run and the port published on 127.0.0.1
/// only (on every address only for clients elsewhere, see
/// `docker::endpoint`). The initial password is stored as SCRAM by initdb, so it is set
/// again, as MD5, over the container's local socket before the login check.
pub(crate) fn postgres_definition() -> GenericContainer {
    let mut def = GenericContainer::new(DEFAULT_POSTGRES_IMAGE)
        .with_env("POSTGRES_USER", "cleanroom")
        .with_env("POSTGRES_PASSWORD", random_password())
        .with_env("POSTGRES_DB", "cleanroom")
        .with_env("POSTGRES_HOST_AUTH_METHOD", "md5")
        // Nothing here must survive a crash: skip initdb's fsyncs too.
        .with_env("POSTGRES_INITDB_ARGS", "--no-sync")
        .with_cmd([
            "postgres",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "password_encryption=md5",
        ])
        .with_port(5432)
        // Cloning a database per test is mostly file copying: in memory it
        // takes ~15 ms instead of ~450 ms on disk (see docs/isolation.md).
        .with_tmpfs("/var/lib/postgresql/data", "")
        // Cleans a cluster restored from the volume cache, or fills the
        // cache, then sets the password (see `cache/`).
        .with_health_check(crate::cache::postgres_first_check())
        .with_health_check(HealthCheck::postgres_query())
        // Docker's 64 MiB /dev/shm is too small for parallel queries ("could
        // not resize shared memory segment"); a pid limit keeps a runaway
        // from taking the machine. No memory limit: the data directory lives
        // in tmpfs, which counts against it, and test databases vary.
        .with_shm_size(256 * 1024 * 1024)
        .with_pids_limit(1024);
    // A cold start copies an initialised cluster instead of running initdb
    // (docs/caches.md); `run.volume_cache = false` turns it off.
    def.volume_cache = Some(crate::service::definition::VolumeCache::Postgres);
    def
}

/// The definition of the Redis service: no persistence, Ready when it answers PING.
pub(crate) fn redis_definition() -> GenericContainer {
    redis_definition_for(crate::docker::endpoint::beyond_loopback())
}

/// The Redis definition; with a random password (`requirepass`) when its
/// port is reachable beyond the engine host's loopback (a remote engine,
/// `CLEANROOM_HOST`): nothing is open there without a secret.
///
/// The password travels in the environment, as Postgres's does, so that it
/// stays out of the container's identity and the processes that attach take
/// the creator's; a shell puts it on the command line inside the container.
fn redis_definition_for(beyond_loopback: bool) -> GenericContainer {
    let server = ["redis-server", "--save", "", "--appendonly", "no", "--databases", &REDIS_DATABASES.to_string()]
        .map(String::from);
    let def = if beyond_loopback {
        let script = format!(r#"exec docker-entrypoint.sh "$@" --requirepass "${REDIS_PASSWORD_ENV}""#);
        GenericContainer::new(DEFAULT_REDIS_IMAGE)
            .with_env(REDIS_PASSWORD_ENV, random_password())
            .with_cmd(["sh".to_string(), "-c".to_string(), script, "sh".to_string()].into_iter().chain(server))
    } else {
        GenericContainer::new(DEFAULT_REDIS_IMAGE).with_cmd(server)
    };
    def.with_port(6379).with_health_check(HealthCheck::redis_ping(6379)).with_pids_limit(256)
}

/// The spec of a built-in or `#[cleanroom::service]` named `name`, so that the
/// seed API hands out the macros' singleton rather than a second container.
pub(crate) fn spec_named(name: &str) -> Option<&'static ServiceSpec> {
    match name {
        "postgres" => Some(&POSTGRES),
        "redis" => Some(&REDIS),
        _ => crate::catalog::registered_services().find(|s| s.name == name),
    }
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::{random_password, redis_definition_for};
        use crate::service::definition::REDIS_PASSWORD_ENV;

        #[test]
        fn give_redis_a_password_only_when_its_port_leaves_loopback() {
            let local = redis_definition_for(false);
            assert!(!local.env.contains_key(REDIS_PASSWORD_ENV));
            assert_eq!(local.cmd[0], "redis-server");
            let remote = redis_definition_for(true);
            assert_eq!(remote.env[REDIS_PASSWORD_ENV].len(), 32);
            assert_eq!(&remote.cmd[..2], ["sh", "-c"]);
            assert!(remote.cmd[2].contains(r#"--requirepass "$REDIS_PASSWORD""#), "{:?}", remote.cmd);
            assert_eq!(remote.cmd[4..], local.cmd[..], "the same server behind the shell");
            assert_eq!(
                remote.identity_hash(),
                redis_definition_for(true).identity_hash(),
                "every process of a run names the same container"
            );
        }

        #[test]
        fn make_a_different_password_on_every_call() {
            let a = random_password();
            assert_eq!(a.len(), 32);
            assert_ne!(a, random_password());
        }
    }
}
