//! Migrations as the tools Rust projects use lay them out and record them:
//! which files are migrations, in what order, whether each runs in a
//! transaction of its own, and the row each tool's history table gets, so
//! that the tool itself, run against a room, finds nothing to apply. Down
//! migrations are never read. docs/migrations.md has the rules.

mod diesel;
mod refinery;
mod sqlx;
mod statements;

use std::path::{Path, PathBuf};

use crate::catalog::MigrationTool;

pub(crate) use statements::failing_line;

/// How cleanroom writes the tools' history rows; part of every template's
/// hash, so that a change to it makes new templates instead of reusing
/// those the volume cache kept.
pub(crate) const HISTORY_FORMAT: u8 = 1;

/// One migration (or the init file), ready to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Migration {
    /// The file, for messages.
    pub(crate) file: PathBuf,
    /// Its path under the migrations directory: part of the template's hash.
    pub(crate) key: String,
    pub(crate) sql: String,
    /// Whether it runs in a transaction of its own, with its history row.
    pub(crate) transaction: bool,
    /// Its row in the tool's history table.
    pub(crate) record: Record,
}

/// A migration's row in its tool's history table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    /// Plain SQL and the init file: no history.
    None,
    /// A row of `_sqlx_migrations`.
    Sqlx { version: i64, description: String, checksum: Vec<u8> },
    /// A row of `refinery_schema_history`.
    Refinery { version: i32, name: String, checksum: u64 },
    /// A row of `__diesel_schema_migrations`.
    Diesel { version: String },
}

impl Migration {
    /// The init file, or a plain-SQL migration: run as written, no history.
    pub(crate) fn plain(file: PathBuf, key: String, sql: String) -> Migration {
        Migration { file, key, sql, transaction: false, record: Record::None }
    }

    /// Runs the migration and writes its history row, as its tool does.
    pub(crate) async fn apply(&self, db: &tokio_postgres::Client) -> Result<(), tokio_postgres::Error> {
        let started = std::time::Instant::now();
        if !self.transaction {
            db.batch_execute(&self.sql).await?;
            self.record(db).await?;
        } else {
            db.batch_execute("BEGIN").await?;
            let applied = async {
                db.batch_execute(&self.sql).await?;
                self.record(db).await
            }
            .await;
            match applied {
                Ok(()) => db.batch_execute("COMMIT").await?,
                Err(e) => {
                    let _ = db.batch_execute("ROLLBACK").await;
                    return Err(e);
                }
            }
        }
        if let Record::Sqlx { version, .. } = &self.record {
            sqlx::record_time(db, *version, started.elapsed()).await?;
        }
        Ok(())
    }

    async fn record(&self, db: &tokio_postgres::Client) -> Result<(), tokio_postgres::Error> {
        match &self.record {
            Record::None => Ok(()),
            Record::Sqlx { version, description, checksum } => sqlx::record(db, *version, description, checksum).await,
            Record::Refinery { version, name, checksum } => refinery::record(db, *version, name, *checksum).await,
            Record::Diesel { version } => diesel::record(db, version).await,
        }
    }
}

/// The history table `tool` keeps, as the tool creates it; `None` for plain SQL.
pub(crate) fn history_table(tool: MigrationTool) -> Option<&'static str> {
    match tool {
        MigrationTool::Sql => None,
        MigrationTool::Sqlx => Some(sqlx::HISTORY_TABLE),
        MigrationTool::Refinery => Some(refinery::HISTORY_TABLE),
        MigrationTool::Diesel => Some(diesel::HISTORY_TABLE),
    }
}

/// The migrations in `dir`, in the order they apply, as `tool` (or the
/// layout, when `None`) says. The error says what is wrong and how to fix it.
pub(crate) fn read(dir: &Path, tool: Option<MigrationTool>) -> Result<(MigrationTool, Vec<Migration>), String> {
    let tool = match tool {
        Some(tool) => tool,
        None => detect(dir)?,
    };
    let migrations = match tool {
        MigrationTool::Sql => plain(dir)?,
        MigrationTool::Sqlx => sqlx::read(dir)?,
        MigrationTool::Refinery => refinery::read(dir)?,
        MigrationTool::Diesel => diesel::read(dir)?,
    };
    Ok((tool, migrations))
}

