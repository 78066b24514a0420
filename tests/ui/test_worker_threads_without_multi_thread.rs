#[cleanroom::test(worker_threads = 2)]
async fn no_flavor() {}

#[cleanroom::test(flavor = "current_thread", worker_threads = 2)]
async fn current_thread() {}

#[cleanroom::test(flavor = "multi_thread", worker_threads = 0)]
async fn zero_workers() {}

fn main() {}
