//! Typed, Yjs-compatible model of a Weaver workspace document.
//!
//! This crate owns the document schema (`docs/schema.md` in the repository): the root map
//! `blocks`, blocks with `id`, `type`, `content` (Y.Text) and `indexingList`, index entries with
//! an append-only `status_log`, and the convergent reading rule (effective status = greatest
//! `(attempt, rank)` over all records of all same-named entries). It offers typed reads
//! ([`BlockView`], [`EntryView`]), the JSON view shared value-for-value with the JavaScript twin
//! `js/weaver-doc/weaver-doc.js` ([`Workspace::to_json`]), explicit transactions with an origin
//! that return the v1 update they produced ([`Workspace::transact`], [`WriteTxn`]), typed change
//! events ([`Workspace::observe`]) and undo scoped to a local origin ([`LocalUndo`]). It must not
//! know about sockets, storage, tokio or the external APIs the bridge calls: it only turns bytes
//! and calls into document state and back. Nothing here panics on input; malformed update bytes
//! are a [`DocError`].
//!
//! Text positions are UTF-16 code units, as in Yjs (the document uses `OffsetKind::Utf16`).
//!
//! ```
//! use weaver_doc::{BRIDGE_ORIGIN, Change, Status, StatusRecord, Workspace};
//! use serde_json::json;
//!
//! # fn main() -> Result<(), weaver_doc::DocError> {
//! let app = Workspace::with_client_id(1);
//! let (attempt, update) = app.transact("local", |t| {
//!     t.add_block("b1", "text", "hello 🌍")?;
//!     t.request_index("b1", "search", &json!({"dim": 384}))
//! })?;
//! let attempt = attempt?;
//! assert_eq!(attempt, 1);
//!
//! // Another replica (the bridge) receives the update and reacts to the typed change.
//! let bridge = Workspace::with_client_id(2);
//! let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
//! let sink = seen.clone();
//! let _sub = bridge.observe(move |cs| {
//!     if !cs.is_from(BRIDGE_ORIGIN) {
//!         sink.lock().unwrap().extend(cs.changes.clone());
//!     }
//! })?;
//! bridge.apply_update_v1(&update, "relay")?;
//! assert!(seen.lock().unwrap().iter().any(|c| matches!(c,
//!     Change::StatusChanged { attempt: 1, status: Status::NotStarted, .. })));
//!
//! // It records the outcome; a late or duplicate write of an older attempt can't win.
//! let done = StatusRecord::done(1, "call-1", json!({"chunks_indexed": 1}), 1_763_900_000_000);
//! let (wrote, back) = bridge.transact(BRIDGE_ORIGIN, |t| t.record_status("b1", "search", &done))?;
//! assert!(wrote?);
//! app.apply_update_v1(&back, "relay")?;
//! let view = app.block("b1")?.expect("block exists");
//! assert_eq!(view.entry("search").map(|e| e.status), Some(Status::Done));
//! assert_eq!(app.to_json()?, bridge.to_json()?);
//! # Ok(())
//! # }
//! ```

mod error;
mod events;
mod json;
mod pending;
mod read;
mod status;
mod undo;
mod workspace;

pub use error::DocError;
pub use events::{Change, ChangeSet, ChangeSubscription};
pub use pending::apply_update_retrying_pending;
pub use read::{BlockView, EntryView};
pub use status::{Status, StatusRecord, effective_status};
pub use undo::LocalUndo;
pub use workspace::{BLOCKS_ROOT, Workspace, WriteTxn};

/// The origin the bridge writes with; its own observer ignores change sets with this origin.
pub const BRIDGE_ORIGIN: &str = "weaver-bridge";

/// Re-export of the yrs version this crate is built on, for bindings that need raw access.
pub use yrs;
