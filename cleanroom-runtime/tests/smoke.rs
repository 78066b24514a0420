use cleanroom_runtime::{GenericContainer, HealthCheck};

#[test]
fn seed_api_smoke() {
    let t = std::time::Instant::now();
    let web = cleanroom_runtime::environment()
        .get_or_create_container_blocking("web_seed", || {
            GenericContainer::new("cleanroom-offline/busybox:1.35")
                .with_cmd(["httpd", "-f", "-p", "8080", "-h", "/www"])
                .with_port(8080)
                .with_health_check(HealthCheck::http(8080, "/"))
        })
        .unwrap();
    eprintln!("web {:?} in {:?}", web, t.elapsed());
    let pg = cleanroom_runtime::environment().get_or_create_container_blocking("postgres", || unreachable!()).unwrap();
    eprintln!("pg {:?} in {:?}", pg, t.elapsed());
    let out = pg.exec_blocking(["sh", "-c", "echo hi; echo err >&2; exit 3"]).unwrap();
    eprintln!("{out:?}");
}
