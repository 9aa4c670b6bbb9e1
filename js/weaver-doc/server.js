//! server.js — `@weaver/doc/server`: what an application server running Node needs next to a
//! Weaver relay: make and read the relay's key (`generateKey`, `parseKey`), mint room access
//! tokens with it (`mintRoomToken`, byte for byte what `weaver token` prints for the same
//! claims; `decodeRoomToken` reads one back), and verify the signed `room.updated` webhooks of
//! `weaver serve --notify-url` (`verifyWebhook`).
//!
//! Node only (node:crypto), and a separate entry point so that browsers bundling the schema
//! never pull it in. Knows nothing of documents, sockets or the relay's internals: only the
//! token format (crates/auth/src/lib.rs, docs/security.md) and Standard Webhooks signing
//! (crates/auth/src/webhook.rs, docs/operations.md "Room-change webhooks").
//
// Types: server.d.ts, written by hand; keep it in step with every export here.

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'

/** Fewest key bytes the relay accepts (`weaver serve --auth-key`, `MIN_AUTH_KEY_BYTES`). */
export const MIN_KEY_BYTES = 32

/** Default `verifyWebhook` tolerance in seconds, as the bridge's inbound webhooks. */
export const DEFAULT_WEBHOOK_TOLERANCE_SECS = 300

const TOKEN_CONTEXT = 'weaver-access-token\n'
const TOKEN_VERSION = 1
const FLAG_PREFIX = 1
const FLAG_WRITE = 2
const FLAG_ADMIN = 4
const U64_MAX = (1n << 64n) - 1n

/** Why a key, claims or a webhook were refused; `code` says which check failed. */
export class WeaverError extends Error {
  constructor (code, message) {
    super(message)
    this.name = 'WeaverError'
    this.code = code
  }
}

/**
 * Decodes base64 the way the relay's `base64` engines do: one alphabet (standard or URL-safe),
 * padding either canonical or absent, no stray characters or non-zero trailing bits. Node's own
 * decoder skips what it does not understand, which would accept keys the server refuses.
 */
function strictBase64 (text, alphabets = ['base64', 'base64url']) {
  for (const alphabet of alphabets) {
    const re = alphabet === 'base64' ? /^[A-Za-z0-9+/]*={0,2}$/ : /^[A-Za-z0-9_-]*={0,2}$/
    if (!re.test(text)) continue
    const bytes = Buffer.from(text, alphabet)
    const unpadded = bytes.toString(alphabet).replace(/=+$/, '')
    const padded = unpadded + '='.repeat((4 - (unpadded.length % 4)) % 4)
    if (text === unpadded || text === padded) return bytes
  }
  return null
}

/**
 * The key bytes of a relay key text (`--auth-key`, `WEAVER_AUTH_KEY`, `weaver keygen`): hex when
 * it is an even number of hex digits, otherwise base64 (standard or URL-safe, padded or not);
 * surrounding whitespace is ignored. At least 32 bytes, as the server requires.
 */
export function parseKey (text) {
  if (typeof text !== 'string') throw new TypeError('weaver: the key text must be a string')
  const t = text.trim()
  let bytes
  if (t.length > 0 && t.length % 2 === 0 && /^[0-9a-fA-F]+$/.test(t)) {
    bytes = Buffer.from(t, 'hex')
  } else {
    bytes = strictBase64(t)
    if (bytes === null) throw new WeaverError('bad_key', 'auth key is neither hex nor base64')
  }
  if (bytes.length < MIN_KEY_BYTES) {
    throw new WeaverError('bad_key', `auth key is ${bytes.length} bytes; at least ${MIN_KEY_BYTES} random bytes are required (e.g. \`weaver keygen\`)`)
  }
  return bytes
}

/** A new random key as hex text (32 bytes from the OS CSPRNG), the form `weaver keygen` prints. */
export function generateKey () {
  return randomBytes(MIN_KEY_BYTES).toString('hex')
}

function keyBytes (key) {
  if (typeof key === 'string') return parseKey(key)
  if (key instanceof Uint8Array) {
    if (key.length < MIN_KEY_BYTES) {
      throw new WeaverError('bad_key', `auth key is ${key.length} bytes; at least ${MIN_KEY_BYTES} are required`)
    }
    return key
  }
  throw new TypeError('weaver: key must be the key text or its bytes (Uint8Array)')
}

const TTL_UNITS = { s: 1, m: 60, h: 3600, d: 86400 }

