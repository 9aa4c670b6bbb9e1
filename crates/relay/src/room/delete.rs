//! Deleting a room: its connections are closed with 4410, its stored content (versions too)
//! removed, and `RelayEvent::Deleted` published after every event of the room before it.

use tokio::sync::oneshot;
use tracing::info;

use super::actor::Room;
use crate::error::{RelayError, close_code};
use crate::events::RelayEvent;

impl Room {
    pub(super) async fn delete(&mut self, reply: oneshot::Sender<Result<(), RelayError>>) {
        if let Some(c) = self.compaction.take() {
            let _ = c.await;
        }
        // A version still being written would otherwise land after the deletion and show up
        // in the next room of that name.
        if let Some(v) = self.version_task.take() {
            let _ = v.task.await;
        }
        self.close_all(close_code::ROOM_DELETED, "room deleted");
        let r = self.deps.store.delete(self.name.clone()).await;
        info!(ok = r.is_ok(), "room deleted");
        if r.is_ok() {
            // Before the room leaves the registry: its next actor's events come after this one.
            self.deps.events.publish(RelayEvent::Deleted {
                room: self.name.clone(),
            });
        }
        let _ = reply.send(r.map_err(RelayError::from));
    }
}
