//! Query strings: `query_pairs`, the one parser of the token check and of the handlers that read
//! the same query (so both see the same values), and `?sv=` (a state vector in base64url).

use std::collections::HashMap;

use base64::Engine;
use serde::Deserialize;

use crate::error::RelayError;

/// `a=b&c=d` as `application/x-www-form-urlencoded` (`%XX` and `+` decoded; a malformed escape is
/// kept as it is, and the token then fails verification, which is the right outcome; a repeated
/// name keeps its last value). Handlers whose query the token check also reads parse it with
/// this same function, so both see the same values (a duplicated `prefix` cannot make the
/// check authorise one prefix and the listing serve another).
pub(crate) fn query_pairs(query: &str) -> HashMap<String, String> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[derive(Debug, Deserialize)]
pub(crate) struct SvQuery {
    /// base64url (padding optional) of a v1 state vector.
    pub(crate) sv: Option<String>,
}

/// `?sv=` as bytes (validated as a state vector later, by the relay).
pub(crate) fn decode_sv(sv: Option<String>) -> Result<Option<Vec<u8>>, RelayError> {
    sv.map(|s| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .map_err(|e| RelayError::InvalidStateVector(format!("sv is not base64url: {e}")))
    })
    .transpose()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_decode_like_a_form() {
        // (query, name, value it yields)
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("prefix=a%2Eb", "prefix", Some("a.b")),
            ("prefix=a+b", "prefix", Some("a b")),
            ("prefix=%zz%4", "prefix", Some("%zz%4")),
            ("flag&prefix=x", "flag", Some("")),
            ("&&prefix=x&", "prefix", Some("x")),
            // A repeated name: the last value, for the token check and the handler alike.
            ("prefix=a&prefix=b", "prefix", Some("b")),
            ("p%72efix=c", "prefix", Some("c")),
            ("prefix=%FF", "prefix", Some("\u{FFFD}")),
            ("other=1", "prefix", None),
        ];
        for (query, name, want) in cases {
            assert_eq!(
                query_pairs(query).get(*name).map(String::as_str),
                *want,
                "{query}"
            );
        }
    }
}
