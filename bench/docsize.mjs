// The client side of `weaver-bench docsize` (issue 23): stock Yjs 13.6 + y-websocket 3 clients
// (the Hocuspocus provider for Hocuspocus) against ONE running server.
//
//   node docsize.mjs build '<json>'  {url, server, room, bytes}: grows the room's text to `bytes`
//                                    of non-compressible characters in 1 MB inserts, waits until
//                                    a second client has all of it; prints RESULT {build_s}
//   node docsize.mjs both '<json>'   build, then edit while the builder stays connected (in-memory
//                                    servers, which drop a document its last client left)
//   node docsize.mjs edit '<json>'   {url, server, room, bytes, n, paceMs, pid, maxS}: a fresh
//                                    client syncs (load time: connect → synced with the whole
//                                    text), then makes `n` paced 2-byte inserts (bounded by maxS
//                                    seconds), waits until an observer has them all, and reads
//                                    the server's /proc/<pid>/io write_bytes and VmRSS around
//                                    the inserts; prints RESULT {load_s, rss_mb, bytes_per_edit, ...}
// Server processes, sizes and tables live in crates/bench/src/docsize.rs.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { HocuspocusProvider } from '@hocuspocus/provider'
import WebSocket from 'ws'
import { performance } from 'node:perf_hooks'
import { readFileSync } from 'node:fs'

const [mode, json] = process.argv.slice(2)
const P = JSON.parse(json)
const now = () => performance.now()
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const CHUNK = 1 << 20

let seed = 23
function randStr (n) {
  const A = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'
  const out = new Array(n)
  for (let i = 0; i < n; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) | 0
    out[i] = A[(seed >>> 16) % A.length]
  }
  return out.join('')
}

function client () {
  const doc = new Y.Doc()
  const text = doc.getText('t')
  let onSynced
  const synced = new Promise((resolve) => { onSynced = resolve })
  let provider
  if (P.server === 'hocuspocus') {
    provider = new HocuspocusProvider({ url: P.url, name: P.room, document: doc, WebSocketPolyfill: WebSocket, onSynced: () => onSynced() })
  } else {
    // y-sweet addresses a doc as /d/<doc>/ws/<doc> (no auth configured), as in loadgen.mjs; at
    // /<room> its upgrade is refused and the client never syncs.
    const base = P.server === 'ysweet' ? `${P.url}/d/${P.room}/ws` : P.url
    provider = new WebsocketProvider(base, P.room, doc, { WebSocketPolyfill: WebSocket, disableBc: true })
    provider.on('sync', (s) => { if (s) onSynced() })
  }
  return { doc, text, synced, destroy: () => provider.destroy() }
}

async function until (what, cond, maxMs) {
  const end = now() + maxMs
  while (!cond()) {
    if (now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(5)
  }
}

function proc (pid) {
  const io = readFileSync(`/proc/${pid}/io`, 'utf8')
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const field = (text, name) => Number((text.match(new RegExp(`^${name}:\\s+(\\d+)`, 'm')) || [])[1] || 0)
  return { writeBytes: field(io, 'write_bytes'), rssKb: field(status, 'VmRSS') }
}

async function build (keep = false) {
  const t0 = now()
  const w = client()
  const o = client()
  await Promise.all([w.synced, o.synced])
  while (w.text.length < P.bytes) {
    const n = Math.min(CHUNK, P.bytes - w.text.length)
    w.text.insert(w.text.length, randStr(n))
    // One chunk in flight at a time keeps every server's message-size limit and memory sane.
    await until('the observer to get a chunk', () => o.text.length === w.text.length, 120000)
  }
  // An in-memory server drops a document when its last client leaves: `both` keeps one.
  if (!keep) w.destroy()
  o.destroy()
  return { build_s: (now() - t0) / 1000 }
}

async function edit () {
  const t0 = now()
  const w = client()
  await w.synced
  await until('the whole document', () => w.text.length >= P.bytes, 300000)
  const loadS = (now() - t0) / 1000
  const o = client()
  await o.synced
  await until('the observer to load', () => o.text.length === w.text.length, 300000)
  const before = proc(P.pid)
  const start = w.text.length
  const deadline = now() + P.maxS * 1000
  let made = 0
  for (; made < P.n && now() < deadline; made++) {
    // A 2-byte insert at a pseudo-random place, like a user typing somewhere in the document.
    w.text.insert((made * 7919) % (w.text.length + 1), 'ab')
    await sleep(P.paceMs)
  }
  await until('the observer to get every insert', () => o.text.length === start + 2 * made, 120000)
  // Writes a server makes after acknowledging (deferred flushes, compaction) belong to the edits.
  await sleep(P.settleMs ?? 1000)
  const after = proc(P.pid)
  w.destroy(); o.destroy()
  return {
    load_s: loadS,
    rss_mb: after.rssKb / 1024,
    edits: made,
    written_bytes: after.writeBytes - before.writeBytes,
    // The server's write_bytes when the inserts began: weaver-bench subtracts it from what the
    // server wrote in its whole life, read as it exits, to count its stop-time checkpoint too.
    write_bytes_before: before.writeBytes,
    bytes_per_edit: made ? (after.writeBytes - before.writeBytes) / made : 0
  }
}

let result
if (mode === 'build') result = await build()
else if (mode === 'both') result = { ...(await build(true)), ...(await edit()) }
else result = await edit()
process.stdout.write(`RESULT ${JSON.stringify(result)}\n`)
process.exit(0)
