//! One NATS connection per node, set up the way the cluster needs it: it reconnects for ever
//! with a short bounded backoff (a NATS restart must not end the node), and requests time out
//! so that a room actor never waits unboundedly on JetStream.

use std::time::Duration;

use crate::error::ConnectError;

/// Connects to `url` (e.g. `nats://127.0.0.1:4222`). The first connection must succeed; after
/// that the client reconnects by itself, every 100 ms growing to at most 1 s between tries.
pub async fn connect(url: &str, name: &str) -> Result<async_nats::Client, ConnectError> {
    async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis(100 * u64::try_from(attempts.min(10)).unwrap_or(10))
        })
        .connect(url)
        .await
        .map_err(|source| ConnectError {
            url: url.to_owned(),
            source,
        })
}

/// A JetStream context whose requests (and publish acks) time out after `timeout`.
pub fn jetstream(client: async_nats::Client, timeout: Duration) -> async_nats::jetstream::Context {
    async_nats::jetstream::ContextBuilder::new()
        .timeout(timeout)
        .build(client)
}
