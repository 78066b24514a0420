//! The migration tools a Postgres room's migrations can follow, by name.

/// The migration tools whose layout and history table cleanroom follows
/// (docs/migrations.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MigrationTool {
    /// Plain `.sql` files applied in name order, no history table.
    Sql,
    /// sqlx: `<version>_<description>.sql` and `.up.sql`, `_sqlx_migrations`.
    Sqlx,
    /// refinery: `V<n>__<name>.sql` and `U<n>__<name>.sql`, `refinery_schema_history`.
    Refinery,
    /// diesel: `<version>_<name>/up.sql`, `__diesel_schema_migrations`.
    Diesel,
}

impl MigrationTool {
    /// Every tool, in the order messages list them.
    pub const ALL: [MigrationTool; 4] =
        [MigrationTool::Sqlx, MigrationTool::Refinery, MigrationTool::Diesel, MigrationTool::Sql];

    /// The tool as `tool = "…"` and `migrations_tool` name it.
    pub fn named(name: &str) -> Option<MigrationTool> {
        MigrationTool::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The tool's name: `sqlx`, `refinery`, `diesel`, `sql`.
    pub fn name(self) -> &'static str {
        match self {
            MigrationTool::Sql => "sql",
            MigrationTool::Sqlx => "sqlx",
            MigrationTool::Refinery => "refinery",
            MigrationTool::Diesel => "diesel",
        }
    }
}
