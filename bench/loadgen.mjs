// The load generator of weaver-bench: real Yjs 13.6 clients (y-websocket 3 providers, or the
// Hocuspocus provider for Hocuspocus) in one Node process, driving ONE server per invocation.
// It measures what only a client can see (latency, convergence, content at first sync) and
// prints `MARK <name>` lines at the edges of the measured windows so the orchestrator
// (crates/bench) can sample the server's CPU, RSS and /metrics at that instant; the last line
// is `RESULT <json>`. Server processes, pinning, repetitions and statistics deliberately live in
// the orchestrator, not here.
//
// Usage: node loadgen.mjs '<json params>'   (see crates/bench/src/scenario.rs for the fields)
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { HocuspocusProvider } from '@hocuspocus/provider'
import WebSocket from 'ws'
import { performance } from 'node:perf_hooks'
import { readFileSync, writeFileSync } from 'node:fs'
import { createHash } from 'node:crypto'

process.setMaxListeners(0) // one exit listener per provider, thousands of providers
const P = JSON.parse(process.argv[2])
const now = () => performance.now()
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const mark = (name) => process.stdout.write(`MARK ${name}\n`)
const log = (...a) => process.stderr.write(a.join(' ') + '\n')

// Deterministic PRNG so every server sees the same operation sequence in a run.
let seed = P.seed ?? 42
function rand () {
  seed = (seed + 0x6d2b79f5) | 0
  let t = seed
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
const randInt = (n) => Math.floor(rand() * n)
const ALPHA = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:-_!?()[]{}<>/=+*&%$#@'
const randStr = (n) => { let s = ''; for (let i = 0; i < n; i++) s += ALPHA[randInt(ALPHA.length)]; return s }

/** One real Yjs client connected to the server under test (`url`: one node of a cluster). */
function makeClient (room, url = P.url) {
  const doc = new Y.Doc()
  const text = doc.getText('t')
  const c = { doc, text, synced: false, firstSyncLen: -1, firstSyncAt: 0, closed: false }
  let onSynced
  c.syncedP = new Promise((resolve) => { onSynced = resolve })
  const markSynced = () => {
    if (c.synced) return
    c.synced = true
    c.firstSyncAt = now()
    c.firstSyncLen = text.length
    onSynced()
  }
  // weaver-hp: the weaver binary driven by Hocuspocus clients (its Hocuspocus framing at `/`).
  if (P.server === 'hocuspocus' || P.server === 'weaver-hp') {
    c.provider = new HocuspocusProvider({
      url: P.url,
      name: room,
      document: doc,
      WebSocketPolyfill: WebSocket,
      onSynced: markSynced
    })
  } else {
    // y-sweet addresses a doc as /d/<doc>/ws/<doc> (no auth configured); the others as /<room>.
    const base = P.server === 'ysweet' ? `${url}/d/${room}/ws` : url
    c.provider = new WebsocketProvider(base, room, doc, { WebSocketPolyfill: WebSocket, disableBc: true })
    c.provider.on('sync', (s) => { if (s) markSynced() })
  }
  c.destroy = () => { if (!c.closed) { c.closed = true; c.provider.destroy(); doc.destroy() } }
  return c
}

async function waitFor (pred, timeoutMs, stepMs = 2) {
  const deadline = now() + timeoutMs
  while (!pred()) {
    if (now() > deadline) return false
    await sleep(stepMs)
  }
  return true
}

async function connectAll (rooms, perRoom, concurrency = 100, timeoutMs = 60000) {
  const clients = []
  const deadline = now() + timeoutMs
  for (let r = 0; r < rooms.length; r++) {
    for (let k = 0; k < perRoom; k++) clients.push(makeClient(rooms[r]))
    if (clients.length % concurrency === 0) {
      const batch = clients.slice(-concurrency)
      await Promise.race([Promise.all(batch.map((c) => c.syncedP)), sleep(Math.max(0, deadline - now()))])
    }
  }
  await Promise.race([Promise.all(clients.map((c) => c.syncedP)), sleep(Math.max(0, deadline - now()))])
  const ok = clients.every((c) => c.synced)
  if (!ok) throw new Error(`only ${clients.filter((c) => c.synced).length}/${clients.length} clients synced within ${timeoutMs} ms`)
  return clients
}

// Cluster mode: the first client connects alone to urls[0], so that node places (owns) the
// room; the other `n - 1` are spread round-robin over the urls (client k+1 on urls[k % len]).
async function connectSpread (room, n, urls, timeoutMs = 60000) {
  const first = makeClient(room, urls[0])
  await Promise.race([first.syncedP, sleep(timeoutMs)])
  if (!first.synced) throw new Error(`the first client did not sync on ${urls[0]} within ${timeoutMs} ms`)
  const rest = Array.from({ length: n - 1 }, (_, k) => makeClient(room, urls[k % urls.length]))
  await Promise.race([Promise.all(rest.map((c) => c.syncedP)), sleep(timeoutMs)])
  const synced = rest.filter((c) => c.synced).length
  if (synced < rest.length) throw new Error(`only ${synced}/${rest.length} spread clients synced within ${timeoutMs} ms`)
  return [first, ...rest]
}

function pct (sorted, q) {
  if (sorted.length === 0) return null
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))
  return sorted[i]
}

