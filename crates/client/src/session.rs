//! One connection's protocol state and what the client does with each server frame. No I/O:
//! [`Session::handle`] takes the frame's bytes and returns the frames to send back, so the
//! socket task stays small and the frame handling is tested directly against garbage
//! (`tests/frames.rs`).
//!
//! Every server frame is untrusted: decoded with `weaver-protocol` (an error drops the
//! connection), state vectors and updates validated before yrs sees them, subdocuments
//! refused, yrs apply panics contained by the replica (which then rebuilds its document from
//! the log), awareness bounded.

use std::time::Instant;

use weaver_protocol::{
    Message, UpdateLimits, decode_awareness, decode_message, encode_sync_step2,
    validate_state_vector, validate_update_v1,
};

use crate::ack::{self, ServerKnowledge};
use crate::error::FrameError;
use crate::events::{ClientEvent, ConnectionState};
use crate::shared::{Shared, lock};

/// The y-protocols auth sub-type "permission denied".
const PERMISSION_DENIED: u64 = 0;

#[derive(Debug, Default)]
pub(crate) struct Session {
    server: ServerKnowledge,
    limits: UpdateLimits,
    online: bool,
    read_only: bool,
}

impl Session {
    pub(crate) fn new() -> Session {
        Session::default()
    }

    /// Has the server's SyncStep1 arrived (the handshake is under way)?
    pub(crate) fn online(&self) -> bool {
        self.online
    }

    /// The diff the server lacks by what we know of it (sent when the outbox overflowed).
    pub(crate) fn diff_for_server(&self, shared: &Shared) -> Option<Vec<u8>> {
        use yrs::updates::encoder::Encode;
        let sv = self.server.state_vector().encode_v1();
        let replica = lock(&shared.replica);
        replica.workspace().encode_diff_v1(&sv).ok()
    }

    /// Handles one binary frame; returns the frames to answer with.
    pub(crate) fn handle(
        &mut self,
        shared: &Shared,
        frame: &[u8],
    ) -> Result<Vec<Vec<u8>>, FrameError> {
        match decode_message(frame)? {
            Message::SyncStep1(sv) => {
                validate_state_vector(sv)?;
                let decoded = ack::decode_state_vector(sv).ok_or(
                    weaver_protocol::ProtocolError::LimitExceeded("undecodable state vector"),
                )?;
                self.server.learn_state_vector(&decoded);
                let diff = {
                    let replica = lock(&shared.replica);
                    replica
                        .workspace()
                        .encode_diff_v1(sv)
                        .map_err(|e| FrameError::Apply(e.into()))?
                };
                self.online = true;
                if !self.read_only {
                    shared.set_state(ConnectionState::Online);
                }
                self.acknowledge(shared)?;
                Ok(vec![encode_sync_step2(&diff)])
            }
            Message::SyncStep2(update) => {
                self.apply(shared, update)?;
                shared.pulled.send_replace(true);
                Ok(Vec::new())
            }
            Message::Update(update) => {
                self.apply(shared, update)?;
                Ok(Vec::new())
            }
            Message::Awareness(bytes) => {
                let entries = decode_awareness(bytes)?;
                let changed = lock(&shared.awareness).apply(entries, Instant::now())?;
                for client_id in changed {
                    let _ = shared.events.send(ClientEvent::Awareness { client_id });
                }
                Ok(Vec::new())
            }
            Message::Auth { kind, .. } => {
                if kind == PERMISSION_DENIED {
                    self.read_only = true;
                    shared.set_state(ConnectionState::ReadOnly);
                }
                Ok(Vec::new())
            }
            Message::QueryAwareness => {
                let aw = lock(&shared.awareness);
                Ok(if aw.has_local() {
                    vec![aw.local_frame()]
                } else {
                    Vec::new()
                })
            }
        }
    }

    fn apply(&mut self, shared: &Shared, update: &[u8]) -> Result<(), FrameError> {
        let stats = validate_update_v1(update, &self.limits)?;
        if stats.subdocs > 0 {
            return Err(FrameError::Subdocument(stats.subdocs));
        }
        lock(&shared.replica)
            .apply_remote(update)
            .map_err(FrameError::Apply)?;
        if let Some(u) = ack::decode(update) {
            self.server.learn_update(&u);
        }
        self.acknowledge(shared)
    }

    fn acknowledge(&mut self, shared: &Shared) -> Result<(), FrameError> {
        let mut replica = lock(&shared.replica);
        if replica.unsynced() == 0 {
            return Ok(());
        }
        replica
            .acknowledge(&self.server)
            .map_err(FrameError::Apply)?;
        shared.publish_unsynced(replica.unsynced());
        Ok(())
    }
}
