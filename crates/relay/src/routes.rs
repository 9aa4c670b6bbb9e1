//! The relay's inbound HTTP routes: `/{room}` (WebSocket), the Hocuspocus upgrade at `/` (a layer
//! over the router that serves the page there), `/healthz`, `/readyz`, the room listing
//! `/api/rooms` and the room API under `/api/rooms/{room}/` (its change feed is in feed.rs,
//! its versions under `/api/rooms/{room}/versions`).
//! Handlers only translate HTTP to `RelayHandle` calls; errors become responses in `RelayError`'s one `IntoResponse` impl.
//! `/metrics` is added by the binary (it owns the recorder); `/`, `/assets/*` and
//! `/api/calls…`/`/api/webhooks/…` belong to other parts and are merged in by the binary.

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, Query, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;

use crate::error::RelayError;
use crate::events::UpdateOrigin;
use crate::query::{SvQuery, decode_sv};
use crate::relay::{Relay, RelayHandle};

impl Relay {
    /// The relay's routes (WebSocket rooms, health, room HTTP API); merge others into it.
    pub fn router(&self) -> Router {
        router(self.handle())
    }

    /// Puts Hocuspocus clients at `/` of `router` (which serves `/` itself, e.g. the web demo's
    /// page): a WebSocket upgrade of exactly `/` becomes a Hocuspocus connection (hocuspocus/),
    /// every other request goes to `router` unchanged. Tokens come per document inside the
    /// protocol, so no token is asked for at the upgrade; the `Origin` allow-list applies.
    pub fn with_hocuspocus<S>(&self, router: Router<S>) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let relay = self.handle();
        let deps = crate::hocuspocus::HocusDeps {
            conns: axum::extract::FromRef::from_ref(&relay),
            auth: relay.authenticator(),
            origins: crate::origin::AllowedOrigins::new(&relay.config().ws_allowed_origins),
        };
        router.route_layer(axum::middleware::from_fn_with_state(
            deps,
            crate::hocuspocus::root_upgrade,
        ))
    }
}

fn router(relay: RelayHandle) -> Router {
    let limit = relay.config().max_message_bytes;
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route(
            "/api/rooms/{room}/update",
            get(get_update).post(post_update),
        )
        .route("/api/rooms", get(list_rooms))
        .route("/api/rooms/{room}/blocks", get(get_blocks))
        .route("/api/rooms/{room}/awareness", get(get_awareness))
        .route("/api/rooms/{room}/changes", get(crate::feed::changes))
        .route("/api/rooms/{room}", axum::routing::delete(delete_room))
        .route(
            "/api/rooms/{room}/versions",
            get(list_versions).post(post_version),
        )
        .route(
            "/api/rooms/{room}/versions/{id}/update",
            get(get_version_update),
        )
        .route(
            "/api/rooms/{room}/versions/{id}/blocks",
            get(get_version_blocks),
        )
        .route(
            "/api/rooms/{room}/versions/{id}/restore",
            axum::routing::post(restore_version),
        )
        .route(
            "/{room}",
            get(crate::connection::ws_handler).route_layer(axum::middleware::from_fn_with_state(
                crate::origin::AllowedOrigins::new(&relay.config().ws_allowed_origins),
                crate::origin::check_ws_origin,
            )),
        )
        // Cluster mode: a room owned by another node is served there (inner to the token check,
        // so this node checks the token first).
        .route_layer(axum::middleware::from_fn_with_state(
            relay.clone(),
            crate::forward::http::forward_room_api,
        ))
        // Token checks before any handler runs (auth.rs); open when no key is configured.
        .route_layer(axum::middleware::from_fn_with_state(
            relay.authenticator(),
            crate::auth::relay_routes,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(relay)
}

async fn readyz(State(relay): State<RelayHandle>) -> Response {
    if relay.store_failed() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "storage failed: writes are refused until the server is restarted (see the error log)",
        )
            .into_response()
    } else if relay.is_ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
    }
}

/// Default page size of `GET /api/rooms`.
const DEFAULT_ROOM_PAGE: usize = 100;

