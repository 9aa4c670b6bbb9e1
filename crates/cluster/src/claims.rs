//! `Claims`: the rooms this node holds a lease on, with each lease's epoch. The placement fills
//! it as it acquires and releases leases; the room store reads it when it loads a room, to
//! write the epoch into the room's takeover record (and to write none for a room this node
//! does not own, e.g. a change feed's read). Lets the store fence by epoch without knowing
//! leases.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// This node's claims on rooms. Cheap to clone; clones share the claims.
#[derive(Debug, Clone)]
pub struct Claims {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    node_id: Arc<str>,
    /// Locked only to read or write an entry.
    epochs: Mutex<HashMap<Arc<str>, u64>>,
}

impl Claims {
    /// No claims yet, for node `node_id`.
    pub fn new(node_id: &str) -> Claims {
        Claims {
            inner: Arc::new(Inner {
                node_id: Arc::from(node_id),
                epochs: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The node these claims are made for.
    pub fn node_id(&self) -> Arc<str> {
        self.inner.node_id.clone()
    }

    /// This node holds the room's lease at `epoch`.
    pub fn hold(&self, room: &str, epoch: u64) {
        if let Ok(mut e) = self.inner.epochs.lock() {
            e.insert(Arc::from(room), epoch);
        }
    }

    /// The lease at `epoch` is released (a claim with another epoch stays).
    pub fn release(&self, room: &str, epoch: u64) {
        if let Ok(mut e) = self.inner.epochs.lock()
            && e.get(room) == Some(&epoch)
        {
            e.remove(room);
        }
    }

    /// The epoch of this node's lease on the room, if it holds one.
    pub fn epoch(&self, room: &str) -> Option<u64> {
        self.inner
            .epochs
            .lock()
            .ok()
            .and_then(|e| e.get(room).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_of_an_older_lease_keeps_the_newer_claim() {
        let c = Claims::new("n1");
        assert_eq!(c.epoch("r"), None);
        c.hold("r", 5);
        c.release("r", 4);
        assert_eq!(c.epoch("r"), Some(5));
        c.release("r", 5);
        assert_eq!(c.epoch("r"), None);
        assert_eq!(&*c.node_id(), "n1");
    }
}
