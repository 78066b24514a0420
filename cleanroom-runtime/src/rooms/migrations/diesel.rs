//! diesel's layout and `__diesel_schema_migrations`, as diesel 2
//! (diesel_migrations, migrations_internals) reads and writes them: one
//! directory per migration, `<version>_<name>/up.sql` (never `down.sql`),
//! whose version is the name up to the first `_` without its `-`s; applied
//! by version, each in a transaction with its row unless its
//! `metadata.toml` says `run_in_transaction = false`.

use std::path::Path;

use super::{entries, key, read_file, Migration, Record};

/// `__diesel_schema_migrations` as diesel creates it.
pub(super) const HISTORY_TABLE: &str = "CREATE TABLE IF NOT EXISTS __diesel_schema_migrations (
       version VARCHAR(50) PRIMARY KEY NOT NULL,
       run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);";

/// Whether `dir` is a diesel migration: not hidden, with an `up.sql`.
pub(super) fn is_migration_dir(dir: &Path) -> bool {
    let hidden = dir.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
    !hidden && dir.join("up.sql").is_file()
}

/// diesel's version of a migration directory's name: `2024-01-01-000000_users` → `20240101000000`.
pub(super) fn version(dir_name: &str) -> String {
    dir_name.split('_').next().unwrap_or_default().replace('-', "")
}

/// The migrations of `dir`, by version. As diesel does: files and hidden
/// directories are skipped; a directory without `up.sql` (and not empty)
/// and an empty `up.sql` are errors.
pub(super) fn read(dir: &Path) -> Result<Vec<Migration>, String> {
    let mut out: Vec<(String, Migration)> = Vec::new();
    for path in entries(dir)?.into_iter().filter(|p| p.is_dir()) {
        let dir_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if dir_name.starts_with('.') || entries(&path)?.is_empty() {
            continue;
        }
        let up = path.join("up.sql");
        if !up.is_file() {
            return Err(format!(
                "{} is not a diesel migration: it has no up.sql; add one, or move the directory out",
                path.display()
            ));
        }
        let sql = read_file(&up)?;
        if sql.is_empty() {
            return Err(format!("{} is empty, which diesel refuses to run; write the migration", up.display()));
        }
        let version = version(&dir_name);
        if let Some((_, earlier)) = out.iter().find(|(v, _)| *v == version) {
            return Err(format!(
                "{} and {} have the same diesel version {version}; give each migration its own",
                earlier.file.display(),
                up.display()
            ));
        }
        let migration = Migration {
            key: key(dir, &up),
            transaction: run_in_transaction(&path)?,
            record: Record::Diesel { version: version.clone() },
            file: up,
            sql,
        };
        out.push((version, migration));
    }
    out.sort_by(|(a, _), (b, _)| a.cmp(b));
    Ok(out.into_iter().map(|(_, m)| m).collect())
}

/// `run_in_transaction` of the migration's `metadata.toml`: true without the
/// file; diesel's default of the key when the file does not set it is false.
fn run_in_transaction(dir: &Path) -> Result<bool, String> {
    let file = dir.join("metadata.toml");
    if !file.is_file() {
        return Ok(true);
    }
    let table: toml::Table =
        read_file(&file)?.parse().map_err(|e| format!("{}: not TOML diesel can read: {e}", file.display()))?;
    match table.get("run_in_transaction") {
        None => Ok(false),
        Some(toml::Value::Boolean(b)) => Ok(*b),
        Some(other) => Err(format!("{}: run_in_transaction = {other} is not true or false", file.display())),
    }
}

/// The row diesel writes, in the migration's transaction.
pub(super) async fn record(db: &tokio_postgres::Client, version: &str) -> Result<(), tokio_postgres::Error> {
    db.execute("INSERT INTO __diesel_schema_migrations (version) VALUES ($1)", &[&version]).await.map(drop)
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::super::tests::Dir;
        use super::super::super::Record;
        use super::super::{read, version};

        #[test]
        fn take_the_version_as_diesel_does() {
            assert_eq!(version("2024-01-01-000000_create_users"), "20240101000000");
            assert_eq!(version("20240101000000_create_users"), "20240101000000");
        }

        #[test]
        fn read_up_migrations_by_version_never_down() {
            let dir = Dir::new(&[
                ("2024-02-01-000000_posts/up.sql", "CREATE TABLE posts ();"),
                ("2024-02-01-000000_posts/down.sql", "DROP TABLE posts;"),
                ("2024-01-01-000000_users/up.sql", "CREATE INDEX CONCURRENTLY i ON t (c);"),
                ("2024-01-01-000000_users/metadata.toml", "run_in_transaction = false"),
                (".hidden/up.sql", "x"),
                ("README.md", "x"),
            ]);
            let migrations = read(dir.path()).unwrap();
            let keys: Vec<&str> = migrations.iter().map(|m| m.key.as_str()).collect();
            assert_eq!(keys, ["2024-01-01-000000_users/up.sql", "2024-02-01-000000_posts/up.sql"]);
            assert!(!migrations[0].transaction && migrations[1].transaction);
            assert_eq!(migrations[1].record, Record::Diesel { version: "20240201000000".into() });
        }

        #[test]
        fn reject_a_directory_without_up_sql() {
            let dir = Dir::new(&[("2024-01-01-000000_users/down.sql", "x")]);
            assert!(read(dir.path()).unwrap_err().contains("has no up.sql"));
        }
    }
}
