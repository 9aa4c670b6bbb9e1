//! A room's mirror: the bridge's own replica (`weaver_doc::Workspace`) of a room with bridge
//! content, built from the host's stored state and kept current with its committed updates.
//! Mirrors are a cache: dropping one (idle, unloaded by the host, a refused write) costs only
//! a reload and a sweep on the room's next update.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use weaver_doc::{ChangeSet, ChangeSubscription, Workspace};

use super::doc_actor::DocActor;
use crate::BridgeError;

pub(super) struct Mirror {
    pub(super) ws: Workspace,
    /// Change sets the workspace observed, waiting for `DocActor::drain`.
    pub(super) changes: Arc<Mutex<Vec<ChangeSet>>>,
    _sub: ChangeSubscription,
    /// Last time an update or a write-back touched the room (idle mirrors are dropped).
    pub(super) used: Instant,
    /// The host unloaded the room since the mirror was last used: drop the mirror as soon as
    /// no re-index is pending, instead of after `MIRROR_IDLE`.
    pub(super) host_unloaded: bool,
}

impl Mirror {
    /// Marks the mirror as in use now.
    pub(super) fn touch(&mut self) {
        self.used = Instant::now();
        self.host_unloaded = false;
    }

    /// Takes the change sets collected since the last call.
    pub(super) fn take_changes(&self) -> Vec<ChangeSet> {
        self.changes
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

/// A mirror untouched this long is dropped; the next update reloads (and re-sweeps) the room.
pub(super) const MIRROR_IDLE: Duration = Duration::from_secs(600);

/// Whether v1 update bytes (an update, or a room's whole state) may put anything under the
/// `blocks` root, the only part of a document the rules read.
///
/// Exact in the direction that matters: an item can only land under a root type if it names
/// the root (an item with neither left nor right origin is encoded with its parent, and a root
/// parent is encoded by its name, in full) or if one of its origins is already under that root.
/// So a room whose state holds no `blocks` bytes has nothing under `blocks`, and keeps nothing
/// there after any update without them. Direct children of a root are never collected into
/// `GC` structs (only children of a collected type are), so a room that ever had a block keeps
/// the marker in its state for good. Text that happens to contain the word only costs a mirror.
pub(super) fn may_touch_blocks(update: &[u8]) -> bool {
    let marker = weaver_doc::BLOCKS_ROOT.as_bytes();
    update.windows(marker.len()).any(|w| w == marker)
}

impl DocActor {
    /// Drops a room's mirror; the room stays one with bridge content, so its next update
    /// reloads it.
    pub(super) fn drop_mirror(&mut self, room: &str) {
        if self.rooms.remove(room).is_some() {
            self.unmirrored.insert(room.into());
        }
    }

    /// Loads and sweeps a room seen in the store (start-up, lag), keeping its mirror only if
    /// it has bridge content. A room that fails to load is treated as having some: its next
    /// update retries.
    pub(super) async fn sweep_stored_room(&mut self, room: &str, what: &str) {
        match self.load_room(room).await {
            Ok(true) => {}
            Ok(false) => self.forget_plain_room(room),
            Err(e) => tracing::warn!(room = %room, error = %e, "{what}"),
        }
    }

    /// A room found without bridge content: no mirror, and its updates are skipped until one
    /// names `blocks`.
    fn forget_plain_room(&mut self, room: &str) {
        self.rooms.remove(room);
        self.unmirrored.remove(room);
    }

    /// (Re)builds a room's mirror from the host's state and sweeps it. Returns whether the
    /// state has anything under `blocks` (`may_touch_blocks`); the mirror is kept either way,
    /// callers that only follow rooms with bridge content drop it. Until the mirror is in
    /// place the room counts as unmirrored, so a failed load is retried by its next update.
    pub(super) async fn load_room(&mut self, room: &str) -> Result<bool, BridgeError> {
        self.rooms.remove(room);
        self.unmirrored.insert(room.into());
        let state = self
            .inner
            .host
            .room_state(room)
            .await
            .map_err(BridgeError::Host)?;
        // A fresh random client id per mirror (and so per process start): the bridge never
        // reuses an id whose history it may not fully hold.
        let ws = Workspace::new();
        ws.apply_update_v1(&state, "load")
            .map_err(BridgeError::Doc)?;
        let bridge_content = may_touch_blocks(&state);
        drop(state);
        let changes = Arc::new(Mutex::new(Vec::new()));
        let sink = changes.clone();
        let sub = ws
            .observe(move |cs| {
                if let Ok(mut v) = sink.lock() {
                    v.push(cs.clone());
                }
            })
            .map_err(BridgeError::Doc)?;
        self.rooms.insert(
            room.to_owned(),
            Mirror {
                ws,
                changes,
                _sub: sub,
                used: Instant::now(),
                host_unloaded: false,
            },
        );
        self.unmirrored.remove(room);
        self.sweep_room(room).await?;
        Ok(bridge_content)
    }

    /// Applies a committed update to the room's mirror. Returns whether its changes still
    /// need `drain` (a room seen for the first time is loaded and swept instead).
    pub(super) async fn apply_committed(
        &mut self,
        room: &str,
        update: &[u8],
        origin: &str,
    ) -> bool {
        let Some(m) = self.rooms.get_mut(room) else {
            // A room the sweep has not checked yet is checked now, out of turn: its stored
            // state already holds this update.
            if self.sweep.take(room) && !self.unmirrored.contains(room) {
                self.sweep_if_marked(room, "cannot load room for the bridge")
                    .await;
                return false;
            }
            // A room without bridge content stays without unless this update names `blocks`.
            if !self.unmirrored.contains(room) && !may_touch_blocks(update) {
                return false;
            }
            // The stored state already contains this update.
            match self.load_room(room).await {
                Ok(true) => {}
                Ok(false) => self.forget_plain_room(room),
                Err(e) => tracing::warn!(room, error = %e, "cannot load room for the bridge"),
            }
            return false;
        };
        m.touch();
        if let Err(e) = m.ws.apply_update_v1(update, origin) {
            tracing::warn!(room, error = %e, "mirror rejected a committed update; rebuilding from stored state");
            if let Err(e) = self.load_room(room).await {
                tracing::warn!(room, error = %e, "rebuilding mirror failed");
            }
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_marker() {
        let root = weaver_doc::BLOCKS_ROOT.as_bytes();
        let mut named = b"\x01\x02".to_vec();
        named.extend_from_slice(root);
        named.push(0);
        for (bytes, want) in [
            (&b""[..], false),
            (&b"\x00\x00"[..], false),
            (&root[..root.len() - 1], false),
            (root, true),
            (&named[..], true),
        ] {
            assert_eq!(may_touch_blocks(bytes), want, "{bytes:?}");
        }
    }
}
