//! The APICall record, its append-only event log, and the pure status fold; the state
//! transition that decides which events an outcome records is in `model/transition.rs`, what an
//! integration reports in `model/outcome.rs`.
//!
//! Nothing here touches storage, the network or the document: `fold` is a pure function over a
//! slice of events so it can be property-tested and re-run at any time (the stored status is a
//! cache of it). Persistence lives in `outbox/`, the mapping to document status records in
//! `engine.rs`.

mod failure;
mod outcome;
pub mod transition;

pub use failure::FailureReason;
pub use outcome::Outcome;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Deepest JSON accepted from outside (API responses, webhook data). Stored records nest it a
/// few levels further and serde_json refuses more than 128 levels when reading them back.
pub const MAX_EXTERNAL_JSON_DEPTH: usize = 64;

/// Nesting depth of a JSON value (scalars are 0).
pub fn json_depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(json_depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// `v`, or a small placeholder when it is nested deeper than `MAX_EXTERNAL_JSON_DEPTH`.
pub fn bound_external_json(v: Value) -> Value {
    if json_depth(&v) > MAX_EXTERNAL_JSON_DEPTH {
        serde_json::json!({"truncated": true, "reason": "JSON nested too deeply"})
    } else {
        v
    }
}

/// Status of an APICall (`pending → processing → completed | failed`, or `cancelled`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    /// Created, never claimed by a worker.
    Pending,
    /// Claimed at least once, or known to the external system, not finished.
    Processing,
    /// Terminal: the external API reported success.
    Completed,
    /// Terminal: non-retryable error, or retries exhausted. Kept with its error.
    Failed,
    /// Terminal: the entry or block went away, or a newer attempt superseded this one.
    Cancelled,
}

impl CallStatus {
    /// Terminal states are absorbing.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    /// The snake_case name used in JSON and in query strings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Processing => "processing",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "processing" => Self::Processing,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }
}

/// One APICall: "index entry `index_name` of block `block_id` in `room`, attempt `attempt`".
///
/// Unique per (room, block_id, index_name, attempt). The fields `status`, `external_id`,
/// `response_data`, `error` and `completed_at` are derived from the event log by [`fold`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiCall {
    /// UUIDv7 (time ordered).
    pub id: Uuid,
    pub room: String,
    pub block_id: String,
    pub index_name: String,
    /// Name of the integration that executes the call (`local`, or a configured one).
    pub integration: String,
    /// What is sent: `{content, collection_configs, content_hash}` snapshot at trigger time.
    pub request_params: Value,
    /// The document's indexing attempt this call serves (≥ 1).
    pub attempt: u32,
    pub status: CallStatus,
    pub external_id: Option<String>,
    pub response_data: Option<Value>,
    /// Terminal error, or the last retryable error while retries continue.
    pub error: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
    pub completed_at: Option<u64>,
    /// Sent as `Idempotency-Key`; identical for every delivery try of this call.
    pub idempotency_key: String,
    /// Delivery tries made so far (claims of the submit or poll step).
    pub tries: u32,
    /// When the next try is due (ms), if one is scheduled.
    pub next_try_at: Option<u64>,
    /// When the external system accepted the call (202), ms.
    #[serde(default)]
    pub started_at: Option<u64>,
    /// Why the last try failed (the call's, once it is `failed`); derived like `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<FailureReason>,
}

impl ApiCall {
    /// A fresh pending call. The idempotency key is derived from the id and the attempt so it
    /// is stable across retries and restarts (it is stored, never regenerated).
    pub fn new(id: Uuid, spec: NewCall, now: u64) -> Self {
        let attempt = spec.attempt;
        Self {
            id,
            room: spec.room,
            block_id: spec.block_id,
            index_name: spec.index_name,
            integration: spec.integration,
            request_params: spec.request_params,
            attempt,
            status: CallStatus::Pending,
            external_id: None,
            response_data: None,
            error: None,
            created_at: now,
            completed_at: None,
            idempotency_key: format!("weaver-{id}-{attempt}"),
            tries: 0,
            next_try_at: None,
            started_at: None,
            failure_reason: None,
        }
    }

