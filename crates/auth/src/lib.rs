//! Signed, expiring access tokens for Weaver rooms, and the Standard Webhooks signature check.
//!
//! Owns: the token format, minting and verification (HMAC-SHA256, constant-time check), and the
//! claims a token carries; and, in [`webhook`], the verifier for signed inbound webhooks
//! (`whsec_` secrets, signature headers, timestamp tolerance, rotation), which the bridge uses
//! for its webhook endpoint. Deliberately does not know: HTTP, WebSockets, clocks (the caller
//! passes `now`), key storage, users or sessions, what a webhook body means. Pure functions over
//! bytes; nothing here does IO, which is also what lets `fuzz/` test both parsers cheaply.
//!
//! # Access tokens
//!
//! The relay does not know your users. Your **application server** does: it logs the user in,
//! decides which rooms they may open and whether they may edit, and hands the browser a
//! short-lived token that says exactly that. The relay only checks the token's signature, expiry
//! and claims when the WebSocket upgrade arrives, and again while the connection lives.
//!
//! 1. Generate a secret key of at least 16 random bytes (32 recommended), e.g.
//!    `openssl rand -base64 32`, and give the same key to the relay and to your application
//!    server. Anyone holding it can mint tokens for every room.
//! 2. When a user opens a document, your server authenticates them, then mints a token:
//!
//!    ```
//!    use weaver_auth::{Claims, Permission, Scope, TokenKey};
//!    # fn main() -> Result<(), weaver_auth::AuthError> {
//!    let key = TokenKey::from_base64("c2VjcmV0LWtleS1vZi1hdC1sZWFzdC0xNi1ieXRlcw")?;
//!    let now = 1_700_000_000; // unix seconds, from your clock
//!    let token = key.mint(&Claims {
//!        scope: Scope::Room("workspace-42".into()),
//!        permission: Permission::Write,
//!        expires_at: now + 15 * 60,
//!        admin: false,
//!    });
//!    // Relay side, at the upgrade:
//!    let claims = key.verify(&token, now)?;
//!    assert!(claims.allows("workspace-42") && claims.can_write());
//!    # Ok(()) }
//!    ```
//! 3. The browser passes the token to the relay in the query string, which the stock
//!    y-websocket provider supports: `new WebsocketProvider(url, room, doc, { params: { token } })`.
//!    Tokens are URL-safe, so no escaping is needed.
//! 4. Keep expiries short (minutes). When a token expires the relay closes the connection; the
//!    provider reconnects, so refresh `provider.params.token` from your server before that
//!    (e.g. on a timer, or in the provider's `connection-close` handler).
//!
//! Scopes: [`Scope::Room`] grants exactly one room; [`Scope::Prefix`] grants every room whose
//! name starts with the prefix, so end prefixes with a separator (`"team-7/"`, not `"team-7"`,
//! which would also match `"team-70"`). An empty prefix grants every room. [`Permission::Read`]
//! tokens may sync and receive updates but their writes are refused. The `admin` flag is for
//! cross-room endpoints (e.g. listing or exporting rooms); it does not by itself grant any room.
//!
//! ## Wire format (to mint tokens from another language)
//!
//! `token = base64url(payload) "." base64url(tag)`, both unpadded (RFC 4648 §5), where
//!
//! ```text
//! payload = version:u8 (= 1)
//!           flags:u8   (bit 0 = prefix scope, bit 1 = write, bit 2 = admin; other bits 0)
//!           expires_at:u64 big-endian (unix seconds; the token is valid while now < expires_at)
//!           room: the UTF-8 room name or prefix (the rest of the payload)
//! tag     = HMAC-SHA256(key, "weaver-access-token\n" || payload)   (32 bytes)
//! ```
//!
//! For example in Node.js:
//!
//! ```js
//! import { createHmac } from 'node:crypto'
//! function mintWeaverToken(key, { room, prefix = false, write = false, admin = false, expiresAt }) {
//!   const name = Buffer.from(room, 'utf8')
//!   const payload = Buffer.alloc(10 + name.length)
//!   payload[0] = 1
//!   payload[1] = (prefix ? 1 : 0) | (write ? 2 : 0) | (admin ? 4 : 0)
//!   payload.writeBigUInt64BE(BigInt(expiresAt), 2)
//!   name.copy(payload, 10)
//!   const tag = createHmac('sha256', key).update('weaver-access-token\n').update(payload).digest()
//!   return payload.toString('base64url') + '.' + tag.toString('base64url')
//! }
//! ```
//!
//! Verification checks, in order: the shape and base64 (strict: non-canonical encodings are
//! refused, so every token has exactly one text form), the tag (constant time, before any payload
//! field is trusted), the version and flags, then the expiry.

