// Writes real Yjs 13.6 (and y-protocols) output as seed files for the weaver-protocol tests and
// fuzz targets. Deterministic: fixed client ids, fixed guids, a seeded PRNG, so re-running it
// produces the same bytes and a diff means Yjs changed.
//
// Usage (from the repository root, after `npm ci`):
//   node crates/protocol/tests/js/make-corpus.mjs
//
// Writes:
//   fuzz/corpus/validate_update/yjs-*.bin   v1 updates the validator must accept and yrs decode
//   fuzz/corpus/state_vector/yjs-*.bin      state vectors
//   fuzz/corpus/awareness/yjs-*.bin         awareness updates
//   fuzz/corpus/decode_message/yjs-*.bin    whole y-websocket frames
//   fuzz/corpus/token/yjs-*.bin             access tokens (crates/auth format, fuzz target key)
//   fuzz/corpus/webhook_verify/yjs-*.bin    Standard Webhooks deliveries signed with node:crypto
//   crates/protocol/tests/data/divergent/*.bin  Yjs output that yrs 0.28.1 reads differently,
//                                               which the validator must refuse
import { createHmac } from 'node:crypto'
import { createRequire } from 'node:module'
import { mkdirSync, writeFileSync, readdirSync, unlinkSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

// Resolve packages from the repository root's node_modules (npm workspace).
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..')
const require = createRequire(join(root, 'package.json'))
const Y = require('yjs')
const awarenessProtocol = require('y-protocols/awareness')
const syncProtocol = require('y-protocols/sync')
const encoding = require('lib0/encoding')

const out = {
  update: join(root, 'fuzz/corpus/validate_update'),
  sv: join(root, 'fuzz/corpus/state_vector'),
  awareness: join(root, 'fuzz/corpus/awareness'),
  message: join(root, 'fuzz/corpus/decode_message'),
  token: join(root, 'fuzz/corpus/token'),
  webhook: join(root, 'fuzz/corpus/webhook_verify'),
  divergent: join(root, 'crates/protocol/tests/data/divergent'),
}
for (const dir of Object.values(out)) {
  mkdirSync(dir, { recursive: true })
  // Only our own files are replaced; fuzzer-found inputs (other names) are kept.
  for (const f of readdirSync(dir)) if (f.startsWith('yjs-')) unlinkSync(join(dir, f))
}

let written = 0
const put = (kind, name, bytes) => {
  writeFileSync(join(out[kind], `yjs-${name}.bin`), Buffer.from(bytes))
  written++
}

// mulberry32: tiny seeded PRNG so "random" documents are reproducible.
const prng = (seed) => () => {
  seed |= 0
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

const newDoc = (clientID, opts = {}) => {
  const doc = new Y.Doc(opts)
  doc.clientID = clientID
  return doc
}

// Records every incremental update a doc emits, and writes them (and their merge) at the end.
const record = (doc) => {
  const updates = []
  doc.on('update', (u) => updates.push(u))
  return updates
}

const emitDoc = (name, doc, updates) => {
  put('update', `${name}-full`, Y.encodeStateAsUpdate(doc))
  put('sv', `${name}`, Y.encodeStateVector(doc))
  if (updates && updates.length > 0) {
    updates.slice(0, 4).forEach((u, i) => put('update', `${name}-inc${i}`, u))
    put('update', `${name}-inc-last`, updates[updates.length - 1])
    put('update', `${name}-merged`, Y.mergeUpdates(updates))
    if (updates.length > 2) {
      // A diff against the state after the first half of the updates.
      const half = newDoc(999)
      updates.slice(0, updates.length >> 1).forEach((u) => Y.applyUpdate(half, u))
      put('update', `${name}-diff`, Y.encodeStateAsUpdate(doc, Y.encodeStateVector(half)))
    }
  }
}

// --- 1. plain text with edits and deletions, including astral characters
{
  const doc = newDoc(1)
  const ups = record(doc)
  const t = doc.getText('text')
  t.insert(0, 'hello world')
  t.insert(5, ', dear')
  t.delete(0, 2)
  t.insert(t.length, ' 😀 𝄞 ünïcödé')
  t.delete(3, 4)
  emitDoc('text', doc, ups)
}

// --- 2. rich text: attributes, formatting, embeds, deleting formatted runs
{
  const doc = newDoc(2)
  const ups = record(doc)
  const t = doc.getText('rich')
  t.insert(0, 'Bold and italic', { bold: true })
  t.format(5, 3, { italic: true, color: '#ff0000' })
  t.insertEmbed(4, { image: 'https://example.com/a.png', size: [10, 20], meta: { alt: 'a', n: null } })
  t.insert(0, 'link ', { link: { href: 'https://example.com', target: null } })
  t.format(0, 4, { link: null })
  t.delete(2, 6)
  emitDoc('richtext', doc, ups)
}

// --- 3. maps of nested JSON-like values (ContentAny with every Any tag)
{
  const doc = newDoc(3)
  const ups = record(doc)
  const m = doc.getMap('map')
  doc.transact(() => {
    m.set('int', 42)
    m.set('neg', -7)
    m.set('negzero', -0)
    m.set('big', 2 ** 40)
    m.set('float', 3.25)
    m.set('double', Math.PI)
    m.set('bigint', 1234567890123456789n)
    m.set('str', 'text ✓')
    m.set('bool', true)
    m.set('no', false)
    m.set('null', null)
    m.set('undef', undefined)
    m.set('bytes', new Uint8Array([0, 1, 2, 255]))
    m.set('nested', { a: [1, [2, [3, { deep: [true, null, 'x'] }]]], b: { c: { d: { e: {} } } }, empty: [] })
  })
  m.set('int', 43)
  m.delete('neg')
  emitDoc('map-any', doc, ups)
}

// --- 4. nested shared types: arrays of maps of arrays of text
{
  const doc = newDoc(4)
  const ups = record(doc)
  const arr = doc.getArray('arr')
  const inner = new Y.Map()
  arr.insert(0, [1, 'two', { three: 3 }, inner])
  inner.set('list', new Y.Array())
  inner.get('list').insert(0, ['a', 'b', new Y.Text('nested text')])
  inner.set('text', new Y.Text())
  inner.get('text').insert(0, 'inner', { bold: true })
  arr.push([new Uint8Array([9, 9]), [1, 2, [3]]])
  arr.delete(1, 1)
  inner.delete('list')
  emitDoc('nested-types', doc, ups)
}

// --- 5. XML: fragments, elements with attributes, text with formatting, nesting, deletions
{
  const doc = newDoc(5)
  const ups = record(doc)
  const frag = doc.getXmlFragment('prosemirror')
  const p = new Y.XmlElement('paragraph')
  const txt = new Y.XmlText()
  frag.insert(0, [p])
  p.insert(0, [txt])
  txt.insert(0, 'Hello ')
  txt.insert(6, 'xml', { strong: {} })
  p.setAttribute('align', 'left')
  const list = new Y.XmlElement('bullet_list')
  const item = new Y.XmlElement('list_item')
  list.insert(0, [item])
  item.insert(0, [new Y.XmlElement('paragraph')])
  frag.insert(1, [list, new Y.XmlText('tail')])
  p.removeAttribute('align')
  frag.delete(2, 1)
  emitDoc('xml', doc, ups)
}

// --- 6. subdocuments with options
{
  const doc = newDoc(6)
  const ups = record(doc)
  const folder = doc.getMap('folder')
  folder.set('a', new Y.Doc({ guid: 'subdoc-a' }))
  folder.set('b', new Y.Doc({ guid: 'subdoc-b', autoLoad: true, meta: { title: 'B', tags: ['x', { y: [1] }] } }))
  doc.getArray('docs').insert(0, [new Y.Doc({ guid: 'subdoc-c', shouldLoad: false })])
  folder.delete('a')
  emitDoc('subdocs', doc, ups)
}

// --- 7. several clients editing, deleting each other's content, merged and exchanged
{
  const a = newDoc(71)
  const b = newDoc(72)
  const c = newDoc(73)
  const all = []
  for (const d of [a, b, c]) d.on('update', (u) => all.push(u))
  const sync = () => {
    for (const x of [a, b, c]) for (const y of [a, b, c]) if (x !== y) Y.applyUpdate(y, Y.encodeStateAsUpdate(x, Y.encodeStateVector(y)))
  }
  a.getText('t').insert(0, 'aaaa')
  b.getArray('l').insert(0, [1, 2, 3])
  sync()
  b.getText('t').insert(2, 'BB')
  c.getText('t').delete(0, 3)
  a.getArray('l').delete(1, 1)
  c.getMap('m').set('k', { from: 'c' })
  sync()
  a.getMap('m').delete('k')
  sync()
  emitDoc('multiclient', a, all)
  // A gap: b's and c's later updates without the earlier ones makes mergeUpdates emit Skip structs.
  put('update', 'multiclient-gap-merged', Y.mergeUpdates([all[0], all[all.length - 1], all[all.length - 2]]))
}

// --- 8. garbage collection: deleted nested types become GC structs, deleted text ContentDeleted
{
  const doc = newDoc(8)
  const ups = record(doc)
  const m = doc.getMap('m')
  const nested = new Y.Map()
  m.set('gone', nested)
  nested.set('x', new Y.Array())
  nested.get('x').insert(0, [1, 2, 3, 'four'])
  doc.getText('t').insert(0, 'delete most of this text')
  doc.getText('t').delete(0, 20)
  m.delete('gone')
  emitDoc('gc', doc, ups)
  const nogc = newDoc(81, { gc: false })
  const ups2 = record(nogc)
  nogc.getText('t').insert(0, 'kept tombstones')
  nogc.getText('t').delete(0, 5)
  emitDoc('nogc', nogc, ups2)
}

// --- 9. typing one character at a time (many small updates) and a long paste
{
  const doc = newDoc(9)
  const ups = record(doc)
  const t = doc.getText('typing')
  const s = 'The quick brown fox jumps over the lazy dog. '
  for (let i = 0; i < 120; i++) t.insert(i, s[i % s.length])
  for (let i = 0; i < 30; i++) t.delete(10 + i, 1)
  t.insert(0, 'x'.repeat(5000))
  emitDoc('typing', doc, ups)
}

// --- 10. seeded random documents over all types and several clients
for (let seed = 1; seed <= 12; seed++) {
  const rnd = prng(seed)
  const pick = (arr) => arr[Math.floor(rnd() * arr.length)]
  const docs = [newDoc(1000 + seed * 10), newDoc(1001 + seed * 10)]
  const ups = []
  docs.forEach((d) => d.on('update', (u) => ups.push(u)))
  const value = (depth) => {
    const k = Math.floor(rnd() * (depth > 3 ? 5 : 8))
    switch (k) {
      case 0: return Math.floor(rnd() * 2 ** 31) * (rnd() < 0.5 ? -1 : 1)
      case 1: return rnd() * 1000
      case 2: return pick(['', 'a', 'äöü', '😀', 'x'.repeat(50)])
      case 3: return pick([true, false, null])
      case 4: return new Uint8Array([Math.floor(rnd() * 256)])
      case 5: return [value(depth + 1), value(depth + 1)]
      case 6: return { k: value(depth + 1), [pick(['a', 'b', 'ç'])]: value(depth + 1) }
      default: return 2 ** 33 + 0.5
    }
  }
  for (let step = 0; step < 60; step++) {
    const d = pick(docs)
    const t = d.getText('t')
    const a = d.getArray('a')
    const m = d.getMap('m')
    const x = d.getXmlFragment('x')
    switch (Math.floor(rnd() * 9)) {
      case 0: t.insert(Math.floor(rnd() * (t.length + 1)), pick(['ab', 'ü', '😀', 'line\n']), rnd() < 0.3 ? { bold: true } : undefined); break
      case 1: if (t.length > 0) { const i = Math.floor(rnd() * t.length); t.delete(i, Math.min(3, t.length - i)) } break
      case 2: if (t.length > 1) t.format(0, Math.floor(rnd() * t.length), { italic: rnd() < 0.5 ? true : null }); break
      case 3: a.insert(Math.floor(rnd() * (a.length + 1)), [value(0)]); break
      case 4: if (a.length > 0) a.delete(Math.floor(rnd() * a.length), 1); break
      case 5: m.set(pick(['k1', 'k2', 'k3']), value(0)); break
      case 6: m.delete(pick(['k1', 'k2', 'k3'])); break
      case 7: x.insert(0, [rnd() < 0.5 ? new Y.XmlElement(pick(['p', 'h1'])) : new Y.XmlText('t')]); break
      case 8: t.insertEmbed(0, { embed: value(2) }); break
    }
    if (rnd() < 0.3) {
      Y.applyUpdate(docs[0], Y.encodeStateAsUpdate(docs[1]))
      Y.applyUpdate(docs[1], Y.encodeStateAsUpdate(docs[0]))
    }
  }
  Y.applyUpdate(docs[0], Y.encodeStateAsUpdate(docs[1]))
  emitDoc(`random${seed}`, docs[0], ups)
}

// --- 10b. Skip structs (a merge of non-adjacent updates of one client) and a nested fragment
{
  const doc = newDoc(17)
  const ups = record(doc)
  const t = doc.getText('t')
  t.insert(0, 'a')
  t.insert(1, 'bb')
  t.insert(3, 'ccc')
  doc.getMap('m').set('frag', new Y.XmlFragment())
  doc.getMap('m').get('frag').insert(0, [new Y.XmlText('in a nested fragment')])
  put('update', 'skip-merged', Y.mergeUpdates([ups[0], ups[2]]))
  put('update', 'skip-merged-3', Y.mergeUpdates([ups[0], ups[2], ups[4]]))
  emitDoc('nested-fragment', doc, ups)
}

// --- 11. the empty update and an empty doc
put('update', 'empty', Y.encodeStateAsUpdate(new Y.Doc()))

// --- 12. awareness updates (y-protocols) and whole y-websocket frames
{
  const doc = newDoc(12)
  const aw = new awarenessProtocol.Awareness(doc)
  aw.setLocalState({ user: { name: 'Ada', color: '#30bced' }, cursor: { anchor: 3, head: 7 } })
  const u1 = awarenessProtocol.encodeAwarenessUpdate(aw, [doc.clientID])
  put('awareness', 'state', u1)
  aw.setLocalState(null)
  put('awareness', 'removed', awarenessProtocol.encodeAwarenessUpdate(aw, [doc.clientID]))
  const doc2 = newDoc(13)
  const aw2 = new awarenessProtocol.Awareness(doc2)
  aw2.setLocalState({ user: { name: 'Bob 😀' }, n: [1, 2, { deep: true }] })
  awarenessProtocol.applyAwarenessUpdate(aw2, u1, 'remote')
  put('awareness', 'two-clients', awarenessProtocol.encodeAwarenessUpdate(aw2, [...aw2.getStates().keys()]))
  aw.destroy()
  aw2.destroy()

  const frame = (write) => {
    const enc = encoding.createEncoder()
    write(enc)
    return encoding.toUint8Array(enc)
  }
  const d = newDoc(14)
  d.getText('t').insert(0, 'frame')
  put('message', 'step1', frame((e) => { encoding.writeVarUint(e, 0); syncProtocol.writeSyncStep1(e, d) }))
  put('message', 'step2', frame((e) => { encoding.writeVarUint(e, 0); syncProtocol.writeSyncStep2(e, d) }))
  put('message', 'update', frame((e) => { encoding.writeVarUint(e, 0); syncProtocol.writeUpdate(e, Y.encodeStateAsUpdate(d)) }))
  put('message', 'awareness', frame((e) => { encoding.writeVarUint(e, 1); encoding.writeVarUint8Array(e, u1) }))
  put('message', 'query-awareness', frame((e) => { encoding.writeVarUint(e, 3) }))
  put('message', 'auth-denied', frame((e) => { encoding.writeVarUint(e, 2); encoding.writeVarUint(e, 0); encoding.writeVarString(e, 'no access') }))
}

// --- 13. Yjs output yrs 0.28.1 decodes differently (the validator must refuse these)
{
  const doc = newDoc(15)
  doc.getXmlFragment('x').insert(0, [new Y.XmlHook('my-hook')])
  writeFileSync(join(out.divergent, 'yjs-xmlhook.bin'), Y.encodeStateAsUpdate(doc))
  const doc2 = newDoc(16)
  doc2.getMap('m').set('hook', new Y.XmlHook('other'))
  writeFileSync(join(out.divergent, 'yjs-xmlhook-in-map.bin'), Y.encodeStateAsUpdate(doc2))
  written += 2
}

// --- 14. access tokens, minted as the weaver-auth crate docs describe, with the token fuzz
// target's key, so the fuzzer starts from validly signed shapes.
{
  const key = Buffer.from('0123456789abcdef0123456789abcdef')
  const mint = ({ room, prefix = false, write = false, admin = false, expiresAt }) => {
    const name = Buffer.from(room, 'utf8')
    const payload = Buffer.alloc(10 + name.length)
    payload[0] = 1
    payload[1] = (prefix ? 1 : 0) | (write ? 2 : 0) | (admin ? 4 : 0)
    payload.writeBigUInt64BE(BigInt(expiresAt), 2)
    name.copy(payload, 10)
    const tag = createHmac('sha256', key).update('weaver-access-token\n').update(payload).digest()
    return payload.toString('base64url') + '.' + tag.toString('base64url')
  }
  put('token', 'room-write', Buffer.from(mint({ room: 'workspace-42', write: true, expiresAt: 1800000000 })))
  put('token', 'prefix-read', Buffer.from(mint({ room: 'team-7/', prefix: true, expiresAt: 1800000000 })))
  put('token', 'admin-all', Buffer.from(mint({ room: '', prefix: true, write: true, admin: true, expiresAt: 1800000000 })))
  put('token', 'expired', Buffer.from(mint({ room: 'old', expiresAt: 1600000000 })))
}

// --- 15. Standard Webhooks deliveries as an external API sends them to the bridge, in the
// webhook_verify target's layout: secret, webhook-id, webhook-timestamp, webhook-signature, body
// (newline separated; the body is the rest). Signed here with node:crypto, independently of the
// Rust signer. The target verifies at now = 1700000000 with a 300 s tolerance.
{
  const now = 1700000000
  const secretNew = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'
  const secretOld = 'whsec_' + Buffer.from('weaver-demo-webhook-secret-32b!!').toString('base64')
  const sign = (secret, id, ts, body) => {
    const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64')
    return 'v1,' + createHmac('sha256', key).update(`${id}.${ts}.`).update(body).digest('base64')
  }
  const delivery = (secret, id, ts, sig, body) => Buffer.concat([
    Buffer.from([secret, id, String(ts), sig].join('\n') + '\n'), Buffer.from(body)
  ])
  const completed = JSON.stringify({ type: 'completed', external_id: 'job_8f2c1a', data: { vectors: 3, model: 'e5-small' } })
  const id = 'msg_2KWPBgLlAfxdpx2AI54pPJ85f4W'
  put('webhook', 'completed', delivery(secretNew, id, now, sign(secretNew, id, now, completed), completed))
  // Rotation: the sender signs with both secrets and adds an asymmetric entry we skip.
  const processing = JSON.stringify({ type: 'processing', external_id: 'job_8f2c1a' })
  const id2 = 'msg_2KWPBgLlAfxdpx2AI54pPJ85f4X'
  put('webhook', 'rotation', delivery(secretNew, id2, now - 12, [
    'v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg==',
    sign(secretOld, id2, now - 12, processing), sign(secretNew, id2, now - 12, processing)
  ].join(' '), processing))
  const failed = JSON.stringify({ type: 'failed', external_id: 'job_77', error: 'upstream 503', retryable: true }, null, 2)
  put('webhook', 'failed-multiline', delivery(secretNew, 'msg_77', now + 30, sign(secretNew, 'msg_77', now + 30, failed), failed))
  put('webhook', 'expired', delivery(secretNew, id, now - 600, sign(secretNew, id, now - 600, completed), completed))
  put('webhook', 'tampered', delivery(secretNew, id, now, sign(secretNew, id, now, completed), completed.replace('3', '4')))
  const bare = secretOld.slice('whsec_'.length)
  put('webhook', 'bare-secret', delivery(bare, 'evt_1', now, sign(secretOld, 'evt_1', now, '{}'), '{}'))
  put('webhook', 'no-signature', Buffer.from(`${secretNew}\n${id}\n${now}`))
}

console.log(`wrote ${written} files`)
