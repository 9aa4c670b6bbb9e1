//! node:test unit tests of `@weaver/doc` (js/weaver-doc/weaver-doc.js, the JavaScript face of
//! docs/schema.md): validation, the reading rule, origins and undo scoping. Run by
//! `cargo test -p weaver-doc` (interop.rs) with `node --test`; cross-language equality is
//! checked elsewhere (interop.rs).

import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as Y from 'yjs'
import * as W from '@weaver/doc'

const newDoc = (id = 1) => {
  const d = new Y.Doc()
  d.clientID = id
  return d
}
const sync = (a, b) => {
  Y.applyUpdate(b, Y.encodeStateAsUpdate(a, Y.encodeStateVector(b)))
  Y.applyUpdate(a, Y.encodeStateAsUpdate(b, Y.encodeStateVector(a)))
}

test('blocks and UTF-16 text edits', () => {
  const d = newDoc()
  W.addBlock(d, { id: 'b', type: 'text', content: 'a😀b' })
  assert.throws(() => W.addBlock(d, { id: 'b', type: 'text' }), /already exists/)
  assert.equal(W.getBlockText(d, 'b').length, 4)
  W.editContent(d, 'b', 3, 1, '🎉')
  assert.equal(W.readBlock(d, 'b').content, 'a😀🎉')
  assert.throws(() => W.editContent(d, 'b', 2, 0, 'x'), RangeError) // inside 😀
  assert.throws(() => W.editContent(d, 'b', 1, 1, ''), RangeError) // half of 😀
  assert.throws(() => W.editContent(d, 'b', 6, 0, 'x'), RangeError)
  assert.throws(() => W.editContent(d, 'nope', 0, 0, 'x'), /no block/)
  assert.equal(W.readBlock(d, 'b').content, 'a😀🎉', 'failed edits write nothing')
  assert.equal(W.removeBlock(d, 'b'), true)
  assert.equal(W.removeBlock(d, 'b'), false)
  assert.deepEqual(W.readBlocks(d), { blocks: [] })
})

test('requestIndex, recordOutcome and the reading rule', () => {
  const d = newDoc()
  W.addBlock(d, { id: 'b', type: 'text', content: '' })
  assert.equal(W.requestIndex(d, 'b', 's', { dim: 3 }), 1)
  assert.equal(W.requestIndex(d, 'b', 's', { dim: 9 }), 2)
  assert.throws(() => W.requestIndex(d, 'b', 's', [1]), TypeError)
  assert.throws(() => W.requestIndex(d, 'nope', 's'), /no block/)
  let e = W.readBlock(d, 'b').indexingList[0]
  assert.deepEqual(e, {
    index_name: 's', collection_configs: { dim: 3 }, status: 'notStarted', attempt: 2,
    api_call_id: null, result: null, error: null, completed_at: null
  })
  assert.equal(W.recordOutcome(d, 'b', 's', { attempt: 2, status: 'processing', api_call_id: 'c' }), true)
  assert.equal(W.recordOutcome(d, 'b', 's', { attempt: 2, status: 'processing', api_call_id: 'c' }), false)
  assert.equal(W.recordOutcome(d, 'b', 's', { attempt: 1, status: 'error', error: 'late' }), true)
  assert.equal(W.recordOutcome(d, 'b', 'other', { attempt: 1, status: 'done' }), false)
  assert.equal(W.recordOutcome(d, 'gone', 's', { attempt: 1, status: 'done' }), false)
  assert.throws(() => W.recordOutcome(d, 'b', 's', { attempt: 0, status: 'done' }), TypeError)
  assert.throws(() => W.recordOutcome(d, 'b', 's', { attempt: 1, status: 'finished' }), TypeError)
  e = W.readBlock(d, 'b').indexingList[0]
  assert.equal(e.status, 'processing')
  assert.equal(e.attempt, 2)
  assert.equal(e.api_call_id, 'c')
  W.recordOutcome(d, 'b', 's', { attempt: 2, status: 'done', api_call_id: 'c', result: { chunks_indexed: 2 }, completed_at: 5 })
  e = W.readBlock(d, 'b').indexingList[0]
  assert.deepEqual([e.status, e.result, e.completed_at], ['done', { chunks_indexed: 2 }, 5])
  assert.equal(W.removeIndex(d, 'b', 's'), 1)
  assert.equal(W.removeIndex(d, 'b', 's'), 0)
})

test('effectiveStatus: max by (attempt, rank), first of ties, invalid ignored', () => {
  const none = W.effectiveStatus([])
  assert.deepEqual([none.status, none.attempt], ['notStarted', 0])
  const r = W.effectiveStatus([
    { attempt: 1, status: 'error' },
    { attempt: 2, status: 'notStarted' },
    { attempt: 3, status: 'bogus' },
    { attempt: 0, status: 'done' },
    { attempt: 2.5, status: 'done' },
    'junk'
  ])
  assert.deepEqual([r.status, r.attempt], ['notStarted', 2])
  const tie = W.effectiveStatus([
    { attempt: 1, status: 'done', api_call_id: 'first' },
    { attempt: 1, status: 'done', api_call_id: 'second' }
  ])
  assert.equal(tie.api_call_id, 'first')
  assert.deepEqual(Object.keys(W.STATUS_RANK), W.STATUSES)
})

test('concurrent same-name adds read as one entry; removeIndex removes both', () => {
  const a = newDoc(1)
  const b = newDoc(2)
  W.addBlock(a, { id: 'x', type: 'text' })
  sync(a, b)
  W.requestIndex(a, 'x', 's', { by: 'a' })
  W.requestIndex(b, 'x', 's', { by: 'b' })
  sync(a, b)
  assert.equal(W.readBlock(a, 'x').indexingList.length, 1)
  assert.deepEqual(W.readBlocks(a), W.readBlocks(b))
  assert.equal(W.requestIndex(a, 'x', 's'), 2)
  assert.equal(W.requestIndex(b, 'x', 's'), 2)
  sync(a, b)
  assert.equal(W.readBlock(b, 'x').indexingList[0].attempt, 2)
  assert.equal(W.removeIndex(a, 'x', 's'), 2)
})

test('blocks sort by UTF-16 code units', () => {
  const d = newDoc()
  for (const id of ['！', '😀', 'Z', 'a']) W.addBlock(d, { id, type: 'text' })
  assert.deepEqual(W.readBlocks(d).blocks.map((b) => b.id), ['Z', 'a', '😀', '！'])
})

test('writes carry their origin; an UndoManager on "local" never undoes the bridge', () => {
  const d = newDoc()
  const origins = []
  d.on('afterTransaction', (tr) => origins.push(tr.origin))
  W.addBlock(d, { id: 'b', type: 'text', content: 'base' }, 'setup')
  W.requestIndex(d, 'b', 's', {}, 'setup')
  const undo = new Y.UndoManager(d.getMap(W.BLOCKS), { trackedOrigins: new Set(['local']), captureTimeout: 0 })
  W.editContent(d, 'b', 4, 0, ' mine', 'local')
  W.recordOutcome(d, 'b', 's', { attempt: 1, status: 'done', api_call_id: 'c' }, W.BRIDGE_ORIGIN)
  assert.deepEqual(origins, ['setup', 'setup', 'local', W.BRIDGE_ORIGIN])
  undo.undo()
  const v = W.readBlock(d, 'b')
  assert.equal(v.content, 'base')
  assert.equal(v.indexingList[0].status, 'done')
  undo.undo()
  assert.equal(W.readBlock(d, 'b').content, 'base', 'setup is not undoable')
})
