//! Browser apps on other origins: CORS for the HTTP API and the change feed (`--cors-origin`,
//! tower-http's layer over every route, preflights answered) and the `Origin` allow-list of
//! WebSocket upgrades (`--ws-allowed-origin`, checked by the relay). Without flags nothing
//! changes: no CORS headers, any WebSocket origin.

use anyhow::Context;
use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

#[derive(Debug, clap::Args)]
pub(crate) struct CorsArgs {
    /// An origin (`https://app.example`) whose pages may call the HTTP API and read change
    /// feeds (CORS); repeat for more, `*` for any. The env variable takes a comma-separated list.
    #[arg(
        help_heading = "Network",
        long = "cors-origin",
        env = "WEAVER_CORS_ORIGIN",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,
    /// Origins whose pages may open WebSockets (`Origin` header of the upgrade; 403 otherwise);
    /// repeatable, comma-separated in the env variable. Without it any origin may; a request
    /// without `Origin` (a non-browser client) is always allowed.
    #[arg(
        help_heading = "Network",
        long = "ws-allowed-origin",
        env = "WEAVER_WS_ALLOWED_ORIGIN",
        value_delimiter = ','
    )]
    pub ws_allowed_origins: Vec<String>,
}

impl CorsArgs {
    /// `app` with the CORS layer, if any origin is configured.
    pub(crate) fn apply(&self, app: Router) -> anyhow::Result<Router> {
        let origins: Vec<&str> = self
            .cors_origins
            .iter()
            .map(|o| o.trim().trim_end_matches('/'))
            .filter(|o| !o.is_empty())
            .collect();
        if origins.is_empty() {
            return Ok(app);
        }
        let allow = if origins.contains(&"*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(
                origins
                    .iter()
                    .map(|o| {
                        HeaderValue::from_str(o).with_context(|| format!("--cors-origin {o:?}"))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?,
            )
        };
        let layer = CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::HEAD, Method::POST, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("last-event-id"),
            ])
            .max_age(std::time::Duration::from_secs(600));
        Ok(app.layer(layer))
    }
}
