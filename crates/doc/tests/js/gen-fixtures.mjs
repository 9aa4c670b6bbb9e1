//! Writes JS → Rust interop fixtures: documents following docs/schema.md, produced by real
//! `yjs` (through @weaver/doc and raw yjs calls), as v1 update files plus the `readBlocks`
//! JSON that the Rust side must reproduce exactly.
//!
//! Usage: node gen-fixtures.mjs OUT_DIR [--no-random]
//! (--no-random leaves out the seeded random scenario, for the small committed fixture set)
//! Output: OUT_DIR/manifest.json = {yjs, scenarios: [{name, updates: [file], expected}]}
//! and OUT_DIR/<name>-NN.bin, one v1 update per file, to be applied in the listed order.
//! It does not compare anything itself beyond checking that its own replicas converged.

import * as fs from 'node:fs'
import * as path from 'node:path'
import { createRequire } from 'node:module'
import * as Y from 'yjs'
import * as W from '@weaver/doc'

const out = process.argv[2]
const withRandom = !process.argv.includes('--no-random')
if (!out) {
  console.error('usage: node gen-fixtures.mjs OUT_DIR')
  process.exit(2)
}
fs.mkdirSync(out, { recursive: true })

/** A Y.Doc with a fixed client id that records every update it emits. */
function replica (clientID) {
  const doc = new Y.Doc()
  doc.clientID = clientID
  const updates = []
  doc.on('update', (u, origin) => { if (origin !== 'sync') updates.push(u) })
  return { doc, updates }
}

/** Exchanges full state between replicas (origin 'sync', not recorded as own updates). */
function sync (...rs) {
  for (const a of rs) {
    for (const b of rs) {
      if (a !== b) Y.applyUpdate(b.doc, Y.encodeStateAsUpdate(a.doc, Y.encodeStateVector(b.doc)), 'sync')
    }
  }
}

const json = (v) => JSON.parse(JSON.stringify(v))
const scenarios = []

function emit (name, updates, expected) {
  const files = updates.map((u, i) => {
    const f = `${name}-${String(i).padStart(2, '0')}.bin`
    fs.writeFileSync(path.join(out, f), u)
    return f
  })
  scenarios.push({ name, updates: files, expected: json(expected) })
}

function assertConverged (...rs) {
  const views = rs.map((r) => JSON.stringify(W.readBlocks(r.doc)))
  for (const v of views) {
    if (v !== views[0]) throw new Error(`JS replicas diverged:\n${views.join('\n')}`)
  }
}

// 1. One writer, every operation, non-ASCII text.
{
  const a = replica(101)
  W.addBlock(a.doc, { id: 'b1', type: 'text', content: 'héllo 🌍 world' })
  W.editContent(a.doc, 'b1', 6, 2, '😀🎉') // replaces the 🌍 (2 UTF-16 units)
  W.editContent(a.doc, 'b1', 0, 0, 'Ωmega ')
  W.editContent(a.doc, 'b1', a.doc.getMap('blocks').get('b1').get('content').length, 0, ' 👋🏽')
  W.addBlock(a.doc, { id: 'b2', type: 'vector_collection', content: '' })
  W.addBlock(a.doc, { id: 'gone', type: 'text', content: 'bye' })
  W.requestIndex(a.doc, 'b1', 'search', { dim: 384, model: 'mini-🤖', nested: { k: [1, 2.5, null, true] } })
  W.recordOutcome(a.doc, 'b1', 'search', { attempt: 1, status: 'processing', api_call_id: 'call-1' }, W.BRIDGE_ORIGIN)
  W.recordOutcome(a.doc, 'b1', 'search', {
    attempt: 1, status: 'done', api_call_id: 'call-1', result: { chunks_indexed: 3, duration_ms: 12.5 }, completed_at: 1763900000000
  }, W.BRIDGE_ORIGIN)
  W.requestIndex(a.doc, 'b1', 'files', {})
  W.recordOutcome(a.doc, 'b1', 'files', { attempt: 1, status: 'error', api_call_id: 'call-2', error: 'HTTP 503: ünavailable', completed_at: 1763900000123.5 })
  W.requestIndex(a.doc, 'b1', 'files') // attempt 2 requested after an error
  W.requestIndex(a.doc, 'b2', 'tmp', { x: 1 })
  W.removeIndex(a.doc, 'b2', 'tmp')
  W.requestIndex(a.doc, 'b2', 'vec', { dim: 3 })
  W.removeBlock(a.doc, 'gone')
  emit('single-writer', a.updates, W.readBlocks(a.doc))
  // The same document as one full-state update.
  emit('single-writer-state', [Y.encodeStateAsUpdate(a.doc)], W.readBlocks(a.doc))
}

