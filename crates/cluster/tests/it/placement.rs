//! Room placement by lease with real relays: two `Relay`s in this process, each with its own
//! HTTP server on loopback and a `LeasePlacement` (own node id and URL), sharing one room
//! store (redb on a temp file: only the owner writes, which is what is tested). Clients are
//! raw y-websocket clients (tokio-tungstenite), as in the relay's own tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use weaver_cluster::testing::{NatsServer, unique};
use weaver_cluster::{LeaseConfig, LeasePlacement, Leases, NodeRegistry, RegistryConfig};
use weaver_relay::store::wrapped::{StopWith, Wrapped};
use weaver_relay::{Relay, RelayConfig, RelayHandle, RoomStore};
use yrs::updates::decoder::Decode;
use yrs::{GetString, ReadTxn, Text, Transact, Update};

use crate::support::Proxy;

const WAIT: Duration = Duration::from_secs(10);
const TTL: Duration = Duration::from_millis(1500);

/// What the nodes of one test share: the NATS buckets and the room store.
struct Cluster {
    nats: Arc<NatsServer>,
    leases: LeaseConfig,
    nodes: RegistryConfig,
    store: Arc<dyn RoomStore>,
    /// Every node's `--auth-key` (none: open).
    auth: Option<weaver_auth::TokenKey>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn new() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let db = weaver_relay::open_database(dir.path()).unwrap();
        let store: Arc<dyn RoomStore> =
            weaver_relay::RedbRoomStore::start(db, weaver_relay::CommitMode::default()).unwrap();
        Cluster {
            nats: NatsServer::shared(),
            leases: LeaseConfig {
                bucket: unique("leases"),
                ttl: TTL,
                margin: TTL / 5,
                replicas: 1,
            },
            nodes: RegistryConfig {
                bucket: unique("nodes"),
                ttl: TTL,
                ..RegistryConfig::default()
            },
            store,
            auth: None,
            _dir: dir,
        }
    }

    /// A node reaching NATS directly.
    async fn node(&self, id: &str) -> Node {
        self.node_via(id, &self.nats.url()).await
    }

    /// A node reaching NATS at `nats_url` (a freezable proxy in the fencing test).
    async fn node_via(&self, id: &str, nats_url: &str) -> Node {
        let client = weaver_cluster::connect(nats_url, id).await.unwrap();
        let js = weaver_cluster::jetstream(client, Duration::from_secs(2));
        let leases = Leases::open(&js, self.leases.clone()).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let url = format!("http://{addr}");
        let registry = NodeRegistry::start(&js, self.nodes.clone(), id, &url)
            .await
            .unwrap();
        let placement = LeasePlacement::new(leases.clone(), registry.directory(), id, 3 * TTL);
        let config = RelayConfig {
            placement: Arc::new(placement),
            auth: weaver_relay::AuthConfig {
                key: self.auth.clone(),
                ..weaver_relay::AuthConfig::default()
            },
            ..RelayConfig::default()
        };
        let shutdown = CancellationToken::new();
        let relay = Relay::start(
            // Every node's relay stops "its" store on shutdown, but the file is the cluster's, so
            // stopping is left to the test.
            Arc::new(Wrapped::new(self.store.clone(), StopWith::Nothing)),
            config,
            shutdown.clone(),
        )
        .unwrap();
        let server = tokio::spawn(weaver_relay::serve(
            listener,
            relay.router(),
            weaver_relay::HttpLimits::default(),
            shutdown.clone().cancelled_owned(),
        ));
        Node {
            addr,
            handle: relay.handle(),
            relay: Some(relay),
            leases,
            registry: Some(registry),
            shutdown,
            server: Some(server),
        }
    }
}

struct Node {
    addr: SocketAddr,
    handle: RelayHandle,
    relay: Option<Relay>,
    leases: Leases,
    registry: Option<NodeRegistry>,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Node {
    async fn client(&self, room: &str) -> Client {
        Client::connect(self.addr, room).await
    }

    /// Graceful stop: rooms commit and release their leases, the node leaves the registry.
    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(r) = self.relay.take() {
            r.shutdown().await;
        }
        if let Some(s) = self.server.take() {
            let _ = tokio::time::timeout(WAIT, s).await;
        }
        self.leases.stop().await;
        if let Some(r) = self.registry.take() {
            r.stop().await;
        }
    }
}

struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    async fn connect(addr: SocketAddr, room: &str) -> Client {
        Client::connect_with(addr, room, None).await
    }

    /// Connects with `Authorization: Bearer <token>`.
    async fn connect_with(addr: SocketAddr, room: &str, token: Option<&str>) -> Client {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!("ws://{addr}/{room}").into_client_request().unwrap();
        if let Some(t) = token {
            req.headers_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
            .await
            .unwrap()
            .unwrap();
        Client { ws }
    }

    async fn send(&mut self, frame: &[u8]) {
        self.ws
            .send(Message::Binary(frame.to_vec().into()))
            .await
            .unwrap();
    }

    async fn recv(&mut self) -> Vec<u8> {
        self.try_recv().await.expect("connection closed")
    }

    /// The next binary frame; `None` once the server closed the connection.
    async fn try_recv(&mut self) -> Option<Vec<u8>> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for a frame");
            match msg {
                Some(Ok(Message::Binary(b))) => return Some(b.to_vec()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(other)) => panic!("expected a binary frame, got {other:?}"),
            }
        }
    }

    /// The handshake, or `None` when the server closed the connection first (the room is
    /// being placed again: y-websocket would reconnect).
    async fn try_handshake(&mut self) -> Option<Vec<u8>> {
        let first = self.try_recv().await?;
        assert_eq!(&first[..2], &[0, 0], "first frame is step1");
        self.send(&[0, 0, 1, 0]).await;
        loop {
            let f = self.try_recv().await?;
            if f.starts_with(&[0, 1]) {
                return Some(sync_payload(&f));
            }
        }
    }

    async fn recv_until(&mut self, pred: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        loop {
            let f = self.recv().await;
            if pred(&f) {
                return f;
            }
        }
    }

    /// Completes the handshake; returns the server's whole document (its step2).
    async fn handshake(&mut self) -> Vec<u8> {
        let first = self.recv().await;
        assert_eq!(&first[..2], &[0, 0], "first frame is step1");
        self.send(&[0, 0, 1, 0]).await;
        let step2 = self.recv_until(|f| f.starts_with(&[0, 1])).await;
        sync_payload(&step2)
    }

    /// Reads until the server's close frame; returns its code.
    async fn expect_close(&mut self) -> u16 {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for close");
            match msg {
                Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
                Some(Ok(Message::Close(None))) => return 1005,
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("error before close frame: {e}"),
                None => panic!("stream ended without close frame"),
            }
        }
    }
}

fn sync_payload(frame: &[u8]) -> Vec<u8> {
    assert_eq!(frame[0], 0);
    let mut r = weaver_protocol::Reader::new(&frame[2..]);
    r.read_var_u8_array().unwrap().to_vec()
}

fn update_frame(update: &[u8]) -> Vec<u8> {
    weaver_protocol::encode_update(update)
}

/// A one-client document producing updates.
struct Writer {
    doc: yrs::Doc,
}

impl Writer {
    fn new(client_id: u64) -> Writer {
        Writer {
            doc: yrs::Doc::with_client_id(client_id),
        }
    }

    fn append(&self, s: &str) -> Vec<u8> {
        let text = self.doc.get_or_insert_text("t");
        let mut txn = self.doc.transact_mut();
        let len = text.len(&txn);
        text.insert(&mut txn, len, s);
        txn.encode_update_v1()
    }
}

fn text_of(update: &[u8]) -> String {
    let doc = yrs::Doc::new();
    let text = doc.get_or_insert_text("t");
    doc.transact_mut()
        .apply_update(Update::decode_v1(update).unwrap())
        .unwrap();
    text.get_string(&doc.transact())
}

/// Sends `update` (which appends `s` to `w`'s text) and waits until this client saw it come
/// back: the room committed it (durable before anyone sees it).
async fn send_acked(c: &mut Client, w: &Writer, s: &str) {
    let before = w
        .doc
        .transact()
        .encode_state_as_update_v1(&yrs::StateVector::default());
    let update = w.append(s);
    let want = text_of(
        &w.doc
            .transact()
            .encode_state_as_update_v1(&yrs::StateVector::default()),
    );
    c.send(&update_frame(&update)).await;
    loop {
        let f = c.recv_until(|f| f.starts_with(&[0, 2])).await;
        let mirror = yrs::Doc::new();
        let text = mirror.get_or_insert_text("t");
        let mut txn = mirror.transact_mut();
        txn.apply_update(Update::decode_v1(&before).unwrap())
            .unwrap();
        txn.apply_update(Update::decode_v1(&sync_payload(&f)).unwrap())
            .unwrap();
        if text.get_string(&txn) == want {
            return;
        }
    }
}

