#[tokio::test]
#[cleanroom::test]
async fn stacked() {}

fn main() {}
