//! Standard Webhooks verification (<https://www.standardwebhooks.com>, v1 symmetric
//! signatures): `whsec_` secrets, the `webhook-id` / `webhook-timestamp` / `webhook-signature`
//! headers, HMAC-SHA256 over `id.timestamp.body` compared in constant time, a timestamp
//! tolerance against replays, several `v1,` signatures per header and several secrets per
//! receiver (rotation).
//!
//! Pure like the token code: the caller passes the header values, the raw body and `now`; what
//! to do with a verified delivery (parsing the body, dedupe by id) is the caller's business
//! (weaver-bridge). Fuzzed by `fuzz/fuzz_targets/webhook_verify.rs`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// A decoded `whsec_…` secret.
#[derive(Clone)]
pub struct WebhookSecret(Hmac<Sha256>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

impl WebhookSecret {
    /// Parses `whsec_<base64>` (the prefix is optional, as in the reference libraries).
    pub fn parse(s: &str) -> Result<Self, WebhookError> {
        let b = s.trim().strip_prefix("whsec_").unwrap_or(s.trim());
        let bytes = B64.decode(b).map_err(|_| WebhookError::BadSecret)?;
        if bytes.is_empty() {
            return Err(WebhookError::BadSecret);
        }
        Self::from_bytes(&bytes)
    }

    /// From raw key bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WebhookError> {
        Hmac::<Sha256>::new_from_slice(bytes)
            .map(Self)
            .map_err(|_| WebhookError::BadSecret)
    }

    fn mac(&self) -> Hmac<Sha256> {
        self.0.clone()
    }

    /// `v1,<base64>` signature of `id.timestamp.body` (what a sender puts in the header).
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = self.mac();
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
    }
}

/// Why a webhook was rejected. `Malformed` → 400, `BadSignature`/`Expired` → 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    #[error("malformed webhook: {0}")]
    Malformed(&'static str),
    #[error("webhook timestamp outside tolerance")]
    Expired,
    #[error("no matching webhook signature")]
    BadSignature,
    #[error("invalid webhook secret (expected whsec_<base64>)")]
    BadSecret,
}

/// Verifies a delivery against any of `secrets` (rotation). `now` is unix seconds.
pub fn verify(
    secrets: &[WebhookSecret],
    id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
    tolerance_secs: u64,
) -> Result<(), WebhookError> {
    let id = id
        .filter(|s| !s.is_empty())
        .ok_or(WebhookError::Malformed("missing webhook-id"))?;
    let ts_raw = timestamp.ok_or(WebhookError::Malformed("missing webhook-timestamp"))?;
    let sig = signature.ok_or(WebhookError::Malformed("missing webhook-signature"))?;
    let ts: i64 = ts_raw
        .trim()
        .parse()
        .map_err(|_| WebhookError::Malformed("webhook-timestamp is not an integer"))?;
    let tol = i64::try_from(tolerance_secs).unwrap_or(i64::MAX);
    if now.abs_diff(ts) > tol.unsigned_abs() {
        return Err(WebhookError::Expired);
    }
    let mut candidates = Vec::new();
    for part in sig.split_whitespace() {
        let Some((version, value)) = part.split_once(',') else {
            return Err(WebhookError::Malformed(
                "webhook-signature entry without version",
            ));
        };
        if version != "v1" {
            continue; // e.g. v1a (asymmetric): not supported, not an error.
        }
        if let Ok(bytes) = B64.decode(value) {
            candidates.push(bytes);
        }
    }
    if candidates.is_empty() {
        return Err(WebhookError::BadSignature);
    }
    for secret in secrets {
        for cand in &candidates {
            let mut mac = secret.mac();
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(ts_raw.trim().as_bytes());
            mac.update(b".");
            mac.update(body);
            // verify_slice compares in constant time.
            if mac.verify_slice(cand).is_ok() {
                return Ok(());
            }
        }
    }
    Err(WebhookError::BadSignature)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::cloned_ref_to_slice_refs)]
