//! The relay as the bridge's `DocumentHost`: the only place that knows both crates. Maps the
//! relay's one ordered event stream to the bridge's update stream: committed updates, room
//! deletions (`RoomDeleted`, so the bridge never writes into a deleted room), idle unloads
//! (`RoomUnloaded`, so the bridge's mirror leaves memory with the room) and lag (`Lagged`, so the
//! bridge rebuilds its mirrors); and forwards state reads and durable applies.
//! No behaviour of its own: rules, retries and write-back live in weaver-bridge.

use weaver_bridge::{BoxFuture, DocumentHost, HostError, HostEvent, UpdateStream};
use weaver_relay::{RecvError, RelayError, RelayEvent, RelayHandle, UpdateOrigin};

/// `DocumentHost` over a running relay.
#[derive(Debug, Clone)]
pub struct RelayHost(pub RelayHandle);

struct RelayStream {
    events: weaver_relay::EventReceiver,
}

fn origin_name(o: &UpdateOrigin) -> String {
    match o {
        UpdateOrigin::Internal(s) => s.to_string(),
        UpdateOrigin::Client { conn_id } => format!("client:{conn_id}"),
        UpdateOrigin::Http => "http".to_owned(),
        _ => "other".to_owned(),
    }
}

impl UpdateStream for RelayStream {
    fn next(&mut self) -> BoxFuture<'_, Option<HostEvent>> {
        Box::pin(async move {
            // The relay publishes a room's events in the order they happened (its updates
            // before its deletion or unload), so they are passed on as they come.
            match self.events.recv().await {
                Ok(RelayEvent::Committed(u)) => Some(HostEvent::Update {
                    room: u.room.to_string(),
                    update: u.update.to_vec(),
                    origin: origin_name(&u.origin),
                }),
                Ok(RelayEvent::Deleted { room }) => Some(HostEvent::RoomDeleted {
                    room: room.to_string(),
                }),
                Ok(RelayEvent::Unloaded { room }) => Some(HostEvent::RoomUnloaded {
                    room: room.to_string(),
                }),
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "bridge lagged behind the relay");
                    Some(HostEvent::Lagged)
                }
                Err(RecvError::Closed) => None,
            }
        })
    }
}

/// A refusal of the update itself, or the relay unable to serve the request now.
pub(crate) fn host_error(e: RelayError) -> HostError {
    match e {
        RelayError::InvalidRoomName(_)
        | RelayError::InvalidUpdate(_)
        | RelayError::TooLarge { .. }
        | RelayError::DocumentTooLarge { .. } => HostError::Refused(e.into()),
        other => HostError::Unavailable(other.into()),
    }
}

impl DocumentHost for RelayHost {
    fn stored_rooms(&self) -> BoxFuture<'_, Result<Vec<String>, HostError>> {
        Box::pin(async move { self.0.stored_rooms().await.map_err(host_error) })
    }

    fn stored_state_contains<'a>(
        &'a self,
        room: &'a str,
        needle: &'a [u8],
    ) -> BoxFuture<'a, Result<bool, HostError>> {
        Box::pin(async move {
            self.0
                .stored_bytes_contain(room, needle)
                .await
                .map_err(host_error)
        })
    }

    fn room_state<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<Vec<u8>, HostError>> {
        Box::pin(async move { self.0.room_state(room).await.map_err(host_error) })
    }

    fn apply_update<'a>(
        &'a self,
        room: &'a str,
        update: Vec<u8>,
        origin: &'a str,
    ) -> BoxFuture<'a, Result<(), HostError>> {
        Box::pin(async move {
            self.0
                .apply_update(room, update, origin)
                .await
                .map_err(host_error)
        })
    }

    fn subscribe(&self) -> Box<dyn UpdateStream> {
        Box::new(RelayStream {
            events: self.0.subscribe(),
        })
    }
}
