//! Parsers of setting values: durations, sizes, switches, fractions, mounts,
//! ports, commands and health checks, each with an error that names the
//! setting and shows an example.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::error::Error;
use crate::service::definition::Mount;
use crate::service::health::HealthCheck;

/// The array under a key, or an error saying what it should hold.
pub(super) fn array<'a>(f: &'a Located, expected: &str) -> Result<&'a [toml::Value], Error> {
    match &f.raw {
        Raw::Toml(toml::Value::Array(items)) => Ok(items),
        _ => Err(f.error(format!("{} is not {expected}", f.shown()))),
    }
}

/// The one key of an entry table that is not in `allowed`, as an error.
pub(super) fn unknown_entry_key(f: &Located, n: usize, table: &toml::Table, allowed: &[&str]) -> Result<(), Error> {
    match table.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(f.error(format!("entry {n}: unknown key `{k}`; expected one of: {}", allowed.join(", ")))),
        None => Ok(()),
    }
}

/// `mounts = [{ type = "bind", source = "...", target = "/x", read_only = true }, ...]`.
pub(super) fn mounts(f: &Located) -> Result<Vec<Mount>, Error> {
    const EXAMPLE: &str = "e.g. [{ type = \"bind\", source = \"fixtures\", target = \"/data\", read_only = true }, { type = \"volume\", source = \"cache\", target = \"/cache\" }]";
    let dir = match &f.origin {
        Origin::File(path) => path.parent().map(Path::to_path_buf),
        _ => None,
    };
    let mut out = Vec::new();
    for (i, item) in array(f, &format!("an array of mounts; expected {EXAMPLE}"))?.iter().enumerate() {
        let n = i + 1;
        let Some(table) = item.as_table() else {
            return Err(f.error(format!("entry {n}: {item} is not a mount; expected a table, {EXAMPLE}")));
        };
        unknown_entry_key(f, n, table, &["type", "source", "target", "read_only"])?;
        let text = |key: &str, what: &str| -> Result<String, Error> {
            match table.get(key) {
                Some(toml::Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
                Some(other) => Err(f.error(format!("entry {n}: `{key}` = {other} is not {what}"))),
                None => Err(f.error(format!("entry {n}: `{key}` is missing; expected {what}"))),
            }
        };
        let kind = text("type", "a mount type: one of bind, volume")?;
        let source = text("source", "a string: the host path (bind) or the volume name (volume)")?;
        let target = text("target", "an absolute path inside the container, e.g. \"/data\"")?;
        if !target.starts_with('/') {
            return Err(f.error(format!(
                "entry {n}: `target` = {target:?} is not an absolute path inside the container, e.g. \"/data\""
            )));
        }
        let read_only = match table.get("read_only") {
            None => false,
            Some(toml::Value::Boolean(b)) => *b,
            Some(other) => {
                return Err(f.error(format!("entry {n}: `read_only` = {other} is not a switch; expected true or false")))
            }
        };
        let mount = match kind.as_str() {
            "bind" => {
                let path = match &dir {
                    Some(dir) if Path::new(&source).is_relative() => dir.join(&source),
                    _ => PathBuf::from(&source),
                };
                if !path.exists() {
                    let relative = dir.as_ref().filter(|_| Path::new(&source).is_relative());
                    let note = relative.map(|d| format!(" (a relative source is taken from the file's directory, {})", d.display()));
                    return Err(f.error(format!(
                        "entry {n}: the bind mount's host path {} does not exist{}; create it or fix `source`",
                        path.display(),
                        note.unwrap_or_default()
                    )));
                }
                Mount::bind(path.display().to_string(), target)
            }
            "volume" => {
                let valid = source.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                    && source.len() >= 2
                    && source.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
                if !valid {
                    return Err(f.error(format!(
                        "entry {n}: `source` = {source:?} is not a volume name; expected 2 or more of letters, digits, `_`, `.`, `-`, starting with a letter or digit"
                    )));
                }
                Mount::volume(source, target)
            }
            other => {
                return Err(f.error(format!(
                    "entry {n}: {other:?} is not a mount type; expected one of: bind, volume (tmpfs mounts have their own key, `tmpfs`)"
                )))
            }
        };
        out.push(if read_only { mount.read_only() } else { mount });
    }
    Ok(out)
}

/// A port number 1 to 65535 in a file value or a string.
pub(super) fn port_number(text: &str) -> Option<u16> {
    text.trim().parse::<u16>().ok().filter(|p| *p > 0)
}

/// `ports = [8080, "18080:80"]`: container ports, and `host:container` pairs.
pub(super) fn ports(f: &Located) -> Result<Vec<(Option<u16>, u16)>, Error> {
    const EXPECTED: &str = "expected a container port (1-65535) or \"host:container\", e.g. [8080, \"18080:80\"]";
    let mut out = Vec::new();
    for (i, item) in array(f, &format!("an array of ports; {EXPECTED}"))?.iter().enumerate() {
        let parsed = match item {
            toml::Value::Integer(p) => u16::try_from(*p).ok().filter(|p| *p > 0).map(|p| (None, p)),
            toml::Value::String(s) => match s.split_once(':') {
                Some((host, container)) => port_number(host).zip(port_number(container)).map(|(h, c)| (Some(h), c)),
                None => port_number(s).map(|p| (None, p)),
            },
            _ => None,
        };
        out.push(parsed.ok_or_else(|| f.error(format!("entry {}: {item} is not a port; {EXPECTED}", i + 1)))?);
    }
    Ok(out)
}

/// `entrypoint = "sh"` or `entrypoint = ["sh", "-c"]`.
pub(super) fn entrypoint(f: &Located) -> Result<Vec<String>, Error> {
    let bad = || {
        f.error(format!(
            "{} is not an entrypoint; expected a string or a non-empty array of strings, e.g. [\"sh\", \"-c\"]",
            f.shown()
        ))
    };
    match &f.raw {
        Raw::Toml(toml::Value::String(s)) if !s.trim().is_empty() => Ok(vec![s.clone()]),
        Raw::Toml(toml::Value::Array(items)) if !items.is_empty() => {
            items.iter().map(|i| i.as_str().map(str::to_string).ok_or_else(bad)).collect()
        }
        _ => Err(bad()),
    }
}

/// `init = [["sh", "-c", "..."], ...]`.
pub(super) fn commands(f: &Located) -> Result<Vec<Vec<String>>, Error> {
    const EXPECTED: &str = "expected a non-empty array of strings, e.g. [\"sh\", \"-c\", \"mkdir -p /data\"]";
    let mut out = Vec::new();
    for (i, item) in array(
        f,
        "an array of commands; expected an array of arrays of strings, e.g. [[\"sh\", \"-c\", \"mkdir -p /data\"]]",
    )?
    .iter()
    .enumerate()
    {
        let cmd: Option<Vec<String>> = item
            .as_array()
            .filter(|words| !words.is_empty())
            .and_then(|words| words.iter().map(|w| w.as_str().map(str::to_string)).collect());
        out.push(cmd.ok_or_else(|| f.error(format!("entry {}: {item} is not a command; {EXPECTED}", i + 1)))?);
    }
    Ok(out)
}

/// `health = [{ tcp = 8080 }, { http = { port = 8080, path = "/" } }, ...]`.
pub(super) fn health_checks(f: &Located) -> Result<Vec<HealthCheck>, Error> {
    const KINDS: &str = "tcp, http, command, file, log";
    const EXAMPLE: &str = "e.g. [{ tcp = 8080 }, { http = { port = 8080, path = \"/\" } }, { command = [\"sh\", \"-c\", \"test -e /ready\"] }, { file = \"/ready\" }, { log = \"ready\" }]";
    let mut out = Vec::new();
    for (i, item) in array(f, &format!("an array of health checks; expected {EXAMPLE}"))?.iter().enumerate() {
        let n = i + 1;
        let entry = item.as_table().filter(|t| t.len() == 1).and_then(|t| t.iter().next());
        let Some((kind, value)) = entry else {
            return Err(f.error(format!(
                "entry {n}: {item} is not a health check; expected a table with exactly one of: {KINDS}, {EXAMPLE}"
            )));
        };
        let bad = |what: &str| f.error(format!("entry {n}: `{kind}` = {value} is not {what}"));
        let port = |v: &toml::Value| v.as_integer().and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0);
        let check = match kind.as_str() {
            "tcp" => HealthCheck::tcp(port(value).ok_or_else(|| bad("a port (1-65535)"))?),
            "http" => {
                const HTTP: &str =
                    "a port or a table { port = 8080, path = \"/\", status = 200 } (path and status optional)";
                match value {
                    toml::Value::Table(t) => {
                        unknown_entry_key(f, n, t, &["port", "path", "status"])?;
                        let p = t.get("port").and_then(port).ok_or_else(|| bad(HTTP))?;
                        let path = match t.get("path") {
                            None => "/".to_string(),
                            Some(toml::Value::String(s)) if s.starts_with('/') => s.clone(),
                            Some(other) => {
                                return Err(f.error(format!("entry {n}: `http` path {other} is not a path; expected one starting with `/`, e.g. \"/health\"")))
                            }
                        };
                        let check = HealthCheck::http(p, path);
                        match t.get("status") {
                            None => check,
                            Some(v) => match v
                                .as_integer()
                                .and_then(|s| u16::try_from(s).ok())
                                .filter(|s| (100..600).contains(s))
                            {
                                Some(status) => check.with_status(status),
                                None => {
                                    return Err(f.error(format!(
                                    "entry {n}: `http` status {v} is not an HTTP status; expected 100 to 599, e.g. 204"
                                )))
                                }
                            },
                        }
                    }
                    other => HealthCheck::http(port(other).ok_or_else(|| bad(HTTP))?, "/"),
                }
            }
            "command" => {
                let cmd: Option<Vec<String>> = value
                    .as_array()
                    .filter(|words| !words.is_empty())
                    .and_then(|words| words.iter().map(|w| w.as_str().map(str::to_string)).collect());
                HealthCheck::command(
                    cmd.ok_or_else(|| bad("a non-empty array of strings, e.g. [\"sh\", \"-c\", \"test -e /ready\"]"))?,
                )
            }
            "file" => match value.as_str() {
                Some(path) if path.starts_with('/') => HealthCheck::file(path),
                _ => return Err(bad("an absolute path inside the container, e.g. \"/ready\"")),
            },
            "log" => match value.as_str() {
                Some(message) if !message.is_empty() => HealthCheck::log(message),
                _ => return Err(bad("a non-empty string")),
            },
            other => {
                return Err(
                    f.error(format!("entry {n}: `{other}` is not a kind of health check; expected one of: {KINDS}"))
                )
            }
        };
        out.push(check);
    }
    Ok(out)
}

