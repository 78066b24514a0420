#[cleanroom::test(postgres, redis, postgres)]
fn listed_twice() {}

#[cleanroom::test(flavor = "multi_thread", flavor = "current_thread")]
async fn flavor_twice() {}

fn main() {}
