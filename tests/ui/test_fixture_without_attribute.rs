fn answer() -> u32 {
    42
}

#[cleanroom::test]
fn forgot_the_fixture_attribute(answer: u32) {}

fn main() {}
