//! Rooms a user's service makes with its own hooks
//! (`GenericContainer::with_rooms`): `prepare` before the test with a fresh
//! name, `release` after it.

use super::{room_name, Room, RoomName};
use crate::config::Keep;
use crate::service::definition::RoomHooks;
use crate::service::handle::Container;

/// A room made by a service's hooks.
struct HookRoom {
    container: Container,
    hooks: RoomHooks,
    name: String,
}

/// Prepares a room when the service has hooks; `None` when it has none.
pub(super) fn open(container: &Container, test: &str) -> Result<Option<Box<dyn Room>>, String> {
    let Some(hooks) = container.inner.definition.rooms else { return Ok(None) };
    let name = room_name().replace("cleanroom_t_", "room_");
    (hooks.prepare)(container, &name).map_err(|reason| {
        format!("{}: preparing the room {name} for test `{test}` failed: {reason}", container.name())
    })?;
    Ok(Some(Box::new(HookRoom { container: container.clone().with_room(name.clone()), hooks, name })))
}

impl Room for HookRoom {
    fn name(&self) -> RoomName {
        RoomName::Named(self.name.clone())
    }

    fn end(self: Box<Self>, test: &str, failed: bool, keep: Keep) {
        if keep.keeps(failed) {
            if failed {
                eprintln!(
                    "cleanroom: test `{test}` failed; its room {} in {} lives until the run ends, when its server \
                     is removed; to open it after the run, rerun this test alone with the server kept:\n{}",
                    self.name,
                    self.container.name(),
                    super::rerun_commands(test),
                );
            }
        } else if let Err(reason) = (self.hooks.release)(&self.container, &self.name) {
            eprintln!("cleanroom: {}: releasing the room {} failed: {reason}", self.container.name(), self.name);
        }
    }
}