// 2. Two replicas editing concurrently: same-name entries, retries, status races, text.
{
  const a = replica(201)
  const b = replica(202)
  W.addBlock(a.doc, { id: 'doc', type: 'text', content: 'ab😀cd' })
  W.addBlock(a.doc, { id: 'other', type: 'text', content: 'x' })
  sync(a, b)
  // Concurrent text edits at the same spot, around an emoji.
  W.editContent(a.doc, 'doc', 2, 2, '🎉A') // replace 😀
  W.editContent(b.doc, 'doc', 4, 0, 'Bß')
  // Concurrent adds of the same index_name with different configs: one logical entry.
  W.requestIndex(a.doc, 'doc', 'search', { from: 'a' })
  W.requestIndex(b.doc, 'doc', 'search', { from: 'b' })
  sync(a, b)
  // Concurrent status writes for attempt 1 from two writers.
  W.recordOutcome(a.doc, 'doc', 'search', { attempt: 1, status: 'processing', api_call_id: 'c-a' })
  W.recordOutcome(b.doc, 'doc', 'search', { attempt: 1, status: 'done', api_call_id: 'c-b', result: { chunks_indexed: 1 }, completed_at: 1763900000001 })
  sync(a, b)
  // Both ask for a retry at the same time: one attempt (2), not two.
  W.requestIndex(a.doc, 'doc', 'search')
  W.requestIndex(b.doc, 'doc', 'search')
  // A late outcome of attempt 1 and the new attempt's progress, concurrently.
  W.recordOutcome(a.doc, 'doc', 'search', { attempt: 1, status: 'error', api_call_id: 'c-a', error: 'late' })
  W.recordOutcome(b.doc, 'doc', 'search', { attempt: 2, status: 'processing', api_call_id: 'c-2' })
  // Concurrent remove of a block vs edit inside it.
  W.removeBlock(a.doc, 'other')
  W.editContent(b.doc, 'other', 1, 0, 'yz')
  W.requestIndex(b.doc, 'other', 'search')
  sync(a, b)
  assertConverged(a, b)
  const view = W.readBlocks(a.doc)
  const e = view.blocks[0].indexingList
  if (e.length !== 1 || e[0].attempt !== 2 || e[0].status !== 'processing') {
    throw new Error(`unexpected concurrent outcome ${JSON.stringify(e)}`)
  }
  // Interleave the two replicas' updates (each replica's own order is kept).
  const inter = []
  for (let i = 0; i < Math.max(a.updates.length, b.updates.length); i++) {
    if (i < b.updates.length) inter.push(b.updates[i])
    if (i < a.updates.length) inter.push(a.updates[i])
  }
  emit('two-writers', inter, view)
}

// 3. Raw yjs writes the reading rule must tolerate: invalid records, odd values, odd ids.
{
  const a = replica(301)
  const blocks = a.doc.getMap('blocks')
  a.doc.transact(() => {
    const mk = (id, type, text) => {
      const m = new Y.Map()
      m.set('id', id)
      m.set('type', type)
      m.set('content', new Y.Text(text))
      m.set('indexingList', new Y.Array())
      blocks.set(id, m)
      return m
    }
    const r = mk('raw', 'text', 'raw')
    const entry = (name, configs, records) => {
      const e = new Y.Map()
      if (name !== undefined) e.set('index_name', name)
      if (configs !== undefined) e.set('collection_configs', configs)
      e.set('status_log', Y.Array.from(records))
      r.get('indexingList').push([e])
    }
    entry('valid-mixed', { a: 1 }, [
      { attempt: 0, status: 'done' }, // attempt 0: ignored
      { attempt: 1.5, status: 'done' }, // non-integer: ignored
      { attempt: '3', status: 'done' }, // string: ignored
      { attempt: 9, status: 'finished' }, // unknown status: ignored
      { attempt: 1, status: 'processing', api_call_id: 7, error: null, result: 'nope', completed_at: 'x' },
      'not an object',
      [1, 2],
      { attempt: 2, status: 'notStarted', at: 1 }
    ])
    entry(undefined, {}, [{ attempt: 5, status: 'done' }]) // no index_name: ignored
    entry(42, {}, [{ attempt: 5, status: 'done' }]) // non-string index_name: ignored
    entry('odd-configs', 'not-an-object', [
      { attempt: 3, status: 'done', result: { big: 1e300, neg: -0.25, s: '✓', undef: undefined, bytes: new Uint8Array([1, 2]) }, completed_at: 1.25 },
      { attempt: 3, status: 'done', api_call_id: 'second-tie-loses' }
    ])
    entry('valid-mixed', { ignored: true }, [{ attempt: 2, status: 'error', error: 'from the duplicate map' }])
    entry('empty', { e: [] }, [])
    // A bigint attempt is a valid integer too.
    entry('bigint', {}, [{ attempt: 4n, status: 'processing' }])
    // A block whose fields are missing or of the wrong type.
    const odd = new Y.Map()
    odd.set('type', 5)
    odd.set('content', 'plain string, not Y.Text')
    odd.set('indexingList', 'nope')
    blocks.set('odd', odd)
    // Not a block at all.
    blocks.set('scalar', 'just a string')
    // Ids that sort differently by UTF-8 bytes and by UTF-16 code units.
    mk('\uff01fullwidth', 'text', '')
    mk('😀emoji', 'text', '')
    mk('Zed', 'text', '')
  })
  emit('raw-yjs', a.updates, W.readBlocks(a.doc))
}

