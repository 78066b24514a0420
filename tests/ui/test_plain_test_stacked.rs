// `#[test]` above `#[cleanroom::test]` expands first and leaves no trace in
// the item this macro receives, so only the order below can be detected.
#[cleanroom::test]
#[test]
fn test_below() {}

fn main() {}