function sameState (clients) {
  const sv0 = Buffer.from(Y.encodeStateVector(clients[0].doc))
  const s0 = clients[0].text.toString()
  return clients.every((c) => c.text.toString() === s0 && Buffer.from(Y.encodeStateVector(c.doc)).equals(sv0))
}

const closeAll = async (clients) => { for (const c of clients) c.destroy(); await sleep(50) }

// ---------------------------------------------------------------------------------------------
// fanout: 1 writer appends `count` single characters at `rate`/s (0 = as fast as possible);
// n-1 receivers record writer-insert → own-observer latency for every character. With `urls`
// (cluster mode) the writer is on urls[0] and the receivers round-robin over all of them.
async function fanout () {
  const clients = P.urls ? await connectSpread(P.room, P.clients, P.urls) : await connectAll([P.room], P.clients)
  const writer = clients[0]
  const receivers = clients.slice(1)
  const sendT = new Float64Array(P.count)
  const lat = []
  // Cluster mode: latencies of receivers on the writer's node and on the others (forwarded).
  const latLocal = []
  const latFwd = []
  const seen = receivers.map(() => 0)
  receivers.forEach((c, k) => {
    const split = P.urls ? (k % P.urls.length === 0 ? latLocal : latFwd) : null
    c.text.observe(() => {
      const t = now()
      const len = c.text.length
      for (let i = seen[k]; i < len && i < P.count; i++) {
        lat.push(t - sendT[i])
        if (split) split.push(t - sendT[i])
      }
      seen[k] = len
    })
  })
  await sleep(200)
  mark('start')
  const t0 = now()
  if (P.rate > 0) {
    let i = 0
    while (i < P.count && now() - t0 < P.timeoutMs) {
      const due = Math.min(P.count, Math.floor(((now() - t0) * P.rate) / 1000) + 1)
      while (i < due) { sendT[i] = now(); writer.text.insert(i, 'x'); i++ }
      await sleep(1)
    }
  } else {
    // As fast as possible, yielding every 50 inserts so the socket and receivers make progress.
    for (let i = 0; i < P.count; i++) {
      sendT[i] = now(); writer.text.insert(i, 'x')
      if (i % 50 === 49) await new Promise((resolve) => setImmediate(resolve))
    }
  }
  const sentAt = now()
  const done = await waitFor(() => seen.every((s) => s >= P.count), P.timeoutMs, 1)
  const t1 = now()
  mark('end')
  for (const l of [lat, latLocal, latFwd]) l.sort((a, b) => a - b)
  const delivered = seen.reduce((a, s) => a + Math.min(s, P.count), 0)
  await closeAll(clients)
  return {
    p50_local_ms: pct(latLocal, 0.5),
    p99_local_ms: pct(latLocal, 0.99),
    p50_forwarded_ms: pct(latFwd, 0.5),
    p99_forwarded_ms: pct(latFwd, 0.99),
    converged: done,
    updates: P.count,
    deliveries: delivered,
    expected_deliveries: P.count * receivers.length,
    p50_ms: pct(lat, 0.5),
    p95_ms: pct(lat, 0.95),
    p99_ms: pct(lat, 0.99),
    max_ms: lat.length ? lat[lat.length - 1] : null,
    send_ms: sentAt - t0,
    all_delivered_ms: t1 - t0,
    deliveries_per_s: delivered / ((t1 - t0) / 1000)
  }
}

