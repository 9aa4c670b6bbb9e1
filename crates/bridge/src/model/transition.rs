//! The call state transition as pure functions: given a call as stored (status, tries, external
//! id), what its lease says, and what happened (a claim, an outcome, an expired lease, a
//! webhook, a cancellation), decide the events to record and the bookkeeping to apply.
//!
//! No I/O and no clock or randomness of its own: time comes in as `now`, the retry delay and a
//! generated external id come from the caller's closures. An outbox engine applies a decision
//! in one atomic step (append the events, re-fold the status with [`super::fold`], move the
//! queue entry and the lease); it never decides anything itself. That is what lets every engine
//! (redb today, a JetStream one later) keep the same behaviour.

use super::{ApiCall, EventKind, Outcome};

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
                step.events.push(EventKind::Failed {
                    error,
                    retryable: false,
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
