//! Token states: a token expiring during the connection (4401) → `TokenExpired` and no retry
//! until `set_token`; a read-only token → `ReadOnly`, edits stay unsynced; a write token
//! pushes them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use weaver_auth::{Claims, Permission, Scope, TokenKey};
use weaver_client::{Client, ClientOptions, ConnectionState};
use weaver_relay::{AuthConfig, RelayConfig};

use crate::support::{self, WAIT, eventually, synced};

fn token(key: &TokenKey, permission: Permission, secs: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    key.mint(&Claims {
        scope: Scope::Room("guarded".into()),
        permission,
        expires_at: now + secs,
        admin: false,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_read_only_and_a_new_token() {
    let key = TokenKey::new(&[7u8; 32]).unwrap();
    let config = RelayConfig {
        auth: AuthConfig {
            key: Some(key.clone()),
            ..AuthConfig::default()
        },
        ..RelayConfig::default()
    };
    let data = tempfile::tempdir().unwrap();
    let server = support::start_with(data.path(), config).await;
    let dir = tempfile::tempdir().unwrap();
    let client = Client::open(
        ClientOptions::new(server.url(), "guarded", dir.path())
            .token(token(&key, Permission::Write, 2))
            .backoff(Duration::from_millis(50), Duration::from_millis(300)),
    )
    .unwrap();
    client
        .transact(|t| t.add_block("b1", "text", "first"))
        .unwrap()
        .unwrap();
    synced(&client).await;

    // The relay closes with 4401 when the token expires; the client waits for a new one.
    let mut state = client.watch_state();
    tokio::time::timeout(
        WAIT,
        state.wait_for(|s| *s == ConnectionState::TokenExpired),
    )
    .await
    .expect("TokenExpired in time")
    .unwrap();
    client
        .transact(|t| t.insert_text("b1", 0, "later "))
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        client.state(),
        ConnectionState::TokenExpired,
        "no retry loop"
    );
    assert_eq!(client.unsynced(), 1);

    // A read-only token: the client syncs down, its write is refused.
    client.set_token(Some(token(&key, Permission::Read, 600)));
    eventually("read-only", || client.state() == ConnectionState::ReadOnly).await;
    assert_eq!(client.unsynced(), 1);

    // A write token pushes what was kept.
    client.set_token(Some(token(&key, Permission::Write, 600)));
    synced(&client).await;
    assert_eq!(client.state(), ConnectionState::Online);
    assert_eq!(
        server.json("guarded").await["blocks"][0]["content"],
        "later first"
    );
    client.close().await;
    server.stop().await;
}
