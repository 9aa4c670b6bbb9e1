//! The relay as the bridge's `DocumentHost`: the only place that knows both crates. Maps the
//! relay's committed-update broadcast to the bridge's update stream (lag → `Lagged`, so the
//! bridge rebuilds its mirrors) and forwards state reads and durable applies.
//! No behaviour of its own: rules, retries and write-back live in weaver-bridge.

use tokio::sync::broadcast;
use weaver_bridge::integration::BoxFuture;
use weaver_bridge::{DocumentHost, HostError, HostEvent, UpdateStream};
use weaver_relay::{CommittedUpdate, RelayHandle, UpdateOrigin};

/// `DocumentHost` over a running relay.
#[derive(Debug, Clone)]
pub struct RelayHost(pub RelayHandle);

struct RelayStream(broadcast::Receiver<CommittedUpdate>);

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
            match self.0.recv().await {
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
            }
        })
    }
}

impl DocumentHost for RelayHost {
    fn stored_rooms(&self) -> BoxFuture<'_, Result<Vec<String>, HostError>> {
        Box::pin(async move {
            self.0
                .stored_rooms()
                .await
                .map_err(|e| HostError(e.to_string()))
        })
    }

    fn room_state<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<Vec<u8>, HostError>> {
        Box::pin(async move {
            self.0
                .room_state(room)
                .await
                .map_err(|e| HostError(e.to_string()))
        })
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
                .map_err(|e| HostError(e.to_string()))
        })
    }

    fn subscribe(&self) -> Box<dyn UpdateStream> {
        Box::new(RelayStream(self.0.subscribe()))
    }
}
