//! Forwarding to a room's owner (cluster mode): a room placed on another node
//! ([`crate::RemoteOwner`]) has its WebSocket connections (`ws.rs`), its documents on
//! Hocuspocus sockets (`hocuspocus.rs`) and its HTTP room API requests (`http.rs`) proxied to
//! that node, which authenticates them again itself.
//! Must not know: how owners are chosen (placement.rs), rooms' documents.

pub(crate) mod hocuspocus;
pub(crate) mod http;
pub(crate) mod ws;

use std::time::Duration;

/// How long opening a connection to the owner may take before the client is told to retry.
pub(crate) const OWNER_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `host:port` and the scheme-less base path of an owner's advertised URL
/// (`http://h:p`, `ws://h:p`, or a bare `h:p`).
pub(crate) fn authority(url: &str) -> &str {
    let rest = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .trim_end_matches('/');
    rest.split('/').next().unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::authority;

    #[test]
    fn authority_of_advertised_urls() {
        assert_eq!(authority("http://127.0.0.1:8080"), "127.0.0.1:8080");
        assert_eq!(authority("ws://node-2:1234/"), "node-2:1234");
        assert_eq!(authority("node-3:80"), "node-3:80");
    }
}
