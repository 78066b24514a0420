#[cleanroom::test(timeout = 30)]
fn with_a_key_value() {}

#[cleanroom::test(postgres::version)]
fn with_a_path() {}


#[cleanroom::test(flavor("multi_thread"))]
async fn with_flavor_as_a_list() {}

fn main() {}
