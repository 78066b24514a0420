//! What this test binary holds, as the macros registered it with
//! `inventory`: every `#[cleanroom::test]` (its services, fixtures and room
//! options) and every `#[cleanroom::service]`. Plain `const` data, read by the
//! run layer (which services to start) and the harness (what a test needs).

use crate::service::definition::ServiceSpec;
pub use crate::service::migration_tool::MigrationTool;

/// What a test asked of a service's room, from `#[cleanroom::test(...)]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomOptions {
    /// The service (`postgres`, `redis`).
    pub service: &'static str,
    /// `shared`: no room of its own, the server's main database.
    pub shared: bool,
    /// `migrations = "dir"`: the migrations, laid out as `tool` says.
    pub migrations: Option<&'static str>,
    /// `init = "file.sql"`: data loaded after the migrations.
    pub init: Option<&'static str>,
    /// `tool = "sqlx"`: the migration tool whose layout and history table
    /// the migrations follow; `None`: detected from the layout.
    pub tool: Option<MigrationTool>,
    /// The crate's manifest directory, which relative paths start from.
    pub base_dir: &'static str,
}

/// How the runtime that drives an async test is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// A synchronous test: no runtime unless an async fixture needs one.
    Sync,
    /// `#[tokio::test]`'s default: one thread, the test's own.
    CurrentThread,
    /// A multi-thread runtime with the given number of workers (`None`: one
    /// per core, as tokio does).
    MultiThread(Option<usize>),
}

/// What a node of the dependency graph is.
#[derive(Debug, Clone, Copy)]
pub enum NodeKind {
    /// A `#[cleanroom::fixture]` function.
    Fixture,
    /// A service: built in (`postgres`, `redis`) or `#[cleanroom::service]`.
    Service(&'static ServiceSpec),
}

/// One fixture or service and what it depends on, built in `const` context by
/// the macros so that the runtime can see, before any test runs, which
/// services a test needs through its fixtures.
#[derive(Debug, Clone, Copy)]
pub struct Node {
    /// The name the user wrote (`client`, `postgres`).
    pub name: &'static str,
    /// `module_path!()` where it was declared.
    pub module_path: &'static str,
    /// Fixture or service.
    pub kind: NodeKind,
    /// What it takes as parameters.
    pub deps: &'static [&'static Node],
    /// What a fixture asks of its services' rooms
    /// (`#[cleanroom::fixture(postgres(migrations = "…"))]`).
    pub rooms: &'static [RoomOptions],
}

impl Node {
    /// A fixture node.
    pub const fn fixture(name: &'static str, module_path: &'static str, deps: &'static [&'static Node]) -> Node {
        Node { name, module_path, kind: NodeKind::Fixture, deps, rooms: &[] }
    }

    /// The node, asking `rooms` of its services' rooms.
    pub const fn with_rooms(self, rooms: &'static [RoomOptions]) -> Node {
        Node { rooms, ..self }
    }

    /// A service node.
    pub const fn service(spec: &'static ServiceSpec) -> Node {
        Node { name: spec.name, module_path: spec.module_path, kind: NodeKind::Service(spec), deps: &[], rooms: &[] }
    }

    /// Every service this node needs, itself included, depth first.
    pub(crate) fn collect_services(&self, out: &mut Vec<&'static ServiceSpec>) {
        if let NodeKind::Service(spec) = self.kind {
            if !out.iter().any(|s| s.name == spec.name) {
                out.push(spec);
            }
        }
        for dep in self.deps {
            dep.collect_services(out);
        }
    }
}

/// A test as `#[cleanroom::test]` describes it.
#[derive(Debug)]
pub struct TestDesc {
    /// `module_path!()` of the test function.
    pub module_path: &'static str,
    /// The function's name.
    pub name: &'static str,
    /// Whether it carries `#[ignore]`.
    pub ignored: bool,
    /// How its runtime is built.
    pub flavor: Flavor,
    /// The services listed in the attribute, then the parameters' fixtures.
    pub needs: &'static [&'static Node],
    /// Options of the listed services' rooms (`postgres(migrations = "…")`).
    pub rooms: &'static [RoomOptions],
}

impl TestDesc {
    /// The name libtest and nextest know the test by: the module path without
    /// the crate name, then the function (`db::inserts_a_row`).
    pub fn test_name(&self) -> String {
        match self.module_path.split_once("::") {
            Some((_, rest)) => format!("{rest}::{}", self.name),
            None => self.name.to_string(),
        }
    }

    /// Whether `name` is [`TestDesc::test_name`], without making that name:
    /// a start compares every registered test with the one nextest names.
    pub(crate) fn is_named(&self, name: &str) -> bool {
        match self.module_path.split_once("::") {
            Some((_, rest)) => {
                name.strip_prefix(rest).and_then(|n| n.strip_prefix("::")).is_some_and(|n| n == self.name)
            }
            None => name == self.name,
        }
    }

    /// What the attribute asked of `service`'s room, if anything.
    pub(crate) fn room_options(&self, service: &str) -> Option<&'static RoomOptions> {
        self.rooms.iter().find(|o| o.service == service)
    }

    /// What the test's fixtures, through each other too, ask of `service`'s
    /// room: each fixture that asks, with what it asks, once.
    pub(crate) fn fixture_room_options(&self, service: &str) -> Vec<(&'static Node, &'static RoomOptions)> {
        fn walk(node: &'static Node, service: &str, out: &mut Vec<(&'static Node, &'static RoomOptions)>) {
            if let Some(o) = node.rooms.iter().find(|o| o.service == service) {
                if !out.iter().any(|(n, _)| std::ptr::eq(*n, node)) {
                    out.push((node, o));
                }
            }
            for dep in node.deps {
                walk(dep, service, out);
            }
        }
        let mut out = Vec::new();
        for node in self.needs {
            walk(node, service, &mut out);
        }
        out
    }

    /// Every service the test needs, through its fixtures too.
    pub fn services(&self) -> Vec<&'static ServiceSpec> {
        let mut out = Vec::new();
        for node in self.needs {
            node.collect_services(&mut out);
        }
        out
    }
}

/// What the macros submit to `inventory`.
#[derive(Debug)]
pub enum Registration {
    /// A `#[cleanroom::test]`.
    Test(&'static TestDesc),
    /// A `#[cleanroom::service]`.
    Service(&'static ServiceSpec),
}

inventory::collect!(Registration);

/// Every test registered in this binary.
pub(crate) fn registered_tests() -> impl Iterator<Item = &'static TestDesc> {
    inventory::iter::<Registration>.into_iter().filter_map(|r| match r {
        Registration::Test(t) => Some(*t),
        Registration::Service(_) => None,
    })
}

/// Every `#[cleanroom::service]` registered in this binary.
pub(crate) fn registered_services() -> impl Iterator<Item = &'static ServiceSpec> {
    inventory::iter::<Registration>.into_iter().filter_map(|r| match r {
        Registration::Service(s) => Some(*s),
        Registration::Test(_) => None,
    })
}
