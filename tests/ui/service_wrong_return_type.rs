#[cleanroom::service]
fn web() -> &'static str {
    "nginx"
}

fn main() {}
