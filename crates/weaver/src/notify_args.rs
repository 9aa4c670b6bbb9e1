//! `weaver serve` flags of the room-change webhooks (weaver-notify).

use std::time::Duration;

use anyhow::Context;
use weaver_notify::{NotifyConfig, WebhookSecret};

#[derive(Debug, clap::Args)]
pub struct NotifyArgs {
    /// POST a signed `room.updated` JSON to this URL after a room changes (debounced, retried,
    /// re-sent after a crash; docs/operations.md, "Room-change webhooks"). Off without it.
    #[arg(help_heading = "Webhooks", long, env = "WEAVER_NOTIFY_URL")]
    pub notify_url: Option<String>,
    /// Standard Webhooks secret (`whsec_<base64>`) signing each delivery. Prefer the variable.
    #[arg(
        help_heading = "Webhooks",
        long,
        env = "WEAVER_NOTIFY_SECRET",
        hide_env_values = true
    )]
    pub notify_secret: Option<String>,
    /// Only announce rooms whose name starts with this.
    #[arg(
        help_heading = "Webhooks",
        long,
        env = "WEAVER_NOTIFY_PREFIX",
        default_value = ""
    )]
    pub notify_prefix: String,
    /// Quiet milliseconds after a room's last change before it is announced.
    #[arg(
        help_heading = "Webhooks",
        long,
        env = "WEAVER_NOTIFY_DEBOUNCE_MS",
        default_value_t = 2000
    )]
    pub notify_debounce_ms: u64,
    /// Longest a change waits (milliseconds) while its room keeps changing.
    #[arg(
        help_heading = "Webhooks",
        long,
        env = "WEAVER_NOTIFY_MAX_WAIT_MS",
        default_value_t = 10_000
    )]
    pub notify_max_wait_ms: u64,
}

impl NotifyArgs {
    /// The notifier's configuration, `None` when no URL is set.
    pub fn config(&self) -> anyhow::Result<Option<NotifyConfig>> {
        let Some(url) = &self.notify_url else {
            if self.notify_secret.is_some() {
                anyhow::bail!("--notify-secret (WEAVER_NOTIFY_SECRET) is set without --notify-url");
            }
            return Ok(None);
        };
        let url = reqwest::Url::parse(url).with_context(|| format!("--notify-url {url:?}"))?;
        let mut cfg = NotifyConfig::new(url);
        if let Some(s) = &self.notify_secret {
            cfg.secret = Some(
                WebhookSecret::parse(s)
                    .map_err(|e| anyhow::anyhow!("--notify-secret / WEAVER_NOTIFY_SECRET: {e}"))?,
            );
        } else {
            tracing::warn!(
                "--notify-url without --notify-secret: room notifications are sent unsigned, so \
                 the receiver cannot tell them from forgeries"
            );
        }
        cfg.prefix = self.notify_prefix.clone();
        cfg.debounce = Duration::from_millis(self.notify_debounce_ms);
        cfg.max_wait = Duration::from_millis(self.notify_max_wait_ms);
        Ok(Some(cfg))
    }
}
