//! Access control for the relay's HTTP surface: which token a request carries (`?token=` or
//! `Authorization: Bearer`), what it must grant for each route, the 401/403 answers given before
//! any room is touched, a reusable admin layer for cross-room routes other parts add, and the
//! deadline at which a WebSocket closes itself (4401) because its token expired.
//!
//! Token format, signing and verification live in `weaver-auth`; the read-only and rate checks
//! on frames live in `limits.rs`. Deliberately not here: webhook signatures (their endpoints
//! carry their own and are never put behind tokens), key storage, users.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use tracing::{info, warn};
use weaver_auth::{AuthError, Claims, Scope, TokenKey};

use crate::room_name::validate_room_name;
use crate::send_queue::SendQueue;

/// Close code sent when a connection's token expires while it is open (hocuspocus' code).
pub const CLOSE_TOKEN_EXPIRED: u16 = 4401;
/// Counter: requests refused by the token check, label `reason`.
pub const AUTH_REJECTIONS_TOTAL: &str = "weaver_auth_rejections_total";
/// Shortest `--auth-key` accepted, in bytes.
pub const MIN_AUTH_KEY_BYTES: usize = 32;

/// Whether read-only connections may publish awareness (cursors, presence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadOnlyAwareness {
    /// Read-only users appear to others (y-sweet's behaviour).
    #[default]
    Allow,
    /// Their awareness messages are dropped (counted as `read_only_awareness`).
    Deny,
}

/// Token settings, as part of `RelayConfig`. Without a key the relay is open.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    pub key: Option<TokenKey>,
    /// Keys that still verify tokens (never mint them) while a rotation is under way: tokens
    /// signed with the key being replaced stay valid until they expire, so rotating the key
    /// needs no mass disconnect. Ignored without `key`.
    pub previous_keys: Vec<TokenKey>,
    pub read_only_awareness: ReadOnlyAwareness,
}

/// Parses `--auth-key`: at least 32 bytes, given as hex (`openssl rand -hex 32`) or base64
/// (`openssl rand -base64 32`, standard or URL-safe alphabet, padding optional). Text made only
/// of an even number of hex digits is read as hex.
pub fn parse_auth_key(text: &str) -> Result<TokenKey, String> {
    let text = text.trim();
    let is_hex = !text.is_empty()
        && text.len().is_multiple_of(2)
        && text.bytes().all(|b| b.is_ascii_hexdigit());
    let bytes = if is_hex {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| "auth key is not valid hex".to_string())?
    } else {
        use base64::engine::general_purpose::{
            STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
        };
        [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|e| e.decode(text).ok())
            .ok_or_else(|| "auth key is neither hex nor base64".to_string())?
    };
    if bytes.len() < MIN_AUTH_KEY_BYTES {
        return Err(format!(
            "auth key is {} bytes; at least {MIN_AUTH_KEY_BYTES} random bytes are required \
             (e.g. `openssl rand -hex 32`)",
            bytes.len()
        ));
    }
    TokenKey::new(&bytes).map_err(|e| e.to_string())
}

/// Unix seconds now (0 if the system clock reads before 1970).
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a request was granted. `claims` is `None` when the relay runs without a key.
#[derive(Debug, Clone)]
pub struct Access {
    pub claims: Option<Claims>,
}

impl Access {
    /// Full access (auth disabled).
    pub fn open() -> Self {
        Self { claims: None }
    }

    pub fn can_write(&self) -> bool {
        self.claims.as_ref().is_none_or(Claims::can_write)
    }

    /// Unix second at which the grant ends, if it does.
    pub fn expires_at(&self) -> Option<u64> {
        self.claims.as_ref().map(|c| c.expires_at)
    }
}

/// What a route needs from the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Read access to one room.
    Read,
    /// Write access to one room.
    Write,
    /// An admin token that grants this room.
    RoomAdmin,
    /// An admin token for every room (`--admin` with the empty prefix): cross-room endpoints.
    Admin,
    /// A token for every room under a prefix (the `room` argument), any permission: listing
    /// the rooms under it.
    List,
    /// Any valid token: the route itself checks what the claims grant, after it learned which
    /// room a resource belongs to (the bridge's `/api/calls/{id}`).
    Valid,
}

/// A refused request: 401 (no usable token) or 403 (a valid token that does not grant this).
#[derive(Debug)]
pub struct AuthRejection {
    pub status: StatusCode,
    /// Metric label and log field.
    pub reason: &'static str,
    pub message: String,
}

