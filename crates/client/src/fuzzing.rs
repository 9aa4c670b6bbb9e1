//! A seam for property tests and fuzz targets: feeds raw server frames to the client's frame
//! handling ([`crate::session`]) against a real replica, without a socket. Not API.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, broadcast, mpsc, watch};

use crate::awareness::Awareness;
use crate::error::{ClientError, FrameError};
use crate::events::ConnectionState;
use crate::replica::{ChangeSink, Replica};
use crate::session::Session;
use crate::shared::{Shared, lock};

/// A replica and one connection's session, driven frame by frame.
#[derive(Debug)]
pub struct FrameHarness {
    shared: Shared,
    session: Session,
    _outbox: mpsc::Receiver<Vec<u8>>,
}

impl FrameHarness {
    pub fn open(dir: &Path) -> Result<FrameHarness, ClientError> {
        let (events, _) = broadcast::channel(16);
        let sink: ChangeSink = Arc::new(|_| {});
        let replica = Replica::open(dir, 64, 1 << 20, sink)?;
        let (outbox, rx) = mpsc::channel(16);
        Ok(FrameHarness {
            shared: Shared {
                awareness: Mutex::new(Awareness::new(replica.client_id())),
                unsynced: watch::Sender::new(replica.unsynced()),
                replica: Mutex::new(replica),
                events,
                state: watch::Sender::new(ConnectionState::Connecting),
                pulled: watch::Sender::new(false),
                outbox,
                overflow: AtomicBool::new(false),
                awareness_dirty: AtomicBool::new(false),
                token: Mutex::new(None),
                wake: Notify::new(),
                token_changed: AtomicBool::new(false),
            },
            session: Session::new(),
            _outbox: rx,
        })
    }

    /// Handles one frame as the connection task would; `Ok` holds the reply frames.
    pub fn feed(&mut self, frame: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
        self.session.handle(&self.shared, frame)
    }

    /// A local edit (durable), as [`crate::Client::transact`] makes it.
    pub fn add_block(&mut self, id: &str, text: &str) -> Result<(), ClientError> {
        let mut replica = lock(&self.shared.replica);
        replica.transact(|t| t.add_block(id, "text", text))?.0?;
        Ok(())
    }

    pub fn unsynced(&self) -> usize {
        lock(&self.shared.replica).unsynced()
    }

    pub fn json(&self) -> Result<serde_json::Value, ClientError> {
        Ok(lock(&self.shared.replica).workspace().to_json()?)
    }
}
