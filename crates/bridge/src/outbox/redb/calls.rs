//! The call lifecycle writes of the redb engine: create (T1), claim (T2), complete (T3),
//! cancel, rescue of expired leases, and making a call due. Each applies a decision of
//! `crate::model::transition` inside the caller's write transaction.

use std::collections::HashMap;

use rand::Rng;
use redb::{ReadableTable, WriteTransaction};
use uuid::Uuid;

use super::tables::{
    BY_ROOM, LEASE_EXPIRY, LEASES, READY, TRIGGERS, by_room_key, encode_lease, split_time_id,
    time_id_key, trigger_key,
};
use super::txn::Effects;
use super::{txn, webhooks};
use crate::config::RetryPolicy;
use crate::model::transition::{self, Decision, Fence, Retry};
use crate::model::{ApiCall, EventKind, NewCall, Outcome};
use crate::outbox::{Claim, Completion, OutboxError};
use crate::retry::next_delay_ms;

/// Most rows one claim or rescue transaction looks at (keeps each transaction short).
const SCAN_LIMIT: usize = 1024;

/// The retry delay of `policy`, with jitter from `rng`.
fn delay<'a>(
    policy: &'a RetryPolicy,
    mut rng: &'a mut dyn Rng,
) -> impl FnMut(u32, Option<u64>) -> u64 + 'a {
    move |tries, retry_after_ms| {
        next_delay_ms(
            policy,
            tries,
            retry_after_ms.map(std::time::Duration::from_millis),
            &mut rng,
        )
    }
}

/// T1: creates the call of each trigger unless one exists; `id_of(i)` names the call created
/// for `specs[i]` (fresh UUIDv7s, or the ids a replicated log recorded).
pub(super) fn create(
    t: &WriteTransaction,
    specs: Vec<NewCall>,
    now: u64,
    id_of: &mut dyn FnMut(usize) -> Uuid,
) -> Result<Vec<(ApiCall, bool)>, OutboxError> {
    let mut out = Vec::with_capacity(specs.len());
    for (i, spec) in specs.into_iter().enumerate() {
        let key = trigger_key(&spec.room, &spec.block_id, &spec.index_name, spec.attempt);
        let existing = {
            let tr = t.open_table(TRIGGERS).map_err(OutboxError::db)?;
            let r = tr.get(key.as_slice()).map_err(OutboxError::db)?;
            r.and_then(|g| Uuid::from_slice(g.value()).ok())
        };
        if let Some(id) = existing
            && let Some(call) = txn::load_call(t, &id)?
        {
            out.push((call, false));
            continue;
        }
        let id = id_of(i);
        let mut call = ApiCall::new(id, spec, now);
        t.open_table(BY_ROOM)
            .map_err(OutboxError::db)?
            .insert(by_room_key(&call).as_slice(), [].as_slice())
            .map_err(OutboxError::db)?;
        t.open_table(TRIGGERS)
            .map_err(OutboxError::db)?
            .insert(key.as_slice(), id.as_bytes().as_slice())
            .map_err(OutboxError::db)?;
        txn::append(t, &mut call, vec![EventKind::Created], now)?;
        txn::set_ready(t, &mut call, Some(now))?;
        txn::save_call(t, &call)?;
        out.push((call, true));
    }
    Ok(out)
}

/// Ids of the first rows (at most `SCAN_LIMIT`) of a time-keyed table up to `until`.
fn due_ids(
    t: &WriteTransaction,
    def: redb::TableDefinition<&[u8], &[u8]>,
    until: u64,
) -> Result<Vec<Uuid>, OutboxError> {
    let table = t.open_table(def).map_err(OutboxError::db)?;
    let hi = time_id_key(until, &Uuid::max());
    let mut v = Vec::new();
    for item in table
        .range(..=hi.as_slice())
        .map_err(OutboxError::db)?
        .take(SCAN_LIMIT)
    {
        let (k, _) = item.map_err(OutboxError::db)?;
        if let Some((_, id)) = split_time_id(k.value()) {
            v.push(id);
        }
    }
    Ok(v)
}

/// T2: leases due calls (see `OutboxStore::claim_due`). Tokens continue the `fence` counter,
/// raised to `floor` first when it is lower (a replicated log derives the floor from its
/// own sequence so tokens keep increasing across leaders).
pub(super) fn claim_due(
    t: &WriteTransaction,
    policy: &RetryPolicy,
    (now, floor): (u64, u64),
    slots: &HashMap<String, usize>,
    max: usize,
    fx: &mut Effects,
) -> Result<Vec<Claim>, OutboxError> {
    let due = due_ids(t, READY, now)?;
    if !due.is_empty() {
        txn::raise_counter(t, "fence", floor)?;
    }
    let mut left: HashMap<String, usize> = slots.clone();
    let mut claims = Vec::new();
    for id in due {
        if claims.len() >= max {
            break;
        }
        let Some(mut call) = txn::load_call(t, &id)? else {
            continue;
        };
        let free = left.entry(call.integration.clone()).or_insert(1);
        if *free == 0 {
            continue;
        }
        *free -= 1;
        let was = call.status;
        let token = txn::next_counter(t, "fence")?;
        let step = transition::decide_claim(&call, token);
        call.tries = step.tries;
        let until = now + policy.lease_ms;
        txn::set_ready(t, &mut call, None)?;
        txn::drop_lease(t, &id)?;
        t.open_table(LEASES)
            .map_err(OutboxError::db)?
            .insert(
                id.as_bytes().as_slice(),
                encode_lease(token, until).as_slice(),
            )
            .map_err(OutboxError::db)?;
        t.open_table(LEASE_EXPIRY)
            .map_err(OutboxError::db)?
            .insert(time_id_key(until, &id).as_slice(), [].as_slice())
            .map_err(OutboxError::db)?;
        if !step.events.is_empty() {
            txn::append(t, &mut call, step.events, now)?;
        }
        txn::settle(t, &mut call, was, fx)?;
        claims.push(Claim {
            call,
            token,
            phase: step.phase,
        });
    }
    Ok(claims)
}

