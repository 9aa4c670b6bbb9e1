//! Inbound webhooks in the redb engine: dedupe by (integration, webhook id), parking of events
//! whose external id no call is linked to yet, and linking an external id to a call (which
//! applies what was parked for it).

use redb::{ReadableTable, WriteTransaction};
use uuid::Uuid;

use super::tables::{
    EXTERNAL, PARKED, ParkedEvent, WEBHOOK_SEEN, dec, enc, ext_key, parked_key, webhook_seen_key,
};
use super::txn::{self, Effects};
use crate::model::transition;
use crate::model::{ApiCall, EventKind};
use crate::outbox::{OutboxError, WebhookApply};

/// T4: applies a verified webhook (see `OutboxStore::apply_webhook`).
pub(super) fn apply(
    t: &WriteTransaction,
    integration: &str,
    webhook_id: &str,
    external_id: &str,
    kind: EventKind,
    now: u64,
    fx: &mut Effects,
) -> Result<WebhookApply, OutboxError> {
    let seen_key = webhook_seen_key(integration, webhook_id);
    {
        let mut seen = t.open_table(WEBHOOK_SEEN).map_err(OutboxError::db)?;
        if seen
            .get(seen_key.as_slice())
            .map_err(OutboxError::db)?
            .is_some()
        {
            return Ok(WebhookApply::Duplicate);
        }
        seen.insert(seen_key.as_slice(), now)
            .map_err(OutboxError::db)?;
    }
    let key = ext_key(integration, external_id);
    let call_id = {
        let ext = t.open_table(EXTERNAL).map_err(OutboxError::db)?;
        let r = ext.get(key.as_slice()).map_err(OutboxError::db)?;
        r.and_then(|g| Uuid::from_slice(g.value()).ok())
    };
    let Some(mut call) = call_id
        .map(|id| txn::load_call(t, &id))
        .transpose()?
        .flatten()
    else {
        let seq = txn::next_counter(t, "parked_seq")?;
        t.open_table(PARKED)
            .map_err(OutboxError::db)?
            .insert(
                parked_key(key, seq).as_slice(),
                enc(&ParkedEvent { kind, at: now })?.as_slice(),
            )
            .map_err(OutboxError::db)?;
        return Ok(WebhookApply::Parked);
    };
    let was = call.status;
    let event = transition::decide_webhook(&call, webhook_id, kind);
    txn::append(t, &mut call, vec![event], now)?;
    txn::settle(t, &mut call, was, fx)?;
    Ok(WebhookApply::Applied(Box::new(call)))
}

/// Indexes `external_id` → call and applies webhooks parked for it. The first link wins: an id
/// already linked to another call is left alone.
pub(super) fn link_external(
    t: &WriteTransaction,
    call: &mut ApiCall,
    ext: &str,
    now: u64,
    fx: &mut Effects,
) -> Result<(), OutboxError> {
    let key = ext_key(&call.integration, ext);
    {
        let mut links = t.open_table(EXTERNAL).map_err(OutboxError::db)?;
        let clash = links
            .get(key.as_slice())
            .map_err(OutboxError::db)?
            .and_then(|g| Uuid::from_slice(g.value()).ok());
        if clash.is_some_and(|other| other != call.id) {
            tracing::warn!(call_id = %call.id, external_id = ext, "external id already linked to another call; keeping the first");
            return Ok(());
        }
        links
            .insert(key.as_slice(), call.id.as_bytes().as_slice())
            .map_err(OutboxError::db)?;
    }
    let parked: Vec<(Vec<u8>, ParkedEvent)> = {
        let table = t.open_table(PARKED).map_err(OutboxError::db)?;
        let mut hi = key.clone();
        hi.extend_from_slice(&[0xff; 9]);
        let mut v = Vec::new();
        for item in table
            .range(key.as_slice()..hi.as_slice())
            .map_err(OutboxError::db)?
        {
            let (k, val) = item.map_err(OutboxError::db)?;
            v.push((k.value().to_vec(), dec(val.value())?));
        }
        v
    };
    if parked.is_empty() {
        return Ok(());
    }
    {
        let mut table = t.open_table(PARKED).map_err(OutboxError::db)?;
        for (k, _) in &parked {
            table.remove(k.as_slice()).map_err(OutboxError::db)?;
        }
    }
    let was = call.status;
    let kinds: Vec<EventKind> = parked.into_iter().map(|(_, p)| p.kind).collect();
    tracing::info!(call_id = %call.id, external_id = ext, n = kinds.len(), "applying parked webhooks");
    txn::append(t, call, kinds, now)?;
    txn::settle(t, call, was, fx)
}
