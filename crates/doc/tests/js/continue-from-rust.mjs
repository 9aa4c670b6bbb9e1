//! Mixed round trip, middle step: loads a document Rust wrote (DIR/base.bin), keeps editing it
//! with two JS replicas through @weaver/doc (text edits inside Rust-written emoji text, a
//! retry, outcomes, concurrent same-name entries, a new block), and writes the JS updates
//! (DIR/js-NN.bin) plus the resulting readBlocks JSON (DIR/js.json) for Rust to check.
//!
//! Usage: node continue-from-rust.mjs DIR

import * as fs from 'node:fs'
import * as path from 'node:path'
import * as Y from 'yjs'
import * as W from '@weaver/doc'

const dir = process.argv[2]
if (!dir) {
  console.error('usage: node continue-from-rust.mjs DIR')
  process.exit(2)
}
const base = new Uint8Array(fs.readFileSync(path.join(dir, 'base.bin')))
const updates = []
const mk = (clientID) => {
  const d = new Y.Doc()
  d.clientID = clientID
  Y.applyUpdate(d, base, 'rust')
  d.on('update', (u, origin) => { if (origin !== 'sync') updates.push(u) })
  return d
}
const a = mk(501)
const b = mk(502)
const sync = () => {
  Y.applyUpdate(b, Y.encodeStateAsUpdate(a, Y.encodeStateVector(b)), 'sync')
  Y.applyUpdate(a, Y.encodeStateAsUpdate(b, Y.encodeStateVector(a)), 'sync')
}

// The Rust side wrote block "m" with content "x😀y🎉z" and entry "search" at attempt 1 done.
const text = W.readBlock(a, 'm').content
if (text !== 'x😀y🎉z') throw new Error(`unexpected Rust content ${JSON.stringify(text)}`)
W.editContent(a, 'm', 3, 1, 'Ÿ👍') // replace "y" (after the 2-unit 😀)
W.editContent(b, 'm', 6, 0, '!') // after 🎉, concurrently
if (W.requestIndex(a, 'm', 'search') !== 2) throw new Error('expected a retry as attempt 2')
W.requestIndex(b, 'm', 'files', { from: 'b' })
W.requestIndex(a, 'm', 'files', { from: 'a' })
W.recordOutcome(b, 'm', 'search', { attempt: 1, status: 'error', api_call_id: 'late', error: 'late' }, W.BRIDGE_ORIGIN)
sync()
W.recordOutcome(b, 'm', 'search', { attempt: 2, status: 'processing', api_call_id: 'js-2' }, W.BRIDGE_ORIGIN)
W.addBlock(a, { id: 'from-js', type: 'vector_collection', content: 'ñ😀' })
sync()

const va = JSON.stringify(W.readBlocks(a))
if (va !== JSON.stringify(W.readBlocks(b))) throw new Error('JS replicas diverged')
updates.forEach((u, i) => fs.writeFileSync(path.join(dir, `js-${String(i).padStart(2, '0')}.bin`), u))
fs.writeFileSync(path.join(dir, 'js.json'), JSON.stringify({ count: updates.length, expected: JSON.parse(va) }))
console.log(`wrote ${updates.length} JS updates on top of the Rust document`)