/** Seconds of a lifetime: a positive integer, or `weaver token --ttl` text (`90s`, `15m`, `1h`, `7d`). */
function ttlSecs (expiresIn) {
  if (typeof expiresIn === 'number') {
    if (Number.isSafeInteger(expiresIn) && expiresIn > 0) return BigInt(expiresIn)
  } else if (typeof expiresIn === 'string') {
    const m = /^(\d+)([smhd]?)$/.exec(expiresIn.trim())
    if (m) {
      const secs = BigInt(m[1]) * BigInt(TTL_UNITS[m[2] || 's'])
      if (secs > 0n && secs <= U64_MAX) return secs
    }
  }
  throw new WeaverError('bad_claims', `expiresIn must be positive seconds or a number with s, m, h or d (got ${JSON.stringify(expiresIn)})`)
}

const ROOM_BYTE = /^[A-Za-z0-9._~:@/-]+$/
const RESERVED_ROOMS = new Set(['api', 'assets', 'healthz', 'readyz', 'metrics', 'index.html', 'sw.js'])

/** The relay's room-name rule (crates/relay/src/room_name.rs), which `weaver token` applies too. */
function validRoomName (room) {
  return room.length >= 1 && room.length <= 128 && ROOM_BYTE.test(room) &&
    room.split('/').every((s) => s !== '' && s !== '.' && s !== '..') && !RESERVED_ROOMS.has(room)
}

/**
 * A signed access token for `room` (or, with `prefix`, every room starting with it), as
 * `weaver token` mints it: `base64url(payload) "." base64url(HMAC-SHA256(key, context ‖ payload))`.
 * Defaults: read-only, one hour. Without `room`, `admin` grants every room (the empty prefix),
 * like `weaver token --admin`. `expiresAt` (unix seconds) replaces `expiresIn` when given, and
 * may lie in the past (an already expired token, for tests).
 */
export function mintRoomToken ({ key, room, write = false, prefix = false, admin = false, expiresIn = 3600, expiresAt, now } = {}) {
  const k = keyBytes(key)
  let scopePrefix = prefix === true
  let name = room
  if (name === undefined || name === null) {
    if (admin !== true) throw new WeaverError('bad_claims', 'give a room (or admin: true for a token that grants every room)')
    name = ''
    scopePrefix = true
  }
  if (typeof name !== 'string') throw new TypeError('weaver: room must be a string')
  if (!scopePrefix && !validRoomName(name)) {
    throw new WeaverError('bad_claims', `invalid room name ${JSON.stringify(name)}: 1-128 of [A-Za-z0-9._~:@/-], '/' between non-empty segments other than '.' and '..', not a reserved path`)
  }
  let expiry
  if (expiresAt !== undefined) {
    if (!(Number.isSafeInteger(expiresAt) && expiresAt >= 0) && !(typeof expiresAt === 'bigint' && expiresAt >= 0n && expiresAt <= U64_MAX)) {
      throw new WeaverError('bad_claims', 'expiresAt must be non-negative unix seconds')
    }
    expiry = BigInt(expiresAt)
  } else {
    const nowSecs = now === undefined ? Math.floor(Date.now() / 1000) : now
    if (!Number.isSafeInteger(nowSecs) || nowSecs < 0) throw new WeaverError('bad_claims', 'now must be non-negative unix seconds')
    // `weaver token` saturates rather than wrapping.
    expiry = BigInt(nowSecs) + ttlSecs(expiresIn)
    if (expiry > U64_MAX) expiry = U64_MAX
  }
  const nameBytes = Buffer.from(name, 'utf8')
  const payload = Buffer.alloc(10 + nameBytes.length)
  payload[0] = TOKEN_VERSION
  payload[1] = (scopePrefix ? FLAG_PREFIX : 0) | (write === true ? FLAG_WRITE : 0) | (admin === true ? FLAG_ADMIN : 0)
  payload.writeBigUInt64BE(expiry, 2)
  nameBytes.copy(payload, 10)
  const tag = createHmac('sha256', k).update(TOKEN_CONTEXT).update(payload).digest()
  return payload.toString('base64url') + '.' + tag.toString('base64url')
}

/**
 * The claims a token carries, WITHOUT checking its signature (only the key can): for logs and
 * tests, never for access decisions. Null when it is not a version-1 Weaver token.
 */
export function decodeRoomToken (token) {
  if (typeof token !== 'string') return null
  const parts = token.split('.')
  if (parts.length !== 2) return null
  const payload = strictBase64(parts[0], ['base64url'])
  if (payload === null || payload.length < 10 || payload[0] !== TOKEN_VERSION) return null
  const flags = payload[1]
  if ((flags & ~(FLAG_PREFIX | FLAG_WRITE | FLAG_ADMIN)) !== 0) return null
  let room
  try {
    room = new TextDecoder('utf-8', { fatal: true }).decode(payload.subarray(10))
  } catch {
    return null
  }
  const expiresAt = payload.readBigUInt64BE(2)
  return {
    room,
    prefix: (flags & FLAG_PREFIX) !== 0,
    write: (flags & FLAG_WRITE) !== 0,
    admin: (flags & FLAG_ADMIN) !== 0,
    expiresAt: expiresAt <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(expiresAt) : expiresAt
  }
}

