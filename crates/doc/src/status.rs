//! Index entry status: the four states, status records and the convergent reading rule
//! (docs/schema.md, "The reading rule"). Pure values and functions; no yrs types here except
//! the `Any` a record is stored as.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use yrs::{Any, Number};

use crate::DocError;
use crate::json::{MAX_SAFE_INTEGER, any_to_json, json_to_any, number_as_f64};

/// The status of one indexing attempt. The declaration order is the rank order:
/// `NotStarted < Processing < Done < Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Status {
    /// Requested, not picked up yet (`"notStarted"`, rank 0).
    NotStarted,
    /// An APICall is in flight (`"processing"`, rank 1).
    Processing,
    /// Indexed successfully (`"done"`, rank 2).
    Done,
    /// Failed for good (`"error"`, rank 3).
    Error,
}

impl Status {
    /// All statuses in rank order.
    pub const ALL: [Status; 4] = [
        Status::NotStarted,
        Status::Processing,
        Status::Done,
        Status::Error,
    ];

    /// Rank within one attempt (`STATUS_RANK` in JS).
    pub fn rank(self) -> u8 {
        self as u8
    }

    /// The wire name (`"notStarted"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::NotStarted => "notStarted",
            Status::Processing => "processing",
            Status::Done => "done",
            Status::Error => "error",
        }
    }

    /// `Done` and `Error` end an attempt.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Done | Status::Error)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = DocError;
    fn from_str(s: &str) -> Result<Self, DocError> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| DocError::Invalid {
                field: "status",
                reason: format!("unknown status {s:?}"),
            })
    }
}

/// One element of an entry's `status_log`: an immutable fact about one attempt.
/// (`at`, the informational write time, is stamped by the writer and not part of this value.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusRecord {
    /// Attempt number, ≥ 1.
    pub attempt: u64,
    /// Status of that attempt.
    pub status: Status,
    /// The bridge's APICall id for this attempt.
    pub api_call_id: Option<String>,
    /// Small JSON object result (with `Done`).
    pub result: Option<Value>,
    /// Error message (with `Error`).
    pub error: Option<String>,
    /// Completion time, ms since the Unix epoch.
    #[serde(serialize_with = "crate::json::serialize_js_number")]
    pub completed_at: Option<f64>,
}

impl StatusRecord {
    /// A bare record `{attempt, status}`.
    pub fn new(attempt: u64, status: Status) -> Self {
        StatusRecord {
            attempt,
            status,
            api_call_id: None,
            result: None,
            error: None,
            completed_at: None,
        }
    }

    /// `processing` for `attempt`, carried out by APICall `api_call_id`.
    pub fn processing(attempt: u64, api_call_id: impl Into<String>) -> Self {
        StatusRecord::new(attempt, Status::Processing).with_api_call_id(api_call_id)
    }

    /// `done` for `attempt` with a JSON object `result`, completed at `completed_at` (ms).
    pub fn done(
        attempt: u64,
        api_call_id: impl Into<String>,
        result: Value,
        completed_at: u64,
    ) -> Self {
        StatusRecord {
            result: Some(result),
            completed_at: Some(completed_at as f64),
            ..StatusRecord::new(attempt, Status::Done).with_api_call_id(api_call_id)
        }
    }

    /// `error` for `attempt` with a message, completed at `completed_at` (ms).
    pub fn error(
        attempt: u64,
        api_call_id: impl Into<String>,
        message: impl Into<String>,
        completed_at: u64,
    ) -> Self {
        StatusRecord {
            error: Some(message.into()),
            completed_at: Some(completed_at as f64),
            ..StatusRecord::new(attempt, Status::Error).with_api_call_id(api_call_id)
        }
    }

    /// Sets `api_call_id`.
    pub fn with_api_call_id(mut self, id: impl Into<String>) -> Self {
        self.api_call_id = Some(id.into());
        self
    }

