//! `MemoryHost`: an in-memory `DocumentHost` (one yrs `Doc` per room and a broadcast channel),
//! for embedding the bridge without the relay and for its tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;
use yrs::updates::decoder::Decode;
use yrs::{Doc, ReadTxn, StateVector, Transact, Update};

use super::{DocumentHost, HostError, HostEvent, UpdateStream};
use crate::integration::BoxFuture;

/// In-memory `DocumentHost`: one yrs `Doc` per room and a broadcast channel.
#[derive(Debug, Clone)]
pub struct MemoryHost {
    rooms: Arc<Mutex<HashMap<String, Doc>>>,
    tx: broadcast::Sender<HostEvent>,
}

impl Default for MemoryHost {
    fn default() -> Self {
        Self::new(1024)
    }
}

impl MemoryHost {
    /// A host whose broadcast channel keeps `capacity` events per slow subscriber.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self {
            rooms: Arc::new(Mutex::new(HashMap::new())),
            tx,
        }
    }

    /// Applies an update synchronously (what a client would send) and broadcasts it.
    pub fn apply(&self, room: &str, update: &[u8], origin: &str) -> Result<(), HostError> {
        let u = Update::decode_v1(update).map_err(|e| HostError::Refused(e.into()))?;
        {
            let mut rooms = self.rooms.lock().map_err(|_| HostError::Poisoned)?;
            let doc = rooms.entry(room.to_owned()).or_default();
            let mut txn = doc.transact_mut();
            weaver_doc::apply_update_retrying_pending(&mut txn, u)
                .map_err(|e| HostError::Refused(e.into()))?;
        }
        let _ = self.tx.send(HostEvent::Update {
            room: room.to_owned(),
            update: update.to_vec(),
            origin: origin.to_owned(),
        });
        Ok(())
    }

    /// Deletes a room (what the relay's `DELETE /api/rooms/{room}` does) and publishes
    /// [`HostEvent::RoomDeleted`].
    pub fn delete(&self, room: &str) -> Result<(), HostError> {
        self.rooms
            .lock()
            .map_err(|_| HostError::Poisoned)?
            .remove(room);
        let _ = self.tx.send(HostEvent::RoomDeleted {
            room: room.to_owned(),
        });
        Ok(())
    }

    /// Publishes [`HostEvent::RoomUnloaded`] for `room`, as a host that evicts idle rooms does.
    /// The memory host keeps the room's state: the notice is only a hint to subscribers.
    pub fn unload(&self, room: &str) {
        let _ = self.tx.send(HostEvent::RoomUnloaded {
            room: room.to_owned(),
        });
    }

    /// The state of a room as a v1 update.
    pub fn state(&self, room: &str) -> Result<Vec<u8>, HostError> {
        let mut rooms = self.rooms.lock().map_err(|_| HostError::Poisoned)?;
        let doc = rooms.entry(room.to_owned()).or_default();
        let txn = doc.transact();
        Ok(txn.encode_state_as_update_v1(&StateVector::default()))
    }
}

struct MemoryStream(broadcast::Receiver<HostEvent>);

impl UpdateStream for MemoryStream {
    fn next(&mut self) -> BoxFuture<'_, Option<HostEvent>> {
        Box::pin(async move {
            match self.0.recv().await {
                Ok(ev) => Some(ev),
                Err(broadcast::error::RecvError::Lagged(_)) => Some(HostEvent::Lagged),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        })
    }
}

impl DocumentHost for MemoryHost {
    fn stored_rooms(&self) -> BoxFuture<'_, Result<Vec<String>, HostError>> {
        Box::pin(async move {
            let rooms = self.rooms.lock().map_err(|_| HostError::Poisoned)?;
            Ok(rooms.keys().cloned().collect())
        })
    }
    fn room_state<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<Vec<u8>, HostError>> {
        Box::pin(async move { self.state(room) })
    }
    fn apply_update<'a>(
        &'a self,
        room: &'a str,
        update: Vec<u8>,
        origin: &'a str,
    ) -> BoxFuture<'a, Result<(), HostError>> {
        Box::pin(async move { self.apply(room, &update, origin) })
    }
    fn subscribe(&self) -> Box<dyn UpdateStream> {
        Box::new(MemoryStream(self.tx.subscribe()))
    }
}
