#[cleanroom::test]
fn unknown(missing: u32) {}

#[cleanroom::test]
fn unknown_from(#[from(nowhere)] value: u32) {}

fn main() {}