/** HMAC keys of `whsec_<base64>` secrets (the prefix is optional, as in the reference libraries). */
function webhookKeys (secret) {
  const list = Array.isArray(secret) ? secret : [secret]
  if (list.length === 0) throw new WeaverError('bad_secret', 'no webhook secret given')
  return list.map((s) => {
    if (s instanceof Uint8Array) {
      if (s.length === 0) throw new WeaverError('bad_secret', 'empty webhook secret')
      return s
    }
    if (typeof s !== 'string') throw new TypeError('weaver: a webhook secret is a whsec_<base64> string or bytes')
    const t = s.trim()
    const bytes = strictBase64(t.startsWith('whsec_') ? t.slice(6) : t, ['base64'])
    if (bytes === null || bytes.length === 0) throw new WeaverError('bad_secret', 'invalid webhook secret (expected whsec_<base64>)')
    return bytes
  })
}

/** One header from a Fetch `Headers` or a Node `IncomingHttpHeaders`-like object, any case. */
function header (headers, name) {
  if (headers === null || typeof headers !== 'object') throw new TypeError('weaver: headers must be an object or a Headers')
  if (typeof headers.get === 'function') {
    const v = headers.get(name)
    return v === null || v === undefined ? null : String(v)
  }
  let v = headers[name]
  if (v === undefined) {
    const key = Object.keys(headers).find((k) => k.toLowerCase() === name)
    v = key === undefined ? undefined : headers[key]
  }
  if (v === undefined || v === null) return null
  return Array.isArray(v) ? v.join(' ') : String(v)
}

/**
 * Checks a Standard Webhooks delivery (`room.updated` from `weaver serve --notify-url
 * --notify-secret`): the `webhook-signature` must hold a `v1,` HMAC-SHA256 of
 * `webhook-id.webhook-timestamp.body` under one of the secrets (several: rotation), compared in
 * constant time, and the timestamp must be within `toleranceSecs` of now (replays of old
 * deliveries are refused). `body` is the raw request body, exactly as received. Returns the
 * parsed JSON body; throws `WeaverError` (`code`: `malformed`, `expired`, `bad_signature`,
 * `bad_secret`) otherwise. Deduplicate on the `webhook-id` header: retries repeat it.
 */
export function verifyWebhook ({ secret, headers, body, toleranceSecs = DEFAULT_WEBHOOK_TOLERANCE_SECS, now } = {}) {
  const keys = webhookKeys(secret)
  let raw
  if (typeof body === 'string') raw = Buffer.from(body, 'utf8')
  else if (body instanceof Uint8Array) raw = body
  else throw new TypeError('weaver: body must be the raw request body (string or bytes), not parsed JSON')
  if (!Number.isFinite(toleranceSecs) || toleranceSecs < 0) throw new TypeError('weaver: toleranceSecs must be a non-negative number')
  const id = header(headers, 'webhook-id')
  const tsRaw = header(headers, 'webhook-timestamp')
  const sig = header(headers, 'webhook-signature')
  if (id === null || id === '') throw new WeaverError('malformed', 'missing webhook-id')
  if (tsRaw === null) throw new WeaverError('malformed', 'missing webhook-timestamp')
  if (sig === null) throw new WeaverError('malformed', 'missing webhook-signature')
  const ts = tsRaw.trim()
  if (!/^[+-]?\d{1,18}$/.test(ts)) throw new WeaverError('malformed', 'webhook-timestamp is not an integer')
  const nowSecs = now === undefined ? Math.floor(Date.now() / 1000) : now
  if (Math.abs(nowSecs - Number(ts)) > toleranceSecs) throw new WeaverError('expired', 'webhook timestamp outside tolerance')
  const candidates = []
  for (const part of sig.split(/\s+/).filter((p) => p !== '')) {
    const comma = part.indexOf(',')
    if (comma < 0) throw new WeaverError('malformed', 'webhook-signature entry without version')
    // Other versions (v1a: asymmetric) are not supported, and not an error.
    if (part.slice(0, comma) !== 'v1') continue
    const bytes = strictBase64(part.slice(comma + 1), ['base64'])
    if (bytes !== null) candidates.push(bytes)
  }
  let ok = false
  for (const key of keys) {
    const expected = createHmac('sha256', key).update(`${id}.${ts}.`).update(raw).digest()
    for (const cand of candidates) {
      // The length of an HMAC is public; the bytes are compared in constant time.
      if (cand.length === expected.length && timingSafeEqual(cand, expected)) ok = true
    }
  }
  if (!ok) throw new WeaverError('bad_signature', 'no matching webhook signature')
  try {
    return JSON.parse(Buffer.from(raw).toString('utf8'))
  } catch (e) {
    throw new WeaverError('malformed', `webhook body is not JSON: ${e.message}`)
  }
}
