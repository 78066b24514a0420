//! Settings, in layers: defaults < `cleanroom.toml` < environment
//! (`CLEANROOM_*`) < command line (the `cleanroom` CLI sets the environment of
//! the `cargo test` it runs, so its flags beat the user's environment).
//!
//! Every setting is listed once, in [`SETTINGS`] and [`SERVICE_SETTINGS`];
//! `docs/configuration.md` is generated from those tables and a test keeps it
//! so. A key that is not in them, or a value a setting does not accept, is an
//! error that names the file (or variable), the key and what is allowed: the
//! run does not start with a typo silently ignored.

mod layers;
mod overrides;
mod parse;
mod settings;

pub use layers::*;
pub use overrides::*;
pub(crate) use parse::*;
pub use settings::*;

#[cfg(test)]
mod tests;