impl AuthRejection {
    fn unauthorized(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            reason,
            message: message.into(),
        }
    }

    fn forbidden(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            reason,
            message: message.into(),
        }
    }
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message });
        let mut resp = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// Checks tokens against a key. Cheap to clone; get the relay's with
/// [`crate::RelayHandle::authenticator`].
#[derive(Debug, Clone)]
pub struct Authenticator {
    key: Option<Arc<TokenKey>>,
    previous: Arc<[TokenKey]>,
}

/// The token a request carries: `Authorization: Bearer <token>` first, then `?token=`.
pub fn request_token(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
            return Some(v[7..].trim().to_owned());
        }
    }
    let query = uri.query()?;
    let params: HashMap<String, String> = crate::query::query_pairs(query);
    params.get("token").cloned()
}

impl Authenticator {
    pub fn new(key: Option<TokenKey>) -> Self {
        Self::with_previous(key, Vec::new())
    }

    /// `key` mints and verifies; `previous` keys only verify (a key rotation in progress).
    pub fn with_previous(key: Option<TokenKey>, previous: Vec<TokenKey>) -> Self {
        Self {
            key: key.map(Arc::new),
            previous: previous.into(),
        }
    }

    /// Verifies with the current key, then with each previous one; a signature that matches
    /// none of them is `BadSignature`.
    fn verify(&self, key: &TokenKey, token: &str, now: u64) -> Result<Claims, AuthError> {
        let mut result = key.verify(token, now);
        for old in self.previous.iter() {
            if !matches!(result, Err(AuthError::BadSignature)) {
                break;
            }
            result = old.verify(token, now);
        }
        result
    }

    /// Whether tokens are required.
    pub fn enabled(&self) -> bool {
        self.key.is_some()
    }

    /// Checks `token` for `need` on `room` (ignored for [`Need::Admin`]) at `now`.
    pub fn check_token(
        &self,
        token: Option<&str>,
        room: Option<&str>,
        need: Need,
        now: u64,
    ) -> Result<Access, AuthRejection> {
        let Some(key) = &self.key else {
            return Ok(Access::open());
        };
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| AuthRejection::unauthorized("missing_token", "a token is required"))?;
        let claims = self.verify(key, token, now).map_err(|e| match e {
            AuthError::Expired { .. } => {
                AuthRejection::unauthorized("expired_token", "token expired")
            }
            AuthError::BadSignature => {
                AuthRejection::unauthorized("bad_signature", "token signature does not match")
            }
            _ => AuthRejection::unauthorized("malformed_token", format!("invalid token: {e}")),
        })?;
        let grants_room = |r: &str| claims.allows(r);
        match need {
            Need::Valid => {}
            Need::Admin => {
                if !(claims.is_admin() && claims.scope == Scope::Prefix(String::new())) {
                    return Err(AuthRejection::forbidden(
                        "not_admin",
                        "an admin token for every room is required",
                    ));
                }
            }
            Need::List => {
                let prefix = room.unwrap_or_default();
                let covers =
                    matches!(&claims.scope, Scope::Prefix(p) if prefix.starts_with(p.as_str()));
                if !covers {
                    return Err(AuthRejection::forbidden(
                        "wrong_room",
                        "the token does not grant every room under this prefix",
                    ));
                }
            }
            Need::Read | Need::Write | Need::RoomAdmin => {
                let room = room.unwrap_or_default();
                if !grants_room(room) {
                    return Err(AuthRejection::forbidden(
                        "wrong_room",
                        "the token does not grant this room",
                    ));
                }
                if need == Need::Write && !claims.can_write() {
                    return Err(AuthRejection::forbidden(
                        "read_only",
                        "the token is read-only",
                    ));
                }
                if need == Need::RoomAdmin && !claims.is_admin() {
                    return Err(AuthRejection::forbidden(
                        "not_admin",
                        "an admin token is required",
                    ));
                }
            }
        }
        Ok(Access {
            claims: Some(claims),
        })
    }

    /// [`Self::check_token`] on a request's headers and URI, logging and counting refusals.
    pub fn check(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
        room: Option<&str>,
        need: Need,
    ) -> Result<Access, AuthRejection> {
        let token = request_token(headers, uri);
        self.check_token(token.as_deref(), room, need, now_unix())
            .inspect_err(|r| {
                metrics::counter!(AUTH_REJECTIONS_TOTAL, "reason" => r.reason).increment(1);
                warn!(
                    room = room.unwrap_or(""),
                    path = uri.path(),
                    status = r.status.as_u16(),
                    reason = r.reason,
                    "request refused by the token check"
                );
            })
    }

    /// Puts every route of `router` behind an admin token for every room (cross-room endpoints
    /// such as `/api/calls…`). A no-op check when auth is off. Do not use it for webhook
    /// receivers: they authenticate with their own signatures.
    pub fn require_admin<S>(&self, router: Router<S>) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        self.require_admin_except(router, &[])
    }

    /// [`Self::require_admin`], except for routes whose pattern starts with one of `open`
    /// (e.g. `"/api/webhooks/"` in a router that mixes admin and webhook routes). Matched on
    /// the route pattern, not the raw path, so no path spelling can reach an admin route as open.
    pub fn require_admin_except<S>(
        &self,
        router: Router<S>,
        open: &'static [&'static str],
    ) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let state = RouteGuard {
            auth: self.clone(),
            open,
            need: Need::Admin,
        };
        router.route_layer(axum::middleware::from_fn_with_state(state, guard_mw))
    }
}