/// T3: records one outcome, `(call id, fencing token, outcome)` (see `OutboxStore::complete`).
pub(super) fn complete(
    t: &WriteTransaction,
    policy: &RetryPolicy,
    (id, token, outcome): (Uuid, Option<u64>, Outcome),
    now: u64,
    rng: &mut dyn Rng,
    fx: &mut Effects,
) -> Result<Completion, OutboxError> {
    let id = &id;
    // Drawn before the retry delays, from the caller's rng, so a log replaying the same seed
    // names a synchronous success's external id the same way.
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    let sync_id = uuid::Builder::from_random_bytes(bytes).into_uuid();
    let Some(mut call) = txn::load_call(t, id)? else {
        return Ok(Completion::Ignored);
    };
    // Only a result that came with a token needs the lease read.
    let held = match token {
        Some(_) if !call.status.is_terminal() => txn::lease(t, id)?.map(|(tok, _)| tok),
        _ => None,
    };
    let mut delay = delay(policy, rng);
    let retry = Retry {
        max_attempts: policy.max_attempts,
        delay: &mut delay,
    };
    let decision = transition::decide_completion(
        &call,
        Fence::check(token, held),
        outcome,
        now,
        retry,
        || sync_id.to_string(),
    );
    let step = match decision {
        Decision::Late(event) => {
            txn::append(t, &mut call, vec![event], now)?;
            txn::save_call(t, &call)?;
            return Ok(Completion::Ignored);
        }
        Decision::Fenced(event) => {
            txn::append(t, &mut call, vec![event], now)?;
            txn::save_call(t, &call)?;
            return Ok(Completion::Fenced);
        }
        Decision::Record(step) => step,
    };
    let was = call.status;
    if step.release_lease {
        txn::drop_lease(t, id)?;
    }
    call.tries = step.tries;
    call.started_at = step.started_at;
    txn::append(t, &mut call, step.events, now)?;
    if !call.status.is_terminal() {
        // An unleased refresh must not leave a second queue entry behind.
        txn::set_ready(t, &mut call, step.ready_at)?;
    }
    txn::settle(t, &mut call, was, fx)?;
    if let Some(ext) = step.link_external {
        webhooks::link_external(t, &mut call, &ext, now, fx)?;
    }
    Ok(Completion::Recorded(Box::new(call)))
}

/// Cancels a non-terminal call; returns whether anything changed.
pub(super) fn cancel(
    t: &WriteTransaction,
    id: &Uuid,
    reason: &str,
    now: u64,
    fx: &mut Effects,
) -> Result<bool, OutboxError> {
    let Some(mut call) = txn::load_call(t, id)? else {
        return Ok(false);
    };
    let was = call.status;
    let Some(event) = transition::decide_cancel(&call, reason) else {
        return Ok(false);
    };
    txn::append(t, &mut call, vec![event], now)?;
    txn::settle(t, &mut call, was, fx)?;
    Ok(true)
}

/// Rescues calls whose lease expired before `now` (every leased call with `all`).
pub(super) fn rescue_expired(
    t: &WriteTransaction,
    policy: &RetryPolicy,
    now: u64,
    all: bool,
    rng: &mut dyn Rng,
    fx: &mut Effects,
) -> Result<Vec<Uuid>, OutboxError> {
    let expired = due_ids(t, LEASE_EXPIRY, if all { u64::MAX } else { now })?;
    let mut delay = delay(policy, rng);
    for id in &expired {
        let lease = txn::drop_lease(t, id)?;
        let Some(mut call) = txn::load_call(t, id)? else {
            continue;
        };
        let was = call.status;
        let token = lease.map_or(0, |(tok, _)| tok);
        let retry = Retry {
            max_attempts: policy.max_attempts,
            delay: &mut delay,
        };
        let Some(step) = transition::decide_rescue(&call, token, now, all, retry) else {
            continue;
        };
        txn::append(t, &mut call, step.events, now)?;
        if !call.status.is_terminal() {
            txn::set_ready(t, &mut call, step.ready_at)?;
        }
        txn::settle(t, &mut call, was, fx)?;
        tracing::warn!(call_id = %id, room = %call.room, token, "lease expired; call rescued");
    }
    Ok(expired)
}

/// Makes an unleased, unfinished call due now; false for an unknown or terminal call.
pub(super) fn make_due(t: &WriteTransaction, id: &Uuid, now: u64) -> Result<bool, OutboxError> {
    let Some(mut call) = txn::load_call(t, id)? else {
        return Ok(false);
    };
    if call.status.is_terminal() {
        return Ok(false);
    }
    if !txn::is_leased(t, id)? {
        txn::set_ready(t, &mut call, Some(now))?;
        txn::save_call(t, &call)?;
    }
    Ok(true)
}
