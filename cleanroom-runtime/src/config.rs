//! Settings read from the environment (the first slice of configuration; a
//! file and a command line come later and slot in below these).

use crate::error::Error;

/// The environment variable that overrides `service`'s image, e.g.
/// `CLEANROOM_POSTGRES_IMAGE`.
pub fn image_env_var(service: &str) -> String {
    format!("CLEANROOM_{}_IMAGE", env_key(service))
}

/// A service name as it appears inside environment variable names.
pub(crate) fn env_key(service: &str) -> String {
    service.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
}

/// Whether and when images are pulled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Pull images that are not on this machine (the default).
    #[default]
    Missing,
    /// Never pull: a missing image is an error at once.
    Never,
}

/// The settings cleanroom runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// `CLEANROOM_PULL`: `missing` (default) or `never`.
    pub pull: PullPolicy,
    /// `CLEANROOM_STARTUP_TIMEOUT`: seconds a service may take to be Ready,
    /// overriding definitions that do not set their own.
    pub startup_timeout: Option<std::time::Duration>,
    /// `CLEANROOM_REUSE`: keep services running after the run for the next one.
    pub reuse: bool,
    /// `CLEANROOM_REUSE_TTL`: seconds a reused service outlives the last run
    /// that used it (default 900).
    pub reuse_ttl: std::time::Duration,
}

/// How long reused services outlive the last run that used them, by default.
pub const DEFAULT_REUSE_TTL: std::time::Duration = std::time::Duration::from_secs(15 * 60);

fn seconds(get: &impl Fn(&str) -> Option<String>, key: &str) -> Result<Option<std::time::Duration>, Error> {
    match get(key) {
        None => Ok(None),
        Some(v) => match v.trim().parse::<f64>() {
            Ok(secs) if secs > 0.0 && secs.is_finite() => Ok(Some(std::time::Duration::from_secs_f64(secs))),
            _ => Err(Error::Configuration {
                key: key.into(),
                reason: format!("{v:?} is not a number of seconds greater than 0 (for example 90)"),
            }),
        },
    }
}

impl Config {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Config, Error> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    pub(crate) fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, Error> {
        let pull = match get("CLEANROOM_PULL").as_deref().map(str::trim) {
            None | Some("") | Some("missing") => PullPolicy::Missing,
            Some("never") => PullPolicy::Never,
            Some(other) => {
                return Err(Error::Configuration {
                    key: "CLEANROOM_PULL".into(),
                    reason: format!("{other:?} is not a pull policy; expected one of: missing, never"),
                })
            }
        };
        let startup_timeout = seconds(&get, "CLEANROOM_STARTUP_TIMEOUT")?;
        let reuse = match get("CLEANROOM_REUSE").as_deref().map(str::trim) {
            None | Some("") | Some("0") | Some("false") | Some("no") | Some("off") => false,
            Some("1") | Some("true") | Some("yes") | Some("on") => true,
            Some(other) => {
                return Err(Error::Configuration {
                    key: "CLEANROOM_REUSE".into(),
                    reason: format!("{other:?} is not a switch; expected 1 or 0 (true/false, yes/no, on/off)"),
                })
            }
        };
        let reuse_ttl = seconds(&get, "CLEANROOM_REUSE_TTL")?.unwrap_or(DEFAULT_REUSE_TTL);
        Ok(Config { pull, startup_timeout, reuse, reuse_ttl })
    }

    /// The image override for `service`, if its variable is set.
    pub fn image_override(service: &str) -> Option<String> {
        std::env::var(image_env_var(service)).ok().filter(|s| !s.trim().is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_variables_are_upper_snake_case() {
        assert_eq!(image_env_var("postgres"), "CLEANROOM_POSTGRES_IMAGE");
        assert_eq!(image_env_var("my-web"), "CLEANROOM_MY_WEB_IMAGE");
    }

    #[test]
    fn pull_policy_is_checked() {
        let cfg = Config::from_lookup(|_| None).unwrap();
        assert_eq!(cfg.pull, PullPolicy::Missing);
        let cfg = Config::from_lookup(|k| (k == "CLEANROOM_PULL").then(|| "never".to_string())).unwrap();
        assert_eq!(cfg.pull, PullPolicy::Never);
        let err = Config::from_lookup(|k| (k == "CLEANROOM_PULL").then(|| "sometimes".to_string())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid cleanroom configuration: CLEANROOM_PULL: \"sometimes\" is not a pull policy; expected one of: missing, never"
        );
    }

    #[test]
    fn reuse_is_a_switch_with_a_ttl() {
        let cfg = Config::from_lookup(|_| None).unwrap();
        assert!(!cfg.reuse);
        assert_eq!(cfg.reuse_ttl, DEFAULT_REUSE_TTL);
        let on = |k: &str| match k {
            "CLEANROOM_REUSE" => Some("1".to_string()),
            "CLEANROOM_REUSE_TTL" => Some("30".to_string()),
            _ => None,
        };
        let cfg = Config::from_lookup(on).unwrap();
        assert!(cfg.reuse);
        assert_eq!(cfg.reuse_ttl, std::time::Duration::from_secs(30));
        let err = Config::from_lookup(|k| (k == "CLEANROOM_REUSE").then(|| "maybe".to_string())).unwrap_err();
        assert!(err.to_string().contains("CLEANROOM_REUSE: \"maybe\" is not a switch"), "{err}");
    }

    #[test]
    fn startup_timeout_must_be_positive_seconds() {
        let get = |v: &'static str| move |k: &str| (k == "CLEANROOM_STARTUP_TIMEOUT").then(|| v.to_string());
        assert_eq!(Config::from_lookup(get("90")).unwrap().startup_timeout, Some(std::time::Duration::from_secs(90)));
        assert!(Config::from_lookup(get("-1")).is_err());
        assert!(Config::from_lookup(get("soon")).unwrap_err().to_string().contains("CLEANROOM_STARTUP_TIMEOUT"));
    }
}
