// A path given in the attribute is checked when the test compiles, relative
// to the crate's directory: a missing migrations directory or init file is an
// error at its string, not a failure after Postgres started.

#[cleanroom::test(postgres(migrations = "no/such/migrations"))]
fn missing_migrations() {}

#[cleanroom::test(postgres(migrations = "/", init = "/no/such/seed.sql"))]
fn missing_init_file() {}

#[cleanroom::test(postgres(migrations = "/", tool = "flyway"))]
fn unknown_tool() {}

#[cleanroom::test(postgres(tool = "sqlx"))]
fn tool_without_migrations() {}

#[cleanroom::fixture(postgres(migrations = "no_such_dir"))]
fn db() -> u32 {
    1
}

#[cleanroom::fixture(postgres(shared))]
fn shared_db() -> u32 {
    1
}

fn main() {}
