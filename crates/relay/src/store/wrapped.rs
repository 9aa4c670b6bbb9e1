//! [`Wrapped`]: a [`RoomStore`] that hands every call to another engine except `stop` (and,
//! optionally, `failed`), for tests that share one engine between several relays or need a store
//! that never stops. Behind the `contract-tests` feature, like the conformance suite: no product
//! code builds it.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::{
    Detail, NewVersion, Retention, RoomStore, StoreError, StoredRoom, StoredRoomInfo, VersionMeta,
};

/// What [`Wrapped::stop`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopWith {
    /// Stop the inner engine.
    Inner,
    /// Return at once and leave the inner engine running (its owner stops it).
    Nothing,
    /// Never complete: a store whose stop hangs (a disk that stopped answering).
    Never,
}

/// Delegates to `inner`; see the module doc.
#[derive(Debug)]
pub struct Wrapped {
    inner: Arc<dyn RoomStore>,
    stop: StopWith,
    failed: Option<bool>,
}

impl Wrapped {
    /// Delegates everything but `stop`, which does what `stop` says.
    pub fn new(inner: Arc<dyn RoomStore>, stop: StopWith) -> Self {
        Self {
            inner,
            stop,
            failed: None,
        }
    }

    /// `failed()` answers `failed` instead of asking the inner engine.
    pub fn failed_as(mut self, failed: bool) -> Self {
        self.failed = Some(failed);
        self
    }
}

impl RoomStore for Wrapped {
    fn load(&self, room: Arc<str>) -> BoxFuture<'_, Result<StoredRoom, StoreError>> {
        self.inner.load(room)
    }
    fn read_room(&self, room: Arc<str>) -> BoxFuture<'_, Result<StoredRoom, StoreError>> {
        self.inner.read_room(room)
    }
    fn append(
        &self,
        room: Arc<str>,
        updates: Vec<Bytes>,
    ) -> BoxFuture<'_, Result<u64, Arc<StoreError>>> {
        self.inner.append(room, updates)
    }
    fn compact(
        &self,
        room: Arc<str>,
        upto_seq: u64,
        snapshot: Vec<u8>,
    ) -> BoxFuture<'_, Result<(), Arc<StoreError>>> {
        self.inner.compact(room, upto_seq, snapshot)
    }
    fn delete(&self, room: Arc<str>) -> BoxFuture<'_, Result<(), Arc<StoreError>>> {
        self.inner.delete(room)
    }
    fn rooms(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        self.inner.rooms()
    }
    fn list(
        &self,
        prefix: String,
        after: Option<String>,
        limit: usize,
        detail: Detail,
    ) -> BoxFuture<'_, Result<Vec<StoredRoomInfo>, StoreError>> {
        self.inner.list(prefix, after, limit, detail)
    }
    fn add_version(
        &self,
        room: Arc<str>,
        version: NewVersion,
        retention: Retention,
    ) -> BoxFuture<'_, Result<VersionMeta, Arc<StoreError>>> {
        self.inner.add_version(room, version, retention)
    }
    fn versions(&self, room: Arc<str>) -> BoxFuture<'_, Result<Vec<VersionMeta>, StoreError>> {
        self.inner.versions(room)
    }
    fn version_data(
        &self,
        room: Arc<str>,
        ids: Vec<u64>,
    ) -> BoxFuture<'_, Result<Vec<Vec<u8>>, StoreError>> {
        self.inner.version_data(room, ids)
    }
    fn failed(&self) -> bool {
        self.failed.unwrap_or_else(|| self.inner.failed())
    }
    fn stop(&self) -> BoxFuture<'_, ()> {
        match self.stop {
            StopWith::Inner => self.inner.stop(),
            StopWith::Nothing => std::future::ready(()).boxed(),
            StopWith::Never => std::future::pending().boxed(),
        }
    }
    fn unloaded(&self, room: &str) {
        self.inner.unloaded(room)
    }
}