    /// The `(attempt, rank)` key the reading rule maximises.
    pub fn key(&self) -> (u64, u8) {
        (self.attempt, self.status.rank())
    }

    /// Checks the record can be written (attempt in 1..=2^53-1, result an object, finite time).
    pub fn validate(&self) -> Result<(), DocError> {
        if self.attempt < 1 || self.attempt > MAX_SAFE_INTEGER as u64 {
            return Err(DocError::Invalid {
                field: "attempt",
                reason: format!("{} is not in 1..=2^53-1", self.attempt),
            });
        }
        if let Some(r) = &self.result
            && !r.is_object()
        {
            return Err(DocError::Invalid {
                field: "result",
                reason: "must be a JSON object".into(),
            });
        }
        if let Some(t) = self.completed_at
            && !t.is_finite()
        {
            return Err(DocError::Invalid {
                field: "completed_at",
                reason: "must be a finite number".into(),
            });
        }
        Ok(())
    }

    /// Reads a stored record (rule 2): `None` unless it is a map with a positive safe-integer
    /// `attempt` and a known `status`. Optional fields of the wrong type read as absent.
    pub fn from_any(any: &Any) -> Option<StatusRecord> {
        let Any::Map(m) = any else { return None };
        let attempt = match m.get("attempt")? {
            Any::Number(n) => attempt_from_number(n)?,
            _ => return None,
        };
        let status = match m.get("status")? {
            Any::String(s) => s.parse::<Status>().ok()?,
            _ => return None,
        };
        let string = |k: &str| match m.get(k) {
            Some(Any::String(s)) => Some(s.to_string()),
            _ => None,
        };
        Some(StatusRecord {
            attempt,
            status,
            api_call_id: string("api_call_id"),
            result: match m.get("result") {
                Some(r @ Any::Map(_)) => Some(any_to_json(r)),
                _ => None,
            },
            error: string("error"),
            completed_at: match m.get("completed_at") {
                Some(Any::Number(n)) => number_as_f64(n),
                _ => None,
            },
        })
    }

    /// The stored form, with `at` (ms since the epoch) stamped in.
    pub(crate) fn to_any(&self, at_ms: u64) -> Any {
        let mut m: HashMap<String, Any> = HashMap::new();
        m.insert(
            "attempt".into(),
            Any::Number(Number::Int(self.attempt as i64)),
        );
        m.insert(
            "status".into(),
            Any::String(Arc::from(self.status.as_str())),
        );
        if let Some(id) = &self.api_call_id {
            m.insert("api_call_id".into(), Any::String(Arc::from(id.as_str())));
        }
        if let Some(r) = &self.result {
            m.insert("result".into(), json_to_any(r));
        }
        if let Some(e) = &self.error {
            m.insert("error".into(), Any::String(Arc::from(e.as_str())));
        }
        if let Some(t) = self.completed_at {
            m.insert("completed_at".into(), Any::Number(Number::try_i64(t)));
        }
        m.insert("at".into(), Any::Number(Number::Int(at_ms as i64)));
        Any::Map(Arc::new(m))
    }

    /// Same fact for deduplication: same attempt, status and api_call_id.
    pub fn same_fact(&self, other: &StatusRecord) -> bool {
        self.attempt == other.attempt
            && self.status == other.status
            && self.api_call_id == other.api_call_id
    }
}

fn attempt_from_number(n: &Number) -> Option<u64> {
    let f = number_as_f64(n)?;
    (f.trunc() == f && f >= 1.0 && f <= MAX_SAFE_INTEGER as f64).then_some(f as u64)
}

