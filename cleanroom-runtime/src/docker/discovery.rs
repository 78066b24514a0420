//! Which Docker engine to talk to, chosen the way the docker CLI chooses:
//! `DOCKER_HOST`; else the context named by `DOCKER_CONTEXT`, else the
//! `currentContext` of `config.json` in `DOCKER_CONFIG` (default
//! `~/.docker`), whose endpoint is in
//! `contexts/meta/<sha256 of the name>/meta.json`; else the default socket.
//! When none of these names an engine and the default socket does not
//! answer, Podman's: `CONTAINER_HOST` (what `podman --remote` reads), else
//! the rootful socket `/run/podman/podman.sock`, else the rootless one in
//! `$XDG_RUNTIME_DIR/podman/podman.sock` — the first that answers. Docker
//! stays first: a machine with both runs on Docker unless told otherwise.
//!
//! testcontainers reads `DOCKER_HOST` only, so at process start cleanroom
//! exports a context's endpoint as `DOCKER_HOST` (before any thread runs),
//! which the reaper and every container request then inherit.

use std::path::PathBuf;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// Where the engine address came from, for error messages.
static CHOSEN: OnceLock<Result<String, String>> = OnceLock::new();

/// The engine address as the docker CLI would pick it, with where it came
/// from; `Ok(None)` for the default socket. `get` reads the environment.
pub(crate) fn resolve(get: impl Fn(&str) -> Option<String>) -> Result<Option<(String, String)>, String> {
    if let Some(host) = get("DOCKER_HOST").filter(|h| !h.is_empty()) {
        return Ok(Some((host, "DOCKER_HOST".into())));
    }
    let config_dir = match get("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => match get("HOME") {
            Some(home) => PathBuf::from(home).join(".docker"),
            None => return Ok(None),
        },
    };
    let (name, from) = match get("DOCKER_CONTEXT").filter(|c| !c.is_empty()) {
        Some(name) => (name, "DOCKER_CONTEXT".to_string()),
        None => {
            let path = config_dir.join("config.json");
            let Ok(text) = std::fs::read_to_string(&path) else { return Ok(None) };
            let json: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| format!("{} is not valid JSON: {e}", path.display()))?;
            match json.get("currentContext").and_then(|c| c.as_str()).filter(|c| !c.is_empty()) {
                Some(name) => (name.to_string(), format!("currentContext in {}", path.display())),
                None => return Ok(None),
            }
        }
    };
    if name == "default" {
        return Ok(None);
    }
    let digest = Sha256::digest(name.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let meta = config_dir.join("contexts/meta").join(hex).join("meta.json");
    let text = std::fs::read_to_string(&meta)
        .map_err(|e| format!("docker context {name:?} ({from}) not found: cannot read {}: {e}; create it with `docker context create`, or unset {from}", meta.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not valid JSON: {e}", meta.display()))?;
    let host = json
        .pointer("/Endpoints/docker/Host")
        .and_then(|h| h.as_str())
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("docker context {name:?} ({from}) has no docker endpoint in {}", meta.display()))?;
    Ok(Some((host.to_string(), format!("docker context {name:?} from {from}"))))
}

/// The TLS settings as the docker CLI reads them, in the form testcontainers
/// reads: the CLI takes any non-empty `DOCKER_TLS_VERIFY` as on (testcontainers
/// only `1`), and looks for `ca.pem`, `cert.pem` and `key.pem` in
/// `DOCKER_CERT_PATH`, else in `DOCKER_CONFIG`, else `~/.docker`
/// (testcontainers would panic without `DOCKER_CERT_PATH`). The variables to
/// set, if any.
pub(crate) fn tls_exports(get: impl Fn(&str) -> Option<String>) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let Some(verify) = get("DOCKER_TLS_VERIFY").filter(|v| !v.is_empty()) else { return out };
    if verify != "1" {
        out.push(("DOCKER_TLS_VERIFY", "1".to_string()));
    }
    if get("DOCKER_CERT_PATH").is_none_or(|p| p.is_empty()) {
        let dir = match get("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
            Some(dir) => Some(PathBuf::from(dir)),
            None => get("HOME").map(|home| PathBuf::from(home).join(".docker")),
        };
        if let Some(dir) = dir {
            out.push(("DOCKER_CERT_PATH", dir.display().to_string()));
        }
    }
    out
}

/// Exports a context's endpoint as `DOCKER_HOST`, and the TLS settings as
/// `tls_exports` says. Call it while the process has one thread (process
/// start, the top of a CLI's `main`).
pub fn export_docker_host() {
    CHOSEN.get_or_init(|| {
        for (name, value) in tls_exports(|k| std::env::var(k).ok()) {
            std::env::set_var(name, value);
        }
        chosen_host()
    });
}