pub mod webhook;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Domain separation: a key shared with another HMAC use cannot be made to sign tokens.
const CONTEXT: &[u8] = b"weaver-access-token\n";
const VERSION: u8 = 1;
const FLAG_PREFIX: u8 = 0b001;
const FLAG_WRITE: u8 = 0b010;
const FLAG_ADMIN: u8 = 0b100;
const HEADER_LEN: usize = 10;
const TAG_LEN: usize = 32;

/// Shortest accepted key, in bytes.
pub const MIN_KEY_LEN: usize = 16;
/// Longest token text `verify` looks at (about 3 KB of room name); longer input is refused
/// before any decoding.
pub const MAX_TOKEN_LEN: usize = 4096;

/// Why a key or a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("token key is {len} bytes; at least {MIN_KEY_LEN} are required")]
    KeyTooShort { len: usize },
    #[error("token key is not valid base64")]
    KeyNotBase64,
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("unsupported token version {0}")]
    UnsupportedVersion(u8),
    #[error("token signature does not match")]
    BadSignature,
    #[error("token expired at {expires_at} (now {now})")]
    Expired { expires_at: u64, now: u64 },
}

/// Which rooms a token grants.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Exactly this room.
    Room(String),
    /// Every room whose name starts with this prefix (an empty prefix grants every room).
    Prefix(String),
}

/// What the holder may do in the granted rooms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Sync and receive updates and awareness; writes are refused.
    Read,
    /// Read and write.
    Write,
}

/// What a token says. Signed as a whole: none of it can be changed without the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Claims {
    pub scope: Scope,
    pub permission: Permission,
    /// Unix seconds. The token is valid while `now < expires_at`.
    pub expires_at: u64,
    /// May use cross-room (administrative) endpoints. Grants no room by itself.
    pub admin: bool,
}

impl Claims {
    /// Whether these claims grant access to `room`.
    pub fn allows(&self, room: &str) -> bool {
        match &self.scope {
            Scope::Room(r) => r == room,
            Scope::Prefix(p) => room.starts_with(p.as_str()),
        }
    }

    pub fn can_write(&self) -> bool {
        self.permission == Permission::Write
    }

    pub fn is_admin(&self) -> bool {
        self.admin
    }

    /// Seconds left at `now` (0 once expired), e.g. to schedule the mid-session expiry check.
    pub fn seconds_left(&self, now: u64) -> u64 {
        self.expires_at.saturating_sub(now)
    }

