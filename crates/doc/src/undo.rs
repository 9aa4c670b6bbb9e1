//! [`LocalUndo`]: undo/redo of one local origin's edits, built on yrs' `UndoManager` with an
//! explicit tracked origin, so remote peers' and the bridge's writes are never undone.

use std::collections::HashSet;

use yrs::UndoManager;
use yrs::undo::Options as UndoOptions;

use crate::{DocError, Workspace};

/// Undo/redo scoped to transactions with one origin (e.g. `"local"`) on the `blocks` tree.
///
/// Only transactions written with exactly that origin are captured: updates applied from
/// peers, the bridge's writes ([`crate::BRIDGE_ORIGIN`]) and origin-less transactions are not.
/// Undo follows Yjs semantics: it reverts this origin's insertions and deletions, and leaves
/// concurrent changes by others in place. Undo and redo are ordinary transactions: peers get
/// them as updates and observers see them (with the undo manager's own binary origin).
pub struct LocalUndo {
    mgr: UndoManager,
    ws: Workspace,
}

impl std::fmt::Debug for LocalUndo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalUndo")
            .field("can_undo", &self.mgr.can_undo())
            .field("can_redo", &self.mgr.can_redo())
            .finish()
    }
}

impl LocalUndo {
    /// Tracks `origin`'s edits on `ws`. Consecutive edits within `capture_timeout_ms` merge
    /// into one undo step (Yjs default: 500 ms; 0 makes every transaction its own step).
    /// Fails with [`DocError::Busy`] while a transaction is open on `ws`.
    pub fn new(ws: &Workspace, origin: &str, capture_timeout_ms: u64) -> Result<Self, DocError> {
        ws.idle()?;
        let options = UndoOptions {
            capture_timeout_millis: capture_timeout_ms,
            tracked_origins: HashSet::from([yrs::Origin::from(origin)]),
            ..UndoOptions::default()
        };
        let mut mgr = UndoManager::with_options(options);
        mgr.expand_scope(ws.doc(), ws.blocks_map());
        Ok(LocalUndo {
            mgr,
            ws: ws.clone(),
        })
    }

    /// Reverts the last step; `Ok(false)` if there was nothing to undo. Fails with
    /// [`DocError::Busy`] instead of deadlocking when a transaction is open.
    pub fn undo(&mut self) -> Result<bool, DocError> {
        self.ws.idle()?;
        Ok(self.mgr.undo_blocking())
    }

    /// Re-applies the last undone step; `Ok(false)` if there was nothing to redo.
    pub fn redo(&mut self) -> Result<bool, DocError> {
        self.ws.idle()?;
        Ok(self.mgr.redo_blocking())
    }

    /// Is there something to undo?
    pub fn can_undo(&self) -> bool {
        self.mgr.can_undo()
    }

    /// Is there something to redo?
    pub fn can_redo(&self) -> bool {
        self.mgr.can_redo()
    }

    /// Ends the current step: the next edit starts a new one.
    pub fn stop_capturing(&mut self) {
        self.mgr.reset();
    }

    /// Forgets all undo and redo steps.
    pub fn clear(&mut self) -> Result<(), DocError> {
        self.ws.idle()?;
        self.mgr.clear_all();
        Ok(())
    }
}