/// The tool whose layout `dir` has, only where it is unambiguous:
/// reversible `.up.sql`/`.down.sql` files are sqlx's, `V<n>__name.sql`
/// refinery's, `<version>_<name>/up.sql` directories diesel's; anything else
/// (`001_users.sql`) is plain SQL. Two layouts at once is an error.
pub(crate) fn detect(dir: &Path) -> Result<MigrationTool, String> {
    let mut found: Vec<(MigrationTool, String)> = Vec::new();
    for entry in entries(dir)? {
        let name = entry.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tool = if entry.is_dir() {
            diesel::is_migration_dir(&entry).then_some(MigrationTool::Diesel)
        } else if name.ends_with(".up.sql") || name.ends_with(".down.sql") {
            Some(MigrationTool::Sqlx)
        } else if refinery::parse_name(&name).is_some() {
            Some(MigrationTool::Refinery)
        } else {
            None
        };
        if let Some(tool) = tool.filter(|t| !found.iter().any(|(f, _)| f == t)) {
            found.push((tool, name));
        }
    }
    match found.as_slice() {
        [] => Ok(MigrationTool::Sql),
        [(tool, _)] => Ok(*tool),
        [(a, a_file), (b, b_file), ..] => Err(format!(
            "{} has the layouts of two migration tools ({a_file} is {}'s, {b_file} is {}'s); name the one \
             it follows: postgres(migrations = …, tool = \"{}\"), or migrations_tool in cleanroom.toml",
            dir.display(),
            a.name(),
            b.name(),
            a.name()
        )),
    }
}

/// Plain SQL: every `.sql` file in the directory, in name order.
fn plain(dir: &Path) -> Result<Vec<Migration>, String> {
    let mut files: Vec<PathBuf> =
        entries(dir)?.into_iter().filter(|p| p.extension().is_some_and(|x| x == "sql") && p.is_file()).collect();
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let sql = read_file(&file)?;
            Ok(Migration::plain(file.clone(), key(dir, &file), sql))
        })
        .collect()
}

/// The entries of `dir`, unsorted.
fn entries(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read the directory {}: {e}", dir.display()))?;
    Ok(entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
}

fn read_file(file: &Path) -> Result<String, String> {
    std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))
}

/// `file`'s path under `dir`, with `/`.
fn key(dir: &Path, file: &Path) -> String {
    file.strip_prefix(dir).unwrap_or(file).to_string_lossy().replace('\\', "/")
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::{Path, PathBuf};

    /// A directory of files for one test, removed when dropped.
    pub(crate) struct Dir(pub(crate) PathBuf);

    impl Dir {
        pub(crate) fn new(files: &[(&str, &str)]) -> Dir {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let dir = std::env::temp_dir().join(format!("cleanroom-migrations-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            for (name, sql) in files {
                let path = dir.join(name);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, sql).unwrap();
            }
            std::fs::create_dir_all(&dir).unwrap();
            Dir(dir)
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    mod should {
        use super::super::{detect, read};
        use super::Dir;
        use crate::catalog::MigrationTool;

        #[test]
        fn detect_each_tool_only_from_its_own_layout() {
            let sqlx = Dir::new(&[("1_users.up.sql", "x"), ("1_users.down.sql", "x"), ("2_more.sql", "x")]);
            assert_eq!(detect(sqlx.path()), Ok(MigrationTool::Sqlx));
            let refinery = Dir::new(&[("V1__users.sql", "x"), ("V2__more.sql", "x")]);
            assert_eq!(detect(refinery.path()), Ok(MigrationTool::Refinery));
            let diesel =
                Dir::new(&[("2024-01-01-000000_users/up.sql", "x"), ("2024-01-01-000000_users/down.sql", "x")]);
            assert_eq!(detect(diesel.path()), Ok(MigrationTool::Diesel));
            let plain = Dir::new(&[("001_users.sql", "x"), ("002_more.sql", "x"), ("notes.txt", "x")]);
            assert_eq!(
                detect(plain.path()),
                Ok(MigrationTool::Sql),
                "NNN_name.sql is plain SQL unless a tool is named"
            );
        }

        #[test]
        fn refuse_to_guess_between_two_layouts() {
            let both = Dir::new(&[("V1__users.sql", "x"), ("2_more.up.sql", "x")]);
            let err = detect(both.path()).unwrap_err();
            assert!(err.contains("two migration tools") && err.contains("tool = \""), "{err}");
        }

        #[test]
        fn read_plain_sql_in_name_order_without_history() {
            let plain = Dir::new(&[("002_b.sql", "B"), ("001_a.sql", "A"), ("notes.txt", "x")]);
            let (tool, migrations) = read(plain.path(), None).unwrap();
            assert_eq!(tool, MigrationTool::Sql);
            let keys: Vec<&str> = migrations.iter().map(|m| m.key.as_str()).collect();
            assert_eq!(keys, ["001_a.sql", "002_b.sql"]);
            assert!(migrations.iter().all(|m| !m.transaction && m.record == super::super::Record::None));
        }

        #[test]
        fn follow_a_named_tool_over_the_layout() {
            let plain = Dir::new(&[("001_a.sql", "A")]);
            let (tool, migrations) = read(plain.path(), Some(MigrationTool::Sqlx)).unwrap();
            assert_eq!(tool, MigrationTool::Sqlx);
            assert!(matches!(migrations[0].record, super::super::Record::Sqlx { version: 1, .. }));
        }
    }
}