/// Connects to `node` until a handshake completes (bounded); returns the client and the
/// document it received.
async fn join_retrying(node: &Node, room: &str) -> (Client, Vec<u8>) {
    let give_up = tokio::time::Instant::now() + WAIT;
    loop {
        let mut c = node.client(room).await;
        if let Some(doc) = c.try_handshake().await {
            return (c, doc);
        }
        assert!(tokio::time::Instant::now() < give_up, "never joined {room}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let give_up = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(tokio::time::Instant::now() < give_up, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn clients_on_both_nodes_converge_and_only_the_owner_runs_the_room() {
    let cluster = Cluster::new();
    let a = cluster.node("a").await;
    let b = cluster.node("b").await;
    let room = unique("conv");

    // The first client places the room on its node.
    let mut on_a = a.client(&room).await;
    on_a.handshake().await;
    let mut on_b = b.client(&room).await;
    on_b.handshake().await;
    assert_eq!(a.handle.loaded_rooms(), 1);
    assert_eq!(b.handle.loaded_rooms(), 0, "only the owner runs the room");
    let holder = a.leases.holder(&room).await.unwrap().unwrap().0;
    assert_eq!(holder, "a");

    let wa = Writer::new(1);
    let wb = Writer::new(2);
    on_a.send(&update_frame(&wa.append("from a;"))).await;
    on_b.recv_until(|f| f.starts_with(&[0, 2])).await;
    on_b.send(&update_frame(&wb.append("from b;"))).await;
    let seen = on_a.recv_until(|f| f.starts_with(&[0, 2])).await;
    let _ = seen;

    // Awareness from the forwarded client reaches the owner's client.
    let state = br#"{"user":"b"}"#;
    let awareness =
        weaver_protocol::encode_awareness_message(&weaver_protocol::encode_awareness(&[
            weaver_protocol::AwarenessEntry {
                client_id: 2,
                clock: 1,
                state: String::from_utf8(state.to_vec()).unwrap(),
            },
        ]));
    on_b.send(&awareness).await;
    let got = on_a.recv_until(|f| f.first() == Some(&1)).await;
    assert!(
        got.windows(state.len()).any(|w| w == state),
        "awareness from b"
    );

    // Both see the same document, through either node's HTTP API too.
    let mut late_b = b.client(&room).await;
    let doc = late_b.handshake().await;
    let text = text_of(&doc);
    assert!(
        text.contains("from a;") && text.contains("from b;"),
        "{text}"
    );
    assert_eq!(text_of(&a.handle.room_state(&room).await.unwrap()), text);

    // The HTTP room API on the non-owner is the owner's: a POSTed update reaches the owner's
    // clients, and a read on B shows it, without B ever loading the room.
    let http_update = Writer::new(3).append("over http;");
    let (status, _) = http(
        b.addr,
        "POST",
        &format!("/api/rooms/{room}/update"),
        &http_update,
    )
    .await;
    assert_eq!(status, 204);
    on_a.recv_until(|f| f.starts_with(&[0, 2])).await;
    let (status, body) = http(b.addr, "GET", &format!("/api/rooms/{room}/update"), &[]).await;
    assert_eq!(status, 200);
    assert!(text_of(&body).contains("over http;"));
    assert_eq!(
        b.handle.loaded_rooms(),
        0,
        "B forwarded, never loaded the room"
    );

    a.stop().await;
    b.stop().await;
}

/// One HTTP/1.1 request (`Connection: close`); returns the status and the body.
async fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let status = head[9..12].parse().unwrap();
    let mut body = out[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}

#[tokio::test]
async fn stopping_the_owner_moves_the_room_and_loses_nothing_acknowledged() {
    let cluster = Cluster::new();
    let a = cluster.node("a").await;
    let b = cluster.node("b").await;
    let room = unique("failover");
    let mut on_a = a.client(&room).await;
    on_a.handshake().await;
    let mut on_b = b.client(&room).await;
    on_b.handshake().await;
    let w = Writer::new(7);
    let mut expected = String::new();
    for i in 0..20 {
        let s = format!("{i};");
        expected.push_str(&s);
        // Alternate nodes: each update is acknowledged (echoed) before the next.
        if i % 2 == 0 {
            send_acked(&mut on_a, &w, &s).await;
        } else {
            send_acked(&mut on_b, &w, &s).await;
        }
    }

    a.stop().await;
    assert_eq!(on_a.expect_close().await, 1012);
    let code = on_b.expect_close().await;
    assert!(
        code == 1012 || code == 1013,
        "forwarded client closed with {code}"
    );

    // The reconnecting client lands on the remaining node, which now owns the room.
    let (_again, doc) = join_retrying(&b, &room).await;
    assert_eq!(text_of(&doc), expected, "nothing acknowledged is lost");
    assert_eq!(b.handle.loaded_rooms(), 1);
    assert_eq!(b.leases.holder(&room).await.unwrap().unwrap().0, "b");
    b.stop().await;
}

#[tokio::test]
async fn an_owner_that_cannot_renew_stops_before_another_node_takes_over() {
    let cluster = Cluster::new();
    let proxy = Proxy::start(&cluster.nats.url()).await;
    let a = cluster.node_via("a", &proxy.url).await;
    let b = cluster.node("b").await;
    let room = unique("fence");
    let mut on_a = a.client(&room).await;
    on_a.handshake().await;
    let w = Writer::new(9);
    send_acked(&mut on_a, &w, "before;").await;
    let mut events = a.handle.subscribe();

    // A's NATS connection stalls: its lease cannot be renewed.
    let frozen_at = tokio::time::Instant::now();
    proxy.freeze(true, true);
    // Keep writing to A: nothing may commit once it is fenced.
    on_a.send(&update_frame(&w.append("late;"))).await;
    let code = on_a.expect_close().await;
    let closed_after = frozen_at.elapsed();
    assert_eq!(code, 1012, "the fenced owner closes its sockets");
    assert!(
        closed_after < TTL,
        "fenced before the lease can expire ({closed_after:?})"
    );
    eventually("room unloaded on the fenced owner", || {
        a.handle.loaded_rooms() == 0
    })
    .await;

    // B takes the room over once the lease expired; A committed nothing after its fence.
    let (mut on_b, doc) = join_retrying(&b, &room).await;
    assert!(
        frozen_at.elapsed() >= TTL - TTL / 5,
        "B acquired only after A's deadline"
    );
    assert_eq!(b.handle.loaded_rooms(), 1);
    let text = text_of(&doc);
    assert!(text.starts_with("before;"), "{text}");
    // Whatever A committed (at most the update racing its fence) was committed before it
    // fenced: B's copy is the durable one, and A publishes nothing more.
    while let Ok(ev) = events.try_recv() {
        if let weaver_relay::RelayEvent::Committed(u) = ev {
            assert!(text_of_update_in(&doc, &u.update));
        }
    }
    send_acked(&mut on_b, &w, "after;").await;

    proxy.freeze(false, false);
    b.stop().await;
    a.stop().await;
}

/// Whether `update` is contained in the document `doc` (applying it changes nothing).
fn text_of_update_in(doc: &[u8], update: &[u8]) -> bool {
    let before = text_of(doc);
    let d = yrs::Doc::new();
    let text = d.get_or_insert_text("t");
    let mut txn = d.transact_mut();
    txn.apply_update(Update::decode_v1(doc).unwrap()).unwrap();
    txn.apply_update(Update::decode_v1(update).unwrap())
        .unwrap();
    text.get_string(&txn) == before
}

#[tokio::test]
async fn a_forwarded_connection_carries_its_token_to_the_owner() {
    let mut cluster = Cluster::new();
    let key = weaver_auth::TokenKey::new(&[5u8; 32]).unwrap();
    cluster.auth = Some(key.clone());
    let a = cluster.node("a").await;
    let b = cluster.node("b").await;
    let room = unique("auth");
    let token = key.mint(&weaver_auth::Claims {
        scope: weaver_auth::Scope::Room(room.clone()),
        permission: weaver_auth::Permission::Write,
        expires_at: u64::MAX / 2,
        admin: false,
    });
    let mut on_a = Client::connect_with(a.addr, &room, Some(&token)).await;
    on_a.handshake().await;
    // In the header (not the query): B passes it on, and the owner accepts it.
    let mut on_b = Client::connect_with(b.addr, &room, Some(&token)).await;
    on_b.handshake().await;
    let w = Writer::new(11);
    send_acked(&mut on_b, &w, "with a token;").await;
    on_a.recv_until(|f| f.starts_with(&[0, 2])).await;
    assert_eq!(b.handle.loaded_rooms(), 0);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_change_feed_on_a_non_owner_streams_the_owners_commits() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cluster = Cluster::new();
    let a = cluster.node("a").await;
    let b = cluster.node("b").await;
    let room = unique("feed");
    let mut on_a = a.client(&room).await;
    on_a.handshake().await;

    let mut feed = TcpStream::connect(b.addr).await.unwrap();
    let head = format!(
        "GET /api/rooms/{room}/changes HTTP/1.1\r\nHost: {}\r\n\r\n",
        b.addr
    );
    feed.write_all(head.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let sync: &[u8] = b"event: sync";
    let update: &[u8] = b"event: update";
    let give_up = tokio::time::Instant::now() + WAIT;
    while !seen.windows(sync.len()).any(|w| w == sync) {
        let n = tokio::time::timeout_at(give_up, feed.read(&mut buf))
            .await
            .expect("feed opened")
            .unwrap();
        assert!(n > 0, "feed ended: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    seen.clear();
    let w = Writer::new(5);
    send_acked(&mut on_a, &w, "streamed;").await;
    while !seen.windows(update.len()).any(|w| w == update) {
        let n = tokio::time::timeout_at(give_up, feed.read(&mut buf))
            .await
            .expect("the owner's commit reached the feed on B")
            .unwrap();
        assert!(n > 0, "feed ended: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    assert_eq!(b.handle.loaded_rooms(), 0);
    drop(feed);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_lease_held_by_a_node_not_alive_in_the_registry_is_never_stolen() {
    let cluster = Cluster::new();
    let mut a = cluster.node("a").await;
    let b = cluster.node("b").await;
    let room = unique("steal");
    let mut on_a = a.client(&room).await;
    on_a.handshake().await;
    // A leaves the registry (as if its heartbeats stopped) but keeps renewing its lease.
    a.registry.take().unwrap().stop().await;

    // B cannot forward to A (not alive) and must not take the room: the client is told to
    // retry later, and A still owns the room.
    let mut on_b = b.client(&room).await;
    assert!(
        on_b.try_handshake().await.is_none(),
        "B must not serve the room"
    );
    assert_eq!(b.handle.loaded_rooms(), 0);
    assert_eq!(a.leases.holder(&room).await.unwrap().unwrap().0, "a");
    let w = Writer::new(13);
    send_acked(&mut on_a, &w, "still a;").await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn stopping_a_forwarding_node_closes_its_forwarded_clients() {
    let cluster = Cluster::new();
    let a = cluster.node("a").await;
    let b = cluster.node("b").await;
    let room = unique("fwdstop");
    let mut on_a = a.client(&room).await;
    on_a.handshake().await;
    let mut on_b = b.client(&room).await;
    on_b.handshake().await;
    let stopping = tokio::spawn(b.stop());
    assert_eq!(on_b.expect_close().await, 1012);
    tokio::time::timeout(WAIT, stopping).await.unwrap().unwrap();
    // The owner goes on serving its own clients.
    send_acked(&mut on_a, &Writer::new(17), "a goes on;").await;
    a.stop().await;
}

#[tokio::test]
async fn owner_gone_fires_once_the_owner_stops_renewing_its_lease() {
    use weaver_relay::{Placement, RoomPlacement};
    let cluster = Cluster::new();
    let placement = |id: &'static str| {
        let cluster = &cluster;
        async move {
            let client = weaver_cluster::connect(&cluster.nats.url(), id)
                .await
                .unwrap();
            let js = weaver_cluster::jetstream(client, Duration::from_secs(2));
            let leases = Leases::open(&js, cluster.leases.clone()).await.unwrap();
            let registry =
                NodeRegistry::start(&js, cluster.nodes.clone(), id, "http://127.0.0.1:9")
                    .await
                    .unwrap();
            let placement = LeasePlacement::new(leases, registry.directory(), id, 3 * TTL);
            (placement, registry)
        }
    };
    let (a, _a_registry) = placement("a").await;
    let (b, _b_registry) = placement("b").await;
    let room = unique("gone");
    let Placement::Local(guard) = a.place(&room).await.unwrap() else {
        panic!("A takes a free room");
    };
    let owner = b
        .owner(&room)
        .await
        .unwrap()
        .expect("A owns the room, seen from B");
    assert_eq!(owner.node_id, "a");
    // A renews: its forwarded connections stay.
    assert!(
        tokio::time::timeout(2 * TTL, b.owner_gone(&room, &owner))
            .await
            .is_err(),
        "A still owns the room"
    );
    // A stalls (its lease is no longer renewed, as in a paused process; its heartbeat goes on):
    // B notices once the lease has run out.
    let stalled = tokio::time::Instant::now();
    drop(guard);
    tokio::time::timeout(TTL + TTL, b.owner_gone(&room, &owner))
        .await
        .expect("B sees the room's owner go");
    assert!(
        stalled.elapsed() >= TTL / 2,
        "not before the lease could expire"
    );
}
