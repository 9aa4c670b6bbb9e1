//! The outbox: the `OutboxStore` conformance suite (`conformance.rs`, engine-independent) run
//! against the redb engine (`redb.rs`, which adds what only redb has: reopening the file,
//! the schema check, the backup copy).

#[macro_use]
mod conformance;
mod redb;
