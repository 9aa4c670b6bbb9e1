//! The call state transition as pure functions: given a call as stored (status, tries, external
//! id), what its lease says, and what happened (a claim, an outcome, an expired lease, a
//! webhook, a cancellation), decide the events to record and the bookkeeping to apply.
//!
//! No I/O and no clock or randomness of its own: time comes in as `now`, the retry delay and a
//! generated external id come from the caller's closures. An outbox engine applies a decision
//! in one atomic step (append the events, re-fold the status with [`super::fold`], move the
//! queue entry and the lease); it never decides anything itself. That is what lets every engine
//! (redb today, a JetStream one later) keep the same behaviour.

use super::{ApiCall, EventKind, FailureReason, Outcome};

/// What the call's lease says about the token a result came with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fence {
    /// No token: an unleased source (a manual refresh).
    Unleased,
    /// The token is the one the call is leased under now.
    Current,
    /// The token is not (or no longer) the call's lease: rescued and maybe re-claimed since.
    Stale { token: u64 },
}

impl Fence {
    /// Compares the token a result came with against the token the call is leased under.
    pub fn check(presented: Option<u64>, held: Option<u64>) -> Self {
        match presented {
            None => Self::Unleased,
            Some(t) if held == Some(t) => Self::Current,
            Some(token) => Self::Stale { token },
        }
    }
}

/// What to do with a worker's outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The call is already terminal: only note the late result (`late_result_ignored`).
    Late(EventKind),
    /// A stale token reported something other than a success: only note it. The worker that
    /// holds the lease now (if any) decides the call.
    Fenced(EventKind),
    /// Record the outcome.
    Record(Step),
}

/// The changes a recorded outcome makes.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Release the call's lease (the result came under the current token). A terminal status
    /// releases it anyway.
    pub release_lease: bool,
    /// Delivery tries after this outcome (a failed status poll counts as one). Never less than
    /// before.
    pub tries: u32,
    /// `started_at` after this outcome (set once, when the external system accepts the call).
    pub started_at: Option<u64>,
    /// Events to append, in order.
    pub events: Vec<EventKind>,
    /// When the call is due again if it is still unfinished after the events (`None`: not
    /// queued; it waits for a webhook or a manual refresh).
    pub ready_at: Option<u64>,
    /// An external id to index (and to apply webhooks parked for it), after the events.
    pub link_external: Option<String>,
}

/// The retry policy as the transition needs it.
pub struct Retry<'a> {
    /// Tries after which a retryable failure becomes final.
    pub max_attempts: u32,
    /// The delay (ms) before try `n + 1` after try `n` (≥ 1) failed, honouring a Retry-After
    /// (ms) when the API sent one.
    pub delay: &'a mut dyn FnMut(u32, Option<u64>) -> u64,
}

impl std::fmt::Debug for Retry<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retry")
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

