// The bridge in cluster mode (docs/cluster.md "The bridge", issue 17): three `weaver serve
// --cluster` nodes with --auth-key over one nats-server, stock y-websocket clients, and a real
// local HTTP server as the external API (sync answers, and async jobs finished by a signed
// webhook). Proves through the real binary: one bridge per cluster (the node holding the
// `bridge` role), which sees a room owned by another node and written through a third, creates
// exactly one APICall, and writes `processing` then `done` back through the room's owner, so
// clients on every node see them; `/api/calls` answers the same on every node (proxied to the
// leader); an inbound webhook sent to a non-leader node completes an async call; after kill -9
// of the leader another node takes the role and serves new triggers; the outbox is shared (on
// JetStream), so a call in flight when its leader dies is finished by the next one.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import crypto from 'node:crypto'
import { rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import { startWeaver, tempDataDir } from './lib/weaver.mjs'
import { startNats } from './lib/nats.mjs'
import { generateKey, mintRoomToken } from '@weaver/doc/server'
import { addBlock, requestIndex, readBlock } from '@weaver/doc'

process.setMaxListeners(0)

const TTL = 2000
const SECRET_BYTES = Buffer.from('weaver-js-test-webhook-secret-32')
const SECRET = 'whsec_' + SECRET_BYTES.toString('base64')
const KEY = generateKey()
const tok = (room) => mintRoomToken({ key: KEY, room, write: true, expiresIn: 600 })
const ADMIN = mintRoomToken({ key: KEY, room: '', prefix: true, write: true, admin: true, expiresIn: 600 })
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function waitFor (what, fn, timeoutMs = 30000) {
  const start = Date.now()
  for (;;) {
    const v = await fn()
    if (v) return v
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}

// The fake external API: `/sync` answers at once; `/async` answers 202 with a job id and
// sends the signed `completed` webhook to `state.webhookUrl` shortly after.
function startFakeApi () {
  const state = { requests: 0, keys: new Map(), webhookUrl: null, webhooks: [] }
  const send = (res, code, body) => { res.writeHead(code, { 'content-type': 'application/json' }); res.end(JSON.stringify(body)) }
  const answerFor = (req) => ({ chunks_indexed: (req.content || '').split('\n\n').filter((p) => p.trim() !== '').length })
  const deliver = async (jobId, data) => {
    const body = JSON.stringify({ type: 'completed', external_id: jobId, data })
    const id = `msg_${jobId}`
    for (let i = 0; i < 100; i++) {
      const ts = Math.floor(Date.now() / 1000)
      const signature = 'v1,' + crypto.createHmac('sha256', SECRET_BYTES).update(`${id}.${ts}.${body}`).digest('base64')
      try {
        const r = await fetch(state.webhookUrl, { method: 'POST', headers: { 'content-type': 'application/json', 'webhook-id': id, 'webhook-timestamp': String(ts), 'webhook-signature': signature }, body })
        state.webhooks.push(r.status)
        if (r.ok) return
      } catch {}
      await sleep(200)
    }
  }
  const server = http.createServer((req, res) => {
    let raw = ''
    req.on('data', (d) => { raw += d })
    req.on('end', () => {
      let body = {}
      try { body = JSON.parse(raw || '{}') } catch {}
      const key = req.headers['idempotency-key'] || ''
      state.requests++
      state.keys.set(key, (state.keys.get(key) || 0) + 1)
      const p = new URL(req.url, 'http://x').pathname
      if (p === '/sync') return send(res, 200, answerFor(body))
      if (p === '/slow') { setTimeout(() => send(res, 200, answerFor(body)), 1500).unref(); return }
      if (p === '/async') {
        const jobId = `job-${crypto.randomUUID()}`
        const data = answerFor(body)
        setTimeout(() => deliver(jobId, data), 200).unref()
        return send(res, 202, { id: jobId })
      }
      send(res, 404, { error: 'no route' })
    })
  })
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      resolve({ state, url: (p) => `http://127.0.0.1:${port}${p}`, close: () => { server.closeAllConnections?.(); server.close() } })
    })
  })
}

function bridgeConfig (api) {
  return `
[retry]
max_attempts = 3
initial_interval_ms = 50
max_interval_ms = 200
lease_ms = 3000
[routes]
search = "ext"
later = "ext2"
slow = "ext3"
[[integrations]]
name = "ext"
kind = "http"
url = "${api.url('/sync')}"
timeout_ms = 1500
[[integrations]]
name = "ext2"
kind = "http"
url = "${api.url('/async')}"
timeout_ms = 1500
webhook_secrets = ["EXT_WEBHOOK_SECRET"]
[[integrations]]
name = "ext3"
kind = "http"
url = "${api.url('/slow')}"
timeout_ms = 1900
`
}

let nats = null
let api = null
const dirs = []
const nodes = []
const clients = []

