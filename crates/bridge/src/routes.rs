//! The bridge's inbound HTTP routes, as an axum `Router` the binary merges: APICall listing
//! and details, manual retry and refresh, and inbound webhooks
//! (`/api/webhooks/{integration}`). (Outbound HTTP is `integration/http.rs`.)
//!
//! Handlers translate HTTP to bridge calls and errors to status codes; they hold no state.
//! Which token reads or acts on which call is access.rs's rule; a call of a room the token does
//! not grant is answered 404 like a missing one, so call ids of other rooms do not leak.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;
use weaver_auth::Claims;

use crate::access::CallAccess;
use crate::engine::{BridgeHandle, RetryError, blocking};
use crate::model::{CallStatus, EventKind, FailureReason};
use crate::outbox::{CallFilter, WebhookApply};
use crate::webhook::{WebhookError, WebhookPayload, verify};

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({ "error": msg.into() }))).into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "bridge API internal error");
    error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

fn parse_id(id: &str) -> Option<Uuid> {
    Uuid::parse_str(id).ok()
}

fn bad_id() -> Response {
    error(StatusCode::BAD_REQUEST, "call id must be a UUID")
}

fn no_such_call() -> Response {
    error(StatusCode::NOT_FOUND, "no such call")
}

fn access(claims: Option<Extension<Claims>>) -> CallAccess {
    CallAccess::new(claims.map(|Extension(c)| c))
}

/// Loads the call and checks the token may act on it (`write`: retry, refresh). `Err` is the
/// answer: 404 for a missing call and for one of a room the token cannot read, 403 for a room
/// it reads but may not write.
async fn authorize(
    h: &BridgeHandle,
    id: Uuid,
    access: &CallAccess,
    write: bool,
) -> Result<(), Response> {
    if access.every_room() {
        return Ok(());
    }
    let ob = h.outbox().clone();
    let call = match blocking(move || ob.get(&id)).await {
        Ok(Some(call)) => call,
        Ok(None) => return Err(no_such_call()),
        Err(e) => return Err(internal(e)),
    };
    if !access.reads(&call.room) {
        return Err(no_such_call());
    }
    if write && !access.writes(&call.room) {
        return Err(error(
            StatusCode::FORBIDDEN,
            "retry and refresh need a write token for the call's room",
        ));
    }
    Ok(())
}

impl BridgeHandle {
    /// `/api/calls…` and `/api/webhooks/{integration}`.
    pub fn router(&self) -> Router {
        let max = self.inner.cfg.webhooks.max_body_bytes;
        Router::new()
            .route("/api/calls", get(list_calls))
            .route("/api/calls/{id}", get(get_call))
            .route("/api/calls/{id}/retry", post(retry_call))
            .route("/api/calls/{id}/refresh", post(refresh_call))
            .route(
                "/api/webhooks/{integration}",
                post(webhook).layer(DefaultBodyLimit::max(max)),
            )
            .with_state(self.clone())
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    room: Option<String>,
    block: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
}

async fn list_calls(
    State(h): State<BridgeHandle>,
    claims: Option<Extension<Claims>>,
    Query(q): Query<ListQuery>,
) -> Response {
    let access = access(claims);
    let room = q.room.filter(|s| !s.is_empty());
    let allowed = match &room {
        Some(room) => access.reads(room),
        None => access.every_room(),
    };
    if !allowed {
        return error(
            StatusCode::FORBIDDEN,
            "the token does not grant this room (listing every room's calls needs an admin token for every room)",
        );
    }
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => match CallStatus::parse(s) {
            Some(s) => Some(s),
            None => return error(StatusCode::BAD_REQUEST, format!("unknown status {s:?}")),
        },
    };
    let filter = CallFilter {
        room,
        block_id: q.block.filter(|s| !s.is_empty()),
        status,
        limit: Some(q.limit.unwrap_or(500).min(5000)),
    };
    let ob = h.outbox().clone();
    match blocking(move || ob.list(&filter)).await {
        Ok(calls) => Json(json!({ "calls": calls })).into_response(),
        Err(e) => internal(e),
    }
}

async fn get_call(
    State(h): State<BridgeHandle>,
    claims: Option<Extension<Claims>>,
    Path(id): Path<String>,
) -> Response {
    let Some(id) = parse_id(&id) else {
        return bad_id();
    };
    let access = access(claims);
    let ob = h.outbox().clone();
    let r = blocking(move || Ok::<_, crate::OutboxError>((ob.get(&id)?, ob.events(&id)?))).await;
    match r {
        Ok((Some(call), _)) if !access.reads(&call.room) => no_such_call(),
        Ok((Some(call), events)) => {
            let events: Vec<Value> = events
                .into_iter()
                .map(|e| {
                    let mut v = serde_json::to_value(&e.event).unwrap_or(Value::Null);
                    if let Value::Object(o) = &mut v {
                        o.insert("seq".into(), json!(e.seq));
                    }
                    v
                })
                .collect();
            Json(json!({ "call": call, "events": events })).into_response()
        }
        Ok((None, _)) => no_such_call(),
        Err(e) => internal(e),
    }
}

