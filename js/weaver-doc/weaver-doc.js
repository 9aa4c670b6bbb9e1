//! weaver-doc.js — the JavaScript face of the Weaver document schema (docs/schema.md), the main
//! entry (`@weaver/doc`) of the package in js/weaver-doc.
//!
//! Reads and writes a Weaver workspace document (a plain `yjs` Y.Doc) following the schema
//! exactly, including the convergent reading rule for index entry status. Importable from Node
//! and the browser; depends only on `yjs`. It deliberately knows nothing about networking,
//! persistence, tokens or the bridge: pair it with y-websocket / y-indexeddb as you like (the
//! Node-only helpers are in server.js, `@weaver/doc/server`, so browsers never bundle them).
//
// The Rust twin is `crates/doc` (weaver-doc); both must produce identical `readBlocks` JSON.
// Types: weaver-doc.d.ts, written by hand; keep it in step with every export here.

import * as Y from 'yjs'

/** Rank of a status within one attempt: a higher rank wins over a lower one. */
export const STATUS_RANK = Object.freeze({ notStarted: 0, processing: 1, done: 2, error: 3 })

/** The four status names, in rank order. */
export const STATUSES = Object.freeze(['notStarted', 'processing', 'done', 'error'])

/** The origin the Weaver bridge uses for its own writes (the Rust `BRIDGE_ORIGIN`). */
export const BRIDGE_ORIGIN = 'weaver-bridge'

/** Name of the root map. */
export const BLOCKS = 'blocks'

const hasOwn = (o, k) => Object.prototype.hasOwnProperty.call(o, k)

const isPlainObject = (v) =>
  v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array) &&
  !(v instanceof Y.AbstractType)

/** The root `blocks` map of a document. */
export function getBlocksMap (doc) {
  return doc.getMap(BLOCKS)
}

/** Validated attempt number (positive safe integer) or null. Accepts numbers and bigints. */
function validAttempt (a) {
  if (typeof a === 'number') return Number.isSafeInteger(a) && a >= 1 ? a : null
  if (typeof a === 'bigint') {
    return a >= 1n && a <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(a) : null
  }
  return null
}

/** Is `r` a status record the reading rule accepts (rule 2)? */
export function isValidRecord (r) {
  return isPlainObject(r) && validAttempt(r.attempt) !== null &&
    typeof r.status === 'string' && hasOwn(STATUS_RANK, r.status)
}

const numOrNull = (v) => {
  if (typeof v === 'number' && Number.isFinite(v)) return v
  if (typeof v === 'bigint' && v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER)) return Number(v)
  return null
}

/**
 * The effective status of a logical entry, given its status records in reading order
 * (rule 3: greatest `(attempt, rank)`, first one wins ties; invalid records are ignored).
 * Returns `{status, attempt, api_call_id, result, error, completed_at}` with `null` for
 * absent optional fields; `{status: 'notStarted', attempt: 0, ...null}` without valid records.
 */
export function effectiveStatus (records) {
  let best = null
  let bestAttempt = 0
  let bestRank = -1
  for (const r of records) {
    if (!isValidRecord(r)) continue
    const a = validAttempt(r.attempt)
    const k = STATUS_RANK[r.status]
    if (best === null || a > bestAttempt || (a === bestAttempt && k > bestRank)) {
      best = r
      bestAttempt = a
      bestRank = k
    }
  }
  if (best === null) {
    return { status: 'notStarted', attempt: 0, api_call_id: null, result: null, error: null, completed_at: null }
  }
  return {
    status: best.status,
    attempt: bestAttempt,
    api_call_id: typeof best.api_call_id === 'string' ? best.api_call_id : null,
    result: isPlainObject(best.result) ? best.result : null,
    error: typeof best.error === 'string' ? best.error : null,
    completed_at: numOrNull(best.completed_at)
  }
}

/** The block's Y.Map, or null when absent (or not a Y.Map). */
function blockMap (doc, blockId) {
  const b = getBlocksMap(doc).get(blockId)
  return b instanceof Y.Map ? b : null
}

function indexingListOf (block) {
  const l = block.get('indexingList')
  return l instanceof Y.Array ? l : null
}

function statusLogOf (entry) {
  const l = entry.get('status_log')
  return l instanceof Y.Array ? l : null
}

/**
 * Logical entries of a block (rule 1), in display order:
 * `[{index_name, first: Y.Map, maps: Y.Map[], collection_configs, records: object[]}]`.
 */
