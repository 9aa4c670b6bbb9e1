//! The outbox: the `OutboxStore` conformance suite (`weaver_bridge::outbox::conformance`,
//! engine-independent) run against the redb engine (`redb.rs`, which adds what only redb has:
//! reopening the file, the schema check, the backup copy).

mod redb;
