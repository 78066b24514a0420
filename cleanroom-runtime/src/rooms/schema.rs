//! What a test's Postgres room is cloned from, decided when the test asks
//! for it: the test's attribute (`postgres(migrations = …)`), else what its
//! fixtures' attributes ask, else `[services.postgres]` of `cleanroom.toml`,
//! else an empty database. Two different demands are an error naming both,
//! never silently one of them. Relative paths of the attributes start from
//! the crate's directory as this process sees it (see
//! [`crate::util::paths::crate_dir`]), so a nextest archive run elsewhere
//! finds them.

use std::path::PathBuf;

use crate::catalog::{MigrationTool, RoomOptions, TestDesc};
use crate::error::Error;
use crate::util::paths::crate_dir;

/// The schema of a template: migrations, their tool, the init file.
#[derive(Debug, Clone)]
pub(crate) struct Schema {
    pub(crate) migrations: Option<PathBuf>,
    pub(crate) init: Option<PathBuf>,
    pub(crate) tool: Option<MigrationTool>,
    /// Who asked for it, for messages: "the attribute of `t`", "fixture `db`".
    pub(crate) by: String,
    /// Where its relative paths start, for messages.
    pub(crate) relative_to: String,
}

impl Schema {
    /// What `options` ask (`None`: no schema, e.g. `postgres(shared)`).
    pub(crate) fn of(options: &RoomOptions, by: String) -> Option<Schema> {
        if options.migrations.is_none() && options.init.is_none() {
            return None;
        }
        let base = crate_dir(options.base_dir);
        Some(Schema {
            migrations: options.migrations.map(|m| base.join(m)),
            init: options.init.map(|i| base.join(i)),
            tool: options.tool,
            by,
            relative_to: format!("relative paths start from the crate's directory, {}", base.display()),
        })
    }

    /// Whether two demands ask for the same template.
    pub(crate) fn same_as(&self, other: &Schema) -> bool {
        (&self.migrations, &self.init, self.tool) == (&other.migrations, &other.init, other.tool)
    }

    /// How messages show it: `migrations = "/abs/migrations" (tool sqlx)`.
    fn shown(&self) -> String {
        let mut parts = Vec::new();
        if let Some(m) = &self.migrations {
            parts.push(format!("migrations = {:?}", m.display().to_string()));
        }
        if let Some(t) = self.tool {
            parts.push(format!("tool = {:?}", t.name()));
        }
        if let Some(i) = &self.init {
            parts.push(format!("init = {:?}", i.display().to_string()));
        }
        format!("{} ({})", self.by, parts.join(", "))
    }
}

/// What a test asks of a service's room.
#[derive(Debug, Clone)]
pub(crate) enum Demand {
    /// `shared`: no room, the server's main database.
    Shared,
    /// A room of its own, cloned from this schema (`None`: an empty database).
    Room(Option<Schema>),
}

/// What `desc` asks of `service`'s room: see the module's doc.
pub(crate) fn demand(desc: &TestDesc, service: &str) -> Result<Demand, Error> {
    let own = desc.room_options(service);
    let mut asked: Vec<Schema> = Vec::new();
    if let Some(schema) = own.and_then(|o| Schema::of(o, format!("the attribute of `{}`", desc.name))) {
        asked.push(schema);
    }
    for (node, options) in desc.fixture_room_options(service) {
        if let Some(schema) = Schema::of(options, format!("fixture `{}`", node.name)) {
            if !asked.iter().any(|a| a.same_as(&schema)) {
                asked.push(schema);
            }
        }
    }
    let conflict = |first: String, second: String| Error::Configuration {
        key: format!("{service} room of test `{}`", desc.test_name()),
        reason: format!(
            "two different schemas are asked for: {first} and {second}; a test has one database: make them \
             the same, or give the test its own in its attribute and drop the fixture's"
        ),
    };
    if own.is_some_and(|o| o.shared) {
        return match asked.first() {
            Some(schema) => Err(conflict(format!("the attribute of `{}` (shared)", desc.name), schema.shown())),
            None => Ok(Demand::Shared),
        };
    }
    match asked.as_slice() {
        [] => default_schema(service).map(Demand::Room),
        [one] => Ok(Demand::Room(Some(one.clone()))),
        [first, second, ..] => Err(conflict(first.shown(), second.shown())),
    }
}

