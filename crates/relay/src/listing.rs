//! `GET /api/rooms` in cluster mode: every room of the cluster, wherever its actor runs.
//! Stored rooms come from the shared store (the same on every node); what only the node
//! running a room knows (`loaded`, `connections`) comes from the other live nodes
//! (`RoomPlacement::peers`), asked in parallel with the same query and token. A peer's request
//! carries [`LOCAL_LISTING`], so it answers with its own open rooms only and never asks
//! further. A peer that does not answer within [`PEER_DEADLINE`] is named in the page's
//! `unreachable` instead of failing the listing (its rooms are still listed from storage).
//! Must not know: how peers are found (placement), the store's engine.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use tracing::warn;

use crate::error::RelayError;
use crate::relay::{RelayHandle, RoomPage};

/// Marks a listing asked by another node: answer with this node's open rooms only.
pub(crate) const LOCAL_LISTING: HeaderName = HeaderName::from_static("x-weaver-listing");

/// How long a listing waits for the other nodes.
pub(crate) const PEER_DEADLINE: Duration = Duration::from_secs(2);

/// One page of the listing (routes.rs checked the query). `query` is the request's raw query
/// and `headers` its headers: both are passed on to the peers, which check the token again.
pub(crate) async fn page(
    relay: &RelayHandle,
    (prefix, after, limit): (&str, Option<&str>, usize),
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<RoomPage, RelayError> {
    if headers.contains_key(&LOCAL_LISTING) {
        return Ok(RoomPage {
            rooms: relay.open_rooms(prefix, after, limit),
            next: None,
            unreachable: Vec::new(),
        });
    }
    let peers = relay
        .config()
        .placement
        .peers()
        .await
        .map_err(|e| RelayError::Placement(std::sync::Arc::new(e)))?;
    let mut open = relay.open_rooms(prefix, after, limit);
    if peers.is_empty() {
        return relay.list_rooms_with(prefix, after, limit, open).await;
    }
    let path = match query {
        Some(q) if !q.is_empty() => format!("/api/rooms?{q}"),
        _ => "/api/rooms".to_owned(),
    };
    let mut ask = HeaderMap::new();
    ask.insert(LOCAL_LISTING, HeaderValue::from_static("local"));
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        ask.insert(header::AUTHORIZATION, auth.clone());
    }
    let answers = futures_util::future::join_all(peers.iter().map(|peer| {
        let (path, ask) = (path.as_str(), ask.clone());
        async move {
            let r =
                crate::forward::http::get_json::<RoomPage>(peer, path, ask, PEER_DEADLINE).await;
            (peer, r)
        }
    }))
    .await;
    let mut unreachable = Vec::new();
    for (peer, answer) in answers {
        match answer {
            Ok(p) => open.extend(p.rooms.into_iter().take(limit + 1)),
            Err(e) => {
                warn!(node = %peer.node_id, error = %e, "a node did not answer the room listing");
                unreachable.push(peer.node_id.clone());
            }
        }
    }
    let mut page = relay.list_rooms_with(prefix, after, limit, open).await?;
    page.unreachable = unreachable;
    Ok(page)
}
