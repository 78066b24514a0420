#[cleanroom::fixture]
fn chicken(egg: u32) -> u32 {
    egg
}

#[cleanroom::fixture]
fn egg(chicken: u32) -> u32 {
    chicken
}

fn main() {}
