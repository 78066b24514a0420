#[cleanroom::fixture]
fn client(missing: u32) -> u32 {
    missing
}

fn main() {}