before(async () => {
  nats = await startNats()
  api = await startFakeApi()
})
after(async () => {
  for (const c of clients) c.close()
  for (const n of nodes) if (n.proc.exitCode === null && n.proc.signalCode === null) await n.kill9()
  if (api) api.close()
  if (nats) await nats.dispose()
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

async function startNode (id) {
  const dataDir = tempDataDir(`weaver-cb-${id}-`)
  dirs.push(dataDir)
  const config = path.join(dataDir, 'bridge.toml')
  writeFileSync(config, bridgeConfig(api))
  const node = await startWeaver({
    dataDir,
    args: ['--cluster', nats.url, '--node-id', id, '--lease-ttl-ms', String(TTL), '--bridge-config', config],
    env: { WEAVER_AUTH_KEY: KEY, EXT_WEBHOOK_SECRET: SECRET }
  })
  node.id = id
  nodes.push(node)
  return node
}

const leads = (node) => /this node runs the cluster's bridge/.test(node.logs())

function client (node, room) {
  const doc = new Y.Doc()
  const provider = new WebsocketProvider(node.wsUrl, room, doc, { WebSocketPolyfill: WebSocket, disableBc: true, maxBackoffTime: 500, params: { token: tok(room) } })
  const c = { doc, provider, node, close: () => { provider.destroy(); doc.destroy() } }
  clients.push(c)
  return c
}

async function synced (c) {
  await waitFor(`sync on ${c.node.id}`, () => c.provider.synced, 15000)
  return c
}

function entry (doc, block, index) {
  const b = readBlock(doc, block)
  return b ? b.indexingList.find((e) => e.index_name === index) : undefined
}

/** Every status a replica shows for (block, index), in order. */
function watchStatuses (doc, block, index) {
  const seen = []
  const check = () => {
    const e = entry(doc, block, index)
    if (!e) return
    const last = seen[seen.length - 1]
    if (!last || last.status !== e.status || last.attempt !== e.attempt) seen.push({ status: e.status, attempt: e.attempt })
  }
  doc.on('update', check)
  check()
  return seen
}

async function callsOn (node, room) {
  const r = await fetch(`${node.httpUrl}/api/calls?room=${room}`, { headers: { Authorization: `Bearer ${ADMIN}` } })
  assert.equal(r.status, 200, `GET /api/calls on ${node.id}: ${r.status}`)
  return (await r.json()).calls
}

async function ownerOf (room) {
  for (const n of nodes.filter((n) => n.proc.exitCode === null && n.proc.signalCode === null)) {
    const r = await fetch(`${n.httpUrl}/api/cluster`, { headers: { Authorization: `Bearer ${ADMIN}` } })
    if ((await r.json()).owned_rooms.includes(room)) return n
  }
  return null
}

test('one bridge per cluster: a room owned by one node, written through another, indexed once by the leader; outcomes on every node; webhooks and /api/calls on any node; failover', { timeout: 120000 }, async () => {
  for (const id of ['cb1', 'cb2', 'cb3']) await startNode(id)
  const leader = await waitFor('a bridge leader', () => nodes.find(leads))
  await sleep(500)
  assert.equal(nodes.filter(leads).length, 1, 'exactly one node runs the bridge')
  const [owner, writer] = nodes.filter((n) => n !== leader)

  // The room is placed on `owner` by its first client; `writer`'s client is forwarded to it.
  const room = 'cb-room'
  const atOwner = await synced(client(owner, room))
  assert.equal((await ownerOf(room))?.id, owner.id)
  const atWriter = await synced(client(writer, room))
  const atLeader = await synced(client(leader, room))
  const watchers = [atOwner, atWriter, atLeader].map((c) => ({ c, seen: watchStatuses(c.doc, 'b1', 'search') }))

  addBlock(atWriter.doc, { id: 'b1', type: 'text', content: 'one\n\ntwo\n\nthree' })
  requestIndex(atWriter.doc, 'b1', 'search', {})
  for (const { c, seen } of watchers) {
    const e = await waitFor(`done on ${c.node.id}`, () => { const e = entry(c.doc, 'b1', 'search'); return e?.status === 'done' && e })
    assert.equal(e.result.chunks_indexed, 3, c.node.id)
    assert.ok(seen.some((s) => s.status === 'processing'), `${c.node.id} saw processing: ${JSON.stringify(seen)}`)
    assert.deepEqual(seen[seen.length - 1], { status: 'done', attempt: 1 })
  }
  assert.equal((await ownerOf(room))?.id, owner.id, 'the write-backs did not move the room')
  // They reached the owner as HTTP updates from the leader (processing, then done).
  const metrics = await (await fetch(`${owner.httpUrl}/metrics`)).text()
  const viaHttp = Number(metrics.match(/^weaver_updates_in_total\{origin="http"\} (\d+)/m)?.[1] ?? 0)
  assert.ok(viaHttp >= 2, `write-backs over HTTP at the owner: ${viaHttp}`)
  // Exactly one call, one request; the same listing on every node.
  let id = null
  for (const n of nodes) {
    const cs = await callsOn(n, room)
    assert.equal(cs.length, 1, `${n.id}: ${JSON.stringify(cs)}`)
    assert.equal(cs[0].status, 'completed')
    id = id ?? cs[0].id
    assert.equal(cs[0].id, id)
    const one = await fetch(`${n.httpUrl}/api/calls/${id}`, { headers: { Authorization: `Bearer ${ADMIN}` } })
    assert.equal(one.status, 200)
  }
  assert.equal(api.state.requests, 1)
  assert.equal(entry(atOwner.doc, 'b1', 'search').api_call_id, id)

  // An async call finished by a webhook sent to a node that is not the leader.
  api.state.webhookUrl = `${writer.httpUrl}/api/webhooks/ext2`
  addBlock(atOwner.doc, { id: 'b2', type: 'text', content: 'alpha\n\nbeta' })
  requestIndex(atOwner.doc, 'b2', 'later', {})
  for (const c of [atOwner, atWriter, atLeader]) {
    const e = await waitFor(`async done on ${c.node.id}`, () => { const e = entry(c.doc, 'b2', 'later'); return e?.status === 'done' && e })
    assert.equal(e.result.chunks_indexed, 2)
  }
  assert.deepEqual(api.state.webhooks, [200])
  const later = (await callsOn(owner, room)).filter((c) => c.index_name === 'later')
  assert.equal(later.length, 1)
  assert.equal(later[0].status, 'completed')
  assert.match(later[0].external_id, /^job-/)

  // kill -9 of the leader: another node takes the role within about a TTL and serves new
  // triggers; the bridge routes answer on the survivors meanwhile (503 + Retry-After at most).
  await leader.kill9()
  const survivors = nodes.filter((n) => n !== leader)
  for (const n of survivors) {
    const r = await fetch(`${n.httpUrl}/api/calls?room=${room}`, { headers: { Authorization: `Bearer ${ADMIN}` } })
    assert.ok(r.status === 200 || (r.status === 503 && r.headers.get('retry-after')), `${n.id}: ${r.status}`)
  }
  const next = await waitFor('a new bridge leader', () => survivors.find(leads), 20000)
  addBlock(atWriter.doc, { id: 'b3', type: 'text', content: 'x\n\ny\n\nz\n\nw' })
  requestIndex(atWriter.doc, 'b3', 'search', {})
  for (const c of [atOwner, atWriter]) {
    const e = await waitFor(`done after failover on ${c.node.id}`, () => { const e = entry(c.doc, 'b3', 'search'); return e?.status === 'done' && e })
    assert.equal(e.result.chunks_indexed, 4)
  }
  for (const n of survivors) {
    const cs = (await callsOn(n, room)).filter((c) => c.block_id === 'b3')
    assert.equal(cs.length, 1, `${n.id} (leader ${next.id}): ${JSON.stringify(cs)}`)
  }
})

// The next leader finishes the dead leader's call in flight: it replays the shared outbox.
test('kill -9 of the bridge leader mid-call: one call, at most one duplicate request under its key, the outcome reaches every client', { timeout: 120000 }, async () => {
  // The first test's nodes would compete for the role: stopped (cleanly, releasing it).
  for (const n of nodes) if (n.proc.exitCode === null && n.proc.signalCode === null) await n.stop()
  const started = nodes.length
  for (const id of ['cm1', 'cm2', 'cm3']) await startNode(id)
  const fresh = nodes.slice(started)
  const leader = await waitFor('a bridge leader', () => fresh.find(leads))
  const [owner, writer] = fresh.filter((n) => n !== leader)
  const room = 'cm-room'
  const atOwner = await synced(client(owner, room))
  const atWriter = await synced(client(writer, room))
  const before = api.state.requests
  addBlock(atWriter.doc, { id: 's1', type: 'text', content: 'a\n\nb' })
  requestIndex(atWriter.doc, 's1', 'slow', {})
  // The leader called the API (which answers only after 1.5 s) and wrote `processing`.
  await waitFor('the slow request', () => api.state.requests > before)
  await waitFor('processing', () => entry(atOwner.doc, 's1', 'slow')?.status === 'processing')
  await leader.kill9()
  const survivors = fresh.filter((n) => n !== leader)
  await waitFor('a new bridge leader', () => survivors.find(leads), 20000)
  for (const c of [atOwner, atWriter]) {
    await waitFor(`done on ${c.node.id}`, () => entry(c.doc, 's1', 'slow')?.status === 'done', 60000)
  }
  for (const n of survivors) {
    const cs = (await callsOn(n, room)).filter((c) => c.block_id === 's1')
    assert.equal(cs.length, 1, `${n.id}: ${JSON.stringify(cs)}`)
    assert.equal(cs[0].status, 'completed')
    assert.ok(api.state.keys.get(cs[0].idempotency_key) <= 2, 'at most one duplicate request under the key')
  }
})