pub(super) fn fraction(f: &Located) -> Result<f64, Error> {
    let text = f.text("a number")?;
    text.parse::<f64>().ok().filter(|x| *x > 0.0 && *x <= 1.0).ok_or_else(|| {
        f.error(format!("{} is not a fraction of the limit; expected a number > 0 and <= 1, e.g. 0.8", f.shown()))
    })
}

/// A share of connections: a number from 0 to 1.
pub(super) fn share(f: &Located) -> Result<f64, Error> {
    let text = f.text("a number")?;
    text.parse::<f64>().ok().filter(|x| (0.0..=1.0).contains(x)).ok_or_else(|| {
        f.error(format!("{} is not a share of connections; expected a number from 0 to 1, e.g. 0.1", f.shown()))
    })
}

/// Whether an image reference starts with a registry host, the way Docker
/// tells: the first component has a `.` or `:` or is `localhost`.
pub(crate) fn names_registry(image: &str) -> bool {
    match image.split_once('/') {
        Some((first, _)) => first.contains('.') || first.contains(':') || first == "localhost",
        None => false,
    }
}

/// A duration setting's sane range, in seconds: below it nothing could
/// work (a check every 0 s), above it a typo is likelier than intent.
#[derive(Debug, Clone, Copy)]
pub(super) struct Range {
    pub(super) min: f64,
    pub(super) max: f64,
}