    /// Re-derives the event-sourced fields from the log.
    pub fn apply_fold(&mut self, events: &[Event]) {
        let f = fold(self.attempt, events);
        self.status = f.status;
        self.external_id = f.external_id;
        self.response_data = f.response_data;
        self.error = f.error;
        self.completed_at = f.completed_at;
        self.failure_reason = f.failure_reason;
    }
}

/// Parameters of a call to create.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewCall {
    pub room: String,
    pub block_id: String,
    pub index_name: String,
    pub attempt: u32,
    pub integration: String,
    pub request_params: Value,
}

/// What happened to a call. The first four are the public integration contract; the rest are
/// the outbox's own bookkeeping (kept in the same log so every transition is visible).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// Links the call to the external system's id (a generated UUID for sync APIs).
    Initialized {
        external_id: String,
    },
    Processing,
    Completed {
        data: Value,
    },
    /// `retryable: true` is an attempt failure that will be retried; `false` is terminal.
    Failed {
        error: String,
        retryable: bool,
        /// `other` for events recorded before reasons existed.
        #[serde(default)]
        reason: FailureReason,
    },
    /// Internal: the call entered the outbox.
    Created,
    /// Internal: a worker leased the call (`token` fences its result).
    Claimed {
        r#try: u32,
        token: u64,
    },
    /// Internal: the next try is scheduled at `next_at` (ms).
    RetryScheduled {
        next_at: u64,
    },
    /// Internal: the worker holding lease `token` did not report in time.
    LeaseExpired {
        token: u64,
    },
    /// Internal: the entry/block was removed or the attempt superseded.
    Cancelled {
        reason: String,
    },
    /// Internal: a result arrived under a stale lease or after a terminal state; kept for audit.
    LateResultIgnored {
        detail: String,
    },
    /// Internal: the outcome could not be written into the document (the host kept refusing it,
    /// or the room was deleted); the call's own status is unchanged.
    WritebackFailed {
        error: String,
    },
}

impl EventKind {
    /// The `type` tag as serialized.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Initialized { .. } => "initialized",
            Self::Processing => "processing",
            Self::Completed { .. } => "completed",
            Self::Failed { .. } => "failed",
            Self::Created => "created",
            Self::Claimed { .. } => "claimed",
            Self::RetryScheduled { .. } => "retry_scheduled",
            Self::LeaseExpired { .. } => "lease_expired",
            Self::Cancelled { .. } => "cancelled",
            Self::LateResultIgnored { .. } => "late_result_ignored",
            Self::WritebackFailed { .. } => "writeback_failed",
        }
    }
}

/// One entry of a call's event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The document attempt the event is about; events of another attempt are ignored.
    pub attempt: u32,
    /// Milliseconds since the Unix epoch.
    pub at: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The derived state of a call.
#[derive(Debug, Clone, PartialEq)]
pub struct Folded {
    pub status: CallStatus,
    pub external_id: Option<String>,
    pub response_data: Option<Value>,
    pub error: Option<String>,
    pub completed_at: Option<u64>,
    pub failure_reason: Option<FailureReason>,
}

