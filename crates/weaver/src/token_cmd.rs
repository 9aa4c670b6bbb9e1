//! `weaver token` (mint an access token from the command line) and the security flags of
//! `weaver serve` (`--auth-key`, `--insecure-no-auth`, `--read-only-awareness`, abuse limits),
//! flattened into `ServeArgs`. Token format and checks live in weaver-auth / weaver-relay's auth
//! module; this file only turns flags into their types and refuses unsafe combinations.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::ValueEnum;
use tracing::warn;
use weaver_auth::{Claims, Permission, Scope};
use weaver_relay::{AbuseLimits, AuthConfig, ReadOnlyAwareness, RelayConfig, limits as l};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReadOnlyAwarenessArg {
    Allow,
    Deny,
}

/// Security flags of `weaver serve`.
#[derive(Debug, clap::Args)]
pub struct SecurityArgs {
    /// Token key: at least 32 random bytes as hex or base64 (`openssl rand -hex 32`). Turns on
    /// tokens for every room route (docs/security.md). Prefer the environment variable: command
    /// lines are visible to other local users.
    #[arg(
        help_heading = "Auth",
        long,
        env = "WEAVER_AUTH_KEY",
        hide_env_values = true
    )]
    pub auth_key: Option<String>,
    /// Keys being rotated out, comma-separated: tokens they signed are still accepted until they
    /// expire, new tokens come only from `--auth-key`. Drop them once the longest-lived token
    /// they signed has expired (docs/security.md, "Rotating the key").
    #[arg(
        help_heading = "Auth",
        long,
        env = "WEAVER_AUTH_KEY_PREVIOUS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub auth_key_previous: Vec<String>,
    /// Allow running without `--auth-key` on a non-loopback address (anyone who can reach the
    /// port can read, write and delete every room).
    #[arg(help_heading = "Auth", long, env = "WEAVER_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
    /// Whether read-only connections may publish awareness (presence, cursors).
    #[arg(
        help_heading = "Auth",
        long,
        env = "WEAVER_READ_ONLY_AWARENESS",
        value_enum,
        default_value = "allow"
    )]
    pub read_only_awareness: ReadOnlyAwarenessArg,
    /// Open WebSocket connections per room; further upgrades to it get HTTP 503.
    #[arg(help_heading = "Limits", long, env = "WEAVER_MAX_CONNECTIONS_PER_ROOM", default_value_t = l::DEFAULT_MAX_CONNECTIONS_PER_ROOM)]
    pub max_connections_per_room: usize,
    /// SyncStep1 messages a connection may send in a burst; beyond the burst and rate → 1008.
    #[arg(help_heading = "Limits", long, env = "WEAVER_SYNC_STEP1_BURST", default_value_t = l::DEFAULT_SYNC_STEP1_BURST)]
    pub sync_step1_burst: u32,
    /// Sustained SyncStep1 messages per minute per connection.
    #[arg(help_heading = "Limits", long, env = "WEAVER_SYNC_STEP1_PER_MINUTE", default_value_t = l::DEFAULT_SYNC_STEP1_PER_MINUTE)]
    pub sync_step1_per_minute: u32,
    /// Awareness messages per second per connection (burst 2×); excess ones are dropped.
    #[arg(help_heading = "Limits", long, env = "WEAVER_AWARENESS_PER_SEC", default_value_t = l::DEFAULT_AWARENESS_PER_SEC)]
    pub awareness_per_sec: u32,
    /// Awareness messages per second per room (burst 2×); excess ones are dropped.
    #[arg(help_heading = "Limits", long, env = "WEAVER_ROOM_AWARENESS_PER_SEC", default_value_t = l::DEFAULT_ROOM_AWARENESS_PER_SEC)]
    pub room_awareness_per_sec: u32,
    /// Rooms loading from storage at once.
    #[arg(help_heading = "Limits", long, env = "WEAVER_MAX_CONCURRENT_LOADS", default_value_t = l::DEFAULT_MAX_CONCURRENT_LOADS)]
    pub max_concurrent_loads: usize,
    /// Milliseconds a request waits for a load slot before it is refused (1013 / 503).
    #[arg(help_heading = "Limits", long, env = "WEAVER_LOAD_WAIT_MS", default_value_t = l::DEFAULT_LOAD_WAIT.as_millis() as u64)]
    pub load_wait_ms: u64,
}

