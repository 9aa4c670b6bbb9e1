//! `weaver keygen`: a new random token key for `--auth-key` / `WEAVER_AUTH_KEY`, printed as hex
//! in the exact form `weaver serve` and `weaver token` parse (docs/security.md), so operators do
//! not need `openssl` and cannot pick a short or hand-made key.

use anyhow::Context;
use rand::TryRng;
use rand::rngs::SysRng;

/// Bytes of key material: HMAC-SHA256's block-size-independent recommendation (at least the
/// output size) and what `parse_auth_key` requires at minimum.
const KEY_BYTES: usize = 32;

/// A new key from the operating system's CSPRNG, as lowercase hex.
pub(crate) fn new_key_hex() -> anyhow::Result<String> {
    let mut key = [0u8; KEY_BYTES];
    SysRng
        .try_fill_bytes(&mut key)
        .context("reading random bytes from the operating system")?;
    Ok(key.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_accepted_by_the_server_and_never_repeat() -> anyhow::Result<()> {
        let a = new_key_hex()?;
        let b = new_key_hex()?;
        assert_eq!(a.len(), 2 * KEY_BYTES);
        assert_ne!(a, b);
        assert!(weaver_relay::parse_auth_key(&a).is_ok());
        Ok(())
    }
}
