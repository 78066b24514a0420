#[cleanroom::test]
struct NotAFunction;

fn main() {}
