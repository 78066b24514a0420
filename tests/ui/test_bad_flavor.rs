#[cleanroom::test(flavor = "threaded")]
async fn unknown_flavor() {}

#[cleanroom::test(flavor = multi_thread)]
async fn not_a_string() {}

#[cleanroom::test(multi_thread)]
async fn bare_flavor_name() {}

fn main() {}