// writers: `clients` writers each insert `perWriter` single chars at random positions, all at
// once (round-robin, yielding between rounds); time until every replica is byte-identical.
// Also: per-update latency (an insertion's local insert → the end of the remote transaction
// that integrated it at another replica, by Yjs client id and clock, all clients sharing this
// process's clock) and how many remote messages each replica applied (servers that coalesce
// more send fewer).
async function writers () {
  const clients = await connectAll([P.room], P.clients)
  const total = P.clients * P.perWriter
  const insertedAt = new Map(clients.map((c) => [c.doc.clientID, new Float64Array(P.perWriter)]))
  const lat = []
  let remoteMsgs = 0
  let measuring = false
  for (const c of clients) {
    // Cheap on purpose (the load generator is the bottleneck of this scenario): a transaction's
    // before/after state vectors name exactly the clocks that became visible in it, and each
    // single-character insert is one clock.
    c.doc.on('afterTransaction', (tr) => {
      if (!measuring || tr.local) return
      remoteMsgs++
      const t = now()
      tr.afterState.forEach((after, client) => {
        const at = insertedAt.get(client)
        if (!at) return
        for (let clock = tr.beforeState.get(client) ?? 0; clock < after && clock < at.length; clock++) {
          lat.push(t - at[clock])
        }
      })
    })
  }
  await sleep(200)
  mark('start')
  measuring = true
  const t0 = now()
  for (let r = 0; r < P.perWriter; r++) {
    for (const c of clients) {
      // Each writer starts at clock 0 (a fresh doc whose text is empty at the start), so its
      // r-th insertion has clock r.
      insertedAt.get(c.doc.clientID)[r] = now()
      c.text.insert(randInt(c.text.length + 1), ALPHA[randInt(26)])
    }
    await new Promise((resolve) => setImmediate(resolve))
  }
  const tWritten = now()
  const lengthsOk = await waitFor(() => clients.every((c) => c.text.length >= total), P.timeoutMs, 2)
  let identical = lengthsOk && sameState(clients)
  if (lengthsOk && !identical) identical = await waitFor(() => sameState(clients), 2000, 10)
  const t1 = now()
  mark('end')
  measuring = false
  const minLen = Math.min(...clients.map((c) => c.text.length))
  await closeAll(clients)
  lat.sort((a, b) => a - b)
  return {
    converged: identical,
    updates: total,
    deliveries: total * (P.clients - 1),
    converged_ms: identical ? t1 - t0 : null,
    written_ms: tWritten - t0,
    min_fraction: minLen / total,
    p50_ms: pct(lat, 0.5),
    p99_ms: pct(lat, 0.99),
    latency_samples: lat.length,
    msgs_per_client: remoteMsgs / clients.length
  }
}

// rooms: `rooms` rooms × `perRoom` clients, each client writes `updates` chars; RSS is sampled
// by the orchestrator at MARK base / loaded / idle (after every client closed and `idleWaitMs`).
async function rooms () {
  mark('base')
  const names = Array.from({ length: P.rooms }, (_, i) => `room-${P.runId}-${i}`)
  const t0 = now()
  const clients = await connectAll(names, P.perRoom, 100, P.timeoutMs)
  const tConnected = now()
  for (let u = 0; u < P.updates; u++) {
    for (const c of clients) c.text.insert(0, 'y')
    await new Promise((resolve) => setImmediate(resolve))
  }
  const want = P.perRoom * P.updates
  const ok = await waitFor(() => clients.every((c) => c.text.length === want), P.timeoutMs, 5)
  const tConverged = now()
  await sleep(500)
  mark('loaded')
  await closeAll(clients)
  await sleep(P.idleWaitMs)
  mark('idle')
  return {
    converged: ok,
    rooms: P.rooms,
    connect_ms: tConnected - t0,
    updates_converged_ms: tConverged - tConnected,
    idle_wait_ms: P.idleWaitMs
  }
}