    fn encode(&self) -> Vec<u8> {
        let (prefix, name) = match &self.scope {
            Scope::Room(r) => (false, r),
            Scope::Prefix(p) => (true, p),
        };
        let mut flags = 0;
        if prefix {
            flags |= FLAG_PREFIX;
        }
        if self.can_write() {
            flags |= FLAG_WRITE;
        }
        if self.admin {
            flags |= FLAG_ADMIN;
        }
        let mut out = Vec::with_capacity(HEADER_LEN + name.len());
        out.push(VERSION);
        out.push(flags);
        out.extend_from_slice(&self.expires_at.to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out
    }

    fn decode(payload: &[u8]) -> Result<Self, AuthError> {
        let (&version, rest) = payload
            .split_first()
            .ok_or(AuthError::Malformed("empty payload"))?;
        if version != VERSION {
            return Err(AuthError::UnsupportedVersion(version));
        }
        let (&flags, rest) = rest
            .split_first()
            .ok_or(AuthError::Malformed("payload too short"))?;
        if flags & !(FLAG_PREFIX | FLAG_WRITE | FLAG_ADMIN) != 0 {
            return Err(AuthError::Malformed("unknown flag bits"));
        }
        let (expiry, name) = rest
            .split_first_chunk::<8>()
            .ok_or(AuthError::Malformed("payload too short"))?;
        let name = std::str::from_utf8(name)
            .map_err(|_| AuthError::Malformed("room is not UTF-8"))?
            .to_owned();
        Ok(Claims {
            scope: if flags & FLAG_PREFIX != 0 {
                Scope::Prefix(name)
            } else {
                Scope::Room(name)
            },
            permission: if flags & FLAG_WRITE != 0 {
                Permission::Write
            } else {
                Permission::Read
            },
            expires_at: u64::from_be_bytes(*expiry),
            admin: flags & FLAG_ADMIN != 0,
        })
    }
}

/// The shared secret that mints and verifies tokens.
#[derive(Clone)]
pub struct TokenKey {
    mac: HmacSha256,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.write_str("TokenKey(<redacted>)")
    }
}

impl TokenKey {
    /// A key from raw bytes; at least [`MIN_KEY_LEN`] bytes.
    pub fn new(bytes: &[u8]) -> Result<Self, AuthError> {
        if bytes.len() < MIN_KEY_LEN {
            return Err(AuthError::KeyTooShort { len: bytes.len() });
        }
        let mac = HmacSha256::new_from_slice(bytes)
            .map_err(|_| AuthError::KeyTooShort { len: bytes.len() })?;
        Ok(Self { mac })
    }

    /// A key from base64 text (standard or URL-safe alphabet, padded or not), as produced by
    /// `openssl rand -base64 32`; surrounding whitespace is ignored.
    pub fn from_base64(text: &str) -> Result<Self, AuthError> {
        let text = text.trim();
        let bytes = [URL_SAFE_NO_PAD, URL_SAFE, STANDARD, STANDARD_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(text).ok())
            .ok_or(AuthError::KeyNotBase64)?;
        Self::new(&bytes)
    }

