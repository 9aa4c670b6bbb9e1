//! The `Origin` allow-list of WebSocket upgrades (`--ws-allowed-origin`): a browser page on
//! another site must not open a room with the user's ambient credentials (cross-site WebSocket
//! hijacking). Browsers always send `Origin` on an upgrade; a request without one comes from a
//! non-browser client (a Node or Rust peer), which the list does not concern. Deliberately not
//! here: CORS of the HTTP API (the binary layers tower-http's over every route), tokens (auth.rs).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::warn;

/// The `reason` label of `weaver_auth_rejections_total` for a refused `Origin`.
const REASON: &str = "origin";

/// Origins allowed to open WebSockets; empty: any.
#[derive(Debug, Clone, Default)]
pub(crate) struct AllowedOrigins(Arc<[String]>);

impl AllowedOrigins {
    pub(crate) fn new(origins: &[String]) -> Self {
        Self(origins.iter().map(|o| normalize(o)).collect())
    }

    fn allows(&self, origin: Option<&HeaderValue>) -> bool {
        if self.0.is_empty() {
            return true;
        }
        match origin {
            None => true,
            Some(v) => v
                .to_str()
                .is_ok_and(|o| self.0.iter().any(|a| a == "*" || *a == normalize(o))),
        }
    }
}

/// Origins compare as ASCII-case-insensitive scheme://host[:port], without a trailing slash.
fn normalize(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Route layer of `/{room}`: 403 before the upgrade when the `Origin` is not allowed.
pub(crate) async fn check_ws_origin(
    State(allowed): State<AllowedOrigins>,
    req: Request,
    next: Next,
) -> Response {
    match allowed.refuse(req.headers(), req.uri().path()) {
        None => next.run(req).await,
        Some(refused) => refused,
    }
}

impl AllowedOrigins {
    /// The 403 for an upgrade whose `Origin` is not allowed (logged and counted), or `None`.
    pub(crate) fn refuse(&self, headers: &HeaderMap, path: &str) -> Option<Response> {
        let origin = headers.get(header::ORIGIN);
        if self.allows(origin) {
            return None;
        }
        metrics::counter!(crate::auth::AUTH_REJECTIONS_TOTAL, "reason" => REASON).increment(1);
        warn!(
            origin = origin.and_then(|o| o.to_str().ok()).unwrap_or("?"),
            path, "WebSocket upgrade refused: origin not allowed (--ws-allowed-origin)"
        );
        Some(
            (
                StatusCode::FORBIDDEN,
                axum::Json(serde_json::json!({ "error": "origin not allowed" })),
            )
                .into_response(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list() {
        let any = AllowedOrigins::new(&[]);
        assert!(any.allows(Some(&HeaderValue::from_static("https://evil.example"))));
        let list = AllowedOrigins::new(&["https://App.example/".into()]);
        assert!(list.allows(None), "non-browser clients send no Origin");
        assert!(list.allows(Some(&HeaderValue::from_static("https://app.example"))));
        assert!(!list.allows(Some(&HeaderValue::from_static("https://evil.example"))));
        assert!(!list.allows(Some(&HeaderValue::from_static("http://app.example"))));
        assert!(!list.allows(Some(&HeaderValue::from_static("null"))));
    }
}
