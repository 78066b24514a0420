#[cleanroom::fixture]
fn client() -> u32 {
    42
}

#[cleanroom::test(client)]
fn fixture_in_the_attribute(client: u32) {}

fn main() {}