fn chosen_host() -> Result<String, String> {
    let get = |k: &str| std::env::var(k).ok();
    let found = match resolve(get)? {
        Some(found) => Some(found),
        None => podman_fallback(get, answers),
    };
    match found {
        Some((host, source)) => {
            if source != "DOCKER_HOST" {
                std::env::set_var("DOCKER_HOST", &host);
            }
            Ok(format!("{host} ({source})"))
        }
        None => Ok(DEFAULT_HOST.to_string()),
    }
}

const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";

/// Podman's rootful socket (`podman.socket`, `podman system service`).
const PODMAN_ROOTFUL_SOCKET: &str = "unix:///run/podman/podman.sock";

const DEFAULT_HOST: &str =
    "unix:///var/run/docker.sock (the default socket; set DOCKER_HOST or a docker context to use \
     another; no Podman socket answered either: CONTAINER_HOST, /run/podman/podman.sock, \
     $XDG_RUNTIME_DIR/podman/podman.sock)";

/// Podman's engine, for when the docker CLI's rules name none and the
/// default socket does not answer: `CONTAINER_HOST`, then the rootful
/// socket, then the rootless one, the first that `answers`. `None` leaves
/// the default socket (and its "not reachable" error, which names these).
fn podman_fallback(get: impl Fn(&str) -> Option<String>, answers: impl Fn(&str) -> bool) -> Option<(String, String)> {
    if answers(DEFAULT_SOCKET) {
        return None;
    }
    let mut candidates = Vec::new();
    if let Some(host) = get("CONTAINER_HOST").filter(|h| !h.is_empty()) {
        candidates.push((host, "CONTAINER_HOST, no Docker socket answered".to_string()));
    }
    candidates.push((PODMAN_ROOTFUL_SOCKET.to_string(), "Podman's socket, no Docker socket answered".to_string()));
    if let Some(dir) = get("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        let host = format!("unix://{}/podman/podman.sock", dir.trim_end_matches('/'));
        candidates.push((host, "Podman's rootless socket, no Docker socket answered".to_string()));
    }
    candidates.into_iter().find(|(host, _)| answers(host))
}

/// Whether something listens at an engine address. Only a `unix://` socket
/// is tried (a connect, no request); any other address is taken as given,
/// and a wrong one fails later with the engine's own error.
fn answers(host: &str) -> bool {
    match host.strip_prefix("unix://") {
        #[cfg(unix)]
        Some(path) => std::os::unix::net::UnixStream::connect(path).is_ok(),
        #[cfg(not(unix))]
        Some(_) => false,
        None => true,
    }
}

