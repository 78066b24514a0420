//! Where the services' published ports are reached from this process, and
//! on which of the engine host's addresses they are published.
//!
//! The host that handles, health checks and rooms connect to is, in order:
//!
//! 1. `CLEANROOM_HOST`, when set;
//! 2. `TESTCONTAINERS_HOST_OVERRIDE`, so that a CI set up for
//!    testcontainers keeps working;
//! 3. the engine's own host when `DOCKER_HOST` (or the docker context) is
//!    `tcp://`, `http://` or `https://` (GitLab's `docker:dind`, a remote
//!    engine);
//! 4. inside a container that reaches a local engine by its socket (GitHub's
//!    `container:` jobs, devcontainers): the gateway of the container's
//!    network, which the engine reports ([`settle`]); a container on the host's
//!    network uses `127.0.0.1`;
//! 5. `127.0.0.1` for a local socket.
//!
//! Ports are published on the engine host's `127.0.0.1` when that host is a
//! loopback address, and on every address (`0.0.0.0`) otherwise: a client
//! elsewhere could not reach them on the engine's loopback. Ports that leave
//! loopback are never open without a secret: Postgres has its random
//! password and Redis gets one (`requirepass`), see `builtin`.

use std::net::IpAddr;
use std::sync::OnceLock;

/// The variable that overrides the host.
pub(crate) const HOST_ENV: &str = "CLEANROOM_HOST";
/// testcontainers' name for the same override.
pub(crate) const TESTCONTAINERS_HOST_ENV: &str = "TESTCONTAINERS_HOST_OVERRIDE";

/// How this process reaches published ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// The host to connect to.
    pub(crate) host: String,
    /// Where that host came from, for messages.
    pub(crate) source: String,
    /// The engine host's address ports are published on.
    pub(crate) publish_ip: &'static str,
    /// Whether this process's files are out of the engine's sight: the
    /// engine is on another machine (`DOCKER_HOST` names a host that is not
    /// loopback), or this process runs in a container of the engine's. A
    /// bind mount's source is then copied into the container instead.
    pub(crate) files_apart: bool,
}

impl Endpoint {
    /// Whether published ports can be reached from beyond the engine host's
    /// loopback: then every service must require a secret.
    pub(crate) fn beyond_loopback(&self) -> bool {
        self.publish_ip != LOOPBACK
    }
}

const LOOPBACK: &str = "127.0.0.1";
const LOCAL: &str = "a local engine";
const EVERYWHERE: &str = "0.0.0.0";

/// A setting that names no usable host: the variable, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadHost {
    pub(crate) key: String,
    pub(crate) reason: String,
}

impl std::fmt::Display for BadHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

/// The endpoint for an environment (`get` reads a variable; `DOCKER_HOST`
/// already holds a docker context's endpoint, see `discovery`).
pub(crate) fn resolve(get: impl Fn(&str) -> Option<String>) -> Result<Endpoint, BadHost> {
    let docker_host = get("DOCKER_HOST").filter(|h| !h.is_empty());
    let engine = docker_host.as_deref().map(engine_host).transpose();
    let files_apart = matches!(&engine, Ok(Some(Some(host))) if publish_ip_for(host) != LOOPBACK);
    for name in [HOST_ENV, TESTCONTAINERS_HOST_ENV] {
        if let Some(value) = get(name) {
            let host = check_host(&value).map_err(|reason| BadHost { key: name.into(), reason })?;
            return Ok(Endpoint { publish_ip: publish_ip_for(&host), host, source: name.to_string(), files_apart });
        }
    }
    if let Some(docker_host) = docker_host {
        let engine = engine.map_err(|reason| BadHost { key: "DOCKER_HOST".into(), reason })?.flatten();
        if let Some(host) = engine {
            return Ok(Endpoint {
                publish_ip: publish_ip_for(&host),
                host,
                source: format!("DOCKER_HOST={docker_host}"),
                files_apart,
            });
        }
    }
    Ok(Endpoint { host: LOOPBACK.into(), source: LOCAL.into(), publish_ip: LOOPBACK, files_apart })
}

