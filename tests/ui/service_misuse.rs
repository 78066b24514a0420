#[cleanroom::service]
async fn asynchronous() -> cleanroom::GenericContainer {
    unimplemented!()
}

#[cleanroom::service]
fn with_parameters(port: u16) -> cleanroom::GenericContainer {
    unimplemented!()
}

#[cleanroom::service]
fn generic<T>() -> cleanroom::GenericContainer {
    unimplemented!()
}

#[cleanroom::service]
fn no_return_type() {}

#[cleanroom::service]
fn redis() -> cleanroom::GenericContainer {
    unimplemented!()
}

#[cleanroom::service(image = "nginx")]
fn with_arguments() -> cleanroom::GenericContainer {
    unimplemented!()
}

fn main() {}
