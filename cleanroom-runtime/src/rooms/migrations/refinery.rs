//! refinery's layout and `refinery_schema_history`, as refinery 0.8–0.10
//! read and write them (refinery-core `util.rs`, `runner.rs`,
//! `traits/mod.rs`): `V<n>__<name>.sql` and `U<n>__<name>.sql` files found
//! through the directory's subdirectories too, applied by version, each in
//! a transaction with its row; the checksum is refinery's own SipHash-1-3 of
//! the name, the version and the SQL. Versions are refinery's default
//! `int4` (not its `int8-versions` feature).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use siphasher::sip::SipHasher13;

use super::{key, read_file, Migration, Record};

/// `refinery_schema_history` as refinery creates it.
pub(super) const HISTORY_TABLE: &str = "CREATE TABLE IF NOT EXISTS refinery_schema_history(
             version int4 PRIMARY KEY,
             name VARCHAR(255),
             applied_on VARCHAR(255),
             checksum VARCHAR(255));";

/// The version and name of a refinery migration file
/// (`^[UV](\d+(\.\d+)?)__(\w+)\.sql$`), or `None` when the name is not one.
/// The version is the text: a dotted one is refinery's error, not a skip.
pub(super) fn parse_name(file_name: &str) -> Option<(&str, &str)> {
    let rest = file_name.strip_prefix(['U', 'V'])?.strip_suffix(".sql")?;
    let (version, name) = rest.split_once("__")?;
    let mut parts = version.splitn(2, '.');
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    let version_ok = parts.next().is_some_and(digits) && parts.next().is_none_or(digits);
    let name_ok = !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_');
    (version_ok && name_ok).then_some((version, name))
}

/// The migrations under `dir`, by version.
pub(super) fn read(dir: &Path) -> Result<Vec<Migration>, String> {
    let mut files = Vec::new();
    walk(dir, &mut files)?;
    let mut out: Vec<(i32, Migration)> = Vec::new();
    for file in files {
        let file_name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let Some((version, name)) = parse_name(&file_name) else { continue };
        let version: i32 = version.parse().map_err(|_| {
            format!("{}: refinery expects an integer version that fits in int4 (e.g. V1__users.sql)", file.display())
        })?;
        if let Some((_, earlier)) = out.iter().find(|(v, _)| *v == version) {
            return Err(format!(
                "{} and {} have the same refinery version {version}; give each migration its own",
                earlier.file.display(),
                file.display()
            ));
        }
        let sql = read_file(&file)?;
        let name = name.to_string();
        let migration = Migration {
            key: key(dir, &file),
            transaction: true,
            record: Record::Refinery { version, checksum: checksum(&name, version, &sql), name },
            file,
            sql,
        };
        out.push((version, migration));
    }
    out.sort_by_key(|(version, _)| *version);
    Ok(out.into_iter().map(|(_, m)| m).collect())
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    for path in super::entries(dir)? {
        if path.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// refinery's checksum: SipHash-1-3 (keys 0) over the name, the version
/// and the SQL, each hashed as Rust's `Hash` does.
pub(super) fn checksum(name: &str, version: i32, sql: &str) -> u64 {
    let mut hasher = SipHasher13::new();
    name.hash(&mut hasher);
    version.hash(&mut hasher);
    sql.hash(&mut hasher);
    hasher.finish()
}

/// The row refinery writes, in the migration's transaction; `applied_on` is
/// RFC 3339 text in UTC, which refinery parses back.
pub(super) async fn record(
    db: &tokio_postgres::Client,
    version: i32,
    name: &str,
    checksum: u64,
) -> Result<(), tokio_postgres::Error> {
    db.execute(
        "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) \
         VALUES ($1, $2, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), $3)",
        &[&version, &name, &checksum.to_string()],
    )
    .await
    .map(drop)
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::super::tests::Dir;
        use super::super::super::Record;
        use super::super::{parse_name, read};

        #[test]
        fn recognise_refinery_names_only() {
            assert_eq!(parse_name("V1__initial.sql"), Some(("1", "initial")));
            assert_eq!(parse_name("U12__seed_data.sql"), Some(("12", "seed_data")));
            assert_eq!(parse_name("V1_initial.sql"), None);
            assert_eq!(parse_name("001_users.sql"), None);
            assert_eq!(parse_name("V1__in-itial.sql"), None);
            assert_eq!(parse_name("V1__initial.rs"), None);
        }

        #[test]
        fn read_migrations_in_subdirectories_by_version() {
            let dir = Dir::new(&[
                ("V2__posts.sql", "CREATE TABLE posts ();"),
                ("older/V1__users.sql", "CREATE TABLE users ();"),
                ("notes.md", "x"),
            ]);
            let migrations = read(dir.path()).unwrap();
            let keys: Vec<&str> = migrations.iter().map(|m| m.key.as_str()).collect();
            assert_eq!(keys, ["older/V1__users.sql", "V2__posts.sql"]);
            assert!(migrations.iter().all(|m| m.transaction));
            let Record::Refinery { version, name, .. } = &migrations[0].record else { panic!() };
            assert_eq!((*version, name.as_str()), (1, "users"));
        }

        #[test]
        fn reject_a_dotted_version() {
            let dir = Dir::new(&[("V1.5__users.sql", "x")]);
            assert!(read(dir.path()).unwrap_err().contains("integer version"));
        }
    }
}
