//! Tests that `nextest_archive.rs` archives with `cargo nextest archive` and
//! runs from the archive elsewhere (`--workspace-remap`), two partitions at
//! once: each must find its migrations and `cleanroom.toml` under the
//! remapped workspace, not where the binary was built. Ignored otherwise.

use cleanroom::Postgres;

async fn assert_table_and_print_session(postgres: &Postgres, table: &str) {
    let (db, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let found: bool = db.query_one("SELECT to_regclass($1) IS NOT NULL", &[&table]).await.unwrap().get(0);
    assert!(found, "table {table} of the remapped workspace is missing");
    let session = cleanroom_tests::docker(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"cleanroom.session\"}}",
        postgres.container().id(),
    ]);
    println!("REMAPPED_SESSION={}", session.trim());
}

#[cleanroom::test(postgres(migrations = "fixtures/remapped"))]
#[ignore = "run from a nextest archive by nextest_archive.rs"]
async fn finds_the_attributes_migrations_in_the_remapped_workspace(postgres: Postgres) {
    assert_table_and_print_session(&postgres, "found_in_the_remapped_workspace").await;
}

#[cleanroom::test(postgres)]
#[ignore = "run from a nextest archive by nextest_archive.rs"]
async fn finds_cleanroom_toml_in_the_remapped_workspace(postgres: Postgres) {
    assert_table_and_print_session(&postgres, "declared_in_the_remapped_cleanroom_toml").await;
}