/// A host name or an IP address, without scheme, port or path.
fn check_host(value: &str) -> Result<String, String> {
    let host = value.trim();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let ok = !host.is_empty()
        && (bare.parse::<IpAddr>().is_ok()
            || host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_'));
    if ok {
        Ok(bare.to_string())
    } else {
        Err(format!(
            "{value:?} is not a host: give the host name or IP address where the engine publishes ports \
             (e.g. `docker`, `10.0.0.5`), without a scheme, port or path, or unset it"
        ))
    }
}

/// The host of a `tcp://`, `http://` or `https://` engine address; `None`
/// for a local socket (`unix://`, `npipe://`). SSH engines are not
/// supported.
fn engine_host(docker_host: &str) -> Result<Option<String>, String> {
    let Some((scheme, rest)) = docker_host.split_once("://") else {
        return Err(format!("{docker_host:?} has no scheme (`unix://`, `tcp://`)"));
    };
    match scheme {
        "unix" | "npipe" => Ok(None),
        "tcp" | "http" | "https" => {
            let authority = rest.split('/').next().unwrap_or_default();
            let host = match authority.strip_prefix('[') {
                Some(v6) => v6.split(']').next().unwrap_or_default(),
                None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
            };
            if host.is_empty() {
                return Err(format!("{docker_host:?} names no host"));
            }
            Ok(Some(host.to_string()))
        }
        "ssh" => Err(format!(
            "{docker_host:?}: SSH engines are not supported; forward the engine's socket \
             (`ssh -L /tmp/docker.sock:/var/run/docker.sock host`) and use `unix:///tmp/docker.sock`, or \
             expose it over TLS (docs/environments.md)"
        )),
        other => Err(format!("{docker_host:?}: unknown scheme {other:?} (`unix://`, `tcp://`)")),
    }
}

/// Loopback clients reach the engine host's loopback; any other needs the
/// ports on every address.
fn publish_ip_for(host: &str) -> &'static str {
    let loopback = host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback {
        LOOPBACK
    } else {
        EVERYWHERE
    }
}

/// What the engine says about the container this process runs in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OwnContainer<'a> {
    pub(crate) id: &'a str,
    /// `host` when it shares the engine host's network.
    pub(crate) network_mode: &'a str,
    /// The gateway of (one of) its networks.
    pub(crate) gateway: Option<&'a str>,
}

/// The endpoint once the engine said where this process's container is
/// (`None`: it does not know it): a container on a network of its own
/// reaches published ports through that network's gateway, on every
/// address of the engine host; one on the host's network, on loopback.
pub(crate) fn inside_container(base: &Endpoint, own: Option<OwnContainer<'_>>) -> Endpoint {
    match own {
        // Where ports are reached was said (an override, a remote engine);
        // where files are was not.
        Some(_) if base.source != LOCAL => Endpoint { files_apart: true, ..base.clone() },
        Some(OwnContainer { id, network_mode, gateway: Some(gateway) }) if network_mode != "host" => Endpoint {
            host: gateway.to_string(),
            source: format!("the gateway of container {}'s network", &id[..id.len().min(12)]),
            publish_ip: EVERYWHERE,
            files_apart: true,
        },
        // On the host's network it shares the host's ports, not its files.
        Some(_) => Endpoint { files_apart: true, ..base.clone() },
        None => base.clone(),
    }
}

static DETECTED: OnceLock<Endpoint> = OnceLock::new();

/// Whether the engine must be asked where this process's container is before
/// anything is published: it runs in a container (then its files are not the
/// engine's, and unless something else said where the services are, their
/// ports are reached through its network's gateway).
pub(crate) fn needs_detection() -> bool {
    DETECTED.get().is_none() && base().is_ok() && crate::util::os::in_container()
}

