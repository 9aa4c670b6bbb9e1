//! The outbound HTTP integration: POSTs a call to a configured URL with an `Idempotency-Key`, maps the
//! answer to an `Outcome`, and polls a status URL for asynchronous jobs.
//!
//! Redirects are not followed, response bodies are capped, each request has a timeout. What is
//! retried is decided by `weaver_retry::classify`; *when* it is retried by the outbox.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use super::{BoxFuture, Integration};
use crate::BridgeError;
use crate::config::IntegrationConfig;
use crate::error::IntegrationSetupError;
use crate::model::{ApiCall, FailureReason};
use crate::outbox::Outcome;
use crate::webhook::WebhookSecret;

/// An HTTP API configured by an `[[integrations]]` table.
#[derive(Debug)]
pub struct HttpIntegration {
    name: String,
    url: String,
    client: reqwest::Client,
    headers: HeaderMap,
    concurrency: usize,
    secrets: Vec<WebhookSecret>,
    status_url: Option<String>,
    poll_interval_ms: u64,
    async_timeout_ms: u64,
    external_id_field: Option<String>,
    max_response_bytes: usize,
}

/// Replaces every `${NAME}` with `env(NAME)` (missing → error).
pub fn expand_env(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated ${{ in {s:?}"))?;
        let var = &after[..end];
        let val = env(var).ok_or_else(|| format!("environment variable {var} is not set"))?;
        out.push_str(&val);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What a response status means for a call (the integration contract of docs/bridge.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// 200, 201, 204: completed synchronously.
    Completed,
    /// 202: accepted, finishes asynchronously.
    Accepted,
    /// Any other status; `retryable` as `weaver_retry::classify` says (an odd 2xx is final).
    Failed { retryable: bool },
}

fn reply(status: u16) -> Reply {
    match status {
        200 | 201 | 204 => Reply::Completed,
        202 => Reply::Accepted,
        other => Reply::Failed {
            retryable: weaver_retry::classify(other).is_retryable(),
        },
    }
}

enum Body {
    Ok(Value),
    TooLarge,
}

impl HttpIntegration {
    /// Builds the client and resolves secrets from the process environment.
    pub fn from_config(c: &IntegrationConfig) -> Result<Self, BridgeError> {
        Self::from_config_with_env(c, &|k| std::env::var(k).ok())
    }

    /// Like `from_config` with an explicit variable lookup (tests, embedding).
    pub fn from_config_with_env(
        c: &IntegrationConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, BridgeError> {
        let err = |source: IntegrationSetupError| BridgeError::Integration {
            name: c.name.clone(),
            source,
        };
        let mut headers = HeaderMap::new();
        for (k, v) in &c.headers {
            let v = expand_env(v, env).map_err(|m| err(IntegrationSetupError::Env(m)))?;
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|source| {
                err(IntegrationSetupError::HeaderName {
                    name: k.clone(),
                    source,
                })
            })?;
            let mut value = HeaderValue::from_str(&v).map_err(|source| {
                err(IntegrationSetupError::HeaderValue {
                    name: k.clone(),
                    source,
                })
            })?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let mut secrets = Vec::new();
        for var in &c.webhook_secrets {
            let raw =
                env(var).ok_or_else(|| err(IntegrationSetupError::SecretUnset(var.clone())))?;
            for one in raw.split_whitespace() {
                secrets.push(WebhookSecret::parse(one).map_err(|source| {
                    err(IntegrationSetupError::Secret {
                        var: var.clone(),
                        source,
                    })
                })?);
            }
        }
        let client = crate::tls::client_builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(c.timeout_ms))
            .connect_timeout(Duration::from_millis(c.timeout_ms.min(5_000)))
            .build()
            .map_err(|e| err(IntegrationSetupError::Client(e)))?;
        Ok(Self {
            name: c.name.clone(),
            url: c.url.clone(),
            client,
            headers,
            concurrency: c.concurrency,
            secrets,
            status_url: c.status_url.clone(),
            poll_interval_ms: c.poll_interval_ms,
            async_timeout_ms: c.async_timeout_ms,
            external_id_field: c.external_id_field.clone(),
            max_response_bytes: c.max_response_bytes,
        })
    }

    /// Sends `req` and reads the reply: its status, Retry-After (ms) and body. A transport
    /// error (sending or reading the body) is returned as the call's outcome.
    async fn exchange(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<(reqwest::StatusCode, Option<u64>, Body), Outcome> {
        let resp = req.send().await.map_err(|e| self.transport_error(&e))?;
        let status = resp.status();
        let ra = retry_after_ms(resp.headers());
        let body = self
            .read_body(resp)
            .await
            .map_err(|e| self.transport_error(&e))?;
        Ok((status, ra, body))
    }

    async fn read_body(&self, mut resp: reqwest::Response) -> Result<Body, reqwest::Error> {
        let mut buf = Vec::new();
        while let Some(chunk) = resp.chunk().await? {
            if buf.len() + chunk.len() > self.max_response_bytes {
                return Ok(Body::TooLarge);
            }
            buf.extend_from_slice(&chunk);
        }
        if buf.is_empty() {
            return Ok(Body::Ok(Value::Null));
        }
        Ok(Body::Ok(crate::model::bound_external_json(
            serde_json::from_slice(&buf)
                .unwrap_or_else(|_| json!({"body": String::from_utf8_lossy(&buf)})),
        )))
    }

    fn external_id(&self, body: &Value) -> Option<String> {
        let fields: Vec<&str> = match &self.external_id_field {
            Some(f) => vec![f.as_str()],
            None => vec!["external_id", "id"],
        };
        fields.into_iter().find_map(|f| match body.get(f)? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    }

    /// When to look at a started call again: the next poll, or (webhook-only) the deadline.
    fn poll_after(&self) -> Option<u64> {
        Some(if self.status_url.is_some() {
            self.poll_interval_ms
        } else {
            self.async_timeout_ms
        })
    }

    fn transport_error(&self, e: &reqwest::Error) -> Outcome {
        let (what, reason) = if e.is_timeout() {
            ("timeout", FailureReason::Timeout)
        } else if e.is_connect() {
            ("connect error", FailureReason::Connect)
        } else {
            ("network error", FailureReason::Network)
        };
        Outcome::Failed {
            error: format!("{}: {what}: {e}", self.name),
            retryable: true,
            retry_after_ms: None,
            reason,
        }
    }

    fn http_error(
        &self,
        status: reqwest::StatusCode,
        retry_after: Option<u64>,
        body: &Body,
    ) -> Outcome {
        let retryable = reply(status.as_u16()) == Reply::Failed { retryable: true };
        let detail = match body {
            Body::Ok(Value::Null) | Body::TooLarge => String::new(),
            Body::Ok(v) => {
                let s = v
                    .get("error")
                    .and_then(Value::as_str)
                    .map_or_else(|| v.to_string(), str::to_owned);
                format!(": {}", s.chars().take(300).collect::<String>())
            }
        };
        let redirect = if status.is_redirection() {
            " (redirects are not followed)"
        } else {
            ""
        };
        Outcome::Failed {
            error: format!("HTTP {status}{redirect}{detail}"),
            retryable,
            retry_after_ms: retry_after,
            reason: FailureReason::of_status(status.as_u16()),
        }
    }
}

fn retry_after_ms(h: &HeaderMap) -> Option<u64> {
    let v = h.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    weaver_retry::parse_retry_after(v, SystemTime::now())
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Integration for HttpIntegration {
    fn name(&self) -> &str {
        &self.name
    }
    fn concurrency(&self) -> usize {
        self.concurrency
    }
    fn can_poll(&self) -> bool {
        self.status_url.is_some()
    }
    fn async_timeout_ms(&self) -> u64 {
        self.async_timeout_ms
    }
    fn webhook_secrets(&self) -> &[WebhookSecret] {
        &self.secrets
    }

    fn submit<'a>(&'a self, call: &'a ApiCall) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let payload = json!({
                "call_id": call.id.to_string(),
                "attempt": call.attempt,
                "room": call.room,
                "block_id": call.block_id,
                "index_name": call.index_name,
                "collection_configs": call.request_params.get("collection_configs").cloned().unwrap_or(Value::Null),
                "content": call.request_params.get("content").cloned().unwrap_or(Value::Null),
            });
            let req = self
                .client
                .post(&self.url)
                .headers(self.headers.clone())
                .header("Idempotency-Key", &call.idempotency_key)
                .json(&payload);
            let (status, ra, body) = match self.exchange(req).await {
                Ok(r) => r,
                Err(transport) => return transport,
            };
            match (reply(status.as_u16()), body) {
                (Reply::Completed, Body::Ok(data)) => Outcome::Completed {
                    external_id: self.external_id(&data),
                    data,
                },
                (Reply::Accepted, Body::Ok(data)) => match self.external_id(&data) {
                    Some(external_id) => Outcome::Started {
                        external_id,
                        poll_after_ms: self.poll_after(),
                    },
                    None => Outcome::Failed {
                        error: format!("HTTP 202 without an external id field in {data}"),
                        retryable: false,
                        retry_after_ms: None,
                        reason: FailureReason::InvalidResponse,
                    },
                },
                (Reply::Completed | Reply::Accepted, Body::TooLarge) => Outcome::Failed {
                    error: format!("response larger than {} bytes", self.max_response_bytes),
                    retryable: false,
                    retry_after_ms: None,
                    reason: FailureReason::InvalidResponse,
                },
                (_, body) => self.http_error(status, ra, &body),
            }
        })
    }

    fn poll<'a>(&'a self, call: &'a ApiCall) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let (Some(tpl), Some(ext)) = (&self.status_url, &call.external_id) else {
                return Outcome::Failed {
                    error: format!("{}: no status_url configured or no external id", self.name),
                    retryable: false,
                    retry_after_ms: None,
                    reason: FailureReason::NotConfigured,
                };
            };
            let url = tpl.replace("{external_id}", &percent_encode(ext));
            let req = self.client.get(&url).headers(self.headers.clone());
            let (status, ra, body) = match self.exchange(req).await {
                Ok(r) => r,
                Err(transport) => return transport,
            };
            let data = match (reply(status.as_u16()), body) {
                (Reply::Completed | Reply::Accepted, Body::Ok(d)) => d,
                (Reply::Completed | Reply::Accepted, Body::TooLarge) => {
                    return Outcome::Failed {
                        error: format!(
                            "status response larger than {} bytes",
                            self.max_response_bytes
                        ),
                        retryable: false,
                        retry_after_ms: None,
                        reason: FailureReason::InvalidResponse,
                    };
                }
                (_, body) => return self.http_error(status, ra, &body),
            };
            match data.get("status").and_then(Value::as_str).unwrap_or("") {
                "completed" | "done" | "succeeded" | "success" => {
                    let result = data
                        .get("data")
                        .or_else(|| data.get("result"))
                        .cloned()
                        .unwrap_or(data.clone());
                    Outcome::Completed {
                        external_id: None,
                        data: result,
                    }
                }
                "failed" | "error" => Outcome::Failed {
                    error: data
                        .get("error")
                        .and_then(Value::as_str)
                        .unwrap_or("external job failed")
                        .to_owned(),
                    retryable: false,
                    retry_after_ms: None,
                    reason: FailureReason::JobFailed,
                },
                _ => Outcome::Pending {
                    poll_after_ms: ra.unwrap_or(self.poll_interval_ms),
                },
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_expansion() {
        let env = |k: &str| (k == "TOKEN").then(|| "s3cret".to_owned());
        assert_eq!(
            expand_env("Bearer ${TOKEN}!", &env).unwrap(),
            "Bearer s3cret!"
        );
        assert!(expand_env("${MISSING}", &env).is_err());
        assert!(expand_env("${oops", &env).is_err());
        assert_eq!(expand_env("plain", &env).unwrap(), "plain");
    }

    #[test]
    fn replies() {
        let table: &[(&[u16], Reply)] = &[
            (&[200, 201, 204], Reply::Completed),
            (&[202], Reply::Accepted),
            (
                &[408, 425, 429, 500, 502, 503, 504],
                Reply::Failed { retryable: true },
            ),
            (
                &[203, 206, 301, 302, 400, 401, 403, 404, 409, 410, 422],
                Reply::Failed { retryable: false },
            ),
        ];
        for (codes, want) in table {
            for &code in *codes {
                assert_eq!(reply(code), *want, "{code}");
            }
        }
    }

    #[test]
    fn encode() {
        assert_eq!(percent_encode("a b/c"), "a%20b%2Fc");
    }
}
