// Uses every export of the package through its public names, so `tsc --noEmit` (run by
// tests/js/jspkg.test.mjs) fails when weaver-doc.d.ts / server.d.ts drift from what the
// JavaScript offers or stop type-checking. Never executed.

import * as Y from 'yjs'
import {
  BLOCKS, BRIDGE_ORIGIN, STATUSES, STATUS_RANK, addBlock, editContent, effectiveStatus, getBlockText,
  getBlocksMap, isValidRecord, logicalEntries, readBlock, readBlocks, recordOutcome, removeBlock,
  removeIndex, requestIndex
} from '@weaver/doc'
import type {
  BlockView, BlocksView, EffectiveStatus, IndexEntryView, JsonObject, LogicalEntry, NewBlock, Outcome,
  Status, StatusRecord
} from '@weaver/doc'
import {
  DEFAULT_WEBHOOK_TOLERANCE_SECS, MIN_KEY_BYTES, WeaverError, decodeRoomToken, generateKey, mintRoomToken,
  parseKey, verifyWebhook
} from '@weaver/doc/server'
import type {
  MintOptions, RoomTokenClaims, RoomUpdatedEvent, Ttl, VerifyWebhookOptions, WeaverErrorCode, WebhookHeaders
} from '@weaver/doc/server'

const doc = new Y.Doc()
const blocks: Y.Map<unknown> = getBlocksMap(doc)
const rootName: 'blocks' = BLOCKS
const origin: 'weaver-bridge' = BRIDGE_ORIGIN
const first: Status = STATUSES[0]
const rank: number = STATUS_RANK[first]
const nb: NewBlock = { id: 'b1', type: 'text', content: 'hello' }
addBlock(doc, nb, 'local')
addBlock(doc, { id: 'b2', type: 'text' })
const text: Y.Text | null = getBlockText(doc, 'b1')
editContent(doc, 'b1', 0, 0, 'x', 'local')
editContent(doc, 'b1', 0, 1)
const configs: JsonObject = { dim: 384 }
const attempt: number = requestIndex(doc, 'b1', 'search', configs, 'local')
requestIndex(doc, 'b1', 'other')
const outcome: Outcome = { attempt, status: 'done', api_call_id: 'c1', result: { ok: true }, completed_at: 1 }
const wrote: boolean = recordOutcome(doc, 'b1', 'search', outcome, BRIDGE_ORIGIN)
recordOutcome(doc, 'b1', 'search', { attempt: 2n, status: 'error', error: 'boom', api_call_id: null })
const view: BlocksView = readBlocks(doc)
const one: BlockView | null = readBlock(doc, 'b1')
const entries: IndexEntryView[] = one === null ? [] : one.indexingList
const block = blocks.get('b1')
const les: LogicalEntry[] = block instanceof Y.Map ? logicalEntries(block) : []
const records: unknown[] = les[0]?.records ?? []
const eff: EffectiveStatus = effectiveStatus(records)
const candidate: unknown = records[0]
if (isValidRecord(candidate)) {
  const r: StatusRecord = candidate
  const s: Status = r.status
  void s
}
const removed: number = removeIndex(doc, 'b1', 'other', 'local')
const existed: boolean = removeBlock(doc, 'b2', 'local')

const hex: string = generateKey()
const bytes: Uint8Array = parseKey(hex)
const min: 32 = MIN_KEY_BYTES
const ttl: Ttl = '15m'
const opts: MintOptions = { key: hex, room: 'doc-1', write: true, expiresIn: ttl }
const token: string = mintRoomToken(opts)
mintRoomToken({ key: bytes, room: 'team-7-', prefix: true, expiresAt: 1_700_000_000, now: 0 })
mintRoomToken({ key: bytes, admin: true, expiresIn: 600 })
// @ts-expect-error a token needs a room unless it is an admin token for every room
mintRoomToken({ key: bytes })
const claims: RoomTokenClaims | null = decodeRoomToken(token)

const headers: WebhookHeaders = { 'webhook-id': 'msg_1', 'webhook-timestamp': '1', 'webhook-signature': 'v1,AAAA' }
const vopts: VerifyWebhookOptions = { secret: ['whsec_AAAA', new Uint8Array(32)], headers, body: '{}', toleranceSecs: DEFAULT_WEBHOOK_TOLERANCE_SECS, now: 1 }
try {
  const event: RoomUpdatedEvent = verifyWebhook(vopts)
  const room: string = event.room
  const seq: number = event.seq
  void room; void seq
  const custom: { type: string } = verifyWebhook<{ type: string }>({ secret: 'whsec_AAAA', headers: { get: (name: string) => (name === 'webhook-id' ? 'msg_1' : null) }, body: new Uint8Array(0) })
  void custom
} catch (e) {
  if (e instanceof WeaverError) {
    const code: WeaverErrorCode = e.code
    void code
  }
}

void [rootName, origin, rank, text, wrote, view, entries, eff, removed, existed, min, claims]
