//! The built-in `local` integration: needs no network and no configuration, so `weaver serve`
//! alone completes the demo's "Index" button.

use std::time::Instant;

use serde_json::{Value, json};

use super::{BoxFuture, Integration};
use crate::model::{ApiCall, FailureReason};
use crate::outbox::Outcome;
use crate::webhook::WebhookSecret;

/// The built-in integration: splits the content into chunks (paragraphs, at most
/// `MAX_CHUNK` characters each) and reports how many. No network, always succeeds, so
/// `weaver serve` without configuration completes the demo's "Index" button.
#[derive(Debug)]
pub struct LocalIntegration {
    concurrency: usize,
}

const MAX_CHUNK: usize = 500;

impl LocalIntegration {
    pub fn new(concurrency: usize) -> Self {
        Self {
            concurrency: concurrency.max(1),
        }
    }
}

/// Splits text into paragraph chunks of at most `MAX_CHUNK` characters.
pub fn chunk(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for para in text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        let chars: Vec<char> = para.chars().collect();
        for piece in chars.chunks(MAX_CHUNK) {
            out.push(piece.iter().collect());
        }
    }
    out
}

impl Integration for LocalIntegration {
    fn name(&self) -> &str {
        "local"
    }
    fn concurrency(&self) -> usize {
        self.concurrency
    }
    fn submit<'a>(&'a self, call: &'a ApiCall) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let started = Instant::now();
            let content = call
                .request_params
                .get("content")
                .and_then(Value::as_str)
                .unwrap_or("");
            let n = chunk(content).len();
            Outcome::Completed {
                external_id: None,
                data: json!({
                    "chunks_indexed": n,
                    "duration_ms": u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                }),
            }
        })
    }
    fn poll<'a>(&'a self, _call: &'a ApiCall) -> BoxFuture<'a, Outcome> {
        Box::pin(async {
            Outcome::Failed {
                error: "the local integration cannot be polled".into(),
                retryable: false,
                retry_after_ms: None,
                reason: FailureReason::NotConfigured,
            }
        })
    }
    fn can_poll(&self) -> bool {
        false
    }
    fn webhook_secrets(&self) -> &[WebhookSecret] {
        &[]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunking() {
        assert!(chunk("").is_empty());
        assert_eq!(chunk("a\n\n\n\nb").len(), 2);
        assert_eq!(chunk(&"x".repeat(1001)).len(), 3);
        assert_eq!(chunk("é".repeat(600).as_str()).len(), 2);
    }
}