impl Authenticator {
    /// Puts every route of `router` behind a valid token of any scope (401 otherwise), except
    /// routes whose pattern starts with one of `open`; the verified [`weaver_auth::Claims`] go
    /// into the request extensions for the handlers, which check what they grant once they
    /// know the room (the bridge's `/api/calls…`). With auth off nothing is inserted: handlers
    /// read a missing `Claims` as open.
    pub fn require_token_except<S>(
        &self,
        router: Router<S>,
        open: &'static [&'static str],
    ) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let state = RouteGuard {
            auth: self.clone(),
            open,
            need: Need::Valid,
        };
        router.route_layer(axum::middleware::from_fn_with_state(state, guard_mw))
    }
}

/// A token check in front of every route of a router, except the `open` route patterns.
#[derive(Clone)]
struct RouteGuard {
    auth: Authenticator,
    open: &'static [&'static str],
    need: Need,
}

/// Checks the request's token for `need`; the verified claims (if any) and the grant go into the
/// request extensions for the handlers.
async fn guard_mw(
    State(guard): State<RouteGuard>,
    matched: Option<MatchedPath>,
    req: Request,
    next: Next,
) -> Response {
    let route = matched.as_ref().map_or("", |m| m.as_str());
    if guard.open.iter().any(|p| route.starts_with(p)) {
        return next.run(req).await;
    }
    match guard.auth.check(req.headers(), req.uri(), None, guard.need) {
        Ok(access) => {
            let mut req = req;
            if let Some(claims) = access.claims.clone() {
                req.extensions_mut().insert(claims);
            }
            req.extensions_mut().insert(access);
            next.run(req).await
        }
        Err(r) => r.into_response(),
    }
}

/// Route layer of the relay's own router. Runs after routing (so the room is the decoded path
/// parameter) and before any handler: a refused request never loads a room. The granted
/// [`Access`] goes into the request extensions for the WebSocket handler.
pub(crate) async fn relay_routes(
    State(auth): State<Authenticator>,
    matched: Option<MatchedPath>,
    params: Result<RawPathParams, axum::extract::rejection::RawPathParamsRejection>,
    req: Request,
    next: Next,
) -> Response {
    let route = matched.as_ref().map_or("", |m| m.as_str());
    let room: Option<String> = params.ok().and_then(|p| {
        p.iter()
            .find(|(k, _)| *k == "room")
            .map(|(_, v)| v.to_owned())
    });
    let need = match (route, req.method()) {
        ("/healthz" | "/readyz", _) => None,
        ("/{room}", _) => Some(Need::Read),
        // History reveals past content and a restore rewrites the room: admins only.
        (r, _) if r.starts_with("/api/rooms/{room}/versions") => Some(Need::RoomAdmin),
        (r, &Method::GET | &Method::HEAD) if r.starts_with("/api/rooms/{room}/") => {
            Some(Need::Read)
        }
        (r, &Method::POST | &Method::PUT | &Method::PATCH)
            if r.starts_with("/api/rooms/{room}/") =>
        {
            Some(Need::Write)
        }
        ("/api/rooms/{room}", &Method::DELETE) => Some(Need::RoomAdmin),
        ("/api/rooms", &Method::GET | &Method::HEAD) => Some(Need::List),
        // Fail closed: a route added later without a rule here needs an admin token.
        _ => Some(Need::Admin),
    };
    let Some(need) = need else {
        return next.run(req).await;
    };
    if let Some(room) = &room
        && let Err(e) = validate_room_name(room)
    {
        return e.into_response();
    }
    // A listing is checked against the prefix it asks for (`?prefix=`, default every room).
    let room = match need {
        Need::List => Some(
            crate::query::query_pairs(req.uri().query().unwrap_or_default())
                .remove("prefix")
                .unwrap_or_default(),
        ),
        _ => room,
    };
    match auth.check(req.headers(), req.uri(), room.as_deref(), need) {
        Ok(access) => {
            let mut req = req;
            req.extensions_mut().insert(access);
            next.run(req).await
        }
        Err(r) => r.into_response(),
    }
}

