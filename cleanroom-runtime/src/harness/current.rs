//! `cleanroom::current()`: the running test's handles, for helpers that take
//! no parameters (an application's `spawn_app()`).

use std::sync::Arc;

use super::scope::{self, TestScope};
use crate::builtin::{POSTGRES, REDIS};
use crate::rooms::RoomName;
use crate::service::definition::ServiceSpec;
use crate::service::handle::{Container, Postgres, Redis};

/// The test running on this thread: its services, with the same rooms its
/// parameters get.
///
/// Get it with [`current`]. It is cheap to clone and `Send`: to use the
/// test's handles on a `std::thread` of your own, get them on the test's
/// thread and move them in.
#[derive(Clone)]
pub struct Current {
    scope: Arc<TestScope>,
}

impl std::fmt::Debug for Current {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Current").field("test", &self.test_name()).finish()
    }
}

/// The test running on this thread.
///
/// Works on the test's own thread (sync and async tests), in tasks spawned
/// on the test's runtime (`tokio::spawn`, any flavor), in `spawn_blocking`
/// and `block_in_place`, and in the test's fixtures. The handles are the
/// ones the test's parameters get: the same Postgres database, the same
/// Redis logical database.
///
/// ```no_run
/// /// An application's helper, unchanged but for where the URL comes from;
/// /// called from a `#[cleanroom::test(postgres)]`.
/// async fn spawn_app() -> String {
///     let postgres = cleanroom_runtime::current().postgres();
///     postgres.url() // hand it to the app's own configuration
/// }
/// ```
///
/// # Panics
/// Outside a cleanroom test, on a thread the test's runtime did not start
/// (a `std::thread::spawn` of the test's, another runtime's tasks), and in
/// a process-scoped fixture (which outlives every test). The message names
/// the test when it can tell which one, and the fix. [`try_current`] returns
/// `None` instead.
#[track_caller]
pub fn current() -> Current {
    match try_current() {
        Some(current) => current,
        None => panic!("{}", outside_message()),
    }
}

/// The test running on this thread, or `None` outside a cleanroom test:
/// [`current`] for helpers that also run outside tests.
pub fn try_current() -> Option<Current> {
    scope::current().map(|scope| Current { scope })
}

fn outside_message() -> String {
    let running = scope::running_tests();
    let which = match running.as_slice() {
        [] => "no cleanroom test is running in this process".to_string(),
        [one] => format!("this thread is not one of test `{one}`'s"),
        many => format!("this thread belongs to none of the running tests ({})", many.join(", ")),
    };
    format!(
        "cleanroom::current() called outside a cleanroom test: {which}. It works on the test's own thread, in tasks \
         spawned on the test's runtime (tokio::spawn, spawn_blocking) and in its fixtures; for a std::thread you \
         spawn, or another runtime, call cleanroom::current() (or take the handle as a parameter) on the test's \
         thread and move the handle in"
    )
}

impl Current {
    /// The test's name as libtest knows it (`db::inserts_a_row`).
    pub fn test_name(&self) -> String {
        self.scope.desc().test_name()
    }

    /// The test's Postgres handle: its own database, or the server's main
    /// one with `postgres(shared)`; the same one its parameters get.
    ///
    /// # Panics
    /// If the test does not declare `postgres` (in its attribute or through
    /// a fixture). Nothing is started then.
    #[track_caller]
    pub fn postgres(&self) -> Postgres {
        let (container, room) = self.service_of(&POSTGRES);
        postgres_handle(container, room)
    }

    /// The test's Redis handle: its own logical database, or 0 with
    /// `redis(shared)`; the same one its parameters get.
    ///
    /// # Panics
    /// If the test does not declare `redis`. Nothing is started then.
    #[track_caller]
    pub fn redis(&self) -> Redis {
        let (container, room) = self.service_of(&REDIS);
        redis_handle(container, room)
    }

    /// The test's handle of the service `name` (a `#[cleanroom::service]`,
    /// or a built-in's container), with its room when the service has rooms.
    ///
    /// # Panics
    /// If the test does not declare `name`. Nothing is started then.
    #[track_caller]
    pub fn service(&self, name: &str) -> Container {
        let declared = self.scope.desc().services();
        match declared.iter().find(|spec| spec.name == name) {
            Some(spec) => self.service_of(spec).0,
            None => panic!("{}", self.undeclared(name, &declared)),
        }
    }

    #[track_caller]
    fn service_of(&self, spec: &'static ServiceSpec) -> (Container, Option<RoomName>) {
        let declared = self.scope.desc().services();
        if !declared.iter().any(|s| s.name == spec.name) {
            panic!("{}", self.undeclared(spec.name, &declared));
        }
        if self.scope.has_ended() {
            panic!(
                "cleanroom::current(): test `{}` has ended; a thread it left running cannot use its rooms any more",
                self.test_name()
            );
        }
        self.scope.service(spec)
    }