// cold-populate: `clients` writers build a long, non-compressible history (random text at random
// positions, range deletions) at a paced rate; writes the converged text to `expectFile`.
async function coldPopulate () {
  const clients = await connectAll([P.room], P.clients)
  mark('start')
  const t0 = now()
  let i = 0
  while (i < P.updates && now() - t0 < P.timeoutMs) {
    const due = Math.min(P.updates, Math.floor(((now() - t0) * P.rate) / 1000) + 1)
    while (i < due) {
      const c = clients[i % clients.length]
      const len = c.text.length
      if (len > 200 && rand() < 0.25) {
        const at = randInt(len - 1)
        c.text.delete(at, Math.min(1 + randInt(50), len - at))
      } else {
        c.text.insert(randInt(len + 1), randStr(100 + randInt(200)))
      }
      i++
      // Barrier every 200 operations: every replica has every operation before more are sent,
      // so no connection ever has more than ~200 messages in flight (y-sweet silently drops
      // beyond 1024 queued messages, which would make its figure meaningless).
      if (i % 200 === 0) {
        const svs = () => clients.map((x) => Buffer.from(Y.encodeStateVector(x.doc)))
        await waitFor(() => { const v = svs(); return v.every((b) => b.equals(v[0])) }, 10000, 5)
      }
    }
    await sleep(1)
  }
  const ok = await waitFor(() => sameState(clients), P.timeoutMs, 20)
  mark('end')
  const text = clients[0].text.toString()
  writeFileSync(P.expectFile, text)
  const stateBytes = Y.encodeStateAsUpdate(clients[0].doc).length
  await sleep(P.settleMs)
  await closeAll(clients)
  await sleep(1000)
  return { converged: ok, updates: i, chars: text.length, state_bytes: stateBytes, populate_ms: now() - t0 }
}

// cold-load: after a restart, one fresh client: time to "synced", content at that moment, time to
// the full expected content.
async function coldLoad () {
  const expect = readFileSync(P.expectFile, 'utf8')
  mark('start')
  const t0 = now()
  const c = makeClient(P.room)
  let fullAt = null
  const check = () => { if (fullAt === null && c.text.length === expect.length && c.text.toString() === expect) fullAt = now() }
  c.text.observe(check)
  await Promise.race([c.syncedP, sleep(P.timeoutMs)])
  check()
  await waitFor(() => fullAt !== null, P.timeoutMs, 2)
  mark('end')
  const res = {
    synced: c.synced,
    synced_ms: c.synced ? c.firstSyncAt - t0 : null,
    len_at_first_sync: c.firstSyncLen,
    expected_len: expect.length,
    full_at_first_sync: c.firstSyncLen === expect.length,
    full_ms: fullAt !== null ? fullAt - t0 : null,
    sha256: createHash('sha256').update(c.text.toString()).digest('hex').slice(0, 16)
  }
  await closeAll([c])
  return res
}

// bridge: client A adds blocks and requests indexing (docs/schema.md, via the project's own
// js/weaver-doc/weaver-doc.js); client B watches until each entry's effective status is `done` (or `error`).
// Phase 1 paced (`paced` triggers at `rate`/s) → latency; phase 2 (`burst` triggers at once)
// → lifecycles/s. With `apiPort`, a stand-in external API answers the HTTP integration here.
async function bridge () {
  const WD = await import(P.weaverDocPath)
  let api = null
  let apiCalls = 0
  if (P.apiPort) {
    const http = await import('node:http')
    api = http.createServer((req, res) => {
      let body = ''
      req.on('data', (c) => { body += c })
      req.on('end', () => {
        apiCalls++
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ chunks_indexed: 1, bytes: body.length }))
      })
    })
    await new Promise((resolve) => api.listen(P.apiPort, '127.0.0.1', resolve))
  }
  // With `urls` (cluster mode), the writer is on the first node (it owns the room) and the
  // watcher on the last, so every outcome it sees crossed nodes.
  const [a, b] = P.urls
    ? [(await connectSpread(P.room, 1, [P.urls[0]]))[0], (await connectSpread(P.room, 1, [P.urls[P.urls.length - 1]]))[0]]
    : await connectAll([P.room], 2)
  const trig = new Map()
  const pending = new Set()
  let errors = 0
  let lat = []
  b.doc.getMap('blocks').observeDeep((events) => {
    const t = now()
    const touched = new Set()
    for (const e of events) {
      if (e.path.length > 0) touched.add(e.path[0])
      else if (e.keysChanged) for (const k of e.keysChanged) touched.add(k)
    }
    for (const id of touched) {
      if (!pending.has(id)) continue
      const st = WD.readBlock(b.doc, id)?.indexingList?.[0]?.status
      if (st === 'done' || st === 'error') {
        pending.delete(id)
        lat.push(t - trig.get(id))
        if (st === 'error') errors++
      }
    }
  })
  const trigger = (id) => {
    WD.addBlock(a.doc, { id, type: 'text', content: `block ${id} ` + randStr(200) })
    pending.add(id)
    trig.set(id, now())
    WD.requestIndex(a.doc, id, 'search', { dim: 8 })
  }
  const t0 = now()
  let i = 0
  while (i < P.paced && now() - t0 < P.timeoutMs) {
    const due = Math.min(P.paced, Math.floor(((now() - t0) * P.rate) / 1000) + 1)
    while (i < due) trigger(`p${P.runId}-${i++}`)
    await sleep(2)
  }
  const pacedOk = await waitFor(() => pending.size === 0, P.timeoutMs, 2)
  const pacedLat = lat.sort((x, y) => x - y)
  lat = []
  await sleep(200)
  mark('start')
  const t1 = now()
  for (let k = 0; k < P.burst; k++) {
    trigger(`b${P.runId}-${k}`)
    if (k % 20 === 19) await new Promise((resolve) => setImmediate(resolve))
  }
  const burstOk = await waitFor(() => pending.size === 0, P.timeoutMs, 2)
  const t2 = now()
  mark('end')
  const burstLat = lat.sort((x, y) => x - y)
  await closeAll([a, b])
  if (api) api.close()
  return {
    converged: pacedOk && burstOk,
    paced_p50_ms: pct(pacedLat, 0.5),
    paced_p99_ms: pct(pacedLat, 0.99),
    burst_ms: t2 - t1,
    lifecycles_per_s: burstOk ? P.burst / ((t2 - t1) / 1000) : null,
    burst_p50_ms: pct(burstLat, 0.5),
    burst_p99_ms: pct(burstLat, 0.99),
    updates: P.burst,
    errors,
    unfinished: pending.size,
    api_calls: apiCalls
  }
}