    fn tag(&self, payload: &[u8]) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(CONTEXT);
        mac.update(payload);
        mac
    }

    /// Signs `claims` into a token (see the crate docs for the format).
    pub fn mint(&self, claims: &Claims) -> String {
        let payload = claims.encode();
        let tag = self.tag(&payload).finalize().into_bytes();
        let mut out = URL_SAFE_NO_PAD.encode(&payload);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(tag, &mut out);
        out
    }

    /// Checks a token's shape, signature and expiry at `now` (unix seconds) and returns its
    /// claims. The caller still has to check [`Claims::allows`] for the room it is opening.
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed("token too long"));
        }
        let (payload_b64, tag_b64) = token
            .split_once('.')
            .ok_or(AuthError::Malformed("missing '.'"))?;
        // Strict decoding: padding and non-zero trailing bits are refused, so a token has one
        // text form only (no "different text, same token" variants to slip past a deny list).
        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| AuthError::Malformed("payload is not base64url"))?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag_b64)
            .map_err(|_| AuthError::Malformed("signature is not base64url"))?;
        if tag.len() != TAG_LEN {
            return Err(AuthError::Malformed("signature has the wrong length"));
        }
        if payload.len() < HEADER_LEN {
            return Err(AuthError::Malformed("payload too short"));
        }
        // Constant-time comparison; nothing in the payload is trusted before this.
        self.tag(&payload)
            .verify_slice(&tag)
            .map_err(|_| AuthError::BadSignature)?;
        let claims = Claims::decode(&payload)?;
        if now >= claims.expires_at {
            return Err(AuthError::Expired {
                expires_at: claims.expires_at,
                now,
            });
        }
        Ok(claims)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key() -> TokenKey {
        TokenKey::new(b"0123456789abcdef0123456789abcdef").unwrap()
    }

    fn claims() -> Claims {
        Claims {
            scope: Scope::Room("room-1".into()),
            permission: Permission::Write,
            expires_at: 1_000,
            admin: false,
        }
    }

    #[test]
    fn roundtrip_and_claims() {
        let token = key().mint(&claims());
        let got = key().verify(&token, 999).unwrap();
        assert_eq!(got, claims());
        assert!(got.allows("room-1"));
        assert!(!got.allows("room-10"));
        assert!(got.can_write());
        assert_eq!(got.seconds_left(990), 10);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        );
    }

    #[test]
    fn prefix_read_admin() {
        let c = Claims {
            scope: Scope::Prefix("team-7/".into()),
            permission: Permission::Read,
            expires_at: u64::MAX,
            admin: true,
        };
        let got = key().verify(&key().mint(&c), 0).unwrap();
        assert!(got.allows("team-7/notes"));
        assert!(!got.allows("team-70/notes"));
        assert!(!got.can_write());
        assert!(got.is_admin());
        let all = Claims {
            scope: Scope::Prefix(String::new()),
            ..c
        };
        assert!(all.allows("anything"));
    }

    #[test]
    fn distinct_errors() {
        let token = key().mint(&claims());
        assert_eq!(
            key().verify(&token, 1_000),
            Err(AuthError::Expired {
                expires_at: 1_000,
                now: 1_000
            })
        );
        let other = TokenKey::new(b"another key of 16+ bytes").unwrap();
        assert_eq!(other.verify(&token, 0), Err(AuthError::BadSignature));
        assert!(matches!(
            key().verify("nodot", 0),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            key().verify("a.b", 0),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            key().verify(&format!("{token}="), 0),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            key().verify(&"A".repeat(MAX_TOKEN_LEN + 1), 0),
            Err(AuthError::Malformed(_))
        ));
        // A validly signed payload with a newer version or unknown flags is refused.
        for payload in [vec![2u8; 10], {
            let mut p = claims().encode();
            p[1] |= 0x80;
            p
        }] {
            let tag = key().tag(&payload).finalize().into_bytes();
            let t = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(&payload),
                URL_SAFE_NO_PAD.encode(tag)
            );
            assert!(matches!(
                key().verify(&t, 0),
                Err(AuthError::UnsupportedVersion(2) | AuthError::Malformed(_))
            ));
        }
    }

    #[test]
    fn short_keys_are_refused_and_keys_are_not_printed() {
        assert_eq!(
            TokenKey::new(b"short").unwrap_err(),
            AuthError::KeyTooShort { len: 5 }
        );
        assert_eq!(format!("{:?}", key()), "TokenKey(<redacted>)");
        let k = TokenKey::from_base64("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n").unwrap();
        assert_eq!(k.verify(&key().mint(&claims()), 0).unwrap(), claims());
        assert_eq!(
            TokenKey::from_base64("not base64!").unwrap_err(),
            AuthError::KeyNotBase64
        );
    }

    #[test]
    fn node_minted_token_verifies() {
        // Minted with the Node.js function in the crate docs:
        // mintWeaverToken(Buffer.from('0123456789abcdef0123456789abcdef'),
        //   { room: 'team-7/', prefix: true, write: true, expiresAt: 1700000900 })
        let token = NODE_TOKEN;
        let got = key().verify(token, 1_700_000_000).unwrap();
        assert_eq!(
            got,
            Claims {
                scope: Scope::Prefix("team-7/".into()),
                permission: Permission::Write,
                expires_at: 1_700_000_900,
                admin: false,
            }
        );
        assert_eq!(key().mint(&got), token);
    }

    const NODE_TOKEN: &str = "AQMAAAAAZVP0hHRlYW0tNy8.qSLQBnmKfzmXAlbRfL3LJV1DyeSCQDGdd2OTUxjXMOY";
}
