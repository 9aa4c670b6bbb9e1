//! Validators that walk untrusted Yjs bytes before `yrs` sees them.
//!
//! PLACEHOLDER: the full v1 update walker (depth guard) is being written; until then these only
//! check the coarse shape.

use crate::ProtocolError;

/// Limits applied while walking an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateLimits {
    /// Maximum nesting of `Any`/JSON values (arrays and maps inside each other).
    pub max_depth: usize,
    /// Maximum number of structs (items, GC and skip ranges) in one update.
    pub max_structs: u64,
}

impl Default for UpdateLimits {
    fn default() -> Self {
        Self {
            max_depth: 64,
            max_structs: 10_000_000,
        }
    }
}

/// What the walk counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpdateStats {
    pub structs: u64,
    pub delete_ranges: u64,
    pub max_depth_seen: usize,
}

/// Checks a v1 update can be handed to `yrs` without overflowing the stack or allocating
/// absurd amounts.
pub fn validate_update_v1(update: &[u8], limits: &UpdateLimits) -> Result<UpdateStats, ProtocolError> {
    let _ = limits;
    if update.is_empty() {
        return Err(ProtocolError::UnexpectedEof);
    }
    Ok(UpdateStats::default())
}

/// Checks a state vector: `varUint(n) • n × (varUint(client) • varUint(clock))`.
pub fn validate_state_vector(sv: &[u8]) -> Result<(), ProtocolError> {
    let mut r = crate::Reader::new(sv);
    let n = r.read_var_u64()?;
    for _ in 0..n {
        r.read_var_u64()?;
        r.read_var_u64()?;
    }
    if !r.is_empty() {
        return Err(ProtocolError::TrailingBytes(r.remaining()));
    }
    Ok(())
}

/// Rejects JSON text nested deeper than `limit` (serde_json and JS both recurse).
pub(crate) fn check_json_depth(text: &str, limit: usize) -> Result<(), ProtocolError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for b in text.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Err(ProtocolError::TooDeep { limit });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}
