#[cleanroom::test]
fn tuple_pattern((a, b): (u32, u32)) {}

#[cleanroom::test]
fn wildcard(_: u32) {}

struct Suite;

impl Suite {
    #[cleanroom::test]
    fn method(&self) {}
}

fn main() {}
