//! A process-scoped fixture that takes a per-test fixture, a service's
//! handle, or a user's service would hand one test's room to every test.

#[cleanroom::fixture]
fn per_test() -> u32 {
    1
}

#[cleanroom::service]
fn web() -> cleanroom::GenericContainer {
    cleanroom::GenericContainer::new("cleanroom-offline/busybox:1.35")
}

#[cleanroom::fixture(scope = "process")]
fn takes_a_per_test_fixture(per_test: u32) -> u32 {
    per_test
}

#[cleanroom::fixture(scope = "process")]
async fn takes_a_users_service(web: cleanroom::Container) -> String {
    web.name().to_string()
}

#[cleanroom::fixture(scope = "process")]
async fn takes_postgres(postgres: cleanroom::Postgres) -> String {
    postgres.url()
}

fn main() {}
