#[cleanroom::fixture]
fn answer() -> u32 {
    42
}

#[cleanroom::test]
fn bare(#[from] a: u32) {}

#[cleanroom::test]
fn two_names(#[from(answer, other)] a: u32) {}

#[cleanroom::test]
fn twice(#[from(answer)] #[from(answer)] a: u32) {}

fn main() {}
