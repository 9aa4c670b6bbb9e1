//! Rust → JS interop checker: decodes update files written by the Rust crate with real `yjs`
//! and checks that JavaScript `readBlocks` (js/weaver-doc, `@weaver/doc`) equals the JSON the
//! Rust side produced. It writes nothing.
//!
//! Usage: node check-rust.mjs DIR   (DIR/manifest.json = {scenarios: [{name, updates, expected}]})
//! Exits 0 when every scenario matches (in listed order and in reverse order), 1 otherwise.

import * as fs from 'node:fs'
import * as path from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import * as Y from 'yjs'
import * as W from '@weaver/doc'

const dir = process.argv[2]
if (!dir) {
  console.error('usage: node check-rust.mjs DIR')
  process.exit(2)
}
const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'))
const json = (v) => JSON.parse(JSON.stringify(v))
let failures = 0
let checked = 0

for (const sc of manifest.scenarios) {
  const updates = sc.updates.map((f) => new Uint8Array(fs.readFileSync(path.join(dir, f))))
  for (const [label, order] of [['in order', updates], ['reversed', [...updates].reverse()]]) {
    const doc = new Y.Doc()
    for (const u of order) Y.applyUpdate(doc, u, 'rust')
    const got = json(W.readBlocks(doc))
    checked++
    if (!isDeepStrictEqual(got, sc.expected)) {
      failures++
      console.error(`MISMATCH ${sc.name} (${label})\n  js:   ${JSON.stringify(got)}\n  rust: ${JSON.stringify(sc.expected)}`)
    }
  }
}
console.log(`checked ${checked} Rust-written documents with yjs: ${failures} mismatches`)
process.exit(failures === 0 ? 0 : 1)
