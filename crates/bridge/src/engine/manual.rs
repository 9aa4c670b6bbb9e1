//! What a user asks for by hand (`POST /api/calls/{id}/retry` and `/refresh`): a retry asks
//! the document actor to request attempt N+1 of the call's entry, so the new call comes from
//! the rules like any other; a refresh polls the external system for a started call now.

use tokio::sync::oneshot;
use uuid::Uuid;
use weaver_doc::{Status, StatusRecord};

use super::doc_actor::{DocActor, DocCmd};
use super::{BridgeHandle, blocking};
use crate::model::ApiCall;
use crate::outbox::Completion;
use crate::{BridgeError, now_ms};

/// Why a manual retry or refresh was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RetryError {
    #[error("no such call")]
    NotFound,
    /// The call's state does not allow it; the message says why (shown to the user).
    #[error("{0}")]
    Conflict(String),
    #[error("bridge is shutting down")]
    ShuttingDown,
    /// The entry was set to the next attempt, but the rules created no call for it.
    #[error("retry requested but no call was created")]
    NotCreated,
    #[error(transparent)]
    Bridge(#[from] BridgeError),
}

impl BridgeHandle {
    /// Asks the document actor for a manual retry (see `POST /api/calls/{id}/retry`).
    pub async fn retry(&self, call_id: Uuid) -> Result<ApiCall, RetryError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .doc_tx
            .send(DocCmd::Retry { call_id, reply })
            .map_err(|_| RetryError::ShuttingDown)?;
        rx.await.map_err(|_| RetryError::ShuttingDown)?
    }

    /// Polls the external system for a started call now and records the answer.
    pub async fn refresh(&self, call_id: Uuid) -> Result<ApiCall, RetryError> {
        let ob = self.inner.outbox.clone();
        let call = blocking(move || ob.get(&call_id))
            .await?
            .ok_or(RetryError::NotFound)?;
        if call.status.is_terminal() {
            return Ok(call);
        }
        let Some(integ) = self.inner.registry.get(&call.integration).cloned() else {
            return Err(RetryError::Conflict(format!(
                "integration {:?} is not configured",
                call.integration
            )));
        };
        if call.external_id.is_none() || !integ.can_poll() {
            return Err(RetryError::Conflict(
                "this call cannot be polled (not started, or no status_url)".into(),
            ));
        }
        let outcome = integ.poll(&call).await;
        let ob = self.inner.outbox.clone();
        let r = blocking(move || ob.complete(&call_id, None, outcome, now_ms(), &mut rand::rng()))
            .await?;
        self.inner.notify_writebacks();
        match r {
            Completion::Recorded(c) => Ok(*c),
            _ => {
                let ob = self.inner.outbox.clone();
                blocking(move || ob.get(&call_id))
                    .await?
                    .ok_or(RetryError::NotFound)
            }
        }
    }
}

impl DocActor {
    /// The document actor's half of a manual retry: writes `notStarted` at attempt N+1 for the
    /// call's entry and returns the call the rules created for it.
    pub(super) async fn retry(&mut self, call_id: Uuid) -> Result<ApiCall, RetryError> {
        let ob = self.inner.outbox.clone();
        let call = blocking(move || ob.get(&call_id))
            .await?
            .ok_or(RetryError::NotFound)?;
        if !call.status.is_terminal() {
            return Err(RetryError::Conflict(format!(
                "call is {}, not finished",
                call.status.as_str()
            )));
        }
        if !self.rooms.contains_key(&call.room) {
            self.load_room(&call.room).await?;
        }
        let entry = self
            .rooms
            .get(&call.room)
            .and_then(|m| m.ws.block(&call.block_id).ok().flatten())
            .and_then(|b| b.entry(&call.index_name).cloned())
            .ok_or_else(|| RetryError::Conflict("the index entry no longer exists".into()))?;
        if entry.attempt > u64::from(call.attempt) {
            return Err(RetryError::Conflict(format!(
                "a newer attempt ({}) exists",
                entry.attempt
            )));
        }
        let next = u64::from(call.attempt) + 1;
        let rec = StatusRecord::new(next, Status::NotStarted);
        self.write_record(&call.room, &call.block_id, &call.index_name, &rec)
            .await?;
        self.drain(&call.room).await;
        self.evaluate_block(&call.room, &call.block_id).await;
        let ob = self.inner.outbox.clone();
        let (r, b, i) = (
            call.room.clone(),
            call.block_id.clone(),
            call.index_name.clone(),
        );
        let attempt =
            u32::try_from(next).map_err(|_| RetryError::Conflict("attempt out of range".into()))?;
        blocking(move || ob.find_by_trigger(&r, &b, &i, attempt))
            .await?
            .ok_or(RetryError::NotCreated)
    }
}
