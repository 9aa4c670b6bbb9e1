//! `weaver serve` flags of the bridge's `call.failed` webhook (weaver-bridge,
//! `engine/failure_webhook.rs`).

use anyhow::Context;
use weaver_bridge::WebhookSecret;
use weaver_bridge::config::FailureWebhookConfig;

#[derive(Debug, clap::Args)]
pub struct BridgeFailureArgs {
    /// POST a signed `call.failed` JSON to this URL when an APICall gives up (retried until
    /// taken, re-sent after a crash; docs/operations.md, "Failed-call webhooks"). Off without it.
    #[arg(help_heading = "Bridge", long, env = "WEAVER_BRIDGE_FAILURE_URL")]
    pub bridge_failure_url: Option<String>,
    /// Standard Webhooks secret (`whsec_<base64>`) signing each `call.failed` delivery. Prefer
    /// the variable.
    #[arg(
        help_heading = "Bridge",
        long,
        env = "WEAVER_BRIDGE_FAILURE_SECRET",
        hide_env_values = true
    )]
    pub bridge_failure_secret: Option<String>,
}

impl BridgeFailureArgs {
    /// The webhook's configuration, `None` when no URL is set.
    pub fn config(&self) -> anyhow::Result<Option<FailureWebhookConfig>> {
        let Some(url) = &self.bridge_failure_url else {
            if self.bridge_failure_secret.is_some() {
                anyhow::bail!(
                    "--bridge-failure-secret (WEAVER_BRIDGE_FAILURE_SECRET) is set without \
                     --bridge-failure-url"
                );
            }
            return Ok(None);
        };
        let url =
            reqwest::Url::parse(url).with_context(|| format!("--bridge-failure-url {url:?}"))?;
        let mut cfg = FailureWebhookConfig::new(url);
        if let Some(s) = &self.bridge_failure_secret {
            cfg.secret = Some(WebhookSecret::parse(s).map_err(|e| {
                anyhow::anyhow!("--bridge-failure-secret / WEAVER_BRIDGE_FAILURE_SECRET: {e}")
            })?);
        } else {
            tracing::warn!(
                "--bridge-failure-url without --bridge-failure-secret: call.failed webhooks are \
                 sent unsigned, so the receiver cannot tell them from forgeries"
            );
        }
        Ok(Some(cfg))
    }
}