/// The schema `cleanroom.toml` (or its variables) gives `service`'s rooms.
fn default_schema(service: &str) -> Result<Option<Schema>, Error> {
    let Some(setting) = crate::config::layers()?.schema(service)? else { return Ok(None) };
    Ok(Some(Schema {
        migrations: setting.migrations,
        init: setting.init,
        tool: setting.tool,
        by: setting.origin,
        relative_to: setting.relative_to,
    }))
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::{demand, Demand};
        use crate::catalog::{MigrationTool, Node, RoomOptions, TestDesc};

        const fn options(migrations: &'static str, tool: Option<MigrationTool>, shared: bool) -> RoomOptions {
            RoomOptions {
                service: "postgres",
                shared,
                migrations: Some(migrations),
                init: None,
                tool,
                base_dir: "/crate",
            }
        }

        static SQLX: [RoomOptions; 1] = [options("migrations", Some(MigrationTool::Sqlx), false)];
        static OTHER: [RoomOptions; 1] = [options("other", None, false)];
        static DB: Node = Node::fixture("db", "m", &[]).with_rooms(&SQLX);
        static DB_TOO: Node = Node::fixture("db_too", "m", &[&DB]).with_rooms(&SQLX);
        static ELSEWHERE: Node = Node::fixture("elsewhere", "m", &[]).with_rooms(&OTHER);
        static NEEDS_DB: [&Node; 1] = [&DB];
        static NEEDS_DB_TOO: [&Node; 1] = [&DB_TOO];
        static NEEDS_BOTH: [&Node; 2] = [&DB, &ELSEWHERE];

        fn desc(needs: &'static [&'static Node], rooms: &'static [RoomOptions]) -> TestDesc {
            TestDesc {
                module_path: "c::m",
                name: "t",
                ignored: false,
                flavor: crate::catalog::Flavor::Sync,
                needs,
                rooms,
            }
        }

        #[test]
        fn take_a_fixtures_schema_for_a_test_that_names_none() {
            let Demand::Room(Some(schema)) = demand(&desc(&NEEDS_DB_TOO, &[]), "postgres").unwrap() else { panic!() };
            assert!(schema.migrations.unwrap().ends_with("migrations"));
            assert_eq!(schema.tool, Some(MigrationTool::Sqlx));
            assert_eq!(schema.by, "fixture `db_too`", "the same demand twice is one");
        }

        #[test]
        fn name_both_of_two_different_demands() {
            let err = demand(&desc(&NEEDS_BOTH, &[]), "postgres").unwrap_err().to_string();
            assert!(err.contains("fixture `db`") && err.contains("fixture `elsewhere`"), "{err}");
            static OWN: [RoomOptions; 1] = [options("own", None, false)];
            let err = demand(&desc(&NEEDS_DB, &OWN), "postgres").unwrap_err().to_string();
            assert!(err.contains("the attribute of `t`") && err.contains("fixture `db`"), "{err}");
        }

        #[test]
        fn accept_an_attribute_that_asks_what_the_fixture_asks() {
            assert!(matches!(demand(&desc(&NEEDS_DB, &SQLX), "postgres").unwrap(), Demand::Room(Some(_))));
        }

        #[test]
        fn refuse_shared_with_a_fixture_that_needs_a_schema() {
            static SHARED: [RoomOptions; 1] = [RoomOptions {
                service: "postgres",
                shared: true,
                migrations: None,
                init: None,
                tool: None,
                base_dir: "/c",
            }];
            assert!(matches!(demand(&desc(&[], &SHARED), "postgres").unwrap(), Demand::Shared));
            let err = demand(&desc(&NEEDS_DB, &SHARED), "postgres").unwrap_err().to_string();
            assert!(err.contains("shared") && err.contains("fixture `db`"), "{err}");
        }
    }
}
