//! Standard Webhooks verifier (weaver-auth, used by the bridge's webhook endpoint): never panics
//! on any secret, headers or body; and a signature computed here for the same inputs verifies,
//! also next to whatever other entries the fuzzer put in the header and under key rotation,
//! while a changed body, id or timestamp, or a stale timestamp, is refused.
//!
//! Input: `secret \n webhook-id \n webhook-timestamp \n webhook-signature \n body` (the body is
//! the rest and may contain newlines; a missing line is a missing header). Seeds in
//! fuzz/corpus/webhook_verify are deliveries signed by Node's crypto
//! (crates/protocol/tests/js/make-corpus.mjs).
#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use weaver_auth::webhook::{WebhookError, WebhookSecret, verify};

// Same clock and tolerance as the seeds were signed for.
const NOW: i64 = 1_700_000_000;
const TOLERANCE: u64 = 300;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(5, |&b| b == b'\n');
    let secret_raw = parts.next().unwrap_or_default();
    let id = parts.next().map(String::from_utf8_lossy);
    let ts = parts.next().map(String::from_utf8_lossy);
    let sig = parts.next().map(String::from_utf8_lossy);
    let body = parts.next().unwrap_or_default();

    // A text secret as configured (`whsec_<base64>`), else the raw bytes as the key, so the
    // properties below run on every input.
    let secret = match WebhookSecret::parse(&String::from_utf8_lossy(secret_raw)) {
        Ok(s) => s,
        Err(_) => match WebhookSecret::from_bytes(secret_raw) {
            Ok(s) => s,
            Err(_) => return,
        },
    };
    let Ok(other) = WebhookSecret::from_bytes(b"a different key, e.g. the one rotated out") else {
        return;
    };

    let got = verify(
        std::slice::from_ref(&secret),
        id.as_deref(),
        ts.as_deref(),
        sig.as_deref(),
        body,
        NOW,
        TOLERANCE,
    );
    if got.is_ok() {
        let t: i64 = ts
            .as_deref()
            .unwrap_or_default()
            .trim()
            .parse()
            .unwrap_or(i64::MIN);
        assert!(NOW.abs_diff(t) <= TOLERANCE, "accepted a stale timestamp");
        assert!(id.as_deref().is_some_and(|i| !i.is_empty()));
    }
    // No secret: nothing can verify.
    assert!(
        verify(
            &[],
            id.as_deref(),
            ts.as_deref(),
            sig.as_deref(),
            body,
            NOW,
            TOLERANCE
        )
        .is_err()
    );

    // Self-signed deliveries: the id must be non-empty, the timestamp the canonical decimal
    // text a sender writes (`sign` formats the integer; the verifier MACs the header text).
    let id: Cow<str> = match id {
        Some(i) if !i.is_empty() => i,
        _ => Cow::Borrowed("msg_fuzz"),
    };
    let t: i64 = ts
        .as_deref()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(NOW);
    let t_text = t.to_string();
    let own = secret.sign(&id, t, body);
    let check = |secrets: &[WebhookSecret], id: &str, t_text: &str, sig: &str, body: &[u8], now| {
        verify(
            secrets,
            Some(id),
            Some(t_text),
            Some(sig),
            body,
            now,
            TOLERANCE,
        )
    };

    assert_eq!(
        check(std::slice::from_ref(&secret), &id, &t_text, &own, body, t),
        Ok(())
    );
    // Rotation: the receiver knows the old and the new secret.
    assert_eq!(
        check(
            &[other.clone(), secret.clone()],
            &id,
            &t_text,
            &own,
            body,
            t
        ),
        Ok(())
    );
    assert_eq!(
        check(std::slice::from_ref(&other), &id, &t_text, &own, body, t),
        Err(WebhookError::BadSignature)
    );
    // Several signatures in one header: ours verifies after the fuzzer's entries, unless one of
    // them is not `version,value` at all, which makes the whole header malformed.
    if let Some(fuzz_sig) = sig.as_deref() {
        let both = format!("{fuzz_sig} {own}");
        let r = check(std::slice::from_ref(&secret), &id, &t_text, &both, body, t);
        if fuzz_sig.split_whitespace().all(|p| p.contains(',')) {
            assert_eq!(r, Ok(()));
        } else {
            assert!(matches!(r, Err(WebhookError::Malformed(_))), "{r:?}");
        }
    }
    // Everything signed is covered: our secret and signature, one input changed at a time.
    let mine = |id: &str, ts: &str, body: &[u8], now: i64| {
        check(std::slice::from_ref(&secret), id, ts, &own, body, now)
    };
    let mut longer = body.to_vec();
    longer.push(b'!');
    assert_eq!(
        mine(&id, &t_text, &longer, t),
        Err(WebhookError::BadSignature)
    );
    let other_id = format!("{id}x");
    assert_eq!(
        mine(&other_id, &t_text, body, t),
        Err(WebhookError::BadSignature)
    );
    let t2 = t.wrapping_add(1);
    assert_eq!(
        mine(&id, &t2.to_string(), body, t2),
        Err(WebhookError::BadSignature)
    );
    // Replays outside the tolerance are refused before the signature is looked at.
    if let Some(late) = t.checked_add(TOLERANCE as i64 + 1) {
        assert_eq!(mine(&id, &t_text, body, late), Err(WebhookError::Expired));
    }
});