// 4. Seeded random operations on three replicas with partial, out-of-order, duplicated
// exchange; the updates are emitted shuffled with duplicates.
if (withRandom) {
  let seed = 0x5eed1234
  const rnd = (n) => { // mulberry32
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296 * n) | 0
  }
  const reps = [replica(401), replica(402), replica(403)]
  const pool = []
  for (const r of reps) r.doc.on('update', (u, origin) => { if (origin !== 'sync' && origin !== 'pool') pool.push(u) })
  const ids = ['r1', 'r2', 'r😀']
  const names = ['search', 'files']
  const texts = ['a', '😀', 'ßc', '🎉']
  W.addBlock(reps[0].doc, { id: 'r1', type: 'text', content: 'seed' })
  sync(...reps)
  for (let i = 0; i < 200; i++) {
    const r = reps[rnd(3)]
    const id = ids[rnd(3)]
    const name = names[rnd(2)]
    const len = W.getBlockText(r.doc, id)?.length ?? 0
    try {
      switch (rnd(9)) {
        case 0: if (!r.doc.getMap('blocks').has(id)) W.addBlock(r.doc, { id, type: 'text', content: texts[rnd(4)] }); break
        case 1: if (rnd(25) === 0) W.removeBlock(r.doc, id); break
        case 2: W.editContent(r.doc, id, rnd(len + 1), 0, texts[rnd(4)]); break
        case 3: { const at = rnd(len + 1); W.editContent(r.doc, id, at, Math.min(rnd(3), len - at), ''); break }
        case 4: W.requestIndex(r.doc, id, name, { n: rnd(100) }); break
        case 5: if (rnd(10) === 0) W.removeIndex(r.doc, id, name); break
        case 6: case 7: {
          const cur = W.readBlock(r.doc, id)?.indexingList.find((e) => e.index_name === name)?.attempt ?? 0
          const attempt = Math.max(1, cur - rnd(2))
          const status = ['processing', 'done', 'error'][rnd(3)]
          W.recordOutcome(r.doc, id, name, {
            attempt, status, api_call_id: `c${rnd(3)}`,
            ...(status === 'done' ? { result: { chunks_indexed: rnd(9) }, completed_at: 1763900000000 + i } : {}),
            ...(status === 'error' ? { error: `e${i}`, completed_at: 1763900000000 + i } : {})
          }, W.BRIDGE_ORIGIN)
          break
        }
        case 8: for (let k = rnd(4); k > 0 && pool.length > 0; k--) Y.applyUpdate(r.doc, pool[rnd(pool.length)], 'pool'); break
      }
    } catch (e) {
      if (!(e instanceof RangeError) && !/no block/.test(e.message)) throw e
    }
  }
  sync(...reps)
  assertConverged(...reps)
  const order = pool.map((u, i) => [rnd(1 << 30), u])
  order.sort((x, y) => x[0] - y[0])
  const shuffled = order.map(([, u]) => u)
  for (let k = 0; k < 5 && pool.length > 0; k++) shuffled.push(pool[rnd(pool.length)])
  emit('random-js', shuffled, W.readBlocks(reps[0].doc))
}

const require = createRequire(import.meta.url)
const yjsVersion = JSON.parse(fs.readFileSync(require.resolve('yjs/package.json'), 'utf8')).version
fs.writeFileSync(path.join(out, 'manifest.json'), JSON.stringify({ yjs: yjsVersion, scenarios }, null, 2))
console.log(`wrote ${scenarios.length} scenarios with yjs ${yjsVersion} to ${out}`)