/// The reading rule (rule 3): the record with the greatest `(attempt, rank)`; the first of equal
/// ones wins. `None` when there is no record (the entry then reads as `notStarted`, attempt 0).
///
/// This is a pure `max`: associative, commutative and idempotent on the key, so replicas that
/// saw the same set of records agree whatever the delivery order.
pub fn effective_status<'a, I>(records: I) -> Option<&'a StatusRecord>
where
    I: IntoIterator<Item = &'a StatusRecord>,
{
    let mut best: Option<&StatusRecord> = None;
    for r in records {
        if best.is_none_or(|b| r.key() > b.key()) {
            best = Some(r);
        }
    }
    best
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn rec(attempt: u64, status: Status, id: &str) -> StatusRecord {
        StatusRecord::new(attempt, status).with_api_call_id(id)
    }

    #[test]
    fn rank_order_and_names() {
        assert!(Status::NotStarted < Status::Processing);
        assert!(Status::Processing < Status::Done);
        assert!(Status::Done < Status::Error);
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
        }
        assert!("Done".parse::<Status>().is_err());
    }

    #[test]
    fn newer_attempt_beats_older_terminal() {
        let rs = [
            rec(2, Status::NotStarted, "b"),
            rec(1, Status::Error, "a"),
            rec(1, Status::Done, "a"),
        ];
        let e = effective_status(&rs).unwrap();
        assert_eq!((e.attempt, e.status), (2, Status::NotStarted));
    }

    #[test]
    fn first_of_ties_wins() {
        let rs = [rec(1, Status::Done, "x"), rec(1, Status::Done, "y")];
        assert_eq!(
            effective_status(&rs).unwrap().api_call_id.as_deref(),
            Some("x")
        );
        assert!(effective_status(&[]).is_none());
    }

    #[test]
    fn from_any_validates() {
        let ok = StatusRecord::done(3, "c", json!({"chunks_indexed": 2}), 1_763_900_000_000);
        let back = StatusRecord::from_any(&ok.to_any(5)).unwrap();
        assert_eq!(back, ok);
        let bad = |v: Value| StatusRecord::from_any(&json_to_any(&v));
        assert!(bad(json!({"attempt": 0, "status": "done"})).is_none());
        assert!(bad(json!({"attempt": 1.5, "status": "done"})).is_none());
        assert!(bad(json!({"attempt": "1", "status": "done"})).is_none());
        assert!(bad(json!({"attempt": 1, "status": "finished"})).is_none());
        assert!(bad(json!([1])).is_none());
        let loose = bad(json!({"attempt": 2.0, "status": "error", "error": 5, "result": [1]}));
        assert_eq!(loose, Some(StatusRecord::new(2, Status::Error)));
    }

    #[test]
    fn validate_rejects_bad_writes() {
        assert!(StatusRecord::new(0, Status::Done).validate().is_err());
        assert!(StatusRecord::new(1 << 53, Status::Done).validate().is_err());
        let mut r = StatusRecord::new(1, Status::Done);
        r.result = Some(json!(3));
        assert!(r.validate().is_err());
        assert!(StatusRecord::new(1, Status::Done).validate().is_ok());
    }

    fn arb_record() -> impl Strategy<Value = StatusRecord> {
        (1u64..5, 0usize..4, 0u8..3)
            .prop_map(|(a, s, id)| rec(a, Status::ALL[s], &format!("c{id}")))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        // Order-independence of the key, and the max property.
        #[test]
        fn effective_is_order_independent(mut rs in proptest::collection::vec(arb_record(), 0..12), seed in any::<u64>()) {
            let k1 = effective_status(&rs).map(StatusRecord::key);
            let n = rs.len();
            if n > 1 { rs.rotate_left((seed as usize) % n); rs.reverse(); }
            let k2 = effective_status(&rs).map(StatusRecord::key);
            prop_assert_eq!(k1, k2);
            if let Some(k) = k1 { prop_assert!(rs.iter().all(|r| r.key() <= k)); }
            // Duplicates change nothing.
            let mut doubled = rs.clone(); doubled.extend(rs.iter().cloned());
            prop_assert_eq!(effective_status(&doubled).map(StatusRecord::key), k1);
        }
    }
}
