//! The baselines' images, defined the way testcontainers-modules defines its
//! `Postgres` and `Redis` (same environment, `fsync=off`, same readiness log
//! lines). testcontainers-modules itself cannot be used here: its current
//! release builds on testcontainers 0.27, whose Docker client cannot share a
//! build with the 0.28 one cleanroom uses.

use std::borrow::Cow;

use testcontainers::core::WaitFor;
use testcontainers::Image;

/// Postgres as testcontainers-modules starts it: user, password and database
/// `postgres`, `fsync=off`.
#[derive(Debug, Clone)]
pub struct Postgres {
    name: String,
    tag: String,
    env: Vec<(String, String)>,
}

impl Default for Postgres {
    fn default() -> Self {
        let (name, tag) = crate::image("postgres");
        let env = [("POSTGRES_DB", "postgres"), ("POSTGRES_USER", "postgres"), ("POSTGRES_PASSWORD", "postgres")];
        Postgres { name, tag, env: env.map(|(k, v)| (k.to_string(), v.to_string())).to_vec() }
    }
}

impl Postgres {
    /// The URL of the server published at `host:port`.
    pub fn url(host: impl std::fmt::Display, port: u16) -> String {
        format!("postgres://postgres:postgres@{host}:{port}/postgres")
    }
}

impl Image for Postgres {
    fn name(&self) -> &str {
        &self.name
    }

    fn tag(&self) -> &str {
        &self.tag
    }

    fn ready_conditions(&self) -> Vec<WaitFor> {
        vec![
            WaitFor::message_on_stderr("database system is ready to accept connections"),
            WaitFor::message_on_stdout("database system is ready to accept connections"),
        ]
    }

    fn env_vars(&self) -> impl IntoIterator<Item = (impl Into<Cow<'_, str>>, impl Into<Cow<'_, str>>)> {
        self.env.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    fn cmd(&self) -> impl IntoIterator<Item = impl Into<Cow<'_, str>>> {
        ["-c", "fsync=off"]
    }
}

/// Redis as testcontainers-modules starts it.
#[derive(Debug, Clone)]
pub struct Redis {
    name: String,
    tag: String,
}

impl Default for Redis {
    fn default() -> Self {
        let (name, tag) = crate::image("redis");
        Redis { name, tag }
    }
}

impl Redis {
    /// The URL of the server published at `host:port`.
    pub fn url(host: impl std::fmt::Display, port: u16) -> String {
        format!("redis://{host}:{port}")
    }
}

impl Image for Redis {
    fn name(&self) -> &str {
        &self.name
    }

    fn tag(&self) -> &str {
        &self.tag
    }

    fn ready_conditions(&self) -> Vec<WaitFor> {
        vec![WaitFor::message_on_stdout("Ready to accept connections")]
    }
}
