//! sqlx's layout and `_sqlx_migrations`, as sqlx 0.7–0.9 read and write
//! them (sqlx-core `migrate/source.rs`, `migration.rs`; sqlx-postgres
//! `migrate.rs`): `<version>_<description>.sql` and `.up.sql` files (never
//! `.down.sql`), one transaction per migration unless its first line is
//! `-- no-transaction`, and a row whose checksum is the SHA-384 of the file.

use std::path::Path;

use sha2::{Digest, Sha384};

use super::{entries, key, read_file, Migration, Record};

/// `_sqlx_migrations` as sqlx creates it.
pub(super) const HISTORY_TABLE: &str = "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
    success BOOLEAN NOT NULL,
    checksum BYTEA NOT NULL,
    execution_time BIGINT NOT NULL
);";

/// The up migrations of `dir`, by version. As sqlx does: files whose name
/// has no `_` or does not end in `.sql` are ignored; a version that is not
/// an integer is an error.
pub(super) fn read(dir: &Path) -> Result<Vec<Migration>, String> {
    let mut out: Vec<(i64, Migration)> = Vec::new();
    for file in entries(dir)?.into_iter().filter(|p| p.is_file()) {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let Some((version, rest)) = name.split_once('_').filter(|(_, rest)| rest.ends_with(".sql")) else {
            continue;
        };
        let version: i64 = version.parse().map_err(|_| {
            format!("{}: sqlx expects an integer version before the first `_` (e.g. 0001_users.sql)", file.display())
        })?;
        let suffix = if rest.ends_with(".down.sql") {
            continue;
        } else if rest.ends_with(".up.sql") {
            ".up.sql"
        } else {
            ".sql"
        };
        let description = rest.trim_end_matches(suffix).replace('_', " ");
        let sql = read_file(&file)?;
        if let Some((_, earlier)) = out.iter().find(|(v, _)| *v == version) {
            return Err(format!(
                "{} and {} have the same sqlx version {version}; give each migration its own",
                earlier.file.display(),
                file.display()
            ));
        }
        let migration = Migration {
            key: key(dir, &file),
            transaction: !sql.starts_with("-- no-transaction"),
            record: Record::Sqlx { version, description, checksum: checksum(&sql) },
            file,
            sql,
        };
        out.push((version, migration));
    }
    out.sort_by_key(|(version, _)| *version);
    Ok(out.into_iter().map(|(_, m)| m).collect())
}

/// sqlx's checksum: the SHA-384 of the file's text.
pub(super) fn checksum(sql: &str) -> Vec<u8> {
    Sha384::digest(sql.as_bytes()).to_vec()
}

/// The row sqlx writes inside the migration's transaction: its execution
/// time is -1 until [`record_time`] sets it after the commit.
pub(super) async fn record(
    db: &tokio_postgres::Client,
    version: i64,
    description: &str,
    checksum: &[u8],
) -> Result<(), tokio_postgres::Error> {
    db.execute(
        "INSERT INTO _sqlx_migrations ( version, description, success, checksum, execution_time ) \
         VALUES ( $1, $2, TRUE, $3, -1 )",
        &[&version, &description, &checksum],
    )
    .await
    .map(drop)
}

/// The migration's execution time in nanoseconds, as sqlx records it.
pub(super) async fn record_time(
    db: &tokio_postgres::Client,
    version: i64,
    elapsed: std::time::Duration,
) -> Result<(), tokio_postgres::Error> {
    let nanos = elapsed.as_nanos() as i64;
    db.execute("UPDATE _sqlx_migrations SET execution_time = $1 WHERE version = $2", &[&nanos, &version])
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::super::tests::Dir;
        use super::super::super::Record;
        use super::super::{checksum, read};

        #[test]
        fn read_simple_and_up_migrations_by_version_never_down() {
            let dir = Dir::new(&[
                ("20240102_add_posts.up.sql", "CREATE TABLE posts ();"),
                ("20240102_add_posts.down.sql", "DROP TABLE posts;"),
                ("20240101_create_users.sql", "-- no-transaction\nCREATE TABLE users ();"),
                ("README.md", "not a migration"),
            ]);
            let migrations = read(dir.path()).unwrap();
            let keys: Vec<&str> = migrations.iter().map(|m| m.key.as_str()).collect();
            assert_eq!(keys, ["20240101_create_users.sql", "20240102_add_posts.up.sql"]);
            assert!(!migrations[0].transaction, "-- no-transaction is honoured");
            assert!(migrations[1].transaction);
            let Record::Sqlx { version, description, .. } = &migrations[1].record else { panic!() };
            assert_eq!((*version, description.as_str()), (20240102, "add posts"));
        }

        #[test]
        fn reject_a_version_that_is_not_an_integer() {
            let dir = Dir::new(&[("first_users.sql", "x")]);
            let err = read(dir.path()).unwrap_err();
            assert!(err.contains("first_users.sql") && err.contains("integer version"), "{err}");
        }

        #[test]
        fn checksum_the_file_as_sqlx_does() {
            // sha384("") and sha384("abc"), from FIPS 180-2's test vectors.
            let hex = |b: Vec<u8>| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
            assert!(hex(checksum("")).starts_with("38b060a751ac9638"));
            assert!(hex(checksum("abc")).starts_with("cb00753f45a35e8b"));
        }
    }
}
