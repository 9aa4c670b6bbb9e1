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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::placement::{BoxFuture, OwnerGuard, Placement, PlacementError, RemoteOwner};

    /// Every room here, and fixed peers: what `LeasePlacement` answers, without NATS.
    #[derive(Debug)]
    struct Peers(Vec<RemoteOwner>);

    impl crate::RoomPlacement for Peers {
        fn place<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Placement, PlacementError>> {
            Box::pin(async { Ok(Placement::Local(OwnerGuard::unfenced())) })
        }
        fn owner<'a>(
            &'a self,
            _: &'a str,
        ) -> BoxFuture<'a, Result<Option<RemoteOwner>, PlacementError>> {
            Box::pin(async { Ok(None) })
        }
        fn peers(&self) -> BoxFuture<'_, Result<Vec<RemoteOwner>, PlacementError>> {
            let peers = self.0.clone();
            Box::pin(async move { Ok(peers) })
        }
    }

    /// A relay on loopback with its own redb file; returns its handle and URL.
    async fn node(
        peers: Vec<RemoteOwner>,
        shutdown: &tokio_util::sync::CancellationToken,
        dir: &std::path::Path,
    ) -> (RelayHandle, String) {
        let db = crate::open_database(dir).unwrap();
        let config = crate::RelayConfig {
            placement: Arc::new(Peers(peers)),
            ..crate::RelayConfig::default()
        };
        let store = crate::RedbRoomStore::start(db, crate::CommitMode::default()).unwrap();
        let relay = crate::Relay::start(store, config, shutdown.clone()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(crate::serve(
            listener,
            relay.router(),
            crate::HttpLimits::default(),
            shutdown.clone().cancelled_owned(),
        ));
        (relay.handle(), url)
    }

    async fn connect(url: &str, room: &str) -> impl Sized {
        let ws = url.replacen("http://", "ws://", 1);
        tokio_tungstenite::connect_async(format!("{ws}/{room}"))
            .await
            .unwrap()
            .0
    }

    /// A listing on one node shows the rooms open on a peer with the peer's counts, pages
    /// across both exactly, and names a peer that does not answer instead of failing.
    #[tokio::test]
    async fn a_listing_merges_what_peers_have_open_and_names_silent_ones() {
        let shutdown = tokio_util::sync::CancellationToken::new();
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (_b, b_url) = node(Vec::new(), &shutdown, dir_b.path()).await;
        // A port nobody listens on: connecting is refused at once.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gone_url = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let peers = vec![
            RemoteOwner {
                node_id: "b".into(),
                url: b_url.clone(),
            },
            RemoteOwner {
                node_id: "gone".into(),
                url: gone_url,
            },
        ];
        let (a, a_url) = node(peers, &shutdown, dir_a.path()).await;
        let _on_a = connect(&a_url, "room-a").await;
        let _on_b = (
            connect(&b_url, "room-b").await,
            connect(&b_url, "room-b").await,
        );
        let list = |limit: usize, after: Option<&'static str>| {
            let a = a.clone();
            async move {
                page(&a, ("room-", after, limit), None, &HeaderMap::new())
                    .await
                    .unwrap()
            }
        };
        // The clients' joins complete on their own; bounded wait for both rooms to be open.
        let mut whole = list(10, None).await;
        for _ in 0..100 {
            if whole.rooms.iter().map(|r| r.connections).sum::<usize>() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            whole = list(10, None).await;
        }
        let seen: Vec<(&str, bool, usize)> = whole
            .rooms
            .iter()
            .map(|r| (r.name.as_str(), r.loaded, r.connections))
            .collect();
        assert_eq!(seen, vec![("room-a", true, 1), ("room-b", true, 2)]);
        assert_eq!(whole.unreachable, vec!["gone".to_owned()]);
        assert_eq!(whole.next, None);
        let first = list(1, None).await;
        assert_eq!(first.rooms.len(), 1);
        assert_eq!(first.rooms[0].name, "room-a");
        assert_eq!(first.next.as_deref(), Some("room-a"));
        let second = list(1, Some("room-a")).await;
        assert_eq!(second.rooms[0].name, "room-b");
        assert_eq!(second.rooms[0].connections, 2);
        assert_eq!(second.next, None);
        // A peer's own answer (the marked request) holds only its open rooms, never asks on.
        let mut marked = HeaderMap::new();
        marked.insert(LOCAL_LISTING, HeaderValue::from_static("local"));
        let local = page(&a, ("room-", None, 10), None, &marked).await.unwrap();
        assert_eq!(local.rooms.len(), 1);
        assert!(local.unreachable.is_empty());
        shutdown.cancel();
    }
}
