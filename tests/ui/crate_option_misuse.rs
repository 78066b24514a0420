#[cleanroom::test(crate = cleanroom)]
fn not_a_string() {}

#[cleanroom::fixture(crate = "not a path")]
fn not_a_path() -> u32 {
    1
}

#[cleanroom::service(crate = "cleanroom", crate = "cleanroom")]
fn twice() -> cleanroom::GenericContainer {
    cleanroom::GenericContainer::new("cleanroom-offline/busybox:1.35")
}

fn main() {}
