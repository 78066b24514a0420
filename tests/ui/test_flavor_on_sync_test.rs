#[cleanroom::test(flavor = "multi_thread")]
fn synchronous() {}

fn main() {}