/// The engine address and where it came from, or why it could not be chosen.
pub(crate) fn chosen() -> Result<String, String> {
    export_docker_host();
    CHOSEN.get().cloned().unwrap_or_else(|| Ok(DEFAULT_HOST.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn context_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cleanroom-ctx-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write_context(dir: &std::path::Path, name: &str, host: &str) {
        let hex: String = Sha256::digest(name.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        let meta = dir.join("contexts/meta").join(hex);
        std::fs::create_dir_all(&meta).unwrap();
        let json = format!(
            r#"{{"Name":"{name}","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":false}}}}}}"#
        );
        std::fs::write(meta.join("meta.json"), json).unwrap();
    }

    fn env(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        move |k| map.get(k).cloned()
    }

    mod should {
        use super::*;

        #[test]
        fn prefer_docker_host() {
            let dir = context_dir("host");
            write_context(&dir, "remote", "tcp://10.0.0.1:2375");
            let got = resolve(env(&[
                ("DOCKER_HOST", "unix:///tmp/d.sock".into()),
                ("DOCKER_CONTEXT", "remote".into()),
                ("DOCKER_CONFIG", dir.display().to_string()),
            ]));
            assert_eq!(got, Ok(Some(("unix:///tmp/d.sock".into(), "DOCKER_HOST".into()))));
            std::fs::remove_dir_all(dir).unwrap();
        }

        #[test]
        fn follow_docker_context_then_the_current_context() {
            let dir = context_dir("ctx");
            write_context(&dir, "remote", "tcp://10.0.0.1:2375");
            write_context(&dir, "colima", "unix:///home/u/.colima/docker.sock");
            std::fs::write(dir.join("config.json"), r#"{"auths":{},"currentContext":"colima"}"#).unwrap();
            let config = ("DOCKER_CONFIG", dir.display().to_string());
            let (host, _) = resolve(env(&[config.clone(), ("DOCKER_CONTEXT", "remote".into())])).unwrap().unwrap();
            assert_eq!(host, "tcp://10.0.0.1:2375");
            let (host, source) = resolve(env(std::slice::from_ref(&config))).unwrap().unwrap();
            assert_eq!(host, "unix:///home/u/.colima/docker.sock");
            assert!(source.contains("currentContext"), "{source}");
            assert_eq!(resolve(env(&[config, ("DOCKER_CONTEXT", "default".into())])), Ok(None));
            std::fs::remove_dir_all(dir).unwrap();
        }

        #[test]
        fn find_the_config_in_the_home_directory() {
            let home = context_dir("home");
            let dir = home.join(".docker");
            write_context(&dir, "work", "ssh://me@box");
            std::fs::write(dir.join("config.json"), r#"{"currentContext":"work"}"#).unwrap();
            let (host, _) = resolve(env(&[("HOME", home.display().to_string())])).unwrap().unwrap();
            assert_eq!(host, "ssh://me@box");
            std::fs::remove_dir_all(home).unwrap();
        }

        #[test]
        fn use_the_default_socket_without_a_context() {
            let dir = context_dir("none");
            assert_eq!(resolve(env(&[("DOCKER_CONFIG", dir.display().to_string())])), Ok(None));
            std::fs::write(dir.join("config.json"), r#"{"auths":{}}"#).unwrap();
            assert_eq!(resolve(env(&[("DOCKER_CONFIG", dir.display().to_string())])), Ok(None));
            std::fs::remove_dir_all(dir).unwrap();
        }

        #[test]
        fn read_tls_settings_as_the_docker_cli_does() {
            assert!(tls_exports(env(&[("DOCKER_TLS_VERIFY", String::new())])).is_empty(), "empty: off");
            let given = [("DOCKER_TLS_VERIFY", "1".to_string()), ("DOCKER_CERT_PATH", "/certs".to_string())];
            assert!(tls_exports(env(&given)).is_empty(), "as testcontainers reads them already");
            let got = tls_exports(env(&[("DOCKER_TLS_VERIFY", "true".into()), ("HOME", "/home/u".into())]));
            assert_eq!(got, [("DOCKER_TLS_VERIFY", "1".into()), ("DOCKER_CERT_PATH", "/home/u/.docker".into())]);
            let got = tls_exports(env(&[("DOCKER_TLS_VERIFY", "1".into()), ("DOCKER_CONFIG", "/cfg".into())]));
            assert_eq!(got, [("DOCKER_CERT_PATH", "/cfg".to_string())]);
        }

        #[test]
        fn keep_the_docker_socket_when_it_answers() {
            let env = env(&[("CONTAINER_HOST", "unix:///run/user/1000/podman/podman.sock".into())]);
            assert_eq!(podman_fallback(env, |_| true), None);
        }

        #[test]
        fn take_container_host_when_no_docker_socket_answers() {
            let host = "unix:///run/user/1000/podman/podman.sock";
            let got = podman_fallback(env(&[("CONTAINER_HOST", host.into())]), |h| h != DEFAULT_SOCKET);
            let (got, source) = got.unwrap();
            assert_eq!(got, host);
            assert!(source.starts_with("CONTAINER_HOST"), "{source}");
        }

        #[test]
        fn try_the_rootful_then_the_rootless_podman_socket() {
            let rootless = "unix:///run/user/1000/podman/podman.sock";
            let given = env(&[("XDG_RUNTIME_DIR", "/run/user/1000/".into())]);
            let (got, _) = podman_fallback(&given, |h| h != DEFAULT_SOCKET).unwrap();
            assert_eq!(got, PODMAN_ROOTFUL_SOCKET);
            let (got, source) = podman_fallback(&given, |h| h == rootless).unwrap();
            assert_eq!(got, rootless);
            assert!(source.contains("rootless"), "{source}");
            assert_eq!(podman_fallback(&given, |_| false), None, "nothing answers: the default socket's error");
        }

        #[test]
        fn skip_a_container_host_that_does_not_answer() {
            let given = env(&[("CONTAINER_HOST", "unix:///nowhere.sock".into())]);
            let (got, _) = podman_fallback(given, |h| h == PODMAN_ROOTFUL_SOCKET).unwrap();
            assert_eq!(got, PODMAN_ROOTFUL_SOCKET);
        }

        #[test]
        fn probe_only_unix_sockets() {
            assert!(!answers("unix:///nonexistent/cleanroom/podman.sock"));
            assert!(answers("tcp://podman:8080"), "taken as given");
        }

        #[test]
        fn name_a_context_that_does_not_exist() {
            let dir = context_dir("missing");
            let err = resolve(env(&[("DOCKER_CONFIG", dir.display().to_string()), ("DOCKER_CONTEXT", "nope".into())]))
                .unwrap_err();
            assert!(err.starts_with("docker context \"nope\" (DOCKER_CONTEXT) not found"), "{err}");
            std::fs::remove_dir_all(dir).unwrap();
        }
    }
}
