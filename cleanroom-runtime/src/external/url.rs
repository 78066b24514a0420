//! An existing server's URL: `postgres://user:password@host:port/database`
//! or `redis://[user][:password]@host:port[/db]`, read into its parts, with
//! errors that say what is wrong with it.

use std::fmt;

/// Which server a URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerKind {
    Postgres,
    Redis,
}

/// The parts of an existing server's URL.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ServerUrl {
    pub(crate) kind: ServerKind,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
    /// The database the URL names (Postgres), or the logical database
    /// (Redis, as text).
    pub(crate) database: Option<String>,
}

/// No password is ever printed.
impl fmt::Debug for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl ServerUrl {
    /// Reads `text` as a URL of a `kind` server. The error says what is
    /// wrong and what a good one looks like.
    pub(crate) fn parse(kind: ServerKind, text: &str) -> Result<ServerUrl, String> {
        let example = match kind {
            ServerKind::Postgres => "postgres://user:password@127.0.0.1:5432/postgres",
            ServerKind::Redis => "redis://:password@127.0.0.1:6379",
        };
        let bad = |why: &str| format!("{why}; expected a URL such as {example}");
        let (scheme, rest) = text.trim().split_once("://").ok_or_else(|| bad("it has no scheme"))?;
        let schemes: &[&str] = match kind {
            ServerKind::Postgres => &["postgres", "postgresql"],
            ServerKind::Redis => &["redis"],
        };
        if scheme == "rediss" {
            return Err("TLS to Redis (`rediss://`) is not supported yet; use `redis://` on a trusted network".into());
        }
        if !schemes.contains(&scheme) {
            return Err(bad(&format!("its scheme `{scheme}` is not {}", schemes.join(" or "))));
        }
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(info) => match info.split_once(':') {
                Some((u, p)) => (Some(decode(u)?), Some(decode(p)?)),
                None => (Some(decode(info)?), None),
            },
        };
        let user = user.filter(|u| !u.is_empty());
        let (host, port) = match hostport.strip_prefix('[') {
            // [::1]:5432
            Some(v6) => {
                let (host, after) = v6.split_once(']').ok_or_else(|| bad("its IPv6 host has no `]`"))?;
                (host.to_string(), after.strip_prefix(':'))
            }
            None => match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            },
        };
        if host.is_empty() {
            return Err(bad("it names no host (Unix sockets are not supported: use a TCP address)"));
        }
        let default_port = match kind {
            ServerKind::Postgres => 5432,
            ServerKind::Redis => 6379,
        };
        let port = match port {
            None | Some("") => default_port,
            Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| bad(&format!("`{p}` is not a port")))?,
        };
        let path = path.split('?').next().unwrap_or("");
        let database = Some(decode(path.trim_start_matches('/'))?).filter(|d| !d.is_empty());
        if kind == ServerKind::Redis {
            if let Some(db) = &database {
                db.parse::<u32>().map_err(|_| bad(&format!("`{db}` is not a logical database number")))?;
            }
        }
        Ok(ServerUrl { kind, host, port, user, password, database })
    }

    /// The URL with its password masked.
    pub(crate) fn masked(&self) -> String {
        let scheme = match self.kind {
            ServerKind::Postgres => "postgres",
            ServerKind::Redis => "redis",
        };
        let user = self.user.as_deref().unwrap_or("");
        let auth = match (&self.password, user) {
            (Some(_), u) => format!("{u}:***@"),
            (None, "") => String::new(),
            (None, u) => format!("{u}@"),
        };
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        let db = self.database.as_deref().map(|d| format!("/{d}")).unwrap_or_default();
        format!("{scheme}://{auth}{host}:{}{db}", self.port)
    }

    /// What names this server in ids and records: its address, user and
    /// database, never its password.
    pub(crate) fn identity(&self) -> String {
        crate::util::paths::short_hash(&self.masked())
    }
}

/// Percent-decoding of a URL part.
fn decode(part: &str) -> Result<String, String> {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex =
                part.get(i + 1..i + 3).ok_or_else(|| format!("`{part}` has a `%` not followed by two hex digits"))?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("`%{hex}` in `{part}` is not a hex escape"))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("`{part}` does not decode to UTF-8"))
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::{ServerKind, ServerUrl};

        #[test]
        fn read_a_postgres_url_into_its_parts() {
            let url =
                ServerUrl::parse(ServerKind::Postgres, "postgresql://app:p%40ss@db.local:5544/main?sslmode=disable")
                    .unwrap();
            assert_eq!((url.host.as_str(), url.port), ("db.local", 5544));
            assert_eq!(url.user.as_deref(), Some("app"));
            assert_eq!(url.password.as_deref(), Some("p@ss"));
            assert_eq!(url.database.as_deref(), Some("main"));
            assert_eq!(url.masked(), "postgres://app:***@db.local:5544/main");
            assert!(!format!("{url:?}").contains("p@ss"), "Debug never shows the password");
        }

        #[test]
        fn take_the_default_port_and_no_database() {
            let url = ServerUrl::parse(ServerKind::Redis, "redis://127.0.0.1").unwrap();
            assert_eq!(
                (url.port, url.user.clone(), url.password.clone(), url.database.clone()),
                (6379, None, None, None)
            );
            let url = ServerUrl::parse(ServerKind::Redis, "redis://:secret@[::1]:7000/3").unwrap();
            assert_eq!((url.host.as_str(), url.port, url.password.as_deref()), ("::1", 7000, Some("secret")));
            assert_eq!(url.masked(), "redis://:***@[::1]:7000/3");
        }

        #[test]
        fn say_what_is_wrong_with_a_bad_url() {
            let e = ServerUrl::parse(ServerKind::Postgres, "localhost:5432").unwrap_err();
            assert!(e.contains("no scheme") && e.contains("postgres://"), "{e}");
            let e = ServerUrl::parse(ServerKind::Postgres, "redis://localhost").unwrap_err();
            assert!(e.contains("`redis` is not postgres or postgresql"), "{e}");
            let e = ServerUrl::parse(ServerKind::Redis, "redis://h:port").unwrap_err();
            assert!(e.contains("`port` is not a port"), "{e}");
            let e = ServerUrl::parse(ServerKind::Redis, "redis://h/x").unwrap_err();
            assert!(e.contains("`x` is not a logical database number"), "{e}");
            let e = ServerUrl::parse(ServerKind::Redis, "rediss://h").unwrap_err();
            assert!(e.contains("not supported"), "{e}");
            let e = ServerUrl::parse(ServerKind::Postgres, "postgres:///db").unwrap_err();
            assert!(e.contains("no host"), "{e}");
        }
    }
}
