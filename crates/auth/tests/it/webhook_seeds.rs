//! The webhook_verify fuzz seeds are deliveries signed by node:crypto (make-corpus.mjs), so
//! replaying them checks the Rust verifier against an independent signer, with the verdict
//! each seed was written for.
use std::path::Path;

use weaver_auth::webhook::{WebhookError, WebhookSecret, verify};

fn replay(name: &str) -> Result<(), WebhookError> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus/webhook_verify")
        .join(format!("yjs-{name}.bin"));
    let data = std::fs::read(&path).expect("seed file");
    let mut parts = data.splitn(5, |&b| b == b'\n');
    let text = |p: Option<&[u8]>| p.map(|b| std::str::from_utf8(b).unwrap().to_owned());
    let secret = WebhookSecret::parse(&text(parts.next()).unwrap()).unwrap();
    let (id, ts, sig) = (text(parts.next()), text(parts.next()), text(parts.next()));
    let body = parts.next().unwrap_or_default();
    verify(
        &[secret],
        id.as_deref(),
        ts.as_deref(),
        sig.as_deref(),
        body,
        1_700_000_000,
        300,
    )
}

#[test]
fn node_signed_deliveries_verify() {
    for name in ["completed", "rotation", "failed-multiline", "bare-secret"] {
        assert_eq!(replay(name), Ok(()), "{name}");
    }
}

#[test]
fn node_signed_bad_deliveries_are_refused() {
    assert_eq!(replay("expired"), Err(WebhookError::Expired));
    assert_eq!(replay("tampered"), Err(WebhookError::BadSignature));
    assert!(matches!(
        replay("no-signature"),
        Err(WebhookError::Malformed(_))
    ));
}