/// When the connection's token expires (`None`: never). The connection task closes itself with
/// 4401 at that moment ([`token_expired`]); no task of its own per connection.
pub(crate) fn expiry_deadline(access: &Access) -> Option<tokio::time::Instant> {
    let expires_at = access.expires_at()?;
    let left = Duration::from_secs(expires_at.saturating_sub(now_unix()));
    Some(tokio::time::Instant::now() + left)
}

/// Closes a connection whose token expired.
pub(crate) fn token_expired(queue: &SendQueue) {
    info!("token expired; closing the connection");
    metrics::counter!(crate::metrics::REJECTED_MESSAGES_TOTAL, "reason" => "token_expired")
        .increment(1);
    queue.close(CLOSE_TOKEN_EXPIRED, "token expired");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use weaver_auth::Permission;

    const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn key() -> TokenKey {
        parse_auth_key(KEY_HEX).unwrap()
    }

    fn mint(scope: Scope, write: bool, admin: bool, expires_at: u64) -> String {
        key().mint(&Claims {
            scope,
            permission: if write {
                Permission::Write
            } else {
                Permission::Read
            },
            expires_at,
            admin,
        })
    }

    #[test]
    fn key_formats() {
        let b64 = base64::engine::general_purpose::STANDARD.encode((0u8..32).collect::<Vec<_>>());
        let t = mint(Scope::Room("r".into()), true, false, 10);
        assert!(parse_auth_key(&b64).unwrap().verify(&t, 0).is_ok());
        assert!(
            parse_auth_key(&format!(" {KEY_HEX}\n"))
                .unwrap()
                .verify(&t, 0)
                .is_ok()
        );
        assert!(
            parse_auth_key("00112233")
                .unwrap_err()
                .contains("at least 32")
        );
        assert!(parse_auth_key("not a key!").is_err());
        assert!(parse_auth_key("").is_err());
    }

    #[test]
    fn previous_keys_verify_during_a_rotation_and_never_widen_a_token() {
        let old = parse_auth_key(&"ab".repeat(32)).unwrap();
        let other = parse_auth_key(&"cd".repeat(32)).unwrap();
        let claims = |write, expires_at| Claims {
            scope: Scope::Room("r".into()),
            permission: if write {
                Permission::Write
            } else {
                Permission::Read
            },
            expires_at,
            admin: false,
        };
        let by_old = old.mint(&claims(false, 100));
        let by_new = key().mint(&claims(true, 100));
        let rotating = Authenticator::with_previous(Some(key()), vec![other.clone(), old.clone()]);
        let check = |auth: &Authenticator, t: &str, need, now| {
            auth.check_token(Some(t), Some("r"), need, now)
                .map_err(|r| (r.status.as_u16(), r.reason))
        };
        assert!(check(&rotating, &by_old, Need::Read, 50).is_ok());
        assert!(check(&rotating, &by_new, Need::Write, 50).is_ok());
        // Still exactly what the old token granted: read-only, until its own expiry.
        assert_eq!(
            check(&rotating, &by_old, Need::Write, 50).unwrap_err(),
            (403, "read_only")
        );
        assert_eq!(
            check(&rotating, &by_old, Need::Read, 100).unwrap_err(),
            (401, "expired_token")
        );
        // Without the old key among the previous ones, its tokens are refused.
        let rotated = Authenticator::new(Some(key()));
        assert_eq!(
            check(&rotated, &by_old, Need::Read, 50).unwrap_err(),
            (401, "bad_signature")
        );
        let unrelated = Authenticator::with_previous(Some(key()), vec![other]);
        assert_eq!(
            check(&unrelated, &by_old, Need::Read, 50).unwrap_err(),
            (401, "bad_signature")
        );
    }

    #[test]
    fn listing_needs_a_prefix_token_covering_the_asked_prefix() {
        let auth = Authenticator::new(Some(key()));
        let list = |scope: Scope, prefix: &str| {
            let t = mint(scope, false, false, 100);
            auth.check_token(Some(&t), Some(prefix), Need::List, 50)
                .map(|_| ())
                .map_err(|r| (r.status.as_u16(), r.reason))
        };
        let tenant = || Scope::Prefix("acme-".into());
        assert_eq!(list(tenant(), "acme-"), Ok(()));
        assert_eq!(list(tenant(), "acme-docs-"), Ok(()));
        assert_eq!(list(Scope::Prefix(String::new()), ""), Ok(()));
        // Asking for less than the token's prefix would list other tenants' rooms.
        assert_eq!(list(tenant(), "acm"), Err((403, "wrong_room")));
        assert_eq!(list(tenant(), ""), Err((403, "wrong_room")));
        assert_eq!(list(tenant(), "other-"), Err((403, "wrong_room")));
        // A one-room token lists nothing, not even names under its own room's name.
        assert_eq!(
            list(Scope::Room("acme-1".into()), "acme-1"),
            Err((403, "wrong_room"))
        );
    }

    #[test]
    fn token_matrix() {
        let auth = Authenticator::new(Some(key()));
        let check = |t: Option<&str>, room: &str, need| {
            auth.check_token(t, Some(room), need, 100)
                .map_err(|r| (r.status.as_u16(), r.reason))
        };
        let w = mint(Scope::Room("a".into()), true, false, 200);
        let r = mint(Scope::Room("a".into()), false, false, 200);
        let p = mint(Scope::Prefix("team/".into()), true, false, 200);
        let expired = mint(Scope::Room("a".into()), true, false, 100);
        let other_key = TokenKey::new(&[7u8; 32]).unwrap().mint(&Claims {
            scope: Scope::Room("a".into()),
            permission: Permission::Write,
            expires_at: 200,
            admin: true,
        });
        let room_admin = mint(Scope::Room("a".into()), true, true, 200);
        let admin = mint(Scope::Prefix(String::new()), true, true, 200);
        // (token, room, need, granted with write permission or refused with status and reason)
        type Case<'a> = (Option<&'a str>, &'a str, Need, Result<bool, (u16, &'a str)>);
        let cases: Vec<Case> = vec![
            (None, "a", Need::Read, Err((401, "missing_token"))),
            (Some(""), "a", Need::Read, Err((401, "missing_token"))),
            (Some("x.y"), "a", Need::Read, Err((401, "malformed_token"))),
            (
                Some(&other_key),
                "a",
                Need::Read,
                Err((401, "bad_signature")),
            ),
            (Some(&expired), "a", Need::Read, Err((401, "expired_token"))),
            (Some(&w), "b", Need::Read, Err((403, "wrong_room"))),
            (Some(&w), "a", Need::Write, Ok(true)),
            (Some(&r), "a", Need::Read, Ok(false)),
            (Some(&r), "a", Need::Write, Err((403, "read_only"))),
            (Some(&p), "team/x", Need::Write, Ok(true)),
            (Some(&p), "teamx", Need::Read, Err((403, "wrong_room"))),
            (Some(&w), "a", Need::RoomAdmin, Err((403, "not_admin"))),
            (Some(&room_admin), "a", Need::RoomAdmin, Ok(true)),
            // Cross-room endpoints need an admin token for every room.
            (Some(&room_admin), "", Need::Admin, Err((403, "not_admin"))),
            (Some(&admin), "", Need::Admin, Ok(true)),
        ];
        for (i, (token, room, need, want)) in cases.into_iter().enumerate() {
            let got = check(token, room, need).map(|access| access.can_write());
            assert_eq!(got, want, "case {i}: room {room:?}");
        }
        // Without a key everything is open.
        let open = Authenticator::new(None);
        assert!(
            open.check_token(None, Some("a"), Need::Admin, 0)
                .unwrap()
                .can_write()
        );
    }

    #[test]
    fn token_from_header_or_query() {
        // (Authorization header, URI, token found)
        let cases: &[(Option<&'static str>, &str, Option<&str>)] = &[
            (None, "/room?foo=1&token=abc.def", Some("abc.def")),
            (
                Some("bearer  hdr.tok "),
                "/room?foo=1&token=abc.def",
                Some("hdr.tok"),
            ),
            (None, "/room?token=a%2Eb&x", Some("a.b")),
            (None, "/room?token=%zz%4", Some("%zz%4")),
            (None, "/room", None),
        ];
        for (auth, uri, want) in cases {
            let mut h = HeaderMap::new();
            if let Some(v) = auth {
                h.insert(header::AUTHORIZATION, HeaderValue::from_static(v));
            }
            let uri: Uri = uri.parse().unwrap();
            assert_eq!(request_token(&h, &uri).as_deref(), *want, "{auth:?} {uri}");
        }
    }
}