mod tests {
    use super::*;

    /// `verify` with every header present and the default 300 s tolerance.
    fn check(
        secrets: &[WebhookSecret],
        id: &str,
        ts: &str,
        sig: &str,
        body: &[u8],
        now: i64,
    ) -> Result<(), WebhookError> {
        verify(secrets, Some(id), Some(ts), Some(sig), body, now, 300)
    }

    fn secret(b: u8) -> WebhookSecret {
        WebhookSecret::from_bytes(&[b; 32]).unwrap()
    }

    #[test]
    fn secret_parse() {
        let s = format!("whsec_{}", B64.encode([7u8; 24]));
        assert!(WebhookSecret::parse(&s).is_ok());
        assert_eq!(
            WebhookSecret::parse("whsec_!!").unwrap_err(),
            WebhookError::BadSecret
        );
    }

    #[test]
    fn valid_signature() {
        let s = secret(1);
        let sig = s.sign("msg_1", 1000, b"{}");
        assert_eq!(check(&[s], "msg_1", "1000", &sig, b"{}", 1000), Ok(()));
    }

    #[test]
    fn tampered_body_and_wrong_secret() {
        let s = secret(1);
        let sig = s.sign("msg_1", 1000, b"{}");
        assert_eq!(
            check(&[s.clone()], "msg_1", "1000", &sig, b"{ }", 1000),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            check(&[secret(2)], "msg_1", "1000", &sig, b"{}", 1000),
            Err(WebhookError::BadSignature)
        );
        // The id is part of the signed content.
        assert_eq!(
            check(&[s], "msg_2", "1000", &sig, b"{}", 1000),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn tolerance() {
        let s = secret(1);
        let sig = s.sign("m", 1000, b"x");
        assert_eq!(check(&[s.clone()], "m", "1000", &sig, b"x", 1300), Ok(()));
        assert_eq!(
            check(&[s.clone()], "m", "1000", &sig, b"x", 1301),
            Err(WebhookError::Expired)
        );
        assert_eq!(
            check(&[s], "m", "1000", &sig, b"x", 699),
            Err(WebhookError::Expired)
        );
    }

    #[test]
    fn rotation_multiple_secrets_and_signatures() {
        let old = secret(1);
        let new = secret(2);
        let sig_old = old.sign("m", 5, b"b");
        let sig_new = new.sign("m", 5, b"b");
        // Receiver knows both secrets, sender signs with the old one.
        assert!(check(&[new.clone(), old.clone()], "m", "5", &sig_old, b"b", 5).is_ok());
        // Sender sends both signatures, receiver only knows the new one.
        let both = format!("{sig_old} {sig_new}");
        assert!(check(&[new], "m", "5", &both, b"b", 5).is_ok());
        assert_eq!(
            check(&[secret(3)], "m", "5", &both, b"b", 5),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn malformed() {
        let s = secret(1);
        let sig = s.sign("m", 5, b"b");
        assert!(matches!(
            verify(&[s.clone()], None, Some("5"), Some(&sig), b"b", 5, 300),
            Err(WebhookError::Malformed(_))
        ));
        assert!(matches!(
            verify(&[s.clone()], Some("m"), None, Some(&sig), b"b", 5, 300),
            Err(WebhookError::Malformed(_))
        ));
        assert!(matches!(
            check(&[s.clone()], "m", "abc", &sig, b"b", 5),
            Err(WebhookError::Malformed(_))
        ));
        assert!(matches!(
            verify(&[s.clone()], Some("m"), Some("5"), None, b"b", 5, 300),
            Err(WebhookError::Malformed(_))
        ));
        assert!(matches!(
            check(&[s.clone()], "m", "5", "garbage", b"b", 5),
            Err(WebhookError::Malformed(_))
        ));
        assert_eq!(
            check(&[s], "m", "5", "v1,!!notbase64", b"b", 5),
            Err(WebhookError::BadSignature)
        );
    }
}