/// `run.startup_timeout` and a service's: a second to a day.
pub(super) const STARTUP: Range = Range { min: 1.0, max: 86_400.0 };
/// `run.reuse_ttl`: a second to 30 days.
pub(super) const REUSE_TTL: Range = Range { min: 1.0, max: 2_592_000.0 };
/// `run.reaper_grace`: none to an hour.
pub(super) const GRACE: Range = Range { min: 0.0, max: 3_600.0 };
/// `run.cache_ttl`: none (every idle cache goes) to a year.
pub(super) const CACHE_TTL: Range = Range { min: 0.0, max: 31_536_000.0 };
/// `run.remote_idle_ttl`: five seconds (a test's) to a week.
pub(super) const REMOTE_IDLE_TTL: Range = Range { min: 5.0, max: 604_800.0 };
/// `run.redis_lease_ttl`: a second (a test's) to a day.
pub(super) const REDIS_LEASE_TTL: Range = Range { min: 1.0, max: 86_400.0 };
/// `health_interval`: 10 ms to an hour.
pub(super) const HEALTH_INTERVAL: Range = Range { min: 0.01, max: 3_600.0 };
/// `health_timeout`: 10 ms to ten minutes.
pub(super) const HEALTH_TIMEOUT: Range = Range { min: 0.01, max: 600.0 };
/// `network_latency`, `network_jitter`: none to a minute.
pub(super) const NETWORK_DELAY: Range = Range { min: 0.0, max: 60.0 };

