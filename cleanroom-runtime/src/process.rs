//! Process start and exit: what runs before `main` and after it.
//!
//! At start (after every `inventory` registration has run) cleanroom reads
//! libtest's command line, works out which services the selected tests need
//! through their fixtures, and starts them in the background, in parallel. At
//! exit it removes every container it started.
#![allow(unsafe_code)] // `ctor`/`dtor` expand to link-section statics.

use crate::rooms::postgres::RunStart;
use crate::rooms::Demand;
use crate::run::registry::{self, Source};
use crate::selection::selected_tests;
use crate::util::clock::PROCESS_START;

/// At process start, after every test, fixture and service has registered
/// itself with `inventory`: this constructor has no priority on purpose. On
/// ELF targets constructors with a priority (even `late`) run *before* all
/// those without one, `inventory`'s among them, and the start thread then
/// raced the registrations: it could see a test before it was registered,
/// start a server the test's refused schema needed none of, and not say why
/// (seen 2 times in 12). A `naked` constructor goes where `inventory`'s go,
/// in plain `.init_array`, which runs in link order: this crate is linked
/// after every crate that uses it.
#[ctor::ctor(unsafe, naked)]
fn on_process_start() {
    PROCESS_START.get_or_init(std::time::Instant::now);
    // While this is the only thread: testcontainers reads DOCKER_HOST only.
    crate::docker::discovery::export_docker_host();
    crate::util::clock::mark("engine address chosen");
    // The test binary re-executed as its session's reaper: serve, then exit
    // before libtest's main ever runs.
    if let Ok(session) = std::env::var(crate::run::reaper::REAPER_ENV) {
        crate::run::reaper::run(
            session,
            crate::report::parts::fold,
            crate::rooms::keeper::poke,
            crate::rooms::keeper::finish,
        );
    }
    // Nothing heavy before main: the work happens on a thread of its own,
    // which test threads wait for until it has planted their services'
    // slots (`run::attach`).
    crate::run::attach::arm();
    let spawned = std::thread::Builder::new().name("cleanroom-init".into()).spawn(|| {
        let _planting = crate::run::attach::Planting;
        let _ = std::panic::catch_unwind(prestart);
    });
    if spawned.is_err() {
        crate::run::attach::disarm();
    }
}

#[dtor::dtor(unsafe)]
fn on_process_exit() {
    // Rooms opened ahead for a test that never ran go back first.
    crate::harness::ahead::end_unclaimed();
    // What a test handed to the runtime before it was built (the drop of its
    // database) runs before this process's report and its goodbye.
    crate::util::background::flush();
    if let Some(registry) = registry::get() {
        if let Ok(session) = registry.session() {
            registry.read_performance_at_exit();
            if let Some(part) = crate::report::at_exit(session) {
                hand_over(session, &part);
            }
            crate::run::liveness::unregister_client(session);
        }
        registry.shutdown_blocking();
    }
}

/// This process's part of the run's report into the run's documents: with a
/// reaper, left beside them for the reaper to fold (constant time; the
/// reaper folds once no process it serves is still to report, and the
/// process that makes it so waits for that); without one, or with a reaper
/// that does not answer, merged here.
fn hand_over(session: &str, part: &crate::report::parts::Part) {
    if !crate::run::reaper::attached() || !crate::report::leave_for_fold(session, part) {
        crate::report::merge_at_exit(session, part);
        return;
    }
    match crate::run::reaper::hand_over_report(session) {
        Ok(unwritten) => {
            for (path, e) in unwritten {
                crate::report::say_unwritten(&path, &e);
            }
        }
        Err(_) => crate::report::fold_and_say(session),
    }
}

/// The services the selected tests need, in the order tests declare them.
/// A test whose Postgres schema cannot be had starts none: it fails before.
pub(crate) fn needed_services() -> Vec<&'static crate::service::definition::ServiceSpec> {
    let run_start = RunStart::get();
    let mut out: Vec<&'static crate::service::definition::ServiceSpec> = Vec::new();
    for test in selected_tests() {
        if run_start.refusal(&test.test_name()).is_none() {
            for spec in test.services() {
                if !out.iter().any(|s| s.name == spec.name) {
                    out.push(spec);
                }
            }
        }
    }
    out
}

/// How many selected tests will ask for a room of `service`.
fn count_rooms(service: &str) -> usize {
    selected_tests()
        .iter()
        .filter(|t| t.services().iter().any(|s| s.name == service))
        .filter(|t| !matches!(crate::rooms::demand(t, service), Ok(Demand::Shared)))
        .count()
}

fn prestart() {
    crate::util::clock::mark("init thread");
    // Works out (and says) what cannot work before any server starts.
    let needed = needed_services();
    crate::util::clock::mark("tests selected");
    if needed.is_empty() {
        return;
    }
    let registry = registry::global();
    crate::util::clock::mark("configuration read");
    // A process that attaches does the whole of its start here, on this
    // thread: the reaper first, then each service from its creator's record
    // (`run::attach`); what it cannot have that way starts on the runtime.
    registry.start_selected(&needed, crate::harness::ahead::open);
    let redis_rooms = count_rooms("redis");
    if redis_rooms > 0 {
        crate::util::background::spawn_background(async move {
            if let Ok(service) = registry.get_or_start("redis", Source::Spec(&crate::builtin::REDIS)).await {
                crate::rooms::redis_rooms(&service).warm(redis_rooms);
            }
        });
    }
    let templates = RunStart::get().templates.clone();
    if !templates.is_empty() {
        crate::util::background::spawn_background(async move {
            let Ok(service) = registry.get_or_start("postgres", Source::Spec(&crate::builtin::POSTGRES)).await else {
                return;
            };
            let Ok(rooms) = crate::rooms::pg_rooms(&service) else { return };
            for (source, expected) in templates {
                rooms.warm(source, expected).await;
            }
        });
    }
}