async fn list_rooms(
    State(relay): State<RelayHandle>,
    RawQuery(query): RawQuery,
    headers: axum::http::HeaderMap,
) -> Result<Response, RelayError> {
    // The same parser as the token check, which authorised exactly this `prefix`.
    let mut q = crate::query::query_pairs(query.as_deref().unwrap_or_default());
    let prefix = q.remove("prefix").unwrap_or_default();
    let after = q.remove("after");
    // A prefix is a room name cut short: the same alphabet and length, so a malformed one is
    // refused instead of silently matching nothing.
    if !prefix.is_empty()
        && (prefix.len() > 128 || !prefix.bytes().all(crate::room_name::room_name_byte))
    {
        return Err(RelayError::InvalidQuery(
            "prefix: up to 128 characters of [A-Za-z0-9._~:@/-]".into(),
        ));
    }
    if after.as_ref().is_some_and(|a| a.len() > 128) {
        return Err(RelayError::InvalidQuery("after: at most 128 bytes".into()));
    }
    let limit = match q.get("limit").map(String::as_str) {
        None => DEFAULT_ROOM_PAGE,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=crate::relay::MAX_ROOM_PAGE).contains(&n) => n,
            _ => {
                return Err(RelayError::InvalidQuery(format!(
                    "limit: a whole number from 1 to {}",
                    crate::relay::MAX_ROOM_PAGE
                )));
            }
        },
    };
    // Cluster mode: every node's open rooms too (listing.rs); a single node lists its own.
    let page = crate::listing::page(
        &relay,
        (&prefix, after.as_deref(), limit),
        query.as_deref(),
        &headers,
    )
    .await?;
    Ok(axum::Json(page).into_response())
}

async fn get_update(
    State(relay): State<RelayHandle>,
    Path(room): Path<String>,
    Query(q): Query<SvQuery>,
) -> Result<Response, RelayError> {
    let sv = decode_sv(q.sv)?;
    let update = relay.state_diff(&room, sv).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], update).into_response())
}

async fn post_update(
    State(relay): State<RelayHandle>,
    Path(room): Path<String>,
    body: Bytes,
) -> Result<StatusCode, RelayError> {
    relay
        .apply_with_origin(&room, body, UpdateOrigin::Http)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_blocks(
    State(relay): State<RelayHandle>,
    Path(room): Path<String>,
) -> Result<Response, RelayError> {
    let state = relay.room_state(&room).await?;
    let json = tokio::task::spawn_blocking(move || crate::blocks::blocks_json(&state))
        .await
        .map_err(|e| RelayError::Internal(e.to_string()))??;
    Ok(axum::Json(json).into_response())
}

async fn get_awareness(
    State(relay): State<RelayHandle>,
    Path(room): Path<String>,
) -> Result<Response, RelayError> {
    Ok(axum::Json(relay.presence(&room).await?).into_response())
}

async fn delete_room(
    State(relay): State<RelayHandle>,
    Path(room): Path<String>,
) -> Result<StatusCode, RelayError> {
    relay.delete_room(&room).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_versions(
    State(relay): State<RelayHandle>,
    Path(room): Path<String>,
) -> Result<Response, RelayError> {
    let versions = relay.versions(&room).await?;
    Ok(axum::Json(serde_json::json!({ "versions": versions })).into_response())
}

/// The optional body of `POST /api/rooms/{room}/versions`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewVersionBody {
    label: Option<String>,
}

async fn post_version(
    State(relay): State<RelayHandle>,
    Path(room): Path<String>,
    body: Bytes,
) -> Result<Response, RelayError> {
    let body: NewVersionBody = if body.iter().all(u8::is_ascii_whitespace) {
        NewVersionBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| RelayError::InvalidQuery(format!("body: {e}")))?
    };
    let version = relay.create_version(&room, body.label).await?;
    Ok((StatusCode::CREATED, axum::Json(version)).into_response())
}

async fn get_version_update(
    State(relay): State<RelayHandle>,
    Path((room, id)): Path<(String, String)>,
) -> Result<Response, RelayError> {
    let update = relay.version_state(&room, &id).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], update).into_response())
}

async fn get_version_blocks(
    State(relay): State<RelayHandle>,
    Path((room, id)): Path<(String, String)>,
) -> Result<Response, RelayError> {
    let state = relay.version_state(&room, &id).await?;
    let json = tokio::task::spawn_blocking(move || crate::blocks::blocks_json(&state))
        .await
        .map_err(|e| RelayError::Internal(e.to_string()))??;
    Ok(axum::Json(json).into_response())
}

async fn restore_version(
    State(relay): State<RelayHandle>,
    Path((room, id)): Path<(String, String)>,
) -> Result<Response, RelayError> {
    Ok(axum::Json(relay.restore_version(&room, &id).await?).into_response())
}
