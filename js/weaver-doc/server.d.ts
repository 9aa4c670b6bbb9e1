// Types of server.js (`@weaver/doc/server`, Node only), written by hand and checked by `tsc`
// against types-test.ts.

/** Fewest key bytes the relay accepts. */
export declare const MIN_KEY_BYTES: 32

/** Default `verifyWebhook` tolerance in seconds. */
export declare const DEFAULT_WEBHOOK_TOLERANCE_SECS: 300

/** Which check refused a key, claims or a webhook. */
export type WeaverErrorCode = 'bad_key' | 'bad_claims' | 'bad_secret' | 'malformed' | 'expired' | 'bad_signature'

/** Why a key, claims or a webhook were refused (`TypeError` for arguments of the wrong type). */
export declare class WeaverError extends Error {
  constructor (code: WeaverErrorCode, message: string)
  readonly name: 'WeaverError'
  readonly code: WeaverErrorCode
}

/** A new random key as hex text (32 bytes), the form `weaver keygen` prints. */
export declare function generateKey (): string

/** The bytes of a relay key text (hex, or base64 standard / URL-safe); at least 32 bytes. */
export declare function parseKey (text: string): Uint8Array

/** `weaver token --ttl` text: seconds, or a number with s, m, h or d. */
export type Ttl = number | `${number}` | `${number}${'s' | 'm' | 'h' | 'd'}`

interface TokenClaimsBase {
  /** The relay's key: its text (hex/base64, as given to `weaver serve`) or its bytes. */
  key: string | Uint8Array
  /** Sync and write (default false: read-only). */
  write?: boolean
  /** May use administrative endpoints (default false). */
  admin?: boolean
  /** Lifetime from `now` (default one hour); ignored when `expiresAt` is given. */
  expiresIn?: Ttl
  /** Absolute expiry in unix seconds (may be in the past). */
  expiresAt?: number | bigint
  /** Unix seconds to count `expiresIn` from (default: the clock). */
  now?: number
}

/** Claims for `mintRoomToken`: a room (or prefix), or none with `admin: true` for every room. */
export type MintOptions = TokenClaimsBase & (
  | { room: string, prefix?: boolean }
  | { room?: undefined, prefix?: boolean, admin: true }
)

/** A signed access token, byte for byte what `weaver token` mints for the same claims. */
export declare function mintRoomToken (options: MintOptions): string

/** What a token says (unverified). */
export interface RoomTokenClaims {
  room: string
  prefix: boolean
  write: boolean
  admin: boolean
  /** Unix seconds; a bigint only beyond `Number.MAX_SAFE_INTEGER`. */
  expiresAt: number | bigint
}

/** Reads a token's claims WITHOUT checking its signature; null when it is not a Weaver token. */
export declare function decodeRoomToken (token: string): RoomTokenClaims | null

/** A Fetch `Headers`, or a Node `IncomingHttpHeaders`-like record (names in any case). */
export type WebhookHeaders =
  | { get (name: string): string | null }
  | Record<string, string | string[] | undefined>

/** The body of a room-change webhook (docs/operations.md, "Room-change webhooks"). */
export interface RoomUpdatedEvent {
  type: 'room.updated'
  room: string
  /** The room's durable update seq reached. */
  seq: number
  /** Milliseconds since the epoch when it was sent. */
  timestamp: number
}

export interface VerifyWebhookOptions {
  /** `whsec_<base64>` (as given to `--notify-secret`) or the raw bytes; several during a rotation. */
  secret: string | Uint8Array | ReadonlyArray<string | Uint8Array>
  headers: WebhookHeaders
  /** The raw request body, exactly as received. */
  body: string | Uint8Array
  /** Largest accepted distance of `webhook-timestamp` from now, in seconds (default 300). */
  toleranceSecs?: number
  /** Unix seconds (default: the clock). */
  now?: number
}

/** Verifies a signed delivery and returns its parsed JSON body; throws `WeaverError` otherwise. */
export declare function verifyWebhook<T = RoomUpdatedEvent> (options: VerifyWebhookOptions): T
