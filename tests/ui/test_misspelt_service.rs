#[cleanroom::service]
fn web() -> cleanroom::GenericContainer {
    cleanroom::GenericContainer::new("cleanroom-offline/busybox:1.35")
}

#[cleanroom::test(postgress)]
fn misspelt_built_in() {}

#[cleanroom::test(wbe)]
fn misspelt_own_service() {}

#[cleanroom::test(redis)]
fn misspelt_parameter(rdis: cleanroom::Redis) {}

#[cleanroom::fixture]
fn client(postgre: cleanroom::Postgres) -> u32 {
    let _ = postgre;
    1
}

fn main() {}
