#[cleanroom::service]
fn web() -> cleanroom::GenericContainer {
    unimplemented!()
}

#[cleanroom::test(postgres(version = "15"))]
fn unknown_room_option() {}

#[cleanroom::test(web(shared))]
fn options_on_a_user_service() {}

#[cleanroom::test(redis(migrations = "migrations"))]
fn migrations_on_redis() {}

#[cleanroom::test(postgres(shared, init = "seed.sql"))]
fn shared_with_init() {}

#[cleanroom::test(postgres(migrations = 1, migrations = "a", migrations = "b"))]
fn migrations_not_a_string_and_twice() {}

fn main() {}
