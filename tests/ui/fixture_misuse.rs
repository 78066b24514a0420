#[cleanroom::fixture]
fn generic<T: Default>() -> T {
    T::default()
}

#[cleanroom::fixture]
fn returns_impl_trait() -> impl std::fmt::Display {
    42
}

#[cleanroom::fixture]
fn takes_impl_trait(value: impl Clone) -> u32 {
    42
}

#[cleanroom::fixture]
fn unnamed((a, b): (u32, u32)) -> u32 {
    a + b
}

#[cleanroom::fixture(scope = "run")]
fn with_arguments() -> u32 {
    42
}

#[cleanroom::fixture]
fn postgres() -> u32 {
    42
}

fn main() {}
