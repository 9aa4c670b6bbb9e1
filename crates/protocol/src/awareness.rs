//! Awareness updates: `varUint(n) • n × (varUint(clientID) • varUint(clock) • varString(JSON))`.

use crate::ProtocolError;
use crate::lib0::{Reader, write_var_string, write_var_u64};

/// One client's awareness entry. `state` is the JSON text; `"null"` means the client is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwarenessEntry {
    pub client_id: u64,
    pub clock: u64,
    pub state: String,
}

impl AwarenessEntry {
    pub fn is_removal(&self) -> bool {
        self.state == "null"
    }
}

/// Decodes and checks that every state is valid JSON (clients `JSON.parse` it; a bad state
/// relayed to them would throw inside every receiver).
pub fn decode_awareness(bytes: &[u8]) -> Result<Vec<AwarenessEntry>, ProtocolError> {
    let mut r = Reader::new(bytes);
    // Each entry takes at least 3 bytes (client, clock, string length), so a larger count is a
    // lie; refusing it here keeps the reservation below bounded by the input.
    let n = r.read_count(3)?;
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let client_id = crate::validate::read_client_id(&mut r)?;
        let clock = r.read_var_u64()?;
        let state = r.read_var_string()?;
        crate::validate::check_json_depth(state, 64)?;
        crate::validate::check_json_syntax(state)?;
        out.push(AwarenessEntry {
            client_id,
            clock,
            state: state.to_owned(),
        });
    }
    if !r.is_empty() {
        return Err(ProtocolError::TrailingBytes(r.remaining()));
    }
    Ok(out)
}

pub fn encode_awareness(entries: &[AwarenessEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    write_var_u64(&mut out, entries.len() as u64);
    for e in entries {
        write_var_u64(&mut out, e.client_id);
        write_var_u64(&mut out, e.clock);
        write_var_string(&mut out, &e.state);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let entries = vec![
            AwarenessEntry {
                client_id: 42,
                clock: 3,
                state: r#"{"user":{"name":"a"}}"#.into(),
            },
            AwarenessEntry {
                client_id: 7,
                clock: 1,
                state: "null".into(),
            },
        ];
        assert_eq!(decode_awareness(&encode_awareness(&entries)), Ok(entries));
    }
}