    fn undeclared(&self, name: &str, declared: &[&'static ServiceSpec]) -> String {
        let names: Vec<&str> = declared.iter().map(|s| s.name).collect();
        let declares = if names.is_empty() { "none".to_string() } else { names.join(", ") };
        format!(
            "cleanroom::current(): test `{}` does not declare the service `{name}` (it declares: {declares}); \
             list it in the test's attribute, #[cleanroom::test({name})], or take it in one of its fixtures",
            self.test_name()
        )
    }
}

/// A test's Postgres handle from its container and room.
pub(crate) fn postgres_handle(container: Container, room: Option<RoomName>) -> Postgres {
    let database = match room {
        Some(RoomName::Database(database)) => Some(database),
        _ => None,
    };
    Postgres::new(container, database)
}

/// A test's Redis handle from its container and room.
pub(crate) fn redis_handle(container: Container, room: Option<RoomName>) -> Redis {
    let db = match room {
        Some(RoomName::Index(db)) => db,
        _ => 0,
    };
    Redis::new(container, db)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::{run, Flavor, TestContext, TestDesc};

    static SYNC: TestDesc = TestDesc {
        module_path: "krate::cur",
        name: "sync",
        ignored: false,
        flavor: Flavor::Sync,
        needs: &[],
        rooms: &[],
    };
    static CURRENT_THREAD: TestDesc = TestDesc {
        module_path: "krate::cur",
        name: "current_thread",
        ignored: false,
        flavor: Flavor::CurrentThread,
        needs: &[],
        rooms: &[],
    };
    static MULTI_THREAD: TestDesc = TestDesc {
        module_path: "krate::cur",
        name: "multi_thread",
        ignored: false,
        flavor: Flavor::MultiThread(Some(2)),
        needs: &[],
        rooms: &[],
    };

    /// Runs `body` as the test `desc`, handing back what it returned.
    fn within<T>(desc: &'static TestDesc, body: impl FnOnce(&mut TestContext) -> T) -> T {
        run(desc, |ctx| Ok::<T, ()>(body(ctx))).unwrap()
    }

    fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    }

    /// Where `current()` is asked from, inside an async test's body.
    async fn names_from_everywhere() -> Vec<String> {
        let spawned = tokio::spawn(async { current().test_name() }).await.unwrap();
        let blocking = tokio::task::spawn_blocking(|| current().test_name()).await.unwrap();
        // A task spawned from a spawned task, on another worker or not.
        let nested =
            tokio::spawn(async { tokio::spawn(async { current().test_name() }).await.unwrap() }).await.unwrap();
        vec![current().test_name(), spawned, blocking, nested]
    }

    mod should {
        use super::*;

        #[test]
        fn find_a_sync_test_on_its_own_thread() {
            assert_eq!(within(&SYNC, |_| current().test_name()), "cur::sync");
        }

        #[test]
        fn find_the_test_in_tasks_and_blocking_tasks_of_a_current_thread_runtime() {
            let names = within(&CURRENT_THREAD, |ctx| ctx.block_on(names_from_everywhere()));
            assert_eq!(names, ["cur::current_thread"; 4]);
        }

        #[test]
        fn find_the_test_on_every_thread_of_a_multi_thread_runtime() {
            let names = within(&MULTI_THREAD, |ctx| {
                ctx.block_on(async {
                    let mut names = names_from_everywhere().await;
                    // block_in_place hands the worker's role to another
                    // thread and keeps running on this one.
                    names.push(tokio::task::block_in_place(|| current().test_name()));
                    // Tasks on every worker: more tasks than workers, each
                    // yielding so that the other worker steals some.
                    let tasks: Vec<_> = (0..16)
                        .map(|_| {
                            tokio::spawn(async {
                                tokio::task::yield_now().await;
                                current().test_name()
                            })
                        })
                        .collect();
                    for task in tasks {
                        names.push(task.await.unwrap());
                    }
                    names
                })
            });
            assert_eq!(names, vec!["cur::multi_thread"; 21]);
        }

        #[test]
        fn find_the_test_in_a_sync_tests_async_fixture_and_its_tasks() {
            let names = within(&SYNC, |ctx| {
                ctx.block_on(async {
                    vec![current().test_name(), tokio::spawn(async { current().test_name() }).await.unwrap()]
                })
            });
            assert_eq!(names, ["cur::sync"; 2]);
        }

        #[test]
        fn refuse_a_std_thread_the_test_made_naming_the_test_and_the_fix() {
            let message = within(&SYNC, |_| {
                std::thread::spawn(|| std::panic::catch_unwind(current).map(|c| c.test_name()))
                    .join()
                    .unwrap()
                    .map_err(panic_message)
                    .unwrap_err()
            });
            assert!(message.starts_with("cleanroom::current() called outside a cleanroom test"), "{message}");
            // Other unit tests may run at once: the test is named alone or
            // among them.
            assert!(message.contains("cur::sync"), "{message}");
            assert!(message.contains("move the handle in"), "{message}");
        }

        #[test]
        fn refuse_outside_any_test() {
            assert!(try_current().is_none());
            let message = std::panic::catch_unwind(current).map_err(panic_message).unwrap_err();
            assert!(message.starts_with("cleanroom::current() called outside a cleanroom test"), "{message}");
        }

        #[test]
        fn forget_the_test_once_it_ended() {
            within(&SYNC, |_| assert!(try_current().is_some()));
            assert!(try_current().is_none(), "the test's thread is no test's after it");
        }

        #[test]
        fn refuse_a_service_the_test_does_not_declare_naming_the_test_and_the_fix() {
            let messages = within(&SYNC, |_| {
                let current = current();
                [
                    std::panic::catch_unwind(|| current.postgres()).map(drop).map_err(panic_message).unwrap_err(),
                    std::panic::catch_unwind(|| current.redis()).map(drop).map_err(panic_message).unwrap_err(),
                    std::panic::catch_unwind(|| current.service("web")).map(drop).map_err(panic_message).unwrap_err(),
                ]
            });
            assert_eq!(
                messages[0],
                "cleanroom::current(): test `cur::sync` does not declare the service `postgres` (it declares: none); \
                 list it in the test's attribute, #[cleanroom::test(postgres)], or take it in one of its fixtures"
            );
            assert!(messages[1].contains("does not declare the service `redis`"), "{}", messages[1]);
            assert!(messages[2].contains("#[cleanroom::test(web)]"), "{}", messages[2]);
        }
    }
}