/// Folds a call's event log into its state.
///
/// Guards: events of another attempt are ignored (a superseded attempt never overwrites a
/// newer one); the first terminal event wins and is absorbing; duplicates are no-ops;
/// `completed` before `processing`/`initialized` is fine (status only moves forward), and an
/// `initialized` arriving after the terminal event still links the external id.
pub fn fold(attempt: u32, events: &[Event]) -> Folded {
    let mut st = Folded {
        status: CallStatus::Pending,
        external_id: None,
        response_data: None,
        error: None,
        completed_at: None,
        failure_reason: None,
    };
    for ev in events.iter().filter(|e| e.attempt == attempt) {
        let terminal = st.status.is_terminal();
        match &ev.kind {
            EventKind::Initialized { external_id } => {
                // First link wins: a duplicate `initialized` must not re-point the call.
                if st.external_id.is_none() {
                    st.external_id = Some(external_id.clone());
                }
                if !terminal {
                    st.status = CallStatus::Processing;
                }
            }
            EventKind::Processing | EventKind::Claimed { .. } => {
                if !terminal {
                    st.status = CallStatus::Processing;
                }
            }
            EventKind::Completed { data } => {
                if !terminal {
                    st.status = CallStatus::Completed;
                    st.response_data = Some(data.clone());
                    st.error = None;
                    st.failure_reason = None;
                    st.completed_at = Some(ev.at);
                }
            }
            EventKind::Failed {
                error,
                retryable,
                reason,
            } => {
                if terminal {
                    continue;
                }
                st.failure_reason = Some(*reason);
                if *retryable {
                    st.status = CallStatus::Processing;
                    st.error = Some(error.clone());
                } else {
                    st.status = CallStatus::Failed;
                    st.error = Some(error.clone());
                    st.completed_at = Some(ev.at);
                }
            }
            EventKind::Cancelled { reason } => {
                if !terminal {
                    st.status = CallStatus::Cancelled;
                    st.error = Some(reason.clone());
                    st.failure_reason = None;
                    st.completed_at = Some(ev.at);
                }
            }
            EventKind::Created
            | EventKind::RetryScheduled { .. }
            | EventKind::LeaseExpired { .. }
            | EventKind::LateResultIgnored { .. }
            | EventKind::WritebackFailed { .. } => {}
        }
    }
    st
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ev(attempt: u32, at: u64, kind: EventKind) -> Event {
        Event { attempt, at, kind }
    }

    #[test]
    fn happy_path_sync() {
        let evs = vec![
            ev(1, 1, EventKind::Created),
            ev(1, 2, EventKind::Claimed { r#try: 1, token: 7 }),
            ev(
                1,
                3,
                EventKind::Initialized {
                    external_id: "x".into(),
                },
            ),
            ev(1, 3, EventKind::Processing),
            ev(
                1,
                4,
                EventKind::Completed {
                    data: serde_json::json!({"ok": true}),
                },
            ),
        ];
        let f = fold(1, &evs);
        assert_eq!(f.status, CallStatus::Completed);
        assert_eq!(f.external_id.as_deref(), Some("x"));
        assert_eq!(f.completed_at, Some(4));
    }

    #[test]
    fn retryable_failure_is_not_terminal() {
        let evs = vec![
            ev(1, 1, EventKind::Created),
            ev(
                1,
                2,
                EventKind::Failed {
                    error: "503".into(),
                    retryable: true,
                    reason: FailureReason::Http5xx,
                },
            ),
        ];
        let f = fold(1, &evs);
        assert_eq!(f.status, CallStatus::Processing);
        assert_eq!(f.error.as_deref(), Some("503"));
        assert_eq!(f.failure_reason, Some(FailureReason::Http5xx));
        assert_eq!(f.completed_at, None);
    }

    #[test]
    fn a_failed_event_stored_before_reasons_reads_as_other() {
        let old = r#"{"attempt":1,"at":5,"type":"failed","error":"boom","retryable":false}"#;
        let ev: Event = serde_json::from_str(old).unwrap();
        assert_eq!(
            ev.kind,
            EventKind::Failed {
                error: "boom".into(),
                retryable: false,
                reason: FailureReason::Other,
            }
        );
        assert_eq!(fold(1, &[ev]).failure_reason, Some(FailureReason::Other));
    }

    #[test]
    fn other_attempt_ignored() {
        let evs = vec![
            ev(2, 1, EventKind::Created),
            ev(1, 2, EventKind::Completed { data: Value::Null }),
        ];
        assert_eq!(fold(2, &evs).status, CallStatus::Pending);
    }

    #[test]
    fn terminal_absorbing_first_wins() {
        let evs = vec![
            ev(
                1,
                1,
                EventKind::Failed {
                    error: "bad".into(),
                    retryable: false,
                    reason: FailureReason::Http4xx,
                },
            ),
            ev(1, 2, EventKind::Completed { data: Value::Null }),
            ev(1, 3, EventKind::Processing),
        ];
        let f = fold(1, &evs);
        assert_eq!(f.status, CallStatus::Failed);
        assert_eq!(f.error.as_deref(), Some("bad"));
    }

    fn non_terminal() -> impl Strategy<Value = EventKind> {
        prop_oneof![
            Just(EventKind::Created),
            Just(EventKind::Processing),
            (0u32..4, 0u64..9).prop_map(|(t, k)| EventKind::Claimed { r#try: t, token: k }),
            (0u64..9).prop_map(|n| EventKind::RetryScheduled { next_at: n }),
            (0u64..9).prop_map(|k| EventKind::LeaseExpired { token: k }),
            "[a-z]{1,5}".prop_map(|e| EventKind::Failed {
                error: e,
                retryable: true,
                reason: FailureReason::Http5xx,
            }),
        ]
    }

    fn terminal() -> impl Strategy<Value = EventKind> {
        prop_oneof![
            any::<u8>().prop_map(|n| EventKind::Completed {
                data: serde_json::json!({"n": n})
            }),
            "[a-z]{1,5}".prop_map(|e| EventKind::Failed {
                error: e,
                retryable: false,
                reason: FailureReason::Http4xx,
            }),
            "[a-z]{1,5}".prop_map(|r| EventKind::Cancelled { reason: r }),
        ]
    }

    /// A realistic run: non-terminal events, one `initialized`, exactly one terminal event,
    /// each possibly delivered several times, in any order.
    fn run() -> impl Strategy<Value = (Vec<Event>, Vec<usize>)> {
        (
            proptest::collection::vec(non_terminal(), 0..6),
            "[a-z0-9]{1,8}",
            terminal(),
            proptest::collection::vec(0usize..100, 0..6),
        )
            .prop_flat_map(|(nt, ext, term, dups)| {
                let mut evs: Vec<Event> = nt.into_iter().map(|k| ev(1, 5, k)).collect();
                evs.push(ev(1, 5, EventKind::Initialized { external_id: ext }));
                evs.push(ev(1, 9, term));
                let n = evs.len();
                let mut all = evs.clone();
                for d in dups {
                    all.push(evs[d % n].clone());
                }
                let len = all.len();
                (Just(all), Just((0..len).collect::<Vec<_>>()).prop_shuffle())
            })
    }

    proptest! {
        #[test]
        fn permutations_and_duplicates_agree((evs, perm) in run()) {
            let shuffled: Vec<Event> = perm.iter().map(|&i| evs[i].clone()).collect();
            prop_assert_eq!(fold(1, &evs), fold(1, &shuffled));
        }

        #[test]
        fn terminal_is_absorbing(
            prefix in proptest::collection::vec(non_terminal(), 0..5),
            term in terminal(),
            tail in proptest::collection::vec(prop_oneof![non_terminal(), terminal()], 0..6),
        ) {
            let mut evs: Vec<Event> = prefix.into_iter().map(|k| ev(1, 1, k)).collect();
            evs.push(ev(1, 2, term));
            let before = fold(1, &evs);
            prop_assert!(before.status.is_terminal());
            evs.extend(tail.into_iter().map(|k| ev(1, 3, k)));
            let after = fold(1, &evs);
            prop_assert_eq!(before.status, after.status);
            prop_assert_eq!(before.response_data, after.response_data);
            prop_assert_eq!(before.completed_at, after.completed_at);
        }

        #[test]
        fn other_attempts_never_change_result(
            own in proptest::collection::vec(prop_oneof![non_terminal(), terminal()], 0..6),
            foreign in proptest::collection::vec((prop_oneof![non_terminal(), terminal()], 0u32..4), 0..8),
            seed in any::<u64>(),
        ) {
            let own: Vec<Event> = own.into_iter().map(|k| ev(2, 1, k)).collect();
            let mut mixed = own.clone();
            for (i, (k, a)) in foreign.into_iter().enumerate() {
                let a = if a == 2 { 1 } else { a };
                let pos = ((seed as usize).wrapping_add(i * 7)) % (mixed.len() + 1);
                mixed.insert(pos, ev(a, 1, k));
            }
            prop_assert_eq!(fold(2, &own), fold(2, &mixed));
        }
    }
}
