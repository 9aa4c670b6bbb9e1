//! The relay as the bridge's `DocumentHost`: the only place that knows both crates. Maps the
//! relay's committed-update stream to the bridge's update stream (lag → `Lagged`, so the
//! bridge rebuilds its mirrors), forwards room deletions (`RoomDeleted`, so the bridge never
//! writes into a deleted room), forwards idle unloads (`RoomUnloaded`, so the bridge's mirror
//! leaves memory with the room) and forwards state reads and durable applies.
//! No behaviour of its own: rules, retries and write-back live in weaver-bridge.

use tokio::sync::broadcast;
use weaver_bridge::{BoxFuture, DocumentHost, HostError, HostEvent, UpdateStream};
use weaver_relay::{RelayError, RelayHandle, UpdateOrigin};

/// `DocumentHost` over a running relay.
#[derive(Debug, Clone)]
pub struct RelayHost(pub RelayHandle);

struct RelayStream {
    updates: weaver_relay::EventReceiver,
    deletions: broadcast::Receiver<std::sync::Arc<str>>,
    /// `None` once closed (the relay is going away; updates decide when the stream ends).
    unloads: Option<broadcast::Receiver<std::sync::Arc<str>>>,
}

fn origin_name(o: &UpdateOrigin) -> String {
    match o {
        UpdateOrigin::Internal(s) => s.to_string(),
        UpdateOrigin::Client { conn_id } => format!("client:{conn_id}"),
        UpdateOrigin::Http => "http".to_owned(),
        _ => "other".to_owned(),
    }
}

/// The next unload notice; pending forever once the channel is closed.
async fn next_unload(
    unloads: &mut Option<broadcast::Receiver<std::sync::Arc<str>>>,
) -> Result<std::sync::Arc<str>, broadcast::error::RecvError> {
    match unloads {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl UpdateStream for RelayStream {
    fn next(&mut self) -> BoxFuture<'_, Option<HostEvent>> {
        Box::pin(async move {
            loop {
                // Deletion notices first. The two channels are not ordered with each other; a
                // late update of the old room only makes the bridge reload the room's current
                // state (harmless), whereas an update of the re-created room handed over before
                // the notice would have its new calls cancelled as "room deleted".
                // Unload notices last: a room publishes its updates before it unloads, so
                // polling updates first hands the bridge every update of the room before the
                // notice (a notice first would make the bridge reload the room for them).
                let r = tokio::select! {
                    biased;
                    d = self.deletions.recv() => match d {
                        Ok(room) => return Some(HostEvent::RoomDeleted { room: room.to_string() }),
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(missed = n, "bridge missed room deletions");
                            return Some(HostEvent::Lagged);
                        }
                        // Both senders live as long as the relay; if deletions end, updates decide.
                        Err(broadcast::error::RecvError::Closed) => self.updates.recv().await,
                    },
                    r = self.updates.recv() => r,
                    u = next_unload(&mut self.unloads) => match u {
                        Ok(room) => return Some(HostEvent::RoomUnloaded { room: room.to_string() }),
                        // Missed notices only leave mirrors for the bridge's own idle eviction.
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::debug!(missed = n, "bridge missed room unload notices");
                            continue;
                        }
                        Err(broadcast::error::RecvError::Closed) => {
                            self.unloads = None;
                            continue;
                        }
                    },
                };
                return match r {
                    Ok(u) => Some(HostEvent::Update {
                        room: u.room.to_string(),
                        update: u.update.to_vec(),
                        origin: origin_name(&u.origin),
                    }),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "bridge lagged behind the relay");
                        Some(HostEvent::Lagged)
                    }
                    Err(broadcast::error::RecvError::Closed) => None,
                };
            }
        })
    }
}

/// A refusal of the update itself, or the relay unable to serve the request now.
fn host_error(e: RelayError) -> HostError {
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
            updates: self.0.subscribe(),
            deletions: self.0.subscribe_deletions(),
            unloads: Some(self.0.subscribe_unloads()),
        })
    }
}
