//! The example application: nothing here; its tests are in signup.rs.