export function logicalEntries (block) {
  const list = indexingListOf(block)
  if (list === null) return []
  const byName = new Map()
  const out = []
  list.forEach((e) => {
    if (!(e instanceof Y.Map)) return
    const name = e.get('index_name')
    if (typeof name !== 'string') return
    let le = byName.get(name)
    if (le === undefined) {
      const cc = e.get('collection_configs')
      le = { index_name: name, first: e, maps: [], collection_configs: isPlainObject(cc) ? cc : {}, records: [] }
      byName.set(name, le)
      out.push(le)
    }
    le.maps.push(e)
    const log = statusLogOf(e)
    if (log !== null) for (const r of log.toArray()) le.records.push(r)
  })
  return out
}

function findEntry (block, indexName) {
  return logicalEntries(block).find((le) => le.index_name === indexName) ?? null
}

function requireBlock (doc, blockId) {
  const b = blockMap(doc, blockId)
  if (b === null) throw new Error(`weaver-doc: no block ${JSON.stringify(blockId)}`)
  return b
}

function checkString (v, what) {
  if (typeof v !== 'string') throw new TypeError(`weaver-doc: ${what} must be a string`)
}

/**
 * Add a block `{id, type, content}` (content: initial text, default ""). Throws if a block with
 * this id already exists locally. Concurrent adds of the same id on two replicas: Yjs keeps one.
 */
export function addBlock (doc, { id, type, content = '' }, origin) {
  checkString(id, 'block id')
  checkString(type, 'block type')
  checkString(content, 'content')
  doc.transact(() => {
    const blocks = getBlocksMap(doc)
    if (blocks.has(id)) throw new Error(`weaver-doc: block ${JSON.stringify(id)} already exists`)
    const block = new Y.Map()
    block.set('id', id)
    block.set('type', type)
    block.set('content', new Y.Text(content))
    block.set('indexingList', new Y.Array())
    blocks.set(id, block)
  }, origin)
}

/** Remove a block (no-op if absent). Returns whether it existed. */
export function removeBlock (doc, blockId, origin) {
  let existed = false
  doc.transact(() => {
    const blocks = getBlocksMap(doc)
    existed = blocks.has(blockId)
    if (existed) blocks.delete(blockId)
  }, origin)
  return existed
}

const isHighSurrogate = (c) => c >= 0xd800 && c <= 0xdbff
const isLowSurrogate = (c) => c >= 0xdc00 && c <= 0xdfff

/** The block's content Y.Text (for editor bindings), or null. */
export function getBlockText (doc, blockId) {
  const b = blockMap(doc, blockId)
  if (b === null) return null
  const t = b.get('content')
  return t instanceof Y.Text ? t : null
}

/**
 * Replace `deleteCount` UTF-16 code units at `index` of the block's content with `text`.
 * Throws if the block is absent or the range is out of bounds.
 */
export function editContent (doc, blockId, index, deleteCount, text = '', origin) {
  checkString(text, 'text')
  doc.transact(() => {
    const t = getBlockText(doc, blockId)
    if (t === null) throw new Error(`weaver-doc: no block ${JSON.stringify(blockId)}`)
    if (!Number.isInteger(index) || !Number.isInteger(deleteCount) || index < 0 || deleteCount < 0 ||
        index + deleteCount > t.length) {
      throw new RangeError(`weaver-doc: range ${index}+${deleteCount} outside content of length ${t.length}`)
    }
    // Never cut a surrogate pair: Yjs would keep a lone surrogate where yrs shows U+FFFD.
    const s = t.toString()
    for (const pos of [index, index + deleteCount]) {
      if (isLowSurrogate(s.charCodeAt(pos)) && isHighSurrogate(s.charCodeAt(pos - 1))) {
        throw new RangeError(`weaver-doc: position ${pos} splits a surrogate pair`)
      }
    }
    if (deleteCount > 0) t.delete(index, deleteCount)
    if (text.length > 0) t.insert(index, text)
  }, origin)
}

/**
 * Ask for indexing of a block under `indexName`. Adds the entry (attempt 1) if the block has
 * no logical entry of that name, otherwise requests attempt A + 1 (A = current effective
 * attempt) on the existing entry; its collection_configs are left unchanged.
 * Returns the requested attempt number.
 */
