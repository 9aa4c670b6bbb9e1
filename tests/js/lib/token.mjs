// Mints Weaver access tokens in Node exactly as docs/security.md shows an application server
// doing it (HMAC-SHA256 over the binary payload; see crates/auth for the format). The security
// tests use it, so the documented snippet is what gets exercised against the real server.
import { createHmac, randomBytes } from 'node:crypto'

export function mintWeaverToken (key, { room, prefix = false, write = false, admin = false, expiresAt }) {
  const name = Buffer.from(room, 'utf8')
  const payload = Buffer.alloc(10 + name.length)
  payload[0] = 1
  payload[1] = (prefix ? 1 : 0) | (write ? 2 : 0) | (admin ? 4 : 0)
  payload.writeBigUInt64BE(BigInt(expiresAt), 2)
  name.copy(payload, 10)
  const tag = createHmac('sha256', key).update('weaver-access-token\n').update(payload).digest()
  return payload.toString('base64url') + '.' + tag.toString('base64url')
}

/** A fresh 32-byte key: the Buffer (to mint) and its hex text (for --auth-key / WEAVER_AUTH_KEY). */
export function newKey () {
  const key = randomBytes(32)
  return { key, hex: key.toString('hex') }
}

export const nowSecs = () => Math.floor(Date.now() / 1000)
