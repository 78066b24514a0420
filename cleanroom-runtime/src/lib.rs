//! The runtime behind [cleanroom](https://docs.rs/cleanroom): the registry of
//! shared containers, their lifecycle, health checks and teardown.
//!
//! Users depend on the `cleanroom` crate, which re-exports what they need from
//! here; this crate's public items are documented for that re-export.
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms, unreachable_pub)]
#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// `Error` is the one public error type and carries what a user needs to fix a
// failure (service, image, the engine's words, the container's last log
// lines); boxing it would make every match on it clumsier for a few bytes.
#![allow(clippy::result_large_err)]

// Layers, bottom first; each imports only from those listed before it
// (ARCHITECTURE.md; rustfmt.toml keeps this order).
mod util;
mod lifecycle;
mod error;
mod engine;
mod metrics;
mod selection;
mod eviction;
mod proxy;
mod docker;
mod external;
mod local;
mod service;
mod config;
mod catalog;
mod health;
mod monitor;
mod cache;
mod builtin;
mod rooms;
mod run;
mod report;
mod harness;
mod environment;
mod process;
pub mod admin;

pub use builtin::{DEFAULT_POSTGRES_IMAGE, DEFAULT_REDIS_IMAGE};
pub use cache::{CACHE_LABEL, CACHE_SERVICE_LABEL};
pub use catalog::{MigrationTool, RoomOptions};
pub use config::Keep;
pub use config::{
    image_env_var, reference_tables, service_env_var, Config, EngineChoice, Layers, Origin, Overrides, RecoveryKind,
    ReportMode, ServiceOverride, Setting, CONFIG_ENV, CONFIG_FILE, DEFAULT_CACHE_SIZE, DEFAULT_CACHE_TTL, DEFAULT_POOL,
    DEFAULT_REAPER_GRACE, DEFAULT_REDIS_LEASE_TTL, DEFAULT_REMOTE_IDLE_TTL, DEFAULT_REUSE_TTL, SERVICE_SETTINGS,
    SETTINGS,
};
pub use config::{CachePolicies, LayerPolicy};
pub use docker::discovery::export_docker_host;
pub use docker::{
    PullPolicy, CREATOR_LABEL, DEFINITION_LABEL, HOST_LABEL, MANAGED_LABEL, OWNER_LABEL, PROCESS_LABEL, REUSE_LABEL,
    RUNTIME_LABEL, SERVICE_LABEL, SESSION_LABEL, TTL_LABEL,
};
pub use engine::ExecOutput;
pub use environment::{environment, Environment};
pub use error::{Error, Result};
pub use eviction::{Cap, Eviction};
pub use harness::current::{current, try_current, Current};
pub use lifecycle::{IllegalTransition, Lifecycle, State, Transition};
pub use metrics::{
    Alert, CacheCounter, Counters, Health, NetworkLimits, Performance, Phases, Resources, ServiceMetrics,
};
pub use proxy::NetworkConditions;
pub use service::definition::{GenericContainer, Mount, MountKind, RoomHooks, DEFAULT_STARTUP_TIMEOUT};
pub use service::handle::{Container, Network, Postgres, Redis};
pub use service::health::HealthCheck;
pub use service::watch::{LimitAction, Recovery, ServiceFailure};

/// The lifecycle of a service this process started, with its history.
pub fn lifecycle_of(service: &str) -> Option<Lifecycle> {
    run::registry::get().and_then(|r| r.lifecycle(service))
}

/// What this process measured about a service so far: start phases,
/// restarts, health, alerts and resource use.
pub fn metrics_of(service: &str) -> Option<ServiceMetrics> {
    metrics::snapshot().0.into_iter().find(|s| s.name == service)
}

/// Not public API: what the macros' expansions use, through the facade.
#[doc(hidden)]
pub mod __private {
    pub use crate::catalog::{MigrationTool, RoomOptions};
    pub use crate::harness::builtin::{postgres, redis};
    pub use crate::harness::process_fixture::{block_on_process, process_fixture, ProcessScoped, ProcessValue};
    pub use crate::harness::{
        run, Flavor, Node, NodeKind, Outcome, Registration, Resolve, Service, Share, ShareClone, ShareNone,
        TestContext, TestDesc,
    };
    pub use crate::service::definition::{GenericContainer, ServiceKind, ServiceSpec};
    pub use crate::service::handle::Container;
}