/// Decides what a worker's (or a manual refresh's) outcome does to `call`.
///
/// A terminal call only notes it. A stale token's outcome is only noted unless it is a
/// success: the external API did the work under the call's idempotency key, so the success is
/// true whoever reports it. `new_external_id` names a synchronous success that brought no id
/// of its own, so the contract's `initialized` event always exists.
pub fn decide_completion(
    call: &ApiCall,
    fence: Fence,
    outcome: Outcome,
    now: u64,
    retry: Retry<'_>,
    new_external_id: impl FnOnce() -> String,
) -> Decision {
    if call.status.is_terminal() {
        return Decision::Late(EventKind::LateResultIgnored {
            detail: outcome.describe(),
        });
    }
    if let Fence::Stale { token } = fence
        && !matches!(outcome, Outcome::Completed { .. })
    {
        return Decision::Fenced(EventKind::LateResultIgnored {
            detail: format!("stale lease {token}: {}", outcome.describe()),
        });
    }
    let mut step = Step {
        release_lease: fence == Fence::Current,
        tries: call.tries,
        started_at: call.started_at,
        events: Vec::new(),
        ready_at: None,
        link_external: None,
    };
    match outcome {
        Outcome::Completed { external_id, data } => {
            if call.external_id.is_none() {
                let ext = external_id.unwrap_or_else(new_external_id);
                step.events
                    .push(EventKind::Initialized { external_id: ext });
            }
            step.events.push(EventKind::Processing);
            step.events.push(EventKind::Completed { data });
        }
        Outcome::Started {
            external_id,
            poll_after_ms,
        } => {
            if call.external_id.is_none() {
                step.events.push(EventKind::Initialized {
                    external_id: external_id.clone(),
                });
                step.link_external = Some(external_id);
            }
            step.events.push(EventKind::Processing);
            step.ready_at = poll_after_ms.map(|d| now + d);
            step.started_at.get_or_insert(now);
        }
        Outcome::Pending { poll_after_ms } => {
            step.ready_at = Some(now + poll_after_ms);
        }
        Outcome::Failed {
            error,
            retryable,
            retry_after_ms,
            reason,
        } => {
            if call.external_id.is_some() && retryable {
                // A failed status poll counts as a try too, so a dead status URL ends.
                step.tries += 1;
            }
            if retryable && step.tries < retry.max_attempts {
                let delay = (retry.delay)(step.tries.max(1), retry_after_ms);
                step.events.push(EventKind::Failed {
                    error,
                    retryable: true,
                    reason,
                });
                step.events.push(EventKind::RetryScheduled {
                    next_at: now + delay,
                });
                step.ready_at = Some(now + delay);
            } else {
                let error = if retryable {
                    format!("{error} (gave up after {} tries)", step.tries)
                } else {
                    error
                };
                // The reason of the last try stays the call's: a retryable one at the end says
                // the tries ran out on it.
                step.events.push(EventKind::Failed {
                    error,
                    retryable: false,
                    reason,
                });
            }
        }
    }
    Decision::Record(step)
}

/// What a worker does with a claimed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Send the request (first try or a retry; same idempotency key).
    Submit,
    /// The external system accepted it (`external_id` known): ask for its status.
    Poll,
}

/// The changes a claim makes (the lease itself is the engine's).
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimStep {
    pub phase: Phase,
    /// Tries after the claim: a submit is a try, a poll is not (its failure is).
    pub tries: u32,
    /// Events to append (polls are not logged).
    pub events: Vec<EventKind>,
}

