//! The rooms of a process's one test, opened ahead on cleanroom's start
//! thread.
//!
//! Under nextest a process runs one test. Its start thread attaches the
//! test's services while libtest is still starting the test's thread, and
//! then has nothing to do until the test's body begins. It uses that time
//! to open the test's rooms, when they are at hand ([`rooms::open_at_hand`]:
//! a Postgres database cloned ahead, a Redis database leased ahead), so
//! that the test takes them instead of opening them on its way to its body.
//!
//! One lock decides who opens: the start thread opens under it, and the
//! test's first claim closes it. A test thread that asks while the start
//! thread is opening waits for that and takes what it opened; a start
//! thread that comes after the first claim opens nothing. A room the test
//! never claims (it took no handle, or failed before) is given back when the
//! test ends, or at the process's exit if the test never ran.
//!
//! [`rooms::open_at_hand`]: crate::rooms::open_at_hand

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::catalog::TestDesc;
use crate::rooms::Room;
use crate::service::handle::Container;

/// What the start thread opened, for which test (`K`: the test's key, the
/// address of its [`TestDesc`]).
struct Ahead<K> {
    /// The test claimed (or ended): nothing more is opened ahead.
    closed: bool,
    test: Option<K>,
    /// The services whose rooms the start thread tried to open, and has
    /// not seen claimed: each claim of one counts a hit or a miss.
    tried: Vec<&'static str>,
    rooms: Vec<(&'static str, Box<dyn Room>)>,
}

/// What a claim found.
#[derive(Debug, PartialEq, Eq)]
enum Claimed {
    /// The start thread did not try this service's room for this test.
    NotTried,
    /// It tried, and none was at hand.
    Missed,
    /// It opened it: here it is.
    Taken,
}

impl<K: Copy + PartialEq> Ahead<K> {
    const fn new() -> Self {
        Ahead { closed: false, test: None, tried: Vec::new(), rooms: Vec::new() }
    }

    /// Opens `test`'s rooms with `open_one`, unless a claim came first:
    /// `None` for a service it does not try, `Some(None)` for a room that
    /// was not at hand. Whether it opened any.
    fn open(
        &mut self,
        test: K,
        services: impl IntoIterator<Item = &'static str>,
        mut open_one: impl FnMut(&'static str) -> Option<Option<Box<dyn Room>>>,
    ) -> bool {
        if self.closed {
            return false;
        }
        for service in services {
            let Some(opened) = open_one(service) else { continue };
            self.tried.push(service);
            self.rooms.extend(opened.map(|room| (service, room)));
        }
        self.test = Some(test);
        !self.rooms.is_empty()
    }

    /// `test`'s room of `service`, if it was opened; closes the start
    /// thread's way.
    fn claim(&mut self, test: K, service: &str) -> (Option<Box<dyn Room>>, Claimed) {
        self.closed = true;
        let tried = self.tried.iter().position(|s| *s == service);
        let (Some(i), true) = (tried, self.test == Some(test)) else { return (None, Claimed::NotTried) };
        self.tried.remove(i);
        match self.rooms.iter().position(|(s, _)| *s == service) {
            Some(i) => (Some(self.rooms.remove(i).1), Claimed::Taken),
            None => (None, Claimed::Missed),
        }
    }

    /// Whether every room tried was claimed (or given back).
    fn done(&self) -> bool {
        self.tried.is_empty()
    }

    /// The rooms nobody claimed; closes the start thread's way.
    fn unclaimed(&mut self) -> Vec<Box<dyn Room>> {
        self.closed = true;
        self.tried.clear();
        std::mem::take(&mut self.rooms).into_iter().map(|(_, room)| room).collect()
    }
}

/// The key of a test in [`Ahead`].
fn key(desc: &'static TestDesc) -> usize {
    desc as *const TestDesc as usize
}

static AHEAD: Mutex<Ahead<usize>> = Mutex::new(Ahead::new());

/// Set once nothing is left to claim: every test after the first pays one
/// load of a flag, not a lock.
static DONE: AtomicBool = AtomicBool::new(false);

fn ahead() -> MutexGuard<'static, Ahead<usize>> {
    AHEAD.lock().unwrap_or_else(PoisonError::into_inner)
}

/// On the start thread, once the services are attached: opens the rooms of
/// the process's one selected test that are at hand. Nothing when more than
/// one test is selected (a `cargo test` process: its tests take rooms from
/// the pools warmed for them), when the test's schema was refused, or when
/// its thread asked first.
pub(crate) fn open() {
    let &[desc] = crate::selection::selected_tests() else { return };
    if crate::rooms::postgres::RunStart::get().refusal(&desc.test_name()).is_some() {
        return;
    }
    let registry = crate::run::registry::global();
    let specs = desc.services();
    let open_one = |name: &'static str| {
        let spec = specs.iter().find(|s| s.name == name)?;
        let service = registry.peek_ready(spec.name)?;
        // A demand that is an error fails the test on its thread, with the
        // test's own message.
        let demand = crate::rooms::demand(desc, spec.name).ok()?;
        if !crate::rooms::may_open_at_hand(&spec.kind, &demand) {
            return None;
        }
        Some(crate::rooms::open_at_hand(&spec.kind, &Container::new(service), &demand))
    };
    if ahead().open(key(desc), specs.iter().map(|s| s.name), open_one) {
        crate::util::clock::mark("first test's rooms opened ahead");
    }
}

