//! Every misuse of the attributes fails to compile with a message that says
//! what is wrong, at the token that is wrong. Refresh the expected output with
//! `TRYBUILD=overwrite cargo test -p cleanroom-tests --test ui`, then read it.

#[test]
fn ui() {
    trybuild::TestCases::new().compile_fail("ui/*.rs");
}
