//! Property tests: every minted token verifies to the same claims; any change to any byte of
//! the token text or of the decoded payload/signature fails; expired tokens fail; arbitrary input
//! never panics the parser.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use weaver_auth::{AuthError, Claims, Permission, Scope, TokenKey};

fn claims() -> impl Strategy<Value = Claims> {
    (
        any::<bool>(),
        ".{0,40}",
        any::<bool>(),
        1u64..u64::MAX,
        any::<bool>(),
    )
        .prop_map(|(prefix, name, write, expires_at, admin)| Claims {
            scope: if prefix {
                Scope::Prefix(name)
            } else {
                Scope::Room(name)
            },
            permission: if write {
                Permission::Write
            } else {
                Permission::Read
            },
            expires_at,
            admin,
        })
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 16..64)
}

proptest! {
    #[test]
    fn roundtrip(k in key(), c in claims()) {
        let key = TokenKey::new(&k).unwrap();
        let token = key.mint(&c);
        prop_assert_eq!(key.verify(&token, c.expires_at - 1), Ok(c.clone()));
        prop_assert_eq!(key.verify(&token, 0), Ok(c.clone()));
        match &c.scope {
            Scope::Room(r) | Scope::Prefix(r) => prop_assert!(c.allows(r)),
        }
    }

    #[test]
    fn expired_fails(k in key(), c in claims(), late in 0u64..1_000_000) {
        let key = TokenKey::new(&k).unwrap();
        let now = c.expires_at.saturating_add(late);
        prop_assert_eq!(
            key.verify(&key.mint(&c), now),
            Err(AuthError::Expired { expires_at: c.expires_at, now })
        );
    }

    #[test]
    fn any_text_tampering_fails(k in key(), c in claims(), pos in any::<prop::sample::Index>(), b in any::<u8>()) {
        let key = TokenKey::new(&k).unwrap();
        let token = key.mint(&c);
        let mut bytes = token.clone().into_bytes();
        let i = pos.index(bytes.len());
        prop_assume!(bytes[i] != b);
        bytes[i] = b;
        let tampered = String::from_utf8_lossy(&bytes);
        prop_assert!(key.verify(&tampered, 0).is_err(), "{} -> {}", token, tampered);
    }

    #[test]
    fn any_decoded_byte_tampering_fails(k in key(), c in claims(), in_tag in any::<bool>(), pos in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let key = TokenKey::new(&k).unwrap();
        let token = key.mint(&c);
        let (p, t) = token.split_once('.').unwrap();
        let mut payload = URL_SAFE_NO_PAD.decode(p).unwrap();
        let mut tag = URL_SAFE_NO_PAD.decode(t).unwrap();
        let target = if in_tag { &mut tag } else { &mut payload };
        let i = pos.index(target.len());
        target[i] ^= flip;
        let tampered = format!("{}.{}", URL_SAFE_NO_PAD.encode(&payload), URL_SAFE_NO_PAD.encode(&tag));
        prop_assert_eq!(key.verify(&tampered, 0), Err(AuthError::BadSignature));
    }

    #[test]
    fn truncation_and_extension_fail(k in key(), c in claims(), cut in any::<prop::sample::Index>(), extra in "[A-Za-z0-9_.-]{1,4}") {
        let key = TokenKey::new(&k).unwrap();
        let token = key.mint(&c);
        let cut = cut.index(token.len());
        prop_assert!(key.verify(&token[..cut], 0).is_err());
        let longer = format!("{token}{extra}");
        prop_assert!(key.verify(&longer, 0).is_err());
    }

    #[test]
    fn a_different_key_fails(k1 in key(), k2 in key(), c in claims()) {
        prop_assume!(k1 != k2);
        let token = TokenKey::new(&k1).unwrap().mint(&c);
        prop_assert_eq!(TokenKey::new(&k2).unwrap().verify(&token, 0), Err(AuthError::BadSignature));
    }

    #[test]
    fn arbitrary_input_never_panics(s in ".{0,200}", now in any::<u64>()) {
        let key = TokenKey::new(b"0123456789abcdef").unwrap();
        let _ = key.verify(&s, now);
        let _ = TokenKey::from_base64(&s);
    }
}