export function requestIndex (doc, blockId, indexName, collectionConfigs = {}, origin) {
  checkString(indexName, 'index_name')
  if (!isPlainObject(collectionConfigs)) throw new TypeError('weaver-doc: collection_configs must be a plain object')
  let attempt = 0
  doc.transact(() => {
    const block = requireBlock(doc, blockId)
    const le = findEntry(block, indexName)
    if (le === null) {
      let list = indexingListOf(block)
      if (list === null) {
        list = new Y.Array()
        block.set('indexingList', list)
      }
      const entry = new Y.Map()
      entry.set('index_name', indexName)
      entry.set('collection_configs', collectionConfigs)
      attempt = 1
      entry.set('status_log', Y.Array.from([{ attempt, status: 'notStarted', at: Date.now() }]))
      list.push([entry])
    } else {
      attempt = effectiveStatus(le.records).attempt + 1
      pushRecord(le.first, { attempt, status: 'notStarted', at: Date.now() })
    }
  }, origin)
  return attempt
}

function pushRecord (entryMap, record) {
  let log = statusLogOf(entryMap)
  if (log === null) {
    log = new Y.Array()
    entryMap.set('status_log', log)
  }
  log.push([record])
}

/** Remove every entry named `indexName` from the block. Returns how many Y.Maps were removed. */
export function removeIndex (doc, blockId, indexName, origin) {
  let removed = 0
  doc.transact(() => {
    const block = blockMap(doc, blockId)
    if (block === null) return
    const list = indexingListOf(block)
    if (list === null) return
    // Delete from the end so earlier positions stay valid.
    for (let i = list.length - 1; i >= 0; i--) {
      const e = list.get(i)
      if (e instanceof Y.Map && e.get('index_name') === indexName) {
        list.delete(i, 1)
        removed++
      }
    }
  }, origin)
  return removed
}

/**
 * Record an outcome (normally the bridge's job): push `{attempt, status, api_call_id, result,
 * error, completed_at, at}` to the entry's first status_log. Returns false without writing when
 * the block or entry is gone, or when a record with the same attempt, status and api_call_id
 * is already present (so applying an outcome twice changes nothing).
 */
export function recordOutcome (doc, blockId, indexName, outcome, origin) {
  const { attempt, status, api_call_id: apiCallId, result, error, completed_at: completedAt } = outcome ?? {}
  if (validAttempt(attempt) === null) throw new TypeError('weaver-doc: attempt must be a positive integer')
  if (typeof status !== 'string' || !hasOwn(STATUS_RANK, status)) throw new TypeError(`weaver-doc: unknown status ${status}`)
  if (apiCallId != null) checkString(apiCallId, 'api_call_id')
  if (error != null) checkString(error, 'error')
  if (result != null && !isPlainObject(result)) throw new TypeError('weaver-doc: result must be a plain object')
  if (completedAt != null && numOrNull(completedAt) === null) throw new TypeError('weaver-doc: completed_at must be a number')
  let wrote = false
  doc.transact(() => {
    const block = blockMap(doc, blockId)
    if (block === null) return
    const le = findEntry(block, indexName)
    if (le === null) return
    const idOf = (v) => (typeof v === 'string' ? v : null)
    const dup = le.records.some((r) => isValidRecord(r) && validAttempt(r.attempt) === validAttempt(attempt) &&
      r.status === status && idOf(r.api_call_id) === idOf(apiCallId))
    if (dup) return
    const rec = { attempt: validAttempt(attempt), status }
    if (apiCallId != null) rec.api_call_id = apiCallId
    if (result != null) rec.result = result
    if (error != null) rec.error = error
    if (completedAt != null) rec.completed_at = numOrNull(completedAt)
    rec.at = Date.now()
    pushRecord(le.first, rec)
    wrote = true
  }, origin)
  return wrote
}

/** Typed JSON of one block (as in `readBlocks`), or null when absent. */
export function readBlock (doc, blockId) {
  const b = blockMap(doc, blockId)
  return b === null ? null : blockView(blockId, b)
}

function blockView (id, b) {
  const type = b.get('type')
  const content = b.get('content')
  return {
    id,
    type: typeof type === 'string' ? type : '',
    content: content instanceof Y.Text ? content.toString() : '',
    indexingList: logicalEntries(b).map((le) => ({
      index_name: le.index_name,
      collection_configs: le.collection_configs,
      ...effectiveStatus(le.records)
    }))
  }
}

/**
 * The typed JSON view of the whole document (docs/schema.md, "Typed JSON view"):
 * `{blocks: [...]}` sorted by id (UTF-16 code unit order), identical to Rust `to_json()`.
 */
export function readBlocks (doc) {
  const blocks = []
  getBlocksMap(doc).forEach((b, id) => {
    if (b instanceof Y.Map) blocks.push(blockView(id, b))
  })
  blocks.sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0))
  return { blocks }
}