fn retry_error(e: RetryError) -> Response {
    match e {
        RetryError::NotFound => no_such_call(),
        RetryError::Conflict(m) => error(StatusCode::CONFLICT, m),
        other => internal(other),
    }
}

async fn retry_call(
    State(h): State<BridgeHandle>,
    claims: Option<Extension<Claims>>,
    Path(id): Path<String>,
) -> Response {
    let Some(id) = parse_id(&id) else {
        return bad_id();
    };
    if let Err(r) = authorize(&h, id, &access(claims), true).await {
        return r;
    }
    match h.retry(id).await {
        Ok(call) => (StatusCode::ACCEPTED, Json(json!({ "call": call }))).into_response(),
        Err(e) => retry_error(e),
    }
}

async fn refresh_call(
    State(h): State<BridgeHandle>,
    claims: Option<Extension<Claims>>,
    Path(id): Path<String>,
) -> Response {
    let Some(id) = parse_id(&id) else {
        return bad_id();
    };
    if let Err(r) = authorize(&h, id, &access(claims), true).await {
        return r;
    }
    match h.refresh(id).await {
        Ok(call) => Json(json!({ "call": call })).into_response(),
        Err(e) => retry_error(e),
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

async fn webhook(
    State(h): State<BridgeHandle>,
    Path(integration): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(integ) = h.inner.registry.get(&integration).cloned() else {
        return error(
            StatusCode::NOT_FOUND,
            format!("unknown integration {integration:?}"),
        );
    };
    let secrets = integ.webhook_secrets();
    if secrets.is_empty() {
        return error(
            StatusCode::NOT_FOUND,
            format!("integration {integration:?} accepts no webhooks"),
        );
    }
    let now = i64::try_from(crate::now_ms() / 1000).unwrap_or(i64::MAX);
    let id = header(&headers, "webhook-id");
    if let Err(e) = verify(
        secrets,
        id,
        header(&headers, "webhook-timestamp"),
        header(&headers, "webhook-signature"),
        &body,
        now,
        h.inner.cfg.webhooks.tolerance_secs,
    ) {
        tracing::warn!(integration = %integration, webhook_id = ?id, reason = %e, "webhook rejected");
        metrics::counter!(crate::metrics::WEBHOOKS_TOTAL, "integration" => integration.clone(), "result" => "rejected").increment(1);
        return match e {
            WebhookError::Malformed(m) => error(StatusCode::BAD_REQUEST, m),
            other => error(StatusCode::UNAUTHORIZED, other.to_string()),
        };
    }
    let webhook_id = id.unwrap_or_default().to_owned();
    let payload: WebhookPayload = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("webhook body: {e}")),
    };
    let kind = match payload.kind.as_str() {
        "processing" => EventKind::Processing,
        "completed" => EventKind::Completed {
            data: crate::model::bound_external_json(payload.data.unwrap_or(Value::Null)),
        },
        "failed" => EventKind::Failed {
            error: payload
                .error
                .unwrap_or_else(|| "external job failed".into()),
            // An asynchronous job that failed is final for this attempt; a retry is a new
            // attempt requested by the user.
            retryable: false,
            reason: FailureReason::JobFailed,
        },
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("unknown webhook type {other:?}"),
            );
        }
    };
    if payload.external_id.is_empty() {
        return error(StatusCode::BAD_REQUEST, "external_id must not be empty");
    }
    let ob = h.outbox().clone();
    let (integ_name, ext) = (integration.clone(), payload.external_id.clone());
    let wid = webhook_id.clone();
    let r =
        blocking(move || ob.apply_webhook(&integ_name, &wid, &ext, kind, crate::now_ms())).await;
    let result = match &r {
        Ok(WebhookApply::Duplicate) => "duplicate",
        Ok(WebhookApply::Parked) => "parked",
        Ok(WebhookApply::Applied(_)) => "applied",
        Err(_) => "error",
    };
    metrics::counter!(crate::metrics::WEBHOOKS_TOTAL, "integration" => integration.clone(), "result" => result)
        .increment(1);
    match r {
        Ok(WebhookApply::Duplicate) => {
            tracing::info!(integration = %integration, webhook_id = %webhook_id, "duplicate webhook ignored");
            Json(json!({ "duplicate": true })).into_response()
        }
        Ok(WebhookApply::Parked) => {
            tracing::info!(integration = %integration, webhook_id = %webhook_id, external_id = %payload.external_id, "webhook parked until the call is initialized");
            (StatusCode::ACCEPTED, Json(json!({ "parked": true }))).into_response()
        }
        Ok(WebhookApply::Applied(call)) => {
            tracing::info!(integration = %integration, webhook_id = %webhook_id, call_id = %call.id, status = call.status.as_str(), "webhook applied");
            h.notify_writebacks();
            Json(json!({ "call_id": call.id, "status": call.status })).into_response()
        }
        Err(e) => internal(e),
    }
}