pub(super) fn seconds(f: &Located, range: Range) -> Result<Duration, Error> {
    let text = f.text("a number of seconds")?;
    let shown = |n: f64| if n.fract() == 0.0 { format!("{n:.0}") } else { n.to_string() };
    match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= range.min && secs <= range.max => Ok(Duration::from_secs_f64(secs)),
        Ok(secs) if secs.is_finite() => Err(f.error(format!(
            "{} seconds is out of range; expected from {} to {} seconds",
            f.shown(),
            shown(range.min),
            shown(range.max)
        ))),
        _ => Err(f.error(format!(
            "{} is not a number of seconds; expected a number from {} to {}, e.g. 90",
            f.shown(),
            shown(range.min),
            shown(range.max)
        ))),
    }
}

pub(super) fn switch(f: &Located) -> Result<bool, Error> {
    let bad =
        || f.error(format!("{} is not a switch; expected true or false (env: also 1/0, yes/no, on/off)", f.shown()));
    match &f.raw {
        Raw::Toml(toml::Value::Boolean(b)) => Ok(*b),
        Raw::Toml(_) => Err(bad()),
        Raw::Text(t) => match t.trim().to_ascii_lowercase().as_str() {
            "" | "0" | "false" | "no" | "off" => Ok(false),
            "1" | "true" | "yes" | "on" => Ok(true),
            _ => Err(bad()),
        },
    }
}

/// A cache layer's strategy: `lru`, `lfu`, `mru` or `ttl`.
pub(super) fn eviction(f: &Located) -> Result<crate::eviction::Eviction, Error> {
    let text = f.text("a strategy")?;
    crate::eviction::Eviction::parse(&text).ok_or_else(|| {
        f.error(format!(
            "{} is not an eviction strategy; expected one of: {}",
            f.shown(),
            crate::eviction::Eviction::NAMES.join(", ")
        ))
    })
}

/// Disk operations per second: an integer > 0.
pub(super) fn iops(f: &Located) -> Result<u64, Error> {
    let text = f.text("a number")?;
    text.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        f.error(format!("{} is not a number of operations per second; expected an integer > 0, e.g. 200", f.shown()))
    })
}

/// A count of cached things: 0 to 10000.
pub(super) fn count(f: &Located) -> Result<usize, Error> {
    let text = f.text("a count")?;
    text.parse::<usize>()
        .ok()
        .filter(|n| *n <= 10_000)
        .ok_or_else(|| f.error(format!("{} is not a count; expected an integer from 0 to 10000", f.shown())))
}

/// Bytes the way docker's `--memory` reads them: `512m`, `1g`, `512MiB`,
/// `1GB`; every unit is binary.
pub(crate) fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return None,
    };
    let bytes = number * factor as f64;
    (bytes >= 1.0 && bytes.is_finite() && bytes < u64::MAX as f64).then_some(bytes as u64)
}

pub(super) fn bytes(f: &Located) -> Result<u64, Error> {
    let text = f.text("a size")?;
    parse_bytes(&text).ok_or_else(|| {
        f.error(format!(
            "{} is not a size; expected bytes or a number with a unit k, m, g (or KiB, MiB, GiB), e.g. \"512MiB\"",
            f.shown()
        ))
    })
}