/// Decides a claim of a due, unfinished call under fencing token `token`.
pub fn decide_claim(call: &ApiCall, token: u64) -> ClaimStep {
    if call.external_id.is_some() {
        // Polls are not logged: a long job polled every few seconds would otherwise grow its
        // log (and the fold over it) without bound.
        return ClaimStep {
            phase: Phase::Poll,
            tries: call.tries,
            events: Vec::new(),
        };
    }
    let r#try = call.tries + 1;
    ClaimStep {
        phase: Phase::Submit,
        tries: r#try,
        events: vec![EventKind::Claimed { r#try, token }],
    }
}

/// The changes the rescue of an expired lease makes.
#[derive(Debug, Clone, PartialEq)]
pub struct RescueStep {
    pub events: Vec<EventKind>,
    /// When the call is due again if it is still unfinished after the events.
    pub ready_at: Option<u64>,
}

/// Decides the rescue of `call`, whose lease `token` (0 if none was found) expired. `restart`:
/// the leases of a previous process, retried at once. `None` for a terminal call (nothing to
/// do). A call that was never accepted and is out of tries fails; one the external system
/// accepted is polled again however many tries it took.
pub fn decide_rescue(
    call: &ApiCall,
    token: u64,
    now: u64,
    restart: bool,
    retry: Retry<'_>,
) -> Option<RescueStep> {
    if call.status.is_terminal() {
        return None;
    }
    let mut events = vec![EventKind::LeaseExpired { token }];
    let ready_at = if call.tries >= retry.max_attempts && call.external_id.is_none() {
        events.push(EventKind::Failed {
            error: format!(
                "no result within the lease (gave up after {} tries)",
                call.tries
            ),
            retryable: false,
            reason: FailureReason::LeaseExpired,
        });
        None
    } else if restart {
        Some(now)
    } else {
        Some(now + (retry.delay)(call.tries.max(1), None))
    };
    Some(RescueStep { events, ready_at })
}

/// Decides what a verified webhook's event does to `call`: applied while the call is
/// unfinished, only noted once it is terminal.
pub fn decide_webhook(call: &ApiCall, webhook_id: &str, kind: EventKind) -> EventKind {
    if call.status.is_terminal() {
        EventKind::LateResultIgnored {
            detail: format!("webhook {webhook_id}: {}", kind.type_name()),
        }
    } else {
        kind
    }
}

/// Decides a cancellation: the event to record, or `None` for a terminal call.
pub fn decide_cancel(call: &ApiCall, reason: &str) -> Option<EventKind> {
    (!call.status.is_terminal()).then(|| EventKind::Cancelled {
        reason: reason.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    //! The transition driven as an engine would drive it (an in-memory model of the outbox:
    //! the call, its log, its lease and its queue entry) through generated sequences of
    //! claims, outcomes under current, stale or no tokens, lease rescues and cancellations.

    use proptest::prelude::*;
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::model::{CallStatus, Event, NewCall};

    const MAX_ATTEMPTS: u32 = 3;

    #[derive(Debug, Clone)]
    enum Token {
        /// The token the call is leased under now (none if unleased: then stale token 0).
        Current,
        /// A token handed out before (maybe the current one), picked by index.
        Issued(u8),
        /// No token: a manual refresh.
        Unleased,
    }

    #[derive(Debug, Clone)]
    enum Op {
        Claim,
        Complete(Token, Outcome),
        Rescue { restart: bool },
        Cancel,
    }

    fn outcome() -> impl Strategy<Value = Outcome> {
        prop_oneof![
            (proptest::option::of("[a-c]"), 0u8..3).prop_map(|(ext, n)| Outcome::Completed {
                external_id: ext,
                data: json!({ "n": n }),
            }),
            ("[a-c]", proptest::option::of(1u64..50)).prop_map(|(ext, poll)| {
                Outcome::Started {
                    external_id: ext,
                    poll_after_ms: poll,
                }
            }),
            (1u64..50).prop_map(|poll_after_ms| Outcome::Pending { poll_after_ms }),
            ("[a-z]{1,3}", any::<bool>(), proptest::option::of(1u64..500)).prop_map(
                |(error, retryable, retry_after_ms)| Outcome::Failed {
                    error,
                    retryable,
                    retry_after_ms,
                    reason: FailureReason::Http5xx,
                }
            ),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        let token = prop_oneof![
            3 => Just(Token::Current),
            2 => any::<u8>().prop_map(Token::Issued),
            1 => Just(Token::Unleased),
        ];
        prop_oneof![
            4 => Just(Op::Claim),
            5 => (token, outcome()).prop_map(|(t, o)| Op::Complete(t, o)),
            2 => any::<bool>().prop_map(|restart| Op::Rescue { restart }),
            1 => Just(Op::Cancel),
        ]
    }

    /// One call as an engine holds it.
    #[derive(Debug, Clone)]
    struct Sim {
        call: ApiCall,
        log: Vec<Event>,
        lease: Option<u64>,
        issued: Vec<u64>,
        now: u64,
    }

    fn delay(tries: u32, retry_after_ms: Option<u64>) -> u64 {
        retry_after_ms.unwrap_or(10 * u64::from(tries))
    }

    impl Sim {
        fn new() -> Self {
            let spec = NewCall {
                room: "r".into(),
                block_id: "b".into(),
                index_name: "i".into(),
                attempt: 2,
                integration: "api".into(),
                request_params: json!({}),
            };
            let mut sim = Self {
                call: ApiCall::new(Uuid::nil(), spec, 0),
                log: Vec::new(),
                lease: None,
                issued: Vec::new(),
                now: 0,
            };
            sim.append(vec![EventKind::Created]);
            sim.call.next_try_at = Some(0);
            sim
        }

        fn append(&mut self, kinds: Vec<EventKind>) {
            for kind in kinds {
                self.log.push(Event {
                    attempt: self.call.attempt,
                    at: self.now,
                    kind,
                });
            }
            self.call.apply_fold(&self.log);
        }

        /// What `settle` does in every engine: a terminal call leaves the queue and its lease.
        fn settle(&mut self) {
            if self.call.status.is_terminal() {
                self.call.next_try_at = None;
                self.lease = None;
            }
        }

        fn retry(f: &mut dyn FnMut(u32, Option<u64>) -> u64) -> Retry<'_> {
            Retry {
                max_attempts: MAX_ATTEMPTS,
                delay: f,
            }
        }

        /// Applies `op`; returns the fence a completion was judged under.
        fn step(&mut self, op: &Op) -> Option<Fence> {
            self.now += 1;
            let mut d = delay;
            match op {
                Op::Claim => {
                    // Only a queued call is due.
                    self.call.next_try_at?;
                    let token = self.issued.last().map_or(1, |t| t + 1);
                    self.issued.push(token);
                    let step = decide_claim(&self.call, token);
                    self.call.tries = step.tries;
                    self.call.next_try_at = None;
                    self.lease = Some(token);
                    self.append(step.events);
                    self.settle();
                    None
                }
                // Integrations answer `Pending` only to polls; a submit answered `Pending`
                // would stay queued without failing and could be claimed past
                // `max_attempts`, which no integration does, so the model leaves it out.
                Op::Complete(_, Outcome::Pending { .. }) if self.call.external_id.is_none() => None,
                Op::Complete(which, outcome) => {
                    let presented = match which {
                        Token::Current => Some(self.lease.unwrap_or(0)),
                        Token::Issued(i) => Some(if self.issued.is_empty() {
                            0
                        } else {
                            self.issued[usize::from(*i) % self.issued.len()]
                        }),
                        Token::Unleased => None,
                    };
                    let fence = Fence::check(presented, self.lease);
                    let decision = decide_completion(
                        &self.call,
                        fence,
                        outcome.clone(),
                        self.now,
                        Self::retry(&mut d),
                        || "generated".into(),
                    );
                    match decision {
                        Decision::Late(ev) | Decision::Fenced(ev) => self.append(vec![ev]),
                        Decision::Record(step) => {
                            assert!(step.tries >= self.call.tries);
                            if step.release_lease {
                                self.lease = None;
                            }
                            self.call.tries = step.tries;
                            self.call.started_at = step.started_at;
                            self.append(step.events);
                            if !self.call.status.is_terminal() {
                                self.call.next_try_at = step.ready_at;
                            }
                            self.settle();
                        }
                    }
                    Some(fence)
                }
                Op::Rescue { restart } => {
                    let token = self.lease.take()?;
                    if let Some(step) =
                        decide_rescue(&self.call, token, self.now, *restart, Self::retry(&mut d))
                    {
                        self.append(step.events);
                        if !self.call.status.is_terminal() {
                            self.call.next_try_at = step.ready_at;
                        }
                        self.settle();
                    }
                    None
                }
                Op::Cancel => {
                    if let Some(ev) = decide_cancel(&self.call, "gone") {
                        self.append(vec![ev]);
                        self.settle();
                    }
                    None
                }
            }
        }
    }

    /// The contract events of the log form a path `initialized → processing → completed |
    /// failed` (or a failure/cancellation before the call was ever accepted), nothing but
    /// notes follow a terminal event, and at most one `initialized` links the call.
    fn check_path(log: &[Event]) -> Result<(), String> {
        let (mut initialized, mut processing, mut terminal) = (false, false, false);
        for (i, e) in log.iter().enumerate() {
            let bad = |why: &str| Err(format!("event {i} ({}): {why}", e.kind.type_name()));
            match &e.kind {
                EventKind::LateResultIgnored { .. } | EventKind::WritebackFailed { .. } => {}
                _ if terminal => return bad("after the terminal event"),
                EventKind::Created if i != 0 => return bad("not first"),
                EventKind::Created => {}
                _ if i == 0 => return bad("log does not start with created"),
                EventKind::Initialized { .. } if initialized => return bad("second link"),
                EventKind::Initialized { .. } => initialized = true,
                EventKind::Processing if !initialized => return bad("before initialized"),
                EventKind::Processing => processing = true,
                EventKind::Completed { .. } if !processing => return bad("before processing"),
                EventKind::Completed { .. }
                | EventKind::Failed {
                    retryable: false, ..
                }
                | EventKind::Cancelled { .. } => terminal = true,
                EventKind::Failed { .. }
                | EventKind::Claimed { .. }
                | EventKind::RetryScheduled { .. }
                | EventKind::LeaseExpired { .. } => {}
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn every_run_keeps_the_invariants(ops in proptest::collection::vec(op(), 1..40)) {
            let mut sim = Sim::new();
            for op in &ops {
                let before = sim.clone();
                let fence = sim.step(op);
                let added = &sim.log[before.log.len()..];
                let only_notes = added
                    .iter()
                    .all(|e| matches!(e.kind, EventKind::LateResultIgnored { .. }));

                // Attempts never decrease; the request is never sent more often than allowed
                // (a failed status poll counts as one more try, and the first one past the
                // limit ends the call).
                prop_assert!(sim.call.tries >= before.call.tries);
                prop_assert!(sim.call.tries <= MAX_ATTEMPTS + 1, "{} tries", sim.call.tries);
                for e in added {
                    if let EventKind::Claimed { r#try, .. } = e.kind {
                        prop_assert!(r#try <= MAX_ATTEMPTS, "submit try {}", r#try);
                    }
                }
                prop_assert_eq!(sim.call.attempt, before.call.attempt);

                // Terminal states are absorbing.
                if before.call.status.is_terminal() {
                    prop_assert_eq!(sim.call.status, before.call.status);
                    prop_assert_eq!(&sim.call.response_data, &before.call.response_data);
                    prop_assert_eq!(&sim.call.error, &before.call.error);
                    prop_assert_eq!(sim.call.completed_at, before.call.completed_at);
                    prop_assert_eq!(sim.call.tries, before.call.tries);
                    prop_assert!(only_notes, "{:?} after terminal", added);
                }
                if sim.call.status.is_terminal() {
                    prop_assert_eq!(sim.call.next_try_at, None);
                    prop_assert_eq!(sim.lease, None);
                }

                // A stale token changes nothing but a note, unless it reports a success
                // (the same idempotency key did the work).
                if let (Some(Fence::Stale { .. }), Op::Complete(_, outcome)) = (fence, op)
                    && !matches!(outcome, Outcome::Completed { .. })
                {
                    prop_assert!(only_notes && added.len() == 1, "{:?}", added);
                    prop_assert_eq!(sim.call.status, before.call.status);
                    prop_assert_eq!(sim.call.tries, before.call.tries);
                    prop_assert_eq!(sim.call.next_try_at, before.call.next_try_at);
                    prop_assert_eq!(sim.lease, before.lease);
                }
                if let (Some(Fence::Stale { .. }), Op::Complete(_, Outcome::Completed { data, .. })) = (fence, op)
                    && !before.call.status.is_terminal()
                {
                    prop_assert_eq!(sim.call.status, CallStatus::Completed);
                    prop_assert_eq!(sim.call.response_data.as_ref(), Some(data));
                }

                if let Err(why) = check_path(&sim.log) {
                    return Err(TestCaseError::fail(format!("{why}; log {:?}", sim.log)));
                }
                // The stored status is the fold of the log.
                prop_assert_eq!(crate::model::fold(sim.call.attempt, &sim.log).status, sim.call.status);
            }
        }
    }

    #[test]
    fn stale_success_is_recorded_stale_failure_is_fenced() {
        let mut call = ApiCall::new(
            Uuid::nil(),
            NewCall {
                room: "r".into(),
                block_id: "b".into(),
                index_name: "i".into(),
                attempt: 1,
                integration: "api".into(),
                request_params: json!({}),
            },
            0,
        );
        call.status = CallStatus::Processing;
        call.tries = 2;
        let mut d = delay;
        let stale = Fence::check(Some(1), Some(2));
        assert_eq!(stale, Fence::Stale { token: 1 });
        let fenced = decide_completion(
            &call,
            stale,
            Outcome::Pending { poll_after_ms: 5 },
            9,
            Sim::retry(&mut d),
            || unreachable!(),
        );
        assert_eq!(
            fenced,
            Decision::Fenced(EventKind::LateResultIgnored {
                detail: "stale lease 1: pending".into()
            })
        );
        let ok = decide_completion(
            &call,
            stale,
            Outcome::Completed {
                external_id: None,
                data: json!(1),
            },
            9,
            Sim::retry(&mut d),
            || "gen".into(),
        );
        let Decision::Record(step) = ok else {
            panic!("{ok:?}")
        };
        assert!(
            !step.release_lease,
            "the lease belongs to the current worker"
        );
        assert_eq!(
            step.events,
            [
                EventKind::Initialized {
                    external_id: "gen".into()
                },
                EventKind::Processing,
                EventKind::Completed { data: json!(1) },
            ]
        );
    }
}
