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
fn unknown_scope() -> u32 {
    42
}

#[cleanroom::fixture(image = "x", scope = "process", scope = "test")]
fn unknown_option_and_scope_twice() -> u32 {
    42
}

#[cleanroom::fixture]
fn postgres() -> u32 {
    42
}

fn main() {}
