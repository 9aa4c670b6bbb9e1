//! Document history as the relay's API shows it: a version as JSON ([`VersionInfo`]), reading
//! a version's document back from its stored chain (`version_state`), and the restore update
//! (`restore.rs`). Taking versions and restoring them is the room actor's work
//! (`room/versions.rs`); storage and its rules are `store::versions`.

mod restore;

use std::sync::Arc;

use yrs::{ReadTxn, StateVector, Transact};

pub use restore::{RestoreError, restore_update};

use crate::error::RelayError;
use crate::room::{Applied, apply_update, new_doc};
use crate::store::versions::chain;
use crate::store::{RoomStore, StoreError, VersionKind, VersionMeta};

/// A version as `GET /api/rooms/{room}/versions` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VersionInfo {
    /// Opaque to clients (the stored id, as a string).
    pub id: String,
    /// The room's durable seq the version shows.
    pub seq: u64,
    /// Unix milliseconds.
    pub created_at: u64,
    pub label: Option<String>,
    /// Bytes the version takes in storage (a diff against the version before it, or the whole
    /// document).
    pub bytes: u64,
    pub kind: VersionKind,
}

impl From<&VersionMeta> for VersionInfo {
    fn from(m: &VersionMeta) -> Self {
        VersionInfo {
            id: m.id.to_string(),
            seq: m.seq,
            created_at: m.created_at_ms,
            label: m.label.clone(),
            bytes: m.bytes,
            kind: m.kind,
        }
    }
}

/// The listed versions of `room`, newest first.
pub(crate) async fn list(
    store: &Arc<dyn RoomStore>,
    room: &str,
) -> Result<Vec<VersionInfo>, RelayError> {
    let metas = store.versions(Arc::from(room)).await?;
    Ok(metas
        .iter()
        .rev()
        .filter(|m| m.listed)
        .map(VersionInfo::from)
        .collect())
}

/// The whole document at listed version `id` of `room`, as one v1 update.
pub(crate) async fn version_state(
    store: &Arc<dyn RoomStore>,
    room: &str,
    id: &str,
) -> Result<Vec<u8>, RelayError> {
    let not_found = || RelayError::VersionNotFound {
        room: room.to_owned(),
        id: id.to_owned(),
    };
    let wanted: u64 = id.parse().map_err(|_| not_found())?;
    let name: Arc<str> = Arc::from(room);
    let metas = store.versions(name.clone()).await?;
    if !metas.iter().any(|m| m.id == wanted && m.listed) {
        return Err(not_found());
    }
    let ids = chain(&metas, wanted).ok_or_else(|| {
        RelayError::Storage(Arc::new(StoreError::VersionMissing {
            room: room.to_owned(),
            id: wanted,
        }))
    })?;
    let data = store.version_data(name, ids).await?;
    tokio::task::spawn_blocking(move || rebuild(&data))
        .await
        .map_err(|e| RelayError::Internal(format!("version rebuild task failed: {e}")))?
}

/// Applies a version's chain (full row first) to an empty document and encodes the result.
fn rebuild(chain: &[Vec<u8>]) -> Result<Vec<u8>, RelayError> {
    let doc = new_doc();
    for part in chain {
        if !matches!(
            apply_update(&doc, part, usize::MAX),
            Applied::Changed | Applied::Noop
        ) {
            return Err(RelayError::Internal(
                "a stored version does not apply".into(),
            ));
        }
    }
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        doc.transact()
            .encode_state_as_update_v1(&StateVector::default())
    }))
    .map_err(|_| RelayError::Internal("yrs panicked encoding a version".into()))
}