impl SecurityArgs {
    /// Fills the auth and limit parts of `config`; refuses to run open on a non-loopback address
    /// unless `--insecure-no-auth` says so.
    pub fn apply(
        &self,
        mut config: RelayConfig,
        listen: SocketAddr,
    ) -> anyhow::Result<RelayConfig> {
        let key = match self.auth_key.as_deref() {
            Some(text) => Some(
                weaver_relay::parse_auth_key(text)
                    .map_err(|e| anyhow::anyhow!("--auth-key / WEAVER_AUTH_KEY: {e}"))?,
            ),
            None => None,
        };
        let previous_keys = self
            .auth_key_previous
            .iter()
            // Numbered before empty fields are skipped, so "(key N)" is the Nth field as typed.
            .enumerate()
            .filter(|(_, text)| !text.trim().is_empty())
            .map(|(i, text)| {
                weaver_relay::parse_auth_key(text).map_err(|e| {
                    anyhow::anyhow!(
                        "--auth-key-previous / WEAVER_AUTH_KEY_PREVIOUS (key {}): {e}",
                        i + 1
                    )
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if key.is_none() && !previous_keys.is_empty() {
            bail!(
                "--auth-key-previous (WEAVER_AUTH_KEY_PREVIOUS) is set without --auth-key: a \
                 rotation needs the new key too"
            );
        }
        if key.is_none() {
            if !listen.ip().is_loopback() && !self.insecure_no_auth {
                bail!(
                    "refusing to listen on {listen} without authentication: set --auth-key \
                     (WEAVER_AUTH_KEY), or pass --insecure-no-auth to run open on purpose"
                );
            }
            warn!(
                %listen,
                "AUTHENTICATION IS OFF: anyone who can reach this address can read, write and \
                 delete every room. Set --auth-key (WEAVER_AUTH_KEY) in production"
            );
        }
        config.auth = AuthConfig {
            key,
            previous_keys,
            read_only_awareness: match self.read_only_awareness {
                ReadOnlyAwarenessArg::Allow => ReadOnlyAwareness::Allow,
                ReadOnlyAwarenessArg::Deny => ReadOnlyAwareness::Deny,
            },
        };
        config.limits = AbuseLimits {
            max_connections_per_room: self.max_connections_per_room,
            sync_step1_burst: self.sync_step1_burst,
            sync_step1_per_minute: self.sync_step1_per_minute,
            awareness_per_sec: self.awareness_per_sec,
            room_awareness_per_sec: self.room_awareness_per_sec,
            max_concurrent_loads: self.max_concurrent_loads,
            load_wait: Duration::from_millis(self.load_wait_ms),
        };
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))
    }
}

/// `weaver token`: prints a signed access token on stdout.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// The server's token key (same format and variable as `weaver serve --auth-key`).
    #[arg(long, env = "WEAVER_AUTH_KEY", hide_env_values = true)]
    pub auth_key: String,
    /// Room the token grants (with --prefix: every room starting with it). May be omitted with
    /// --admin, which then grants every room (what cross-room endpoints require).
    #[arg(long)]
    pub room: Option<String>,
    /// Treat --room as a prefix (end it with a separator: `team-7-`, not `team-7`).
    #[arg(long)]
    pub prefix: bool,
    /// Sync and receive only; writes are refused.
    #[arg(long)]
    pub read_only: bool,
    /// Lifetime: seconds, or a number with s, m, h or d (`90s`, `15m`, `1h`, `7d`).
    #[arg(long, default_value = "1h")]
    pub ttl: String,
    /// May use administrative endpoints (room delete; cross-room endpoints need every room).
    #[arg(long)]
    pub admin: bool,
}

/// Parses `90`, `90s`, `15m`, `1h`, `7d`.
pub fn parse_ttl(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let (num, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = num
        .parse()
        .with_context(|| format!("invalid --ttl {text:?}"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("invalid --ttl unit in {text:?}: use s, m, h or d"),
    };
    let secs = n
        .checked_mul(mult)
        .filter(|s| *s > 0)
        .with_context(|| format!("--ttl {text:?} must be positive and not overflow"))?;
    Ok(secs)
}

/// The claims `args` describe at `now` (unix seconds).
pub fn claims(args: &TokenArgs, now: u64) -> anyhow::Result<Claims> {
    let scope = match (&args.room, args.prefix) {
        (Some(r), false) => {
            weaver_relay::validate_room_name(r).map_err(|e| anyhow::anyhow!("--room: {e}"))?;
            Scope::Room(r.clone())
        }
        (Some(r), true) => Scope::Prefix(r.clone()),
        (None, _) if args.admin => Scope::Prefix(String::new()),
        (None, _) => bail!("give --room (or --admin for a token that grants every room)"),
    };
    let ttl = parse_ttl(&args.ttl)?;
    Ok(Claims {
        scope,
        permission: if args.read_only {
            Permission::Read
        } else {
            Permission::Write
        },
        expires_at: now.saturating_add(ttl),
        admin: args.admin,
    })
}

/// Mints the token `args` describe.
pub fn mint(args: &TokenArgs, now: u64) -> anyhow::Result<String> {
    let key = weaver_relay::parse_auth_key(&args.auth_key)
        .map_err(|e| anyhow::anyhow!("--auth-key / WEAVER_AUTH_KEY: {e}"))?;
    Ok(key.mint(&claims(args, now)?))
}

pub fn run(args: &TokenArgs) -> std::process::ExitCode {
    match mint(args, weaver_relay::auth::now_unix()) {
        Ok(token) => {
            println!("{token}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("weaver token: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn args(room: Option<&str>) -> TokenArgs {
        TokenArgs {
            auth_key: KEY.into(),
            room: room.map(str::to_owned),
            prefix: false,
            read_only: false,
            ttl: "1h".into(),
            admin: false,
        }
    }

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("90").unwrap(), 90);
        assert_eq!(parse_ttl("90s").unwrap(), 90);
        assert_eq!(parse_ttl("15m").unwrap(), 900);
        assert_eq!(parse_ttl("1h").unwrap(), 3600);
        assert_eq!(parse_ttl("7d").unwrap(), 604_800);
        assert!(parse_ttl("0").is_err());
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("h").is_err());
        assert!(parse_ttl("99999999999999999999d").is_err());
    }

    #[test]
    fn minted_tokens_verify_with_weaver_auth() {
        let key = weaver_auth::TokenKey::new(&(0u8..32).collect::<Vec<_>>()).unwrap();
        let now = 1_700_000_000;
        let t = mint(&args(Some("doc-1")), now).unwrap();
        let c = key.verify(&t, now).unwrap();
        assert_eq!(c.scope, Scope::Room("doc-1".into()));
        assert!(c.can_write() && !c.is_admin());
        assert_eq!(c.expires_at, now + 3600);
        assert!(key.verify(&t, now + 3600).is_err(), "expired after the ttl");

        let ro = TokenArgs {
            prefix: true,
            read_only: true,
            ttl: "15m".into(),
            ..args(Some("team-7-"))
        };
        let c = key.verify(&mint(&ro, now).unwrap(), now).unwrap();
        assert_eq!(c.scope, Scope::Prefix("team-7-".into()));
        assert!(!c.can_write());
        assert!(c.allows("team-7-notes") && !c.allows("team-70"));

        let admin = TokenArgs {
            admin: true,
            ..args(None)
        };
        let c = key.verify(&mint(&admin, now).unwrap(), now).unwrap();
        assert!(c.is_admin());
        assert_eq!(c.scope, Scope::Prefix(String::new()));
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(mint(&args(None), 0).is_err(), "no room and not admin");
        // '/' is part of room names now (issue 21); a space never was.
        assert!(mint(&args(Some("bad room")), 0).is_err());
        assert!(mint(&args(Some("a//b")), 0).is_err());
        assert!(mint(&args(Some("org.team/doc")), 0).is_ok());
        let short = TokenArgs {
            auth_key: "c2hvcnQ=".into(),
            ..args(Some("a"))
        };
        assert!(mint(&short, 0).is_err());
    }
}