/// Records what the engine said about this process's container (see
/// [`inside_container`]); the first answer stands.
pub(crate) fn settle(own: Option<OwnContainer<'_>>) {
    if let Ok(base) = base() {
        let _ = DETECTED.set(inside_container(base, own));
    }
}

/// This process's endpoint: from the environment, or as [`settle`]d.
pub(crate) fn current() -> Result<&'static Endpoint, BadHost> {
    match DETECTED.get() {
        Some(detected) => Ok(detected),
        None => base(),
    }
}

/// The endpoint the environment gives, read once (after `discovery`
/// exported a context's endpoint as `DOCKER_HOST`).
fn base() -> Result<&'static Endpoint, BadHost> {
    static CURRENT: OnceLock<Result<Endpoint, BadHost>> = OnceLock::new();
    CURRENT
        .get_or_init(|| {
            super::discovery::export_docker_host();
            resolve(|k| std::env::var(k).ok())
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The host to connect to; `127.0.0.1` when the settings are wrong (a
/// service then never started: its start reported the error).
pub(crate) fn host() -> &'static str {
    current().map_or(LOOPBACK, |e| e.host.as_str())
}

/// Where ports are published; `127.0.0.1` when the settings are wrong.
pub(crate) fn publish_ip() -> &'static str {
    current().map_or(LOOPBACK, |e| e.publish_ip)
}

/// Whether published ports leave the engine host's loopback.
pub(crate) fn beyond_loopback() -> bool {
    current().is_ok_and(Endpoint::beyond_loopback)
}

/// Whether bind mounts' sources are copied in ([`Endpoint::files_apart`]).
pub(crate) fn files_apart() -> bool {
    current().is_ok_and(|e| e.files_apart)
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::*;
        use std::collections::HashMap;

        fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
            let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            move |k| map.get(k).cloned()
        }

        #[test]
        fn reach_a_local_engine_on_loopback_only() {
            for docker_host in [None, Some("unix:///var/run/docker.sock"), Some("npipe:////./pipe/docker_engine")] {
                let pairs: Vec<(&str, &str)> = docker_host.map(|h| ("DOCKER_HOST", h)).into_iter().collect();
                let e = resolve(env(&pairs)).unwrap();
                assert_eq!((e.host.as_str(), e.publish_ip), ("127.0.0.1", "127.0.0.1"), "{docker_host:?}");
                assert!(!e.beyond_loopback());
            }
        }

        #[test]
        fn reach_a_remote_engine_on_its_own_host_and_publish_beyond_loopback() {
            for (docker_host, host) in [
                ("tcp://docker:2375", "docker"),
                ("tcp://10.213.7.1:2376/", "10.213.7.1"),
                ("https://engine.example.invalid:2376", "engine.example.invalid"),
                ("tcp://[fd00::1]:2375", "fd00::1"),
            ] {
                let e = resolve(env(&[("DOCKER_HOST", docker_host)])).unwrap();
                assert_eq!(e.host, host, "{docker_host}");
                assert_eq!(e.publish_ip, "0.0.0.0", "{docker_host}");
                assert!(e.beyond_loopback());
            }
        }

        #[test]
        fn keep_ports_on_loopback_for_an_engine_reached_over_loopback_tcp() {
            for docker_host in ["tcp://127.0.0.1:2375", "tcp://localhost:2375", "tcp://[::1]:2375"] {
                let e = resolve(env(&[("DOCKER_HOST", docker_host)])).unwrap();
                assert_eq!(e.publish_ip, "127.0.0.1", "{docker_host}");
            }
        }

        #[test]
        fn prefer_cleanroom_host_then_testcontainers_override_then_docker_host() {
            let all = [
                ("CLEANROOM_HOST", "mine"),
                ("TESTCONTAINERS_HOST_OVERRIDE", "theirs"),
                ("DOCKER_HOST", "tcp://docker:2375"),
            ];
            assert_eq!(resolve(env(&all)).unwrap().host, "mine");
            assert_eq!(resolve(env(&all[1..])).unwrap().host, "theirs");
            assert_eq!(resolve(env(&all[1..])).unwrap().source, "TESTCONTAINERS_HOST_OVERRIDE");
            assert_eq!(resolve(env(&all[2..])).unwrap().host, "docker");
        }

        #[test]
        fn publish_beyond_loopback_for_an_override_that_is_not_loopback() {
            let e = resolve(env(&[("CLEANROOM_HOST", "172.17.0.1")])).unwrap();
            assert_eq!((e.host.as_str(), e.publish_ip), ("172.17.0.1", "0.0.0.0"));
            let e = resolve(env(&[("CLEANROOM_HOST", "localhost"), ("DOCKER_HOST", "tcp://docker:2375")])).unwrap();
            assert_eq!((e.host.as_str(), e.publish_ip), ("localhost", "127.0.0.1"));
        }

        #[test]
        fn refuse_an_override_that_is_not_a_host() {
            for bad in ["", "tcp://docker:2375", "docker:2375", "host/path", "a b"] {
                let err = resolve(env(&[("CLEANROOM_HOST", bad)])).unwrap_err();
                assert_eq!(err.key, "CLEANROOM_HOST");
                assert!(err.reason.contains("without a scheme, port or path"), "{err}");
            }
        }

        #[test]
        fn reach_services_from_a_container_through_its_networks_gateway() {
            let base = resolve(env(&[])).unwrap();
            let id = "860ea263c98b665c1233eb02fde741cb461e01ad485ab6dec4e38b3708b86a1d";
            let own = OwnContainer { id, network_mode: "github_network_1", gateway: Some("172.18.0.1") };
            let e = inside_container(&base, Some(own));
            assert_eq!((e.host.as_str(), e.publish_ip), ("172.18.0.1", "0.0.0.0"));
            assert!(e.source.contains("860ea263c98b"), "{}", e.source);
            assert!(e.files_apart, "its files are not the engine host's");
            let host_network = OwnContainer { network_mode: "host", ..own };
            let apart = Endpoint { files_apart: true, ..base.clone() };
            assert_eq!(inside_container(&base, Some(host_network)), apart, "the host's network: loopback");
            assert_eq!(inside_container(&base, Some(OwnContainer { gateway: None, ..own })), apart);
            assert_eq!(inside_container(&base, None), base, "another engine's container: as outside");
            assert!(!base.files_apart);
            let told = resolve(env(&[("CLEANROOM_HOST", "172.18.0.1")])).unwrap();
            let e = inside_container(&told, Some(own));
            assert_eq!(e, Endpoint { files_apart: true, ..told }, "the override stands; the files are apart");
        }

        #[test]
        fn copy_bind_sources_only_to_an_engine_on_another_host() {
            let apart = |pairs: &[(&str, &str)]| resolve(env(pairs)).unwrap().files_apart;
            assert!(apart(&[("DOCKER_HOST", "tcp://docker:2375")]));
            assert!(apart(&[("DOCKER_HOST", "tcp://10.213.7.1:2376"), ("CLEANROOM_HOST", "localhost")]));
            assert!(!apart(&[("DOCKER_HOST", "tcp://127.0.0.1:2375")]));
            assert!(!apart(&[("DOCKER_HOST", "unix:///var/run/docker.sock")]));
            assert!(!apart(&[("CLEANROOM_HOST", "172.17.0.1")]), "an override says where ports are, not files");
            assert!(!apart(&[]));
        }

        #[test]
        fn refuse_ssh_engines_saying_what_to_do_instead() {
            let err = resolve(env(&[("DOCKER_HOST", "ssh://me@box")])).unwrap_err();
            assert_eq!(err.key, "DOCKER_HOST");
            assert!(err.reason.contains("SSH engines are not supported") && err.reason.contains("unix://"), "{err}");
        }
    }
}
