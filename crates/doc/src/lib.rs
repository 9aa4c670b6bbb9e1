//! Typed, Yjs-compatible model of a Weaver workspace document.
//!
//! Owns the document schema (root map `blocks`, blocks, indexing lists, the convergent status
//! log) and the reading rule. Knows nothing of sockets, storage or integrations.