// failover (cluster mode, 3 nodes): node A = urls[0] owns the room (its first client places it),
// clients on B and C write at a steady `rate` each (keys `b:i` / `c:i` of the map `fo`), every
// client records when it first saw each key. After `preMs` this process kills A with SIGKILL;
// A's clients move to B (a new provider on the same Y.Doc, as a load balancer would send a
// reconnect). Failover time = kill → the first update written after the kill that a client on
// another node than its writer's receives (stock y-websocket clients: it includes their
// reconnect backoff); owner_ms = kill → a probe client on C retrying every 100 ms synced again
// (the room has an owner again). Then writing stops, every client must get every
// update, and a fresh client on C loads the room: lost = written updates missing anywhere.
async function failover () {
  const [A, B, C] = P.urls
  const all = []
  const add = (c, node, writer) => { const x = { c, node, writer, seen: new Map(), movedSyncAt: null }; all.push(x); return x }
  const a1 = add((await connectSpread(P.room, 1, [A]))[0], 0, null)
  // A must own the room before anyone else connects.
  const owned = await (async () => {
    const deadline = now() + 10000
    while (now() < deadline) {
      const r = await fetch(`${P.httpUrls[0]}/api/cluster`).then((x) => x.json(), () => null)
      if (r && (r.owned_rooms || []).includes(P.room)) return true
      await sleep(20)
    }
    return false
  })()
  if (!owned) throw new Error(`node A does not list ${P.room} in owned_rooms`)
  const a2 = add(makeClient(P.room, A), 0, null)
  const wB = add(makeClient(P.room, B), 1, 'b')
  const oB = add(makeClient(P.room, B), 1, null)
  const wC = add(makeClient(P.room, C), 2, 'c')
  const oC = add(makeClient(P.room, C), 2, null)
  // A probe on C that retries every 100 ms instead of y-websocket's backoff (up to 2.5 s):
  // its re-sync says when the room had an owner again, apart from the clients' backoff.
  const probeDoc = new Y.Doc()
  const probe = new WebsocketProvider(C, P.room, probeDoc, { WebSocketPolyfill: WebSocket, disableBc: true, maxBackoffTime: 100 })
  let probeSynced = false
  let tProbe = null
  let tKill = null
  probe.on('sync', (s) => {
    if (!s) return
    probeSynced = true
    if (tKill !== null && tProbe === null) tProbe = now()
  })
  await Promise.race([Promise.all(all.map((x) => x.c.syncedP)), sleep(30000)])
  await waitFor(() => probeSynced, 30000, 5)
  if (!all.every((x) => x.c.synced) || !probeSynced) throw new Error('not every failover client synced within 30 s')
  for (const x of all) {
    x.c.doc.getMap('fo').observe((e) => {
      if (e.transaction.local) return
      const t = now()
      for (const k of e.keysChanged) if (!x.seen.has(k)) x.seen.set(k, { t, node: x.node })
    })
  }
  const writtenAt = new Map()
  const writers = [wB, wC]
  const counters = [0, 0]
  const writeDue = (t0) => {
    const due = Math.floor(((now() - t0) * P.rate) / 1000) + 1
    writers.forEach((w, i) => {
      while (counters[i] < due) {
        const k = `${w.writer}:${counters[i]++}`
        writtenAt.set(k, { t: now(), node: w.node })
        w.c.doc.getMap('fo').set(k, counters[i])
      }
    })
  }
  await sleep(200)
  const t0 = now()
  while (now() - t0 < P.preMs) { writeDue(t0); await sleep(2) }
  // What a client other than the writer was shown before the kill.
  const shownBefore = new Set()
  for (const x of all) for (const k of x.seen.keys()) shownBefore.add(k)
  mark('kill')
  process.kill(P.killPid, 'SIGKILL')
  tKill = now()
  for (const x of [a1, a2]) {
    const move = () => {
      if (x.node !== 0) return
      x.node = 1
      const doc = x.c.doc
      x.c.provider.destroy()
      x.c.provider = new WebsocketProvider(B, P.room, doc, { WebSocketPolyfill: WebSocket, disableBc: true })
      x.c.provider.on('sync', (s) => { if (s && x.movedSyncAt === null) x.movedSyncAt = now() })
    }
    x.c.provider.on('connection-close', move)
    if (!x.c.provider.wsconnected) move()
  }
  const failoverAt = () => {
    let first = null
    for (const x of all) {
      for (const [k, s] of x.seen) {
        const w = writtenAt.get(k)
        if (w && w.t > tKill && s.node !== w.node && (first === null || s.t < first)) first = s.t
      }
    }
    return first
  }
  let tFail = null
  let tEnough = null
  while (now() - tKill < P.maxOutageMs) {
    writeDue(t0)
    if (tFail === null) tFail = failoverAt()
    if (tFail !== null && tProbe !== null && a1.movedSyncAt !== null && a2.movedSyncAt !== null) {
      tEnough ??= now()
      if (now() - tEnough > P.postMs) break
    }
    await sleep(2)
  }
  const written = [...writtenAt.keys()]
  const has = (x, k) => x.writer === k[0] || x.seen.has(k)
  const converged = await waitFor(() => all.every((x) => written.every((k) => has(x, k))), P.settleMs, 20)
  const tSettled = now()
  mark('end')
  const missing = written.filter((k) => !all.every((x) => has(x, k))).length
  for (const x of all) x.c.destroy()
  probe.destroy()
  probeDoc.destroy()
  await sleep(200)
  const fresh = makeClient(P.room, C)
  await Promise.race([fresh.syncedP, sleep(20000)])
  const stored = fresh.doc.getMap('fo')
  const missingFresh = fresh.synced ? written.filter((k) => !stored.has(k)).length : written.length
  const shownLost = fresh.synced ? [...shownBefore].filter((k) => !stored.has(k)).length : shownBefore.size
  fresh.destroy()
  return {
    converged,
    failover_ms: tFail !== null ? tFail - tKill : null,
    owner_ms: tProbe !== null ? tProbe - tKill : null,
    moved_ms: a1.movedSyncAt !== null && a2.movedSyncAt !== null ? Math.max(a1.movedSyncAt, a2.movedSyncAt) - tKill : null,
    settled_ms: tSettled - tKill,
    written: written.length,
    written_after_kill: written.filter((k) => writtenAt.get(k).t > tKill).length,
    shown_before_kill: shownBefore.size,
    lost: Math.max(missing, missingFresh),
    lost_at_clients: missing,
    lost_in_store: missingFresh,
    shown_lost: shownLost,
    fresh_synced: fresh.synced
  }
}

const scenarios = { fanout, failover, writers, rooms, bridge, 'cold-populate': coldPopulate, 'cold-load': coldLoad }
const hardStop = setTimeout(() => { log(`loadgen: hard time limit ${P.hardLimitMs} ms reached`); process.exit(3) }, P.hardLimitMs ?? 300000)
try {
  const fn = scenarios[P.scenario]
  if (!fn) throw new Error(`unknown scenario ${P.scenario}`)
  const result = await fn()
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`)
  clearTimeout(hardStop)
  process.exit(0)
} catch (e) {
  process.stdout.write(`RESULT ${JSON.stringify({ error: String(e && e.stack ? e.stack : e) })}\n`)
  process.exit(2)
}