/// The room of `service` opened ahead for `desc`, if there is one. The first
/// claim closes the start thread's way: it opens nothing after.
pub(crate) fn claim(desc: &'static TestDesc, service: &str) -> Option<Box<dyn Room>> {
    if DONE.load(Ordering::Acquire) {
        return None;
    }
    let mut ahead = ahead();
    let (room, claimed) = ahead.claim(key(desc), service);
    match claimed {
        Claimed::Taken => {
            crate::metrics::cache_hit("room_ahead");
            crate::util::clock::mark(format!("{service} room taken ahead"));
        }
        Claimed::Missed => crate::metrics::cache_miss("room_ahead"),
        Claimed::NotTried => {}
    }
    if ahead.done() {
        DONE.store(true, Ordering::Release);
    }
    room
}

/// Gives back the rooms opened ahead that no test claimed: when the test
/// ends, and at the process's exit. A room no test used goes back as it
/// came ([`Room::unused`]), never kept.
pub(crate) fn end_unclaimed() {
    if DONE.load(Ordering::Acquire) {
        return;
    }
    let mut ahead = ahead();
    let rooms = ahead.unclaimed();
    // Only a process's one selected test has rooms opened ahead.
    let test = match crate::selection::selected_tests() {
        &[desc] if ahead.test == Some(key(desc)) => desc.test_name(),
        _ => String::new(),
    };
    DONE.store(true, Ordering::Release);
    drop(ahead);
    if !rooms.is_empty() {
        crate::util::clock::mark("rooms opened ahead given back");
    }
    for room in rooms {
        room.unused(&test);
    }
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::{Ahead, Claimed};
        use crate::config::Keep;
        use crate::rooms::{Room, RoomName};
        use std::sync::{Arc, Mutex};

        /// A room that says how it ended.
        struct Told(&'static str, Arc<Mutex<Vec<String>>>);

        impl Room for Told {
            fn name(&self) -> RoomName {
                RoomName::Named(self.0.to_string())
            }

            fn end(self: Box<Self>, _test: &str, _failed: bool, _keep: Keep) {
                self.1.lock().unwrap().push(format!("{} ended", self.0));
            }

            fn unused(self: Box<Self>, _test: &str) {
                self.1.lock().unwrap().push(format!("{} unused", self.0));
            }
        }

        fn opener(told: &Arc<Mutex<Vec<String>>>) -> impl FnMut(&'static str) -> Option<Option<Box<dyn Room>>> + '_ {
            move |service| match service {
                "postgres" => Some(Some(Box::new(Told("postgres", told.clone())) as Box<dyn Room>)),
                "redis" => Some(None),
                _ => None,
            }
        }

        #[test]
        fn hand_the_test_what_was_opened_for_it_once_and_count_only_what_was_tried() {
            let told = Arc::new(Mutex::new(Vec::new()));
            let mut ahead = Ahead::new();
            assert!(ahead.open(1, ["postgres", "redis", "web"], opener(&told)));
            assert_eq!(ahead.claim(2, "postgres").1, Claimed::NotTried, "another test's claim takes nothing");
            let (room, claimed) = ahead.claim(1, "postgres");
            assert_eq!((room.map(|r| r.name()), claimed), (Some(RoomName::Named("postgres".into())), Claimed::Taken));
            assert_eq!(ahead.claim(1, "postgres").1, Claimed::NotTried, "taken once");
            assert!(!ahead.done(), "redis was tried");
            assert_eq!(ahead.claim(1, "web").1, Claimed::NotTried, "a service's own hooks are not tried");
            assert_eq!(ahead.claim(1, "redis").1, Claimed::Missed, "tried, and none was at hand");
            assert!(ahead.done());
            assert!(ahead.unclaimed().is_empty());
        }

        #[test]
        fn open_nothing_once_the_test_has_claimed() {
            let told = Arc::new(Mutex::new(Vec::new()));
            let mut ahead = Ahead::new();
            assert_eq!(ahead.claim(1, "postgres").1, Claimed::NotTried);
            assert!(ahead.done());
            assert!(!ahead.open(1, ["postgres"], opener(&told)), "the test opens its own");
            assert!(ahead.unclaimed().is_empty());
        }

        #[test]
        fn give_back_what_the_test_never_claimed() {
            let told = Arc::new(Mutex::new(Vec::new()));
            let mut ahead = Ahead::new();
            assert!(ahead.open(1, ["postgres", "redis"], opener(&told)));
            let left = ahead.unclaimed();
            assert_eq!(left.len(), 1);
            for room in left {
                room.unused("t");
            }
            assert_eq!(*told.lock().unwrap(), ["postgres unused"]);
            assert!(ahead.done());
            assert_eq!(ahead.claim(1, "postgres").1, Claimed::NotTried, "given back, not claimable");
            assert!(!ahead.open(1, ["postgres"], opener(&told)), "and not opened again");
        }
    }
}
