// What a Weaver access token grants, read in the page without verifying it (only the server
// can: it holds the key). The page uses it to show read-only access before any write is refused
// and to tell an expired session from a server that refuses us. Format: docs/security.md
// (base64url payload `v1 ‖ flags ‖ expiry u64 BE seconds ‖ room`, then `.` and the signature).

const PREFIX = 1
const WRITE = 2
const ADMIN = 4

/**
 * The claims of `token`, or null when it is not a Weaver token this page understands (the page
 * then learns read-only access from the server's "permission denied" answer instead).
 * @param {string|null|undefined} token
 * @returns {{room: string, prefix: boolean, write: boolean, admin: boolean, expiresAt: number}|null}
 */
export function readClaims (token) {
  if (typeof token !== 'string') return null
  const dot = token.indexOf('.')
  if (dot <= 0) return null
  let bytes
  try {
    const b64 = token.slice(0, dot).replace(/-/g, '+').replace(/_/g, '/')
    bytes = Uint8Array.from(atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4)), (c) => c.charCodeAt(0))
  } catch {
    return null
  }
  if (bytes.length < 10 || bytes[0] !== 1) return null
  const flags = bytes[1]
  let expiresAt = 0
  for (let i = 2; i < 10; i++) expiresAt = expiresAt * 256 + bytes[i]
  let room
  try {
    room = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(10))
  } catch {
    return null
  }
  return { room, prefix: (flags & PREFIX) !== 0, write: (flags & WRITE) !== 0, admin: (flags & ADMIN) !== 0, expiresAt }
}

/** True when `claims` have passed their expiry (seconds since the epoch) at `now` (ms). */
export function expired (claims, now = Date.now()) {
  return claims !== null && claims.expiresAt * 1000 <= now
}
