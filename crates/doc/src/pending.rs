//! Works around a yrs 0.28.1 defect in parking causally incomplete updates.
//!
//! yrs keeps an update whose dependencies have not arrived as "pending", with a state vector
//! of what it waits for, and retries it only when that state advances. When the dependencies
//! of a parked update chain across clients (A's item waits for B's, B's waits for a gap in A),
//! yrs can record the wrong client as missing and then never retries, although every update has
//! arrived: the replica silently stays behind (found by the convergence property test, seed
//! `043e4b22…` in `tests/it/convergence.proptest-regressions`). Yjs itself records the right
//! clock. We therefore retry the parked update ourselves after each apply, for as long as that
//! integrates something; while nothing is parked this costs one check.

use yrs::updates::encoder::Encode;
use yrs::{ReadTxn, TransactionMut, Update, WriteTxn, error::UpdateError};

/// Applies `update` and then re-applies whatever yrs parked while it still makes progress.
pub fn apply_update_retrying_pending(
    txn: &mut TransactionMut<'_>,
    update: Update,
) -> Result<(), UpdateError> {
    txn.apply_update(update)?;
    // Each round either integrates something (the state vector grows) or stops, and the state
    // vector is bounded by the parked blocks, so this terminates.
    loop {
        if !txn.has_missing_updates() {
            return Ok(());
        }
        let before = txn.state_vector().encode_v1();
        let deletes_before = txn.store().pending_ds().cloned();
        let Some(parked) = txn.prune_pending() else {
            return Ok(());
        };
        txn.apply_update(parked)?;
        if txn.state_vector().encode_v1() == before
            && txn.store().pending_ds() == deletes_before.as_ref()
        {
            return Ok(());
        }
    }
}
