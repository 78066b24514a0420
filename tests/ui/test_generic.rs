#[cleanroom::test]
fn generic<T: Default>() {}

#[cleanroom::test]
fn where_clause() where u32: Copy {}

fn main() {}
