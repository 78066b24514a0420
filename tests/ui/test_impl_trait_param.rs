#[cleanroom::fixture]
fn answer() -> u32 {
    42
}

#[cleanroom::test]
fn takes_impl_trait(answer: impl std::fmt::Display) {}

fn main() {}
