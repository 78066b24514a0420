#[cleanroom::test]
fn by_name(postgres: cleanroom::Postgres) {}

#[cleanroom::test(postgres)]
fn by_from(#[from(redis)] cache: cleanroom::Redis) {}

fn main() {}
