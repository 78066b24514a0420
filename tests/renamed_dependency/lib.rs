//! Nothing: this crate exists for its test, tests/renamed_dependency.rs.
