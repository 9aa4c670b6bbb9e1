//! Who may see and act on which APICalls: the room rule of `/api/calls…`.
//!
//! The binary's token layer verifies the token and puts its [`Claims`] into the request's
//! extensions; no `Claims` means the server runs without tokens (everything open). A call
//! belongs to one room, so a token that grants the room (read is enough) reads its calls,
//! retry and refresh need write access (or an admin token) for the room, and a listing of
//! every room's calls needs an admin token for every room. Deliberately not here: token
//! formats and signatures (`weaver-auth`), HTTP answers (routes.rs).

use weaver_auth::{Claims, Scope};

/// What one request's token grants over calls.
#[derive(Debug, Clone)]
pub(crate) struct CallAccess(Option<Claims>);

impl CallAccess {
    pub(crate) fn new(claims: Option<Claims>) -> Self {
        Self(claims)
    }

    /// An admin token for every room (or no tokens at all): every room's calls at once.
    pub(crate) fn every_room(&self) -> bool {
        self.0
            .as_ref()
            .is_none_or(|c| c.is_admin() && c.scope == Scope::Prefix(String::new()))
    }

    /// May read the calls of `room`.
    pub(crate) fn reads(&self, room: &str) -> bool {
        self.0.as_ref().is_none_or(|c| c.allows(room))
    }

    /// May retry or refresh the calls of `room`.
    pub(crate) fn writes(&self, room: &str) -> bool {
        self.0
            .as_ref()
            .is_none_or(|c| c.allows(room) && (c.can_write() || c.is_admin()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use weaver_auth::Permission;

    fn claims(scope: Scope, permission: Permission, admin: bool) -> CallAccess {
        CallAccess::new(Some(Claims {
            scope,
            permission,
            expires_at: u64::MAX,
            admin,
        }))
    }

    #[test]
    fn room_tokens_read_their_room_and_write_only_with_write() {
        let read = claims(Scope::Room("a".into()), Permission::Read, false);
        assert!(read.reads("a") && !read.reads("b"));
        assert!(!read.writes("a"));
        assert!(!read.every_room());
        let write = claims(Scope::Room("a".into()), Permission::Write, false);
        assert!(write.writes("a") && !write.writes("b"));
        let admin = claims(Scope::Prefix(String::new()), Permission::Write, true);
        assert!(admin.every_room() && admin.reads("x") && admin.writes("x"));
        let prefix_admin = claims(Scope::Prefix("t-".into()), Permission::Write, true);
        assert!(!prefix_admin.every_room() && prefix_admin.reads("t-1"));
        assert!(CallAccess::new(None).every_room());
    }
}
