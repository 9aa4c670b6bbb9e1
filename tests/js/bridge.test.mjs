// The bridge end to end: the real `weaver serve` (relay + bridge on one redb file), real yjs
// clients over y-websocket, and a real HTTP server standing in for the external API (it counts
// requests per Idempotency-Key, answers 200/202/429/500/slowly/never, and sends signed Standard
// Webhooks). Crash safety is checked with kill -9 at random points between trigger, claim,
// external call, outcome and write-back.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import crypto from 'node:crypto'
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import { startWeaver, tempDataDir } from './lib/weaver.mjs'
import { addBlock, requestIndex, removeIndex, editContent, readBlock, logicalEntries, getBlocksMap } from '@weaver/doc'

const SECRET_BYTES = Buffer.from('weaver-js-test-webhook-secret-32')
const SECRET = 'whsec_' + SECRET_BYTES.toString('base64')
const OLD_SECRET_BYTES = Buffer.from('an-old-rotated-out-secret-32byte')
const OLD_SECRET = 'whsec_' + OLD_SECRET_BYTES.toString('base64')

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function waitFor (what, fn, timeoutMs = 20000) {
  const start = Date.now()
  for (;;) {
    const v = await fn()
    if (v) return v
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`)
    await sleep(25)
  }
}

function sign (secretBytes, id, ts, body) {
  return 'v1,' + crypto.createHmac('sha256', secretBytes).update(`${id}.${ts}.${body}`).digest('base64')
}

// ---------------------------------------------------------------------------------------------
// The fake external API.

function startFakeApi () {
  const state = { requests: 0, keys: new Map(), answers: new Map(), jobs: new Map(), fails: new Map(), keysByAttempt: new Map(), webhookUrl: null, webhooksSent: 0, hangs: [] }
  const send = (res, code, body, headers = {}) => {
    res.writeHead(code, { 'content-type': 'application/json', ...headers })
    res.end(JSON.stringify(body))
  }
  const answerFor = (req) => {
    const content = req.content || ''
    return { chunks_indexed: content.split('\n\n').filter((p) => p.trim() !== '').length, chars: content.length, call_id: req.call_id }
  }
  const deliver = async (jobId, data) => {
    if (!state.webhookUrl) return
    const body = JSON.stringify({ type: 'completed', external_id: jobId, data })
    const id = `msg_${jobId}`
    for (let i = 0; i < 100; i++) {
      const ts = Math.floor(Date.now() / 1000)
      try {
        const r = await fetch(state.webhookUrl, { method: 'POST', headers: { 'content-type': 'application/json', 'webhook-id': id, 'webhook-timestamp': String(ts), 'webhook-signature': sign(SECRET_BYTES, id, ts, body) }, body })
        if (r.ok) { state.webhooksSent++; return }
      } catch {}
      await sleep(200)
    }
  }
  const server = http.createServer((req, res) => {
    let raw = ''
    req.on('data', (d) => { raw += d })
    req.on('end', async () => {
      const url = new URL(req.url, 'http://x')
      if (req.method === 'GET' && url.pathname.startsWith('/jobs/')) {
        const job = state.jobs.get(decodeURIComponent(url.pathname.slice(6)))
        return job ? send(res, 200, job) : send(res, 404, { error: 'no such job' })
      }
      let body = {}
      try { body = JSON.parse(raw || '{}') } catch {}
      const key = req.headers['idempotency-key'] || ''
      state.requests++
      state.keys.set(key, (state.keys.get(key) || 0) + 1)
      const attemptKey = `${body.room}/${body.block_id}/${body.index_name}/${body.attempt}`
      if (!state.keysByAttempt.has(attemptKey)) state.keysByAttempt.set(attemptKey, new Set())
      state.keysByAttempt.get(attemptKey).add(key)
      // A stored answer is replayed for a repeated key (like Stripe).
      if (state.answers.has(key)) { const [c, b] = state.answers.get(key); return send(res, c, b) }
      const p = url.pathname
      if (p === '/sync' || p === '/slow') {
        if (p === '/slow') await sleep(Number(url.searchParams.get('ms') || 500))
        const ans = answerFor(body)
        state.answers.set(key, [200, ans])
        return send(res, 200, ans)
      }
      if (p === '/async') {
        const jobId = `job-${crypto.randomUUID()}`
        state.answers.set(key, [202, { id: jobId }])
        state.jobs.set(jobId, { status: 'processing' })
        const data = answerFor(body)
        const delay = Number(url.searchParams.get('delay_ms') || 200)
        if (url.searchParams.get('early') === '1') {
          state.jobs.set(jobId, { status: 'completed', data })
          await deliver(jobId, data)
          return send(res, 202, { id: jobId })
        }
        // unref: a far-future job must not keep the test process alive.
        setTimeout(() => {
          state.jobs.set(jobId, { status: 'completed', data })
          if (url.searchParams.get('webhook') !== '0') deliver(jobId, data)
        }, delay).unref()
        return send(res, 202, { id: jobId })
      }
      const m = p.match(/^\/fail\/(\d+)$/)
      if (m) {
        const n = (state.fails.get(key) || 0) + 1
        state.fails.set(key, n)
        const times = url.searchParams.get('times')
        if (times === null || n <= Number(times)) {
          const headers = url.searchParams.get('retry_after') ? { 'retry-after': url.searchParams.get('retry_after') } : {}
          return send(res, Number(m[1]), { error: `fake failure ${n}` }, headers)
        }
        return send(res, 200, answerFor(body))
      }
      if (p === '/hang') { state.hangs.push(res); return }
      send(res, 404, { error: 'no route' })
    })
  })
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      resolve({
        state,
        url: (p) => `http://127.0.0.1:${port}${p}`,
        close: () => { for (const r of state.hangs) r.destroy(); server.closeAllConnections?.(); server.close() }
      })
    })
  })
}

// ---------------------------------------------------------------------------------------------
// Weaver and clients.

const running = []
after(async () => { for (const w of running) await w.stop().catch(() => {}) })

function writeConfig (dir, text) {
  const p = path.join(dir, 'bridge.toml')
  writeFileSync(p, text)
  return p
}

function httpConfig (api, route, extra = '', retry = {}) {
  const r = { max_attempts: 3, initial_interval_ms: 50, max_interval_ms: 200, lease_ms: 3000, ...retry }
  return `
[retry]
max_attempts = ${r.max_attempts}
initial_interval_ms = ${r.initial_interval_ms}
max_interval_ms = ${r.max_interval_ms}
lease_ms = ${r.lease_ms}
[debounce]
quiet_ms = 200
max_wait_ms = 1000
[routes]
search = "ext"
[[integrations]]
name = "ext"
kind = "http"
url = "${api.url(route)}"
headers = { Authorization = "Bearer \${EXT_TOKEN}" }
timeout_ms = 1500
webhook_secrets = ["EXT_WEBHOOK_SECRET"]
${extra}
`
}

async function weaver (configText, { dataDir, env = {} } = {}) {
  dataDir = dataDir || tempDataDir('weaver-bridge-')
  const args = []
  if (configText !== null) args.push('--bridge-config', writeConfig(dataDir, configText))
  const w = await startWeaver({ dataDir, args, env: { EXT_TOKEN: 't0ken', EXT_WEBHOOK_SECRET: `${SECRET} ${OLD_SECRET}`, ...env } })
  running.push(w)
  return w
}

async function client (w, room) {
  const doc = new Y.Doc()
  const provider = new WebsocketProvider(w.wsUrl, room, doc, { WebSocketPolyfill: WebSocket, disableBc: true })
  await waitFor('sync', () => provider.synced, 10000)
  return { doc, provider, close: () => { provider.destroy(); doc.destroy() } }
}

function entry (doc, block, index) {
  const b = readBlock(doc, block)
  return b ? b.indexingList.find((e) => e.index_name === index) : undefined
}

// Every status the replica sees for (block, index), in order.
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

async function calls (w, q = '') {
  const r = await fetch(`${w.httpUrl}/api/calls${q}`)
  assert.equal(r.status, 200)
  return (await r.json()).calls
}

// ---------------------------------------------------------------------------------------------

test('built-in local integration: another client sees processing then done (no config)', async () => {
  const w = await weaver(null)
  const a = await client(w, 'local-room')
  const b = await client(w, 'local-room')
  const seen = watchStatuses(b.doc, 'b1', 'search')
  addBlock(a.doc, { id: 'b1', type: 'text', content: 'one\n\ntwo\n\nthree' })
  requestIndex(a.doc, 'b1', 'search', { dim: 3 })
  const e = await waitFor('done at client b', () => { const e = entry(b.doc, 'b1', 'search'); return e?.status === 'done' && e })
  assert.equal(e.result.chunks_indexed, 3)
  assert.equal(e.attempt, 1)
  assert.ok(e.api_call_id)
  assert.ok(seen.some((s) => s.status === 'processing'), JSON.stringify(seen))
  assert.deepEqual(seen[seen.length - 1], { status: 'done', attempt: 1 })
  const cs = await calls(w, '?room=local-room')
  assert.equal(cs.length, 1)
  assert.equal(cs[0].status, 'completed')
  assert.equal(cs[0].id, e.api_call_id)
  const one = await (await fetch(`${w.httpUrl}/api/calls/${cs[0].id}`)).json()
  assert.deepEqual(one.events.map((ev) => ev.type), ['created', 'claimed', 'initialized', 'processing', 'completed'])
  // A late-joining client sees the stored result too.
  const c = await client(w, 'local-room')
  assert.equal(entry(c.doc, 'b1', 'search').status, 'done')
  a.close(); b.close(); c.close()
})

test('sync HTTP API, async API finished by webhook, and by polling', async () => {
  const api = await startFakeApi()
  try {
    for (const [name, route, extra] of [
      ['sync', '/sync', ''],
      ['webhook', '/async?delay_ms=200', ''],
      ['early-webhook', '/async?early=1', ''],
      ['polling', '/async?delay_ms=300&webhook=0', `status_url = "${api.url('/jobs/{external_id}')}"\npoll_interval_ms = 100`]
    ]) {
      const w = await weaver(httpConfig(api, route, extra))
      api.state.webhookUrl = `${w.httpUrl}/api/webhooks/ext`
      const a = await client(w, 'r')
      const b = await client(w, 'r')
      const seen = watchStatuses(b.doc, 'blk', 'search')
      addBlock(a.doc, { id: 'blk', type: 'text', content: 'alpha\n\nbeta' })
      requestIndex(a.doc, 'blk', 'search', {})
      const e = await waitFor(`${name}: done`, () => { const e = entry(b.doc, 'blk', 'search'); return e?.status === 'done' && e })
      assert.equal(e.result.chunks_indexed, 2, name)
      assert.ok(seen.some((s) => s.status === 'processing'), `${name}: ${JSON.stringify(seen)}`)
      const [call] = await calls(w, '?room=r')
      assert.equal(call.status, 'completed')
      assert.equal(api.state.keys.get(call.idempotency_key), 1, `${name}: one request for the key`)
      if (name !== 'sync') assert.match(call.external_id, /^job-/)
      a.close(); b.close()
      await w.stop()
    }
  } finally { api.close() }
})

test('retries with backoff then a visible failure; non-retryable tried once; Retry-After', async () => {
  const api = await startFakeApi()
  try {
    const w = await weaver(httpConfig(api, '/fail/503'))
    const a = await client(w, 'r')
    addBlock(a.doc, { id: 'x', type: 'text', content: 'x' })
    requestIndex(a.doc, 'x', 'search', {})
    const e = await waitFor('error', () => { const e = entry(a.doc, 'x', 'search'); return e?.status === 'error' && e })
    assert.match(e.error, /503/)
    assert.match(e.error, /gave up after 3 tries/)
    const [call] = await calls(w, '?room=r&status=failed')
    assert.equal(api.state.keys.get(call.idempotency_key), 3)
    // Manual retry: a new attempt.
    const r = await fetch(`${w.httpUrl}/api/calls/${call.id}/retry`, { method: 'POST' })
    assert.equal(r.status, 202)
    assert.equal((await r.json()).call.attempt, 2)
    await waitFor('attempt 2 error', () => { const e = entry(a.doc, 'x', 'search'); return e?.attempt === 2 && e.status === 'error' })
    a.close()
    await w.stop()

    const w2 = await weaver(httpConfig(api, '/fail/422'))
    const c = await client(w2, 'r')
    addBlock(c.doc, { id: 'y', type: 'text', content: 'y' })
    requestIndex(c.doc, 'y', 'search', {})
    const e2 = await waitFor('error', () => { const e = entry(c.doc, 'y', 'search'); return e?.status === 'error' && e })
    assert.match(e2.error, /422/)
    await sleep(300)
    const [call2] = await calls(w2, '?room=r')
    assert.equal(api.state.keys.get(call2.idempotency_key), 1, 'non-retryable: exactly one request')
    c.close()
    await w2.stop()

    const w3 = await weaver(httpConfig(api, '/fail/429?times=1&retry_after=1', '', { max_interval_ms: 5000 }))
    const d = await client(w3, 'r')
    addBlock(d.doc, { id: 'z', type: 'text', content: 'z' })
    const t0 = Date.now()
    requestIndex(d.doc, 'z', 'search', {})
    await waitFor('done after 429', () => entry(d.doc, 'z', 'search')?.status === 'done')
    assert.ok(Date.now() - t0 >= 900, 'Retry-After: 1 was honoured')
    d.close()
    await w3.stop()
  } finally { api.close() }
})

test('webhooks: signature, tolerance, rotation, malformed, unknown, duplicate', async () => {
  const api = await startFakeApi()
  try {
    const w = await weaver(httpConfig(api, '/async?delay_ms=600000&webhook=0'))
    const a = await client(w, 'r')
    addBlock(a.doc, { id: 'w', type: 'text', content: 'w' })
    requestIndex(a.doc, 'w', 'search', {})
    const call = await waitFor('external id', async () => (await calls(w, '?room=r')).find((c) => c.external_id))
    const now = Math.floor(Date.now() / 1000)
    const body = JSON.stringify({ type: 'completed', external_id: call.external_id, data: { chunks_indexed: 42 } })
    const post = (integration, headers, b = body) => fetch(`${w.httpUrl}/api/webhooks/${integration}`, { method: 'POST', headers, body: b })
    const h = (id, ts, sig) => ({ 'content-type': 'application/json', 'webhook-id': id, 'webhook-timestamp': String(ts), 'webhook-signature': sig })
    assert.equal((await post('nope', h('m1', now, sign(SECRET_BYTES, 'm1', now, body)))).status, 404)
    assert.equal((await post('ext', h('m1', now, sign(Buffer.from('wrong secret'), 'm1', now, body)))).status, 401)
    assert.equal((await post('ext', h('m1', now, sign(SECRET_BYTES, 'm1', now, body)), body.replace('42', '43'))).status, 401)
    assert.equal((await post('ext', h('m1', now - 600, sign(SECRET_BYTES, 'm1', now - 600, body)))).status, 401)
    assert.equal((await post('ext', { 'content-type': 'application/json' })).status, 400)
    assert.equal((await post('ext', h('m0', now, sign(SECRET_BYTES, 'm0', now, 'nope')), 'nope')).status, 400)
    assert.equal(entry(a.doc, 'w', 'search').status, 'processing', 'nothing applied by rejected webhooks')
    // Signed with the old (rotated) secret, still configured: accepted.
    const ok = await post('ext', h('m1', now, sign(OLD_SECRET_BYTES, 'm1', now, body)))
    assert.equal(ok.status, 200)
    const e = await waitFor('done via webhook', () => { const e = entry(a.doc, 'w', 'search'); return e?.status === 'done' && e })
    assert.equal(e.result.chunks_indexed, 42)
    const dup = await post('ext', h('m1', now, sign(SECRET_BYTES, 'm1', now, body)))
    assert.equal(dup.status, 200)
    assert.equal((await dup.json()).duplicate, true)
    const one = await (await fetch(`${w.httpUrl}/api/calls/${call.id}`)).json()
    assert.equal(one.events.filter((ev) => ev.type === 'completed').length, 1)
    a.close()
    await w.stop()
  } finally { api.close() }
})

test('content edits re-index; removing an entry cancels its call', async () => {
  const api = await startFakeApi()
  try {
    const w = await weaver(httpConfig(api, '/sync', '').replace('search = "ext"', 'search = "ext"\nslow = "ext2"') +
      `[[integrations]]\nname = "ext2"\nkind = "http"\nurl = "${api.url('/hang')}"\ntimeout_ms = 1500\n`)
    const a = await client(w, 'r')
    addBlock(a.doc, { id: 'e', type: 'text', content: 'one' })
    requestIndex(a.doc, 'e', 'search', {})
    await waitFor('done 1', () => entry(a.doc, 'e', 'search')?.status === 'done')
    editContent(a.doc, 'e', 3, 0, '\n\ntwo')
    const e = await waitFor('re-indexed', () => { const e = entry(a.doc, 'e', 'search'); return e?.attempt === 2 && e.status === 'done' && e })
    assert.equal(e.result.chunks_indexed, 2)
    requestIndex(a.doc, 'e', 'slow', {})
    await waitFor('slow processing', () => entry(a.doc, 'e', 'slow')?.status === 'processing')
    removeIndex(a.doc, 'e', 'slow')
    await waitFor('cancelled', async () => (await calls(w, '?room=r')).some((c) => c.index_name === 'slow' && c.status === 'cancelled'))
    a.close()
    await w.stop()
  } finally { api.close() }
})

test('deleting a room cancels its running call; the bridge never writes into it again', async () => {
  const api = await startFakeApi()
  try {
    const cfg = httpConfig(api, '/slow?ms=1000', '')
    const w = await weaver(cfg)
    const a = await client(w, 'gone')
    addBlock(a.doc, { id: 'g', type: 'text', content: 'one\n\ntwo' })
    requestIndex(a.doc, 'g', 'search', {})
    await waitFor('processing', () => entry(a.doc, 'g', 'search')?.status === 'processing')
    // The client goes away first: y-websocket would otherwise reconnect and re-send its copy.
    a.close()
    const del = await fetch(`${w.httpUrl}/api/rooms/gone`, { method: 'DELETE' })
    assert.equal(del.status, 204)
    const c = await waitFor('cancelled', async () => (await calls(w, '?room=gone')).find((c) => c.status === 'cancelled'))
    assert.equal(c.error, 'room deleted')
    const blocks = async () => {
      const r = await fetch(`${w.httpUrl}/api/rooms/gone/blocks`)
      assert.equal(r.status, 200)
      return (await r.json()).blocks
    }
    // The API answers after the deletion: the result is ignored, nothing is written back.
    await waitFor('the API answered', () => api.state.requests >= 1)
    await sleep(1500)
    assert.deepEqual(await blocks(), [])
    const one = await (await fetch(`${w.httpUrl}/api/calls/${c.id}`)).json()
    assert.equal(one.call.status, 'cancelled')
    assert.ok(one.events.some((e) => e.type === 'cancelled' && e.reason === 'room deleted'), JSON.stringify(one.events))
    // A restart (start-up sweep, queued write-backs) does not resurrect it either.
    await w.stop()
    const w2 = await weaver(cfg, { dataDir: w.dataDir })
    await sleep(800)
    const r = await fetch(`${w2.httpUrl}/api/rooms/gone/blocks`)
    assert.deepEqual((await r.json()).blocks, [])
    assert.equal((await calls(w2, '?room=gone')).filter((c) => c.status !== 'cancelled').length, 0)
    // The room is usable afresh, with the same block id: a new call indexes it.
    const b = await client(w2, 'gone')
    addBlock(b.doc, { id: 'g', type: 'text', content: 'again' })
    requestIndex(b.doc, 'g', 'search', {})
    const e = await waitFor('done in the re-created room', () => { const e = entry(b.doc, 'g', 'search'); return e?.status === 'done' && e })
    assert.notEqual(e.api_call_id, c.id)
    b.close()
    await w2.stop()
  } finally { api.close() }
})

test('crash safety: kill -9 at random points, every call ends once, one key per attempt', async () => {
  const api = await startFakeApi()
  const dataDir = tempDataDir('weaver-bridge-crash-')
  // `search` goes to a slow sync API, `poll` to an async API finished by polling, so kills land
  // between trigger, claim, the external call, the 202, polls, outcome and write-back.
  const cfg = httpConfig(api, '/slow?ms=120', '', { max_attempts: 50, lease_ms: 3000 })
    .replace('search = "ext"', 'search = "ext"\npoll = "ext2"') +
    `[[integrations]]\nname = "ext2"\nkind = "http"\nurl = "${api.url('/async?delay_ms=150&webhook=0')}"\n` +
    `timeout_ms = 1500\nstatus_url = "${api.url('/jobs/{external_id}')}"\npoll_interval_ms = 50\n`
  const blocks = []
  const open = [] // clients to close whatever happens, so a failure cannot hang the run
  const ROUNDS = Number(process.env.BRIDGE_CRASH_ROUNDS || 10)
  try {
    let w = await weaver(cfg, { dataDir })
    for (let round = 0; round < ROUNDS; round++) {
      const a = await client(w, 'crash')
      open.push(a)
      for (let i = 0; i < 3; i++) {
        const id = `c${round}-${i}`
        blocks.push(id)
        addBlock(a.doc, { id, type: 'text', content: `block ${id}\n\npara` })
        requestIndex(a.doc, id, 'search', {})
        requestIndex(a.doc, id, 'poll', {})
      }
      // Re-index an earlier block too, so several attempts are in flight across crashes.
      if (round > 0) requestIndex(a.doc, blocks[3 * (round - 1)], 'search', {})
      // The relay sends an update to others only once it is durable: when a second client has
      // the round's last write, all of it survives the kill (a fixed sleep did not, under load).
      const b = await client(w, 'crash')
      open.push(b)
      await waitFor(`round ${round} durable`, () => entry(b.doc, `c${round}-2`, 'poll') !== undefined)
      b.close()
      // Then kill at a random point of the bridge's work.
      await sleep(Math.floor(Math.random() * (round % 2 === 0 ? 60 : 500)))
      a.close()
      await w.kill9()
      w = await weaver(cfg, { dataDir })
    }
    const a = await client(w, 'crash')
    open.push(a)
    for (const id of blocks) {
      for (const index of ['search', 'poll']) {
        try {
          await waitFor(`${id}/${index} done`, () => entry(a.doc, id, index)?.status === 'done', 60000)
        } catch (e) {
          // Say where it is stuck: the entry as the client sees it, the calls and their events.
          const mine = (await calls(w, '?room=crash&limit=5000')).filter((c) => c.block_id === id && c.index_name === index)
          const detail = await Promise.all(mine.map(async (c) => (await fetch(`${w.httpUrl}/api/calls/${c.id}`)).json()))
          const logTail = w.logs().split('\n').filter((l) => mine.some((c) => l.includes(c.id))).slice(-40).join('\n')
          throw new Error(`${e.message}\nentry: ${JSON.stringify(entry(a.doc, id, index))}\ncalls: ${JSON.stringify(detail)}\nlog:\n${logTail}`)
        }
      }
    }
    // Every call reached exactly one terminal state; nothing left running.
    const cs = await calls(w, '?room=crash&limit=5000')
    assert.ok(cs.length >= blocks.length * 2)
    let rescued = 0
    for (const c of cs) {
      assert.ok(['completed', 'cancelled'].includes(c.status), `${c.id} is ${c.status}`)
      const ev = (await (await fetch(`${w.httpUrl}/api/calls/${c.id}`)).json()).events
      if (ev.some((e) => e.type === 'lease_expired')) rescued++
      const terminal = ev.filter((e) => ['completed', 'cancelled'].includes(e.type) || (e.type === 'failed' && !e.retryable))
      assert.equal(terminal.length, 1, `call ${c.id}: ${JSON.stringify(ev.map((e) => e.type))}`)
    }
    // Each outcome written back once: per (entry, attempt, status) at most one record.
    for (const id of blocks) {
      const block = getBlocksMap(a.doc).get(id)
      for (const le of logicalEntries(block)) {
        const seen = new Map()
        for (const r of le.records) {
          if (r.status === 'notStarted') continue
          const k = `${r.attempt}/${r.status}/${r.api_call_id}`
          seen.set(k, (seen.get(k) || 0) + 1)
        }
        for (const [k, n] of seen) assert.equal(n, 1, `${id}/${le.index_name} ${k} written ${n} times`)
        const dones = le.records.filter((r) => r.status === 'done')
        assert.equal(new Set(dones.map((r) => r.attempt)).size, dones.length, `${id}/${le.index_name}: two done records for one attempt`)
      }
    }
    console.log(`crash test: ${cs.length} calls, ${rescued} rescued from a killed process, ${api.state.requests} external requests`)
    // The external API never saw two idempotency keys for one attempt.
    for (const [attempt, keys] of api.state.keysByAttempt) assert.equal(keys.size, 1, `${attempt}: ${[...keys]}`)
    a.close()
    await w.stop()
  } finally {
    for (const c of open) c.close()
    api.close()
  }
})

// ---------------------------------------------------------------------------------------------
// Observability: the weaver_bridge_* metrics and the call.failed webhook.

// Prometheus text → [{ name, labels, value }] (samples only).
function samples (text) {
  const out = []
  for (const line of text.split('\n')) {
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/)
    if (!m) continue
    const labels = {}
    for (const [, k, v] of (m[2] || '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[k] = v
    out.push({ name: m[1], labels, value: Number(m[3]) })
  }
  return out
}

// The value of the one sample `name` whose labels include `labels` (0 when there is none).
function metric (all, name, labels = {}) {
  const hits = all.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
  assert.ok(hits.length <= 1, `${name} ${JSON.stringify(labels)} matches ${hits.length} series`)
  return hits[0]?.value ?? 0
}

// A receiver of call.failed webhooks; `status` is what it answers (changeable).
function failureReceiver () {
  const rx = { hits: [], status: 204 }
  const server = http.createServer((req, res) => {
    let body = ''
    req.on('data', (d) => { body += d })
    req.on('end', () => { rx.hits.push({ headers: req.headers, body, answered: rx.status }); res.writeHead(rx.status).end() })
  })
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    rx.url = `http://127.0.0.1:${server.address().port}/failed`
    rx.close = () => { server.closeAllConnections?.(); server.close() }
    resolve(rx)
  }))
}

function verifyHook (secretBytes, { headers, body }) {
  const expected = crypto.createHmac('sha256', secretBytes).update(`${headers['webhook-id']}.${headers['webhook-timestamp']}.${body}`).digest()
  return (headers['webhook-signature'] || '').split(' ').some((s) => {
    const [v, sig] = s.split(',')
    const got = Buffer.from(sig ?? '', 'base64')
    return v === 'v1' && got.length === expected.length && crypto.timingSafeEqual(got, expected)
  })
}

const FAILURE_SECRET_BYTES = Buffer.from('weaver-js-test-call-failed-hooks')
const FAILURE_SECRET = 'whsec_' + FAILURE_SECRET_BYTES.toString('base64')

// Four integrations on the fake API: one that answers 200, one 503 (retried, then given up),
// one 422 (final at once), one that never answers (its call is cancelled).
function observabilityConfig (api) {
  const integ = (name, route) => `[[integrations]]\nname = "${name}"\nkind = "http"\nurl = "${api.url(route)}"\ntimeout_ms = 1500\n`
  return `
[retry]
max_attempts = 3
initial_interval_ms = 50
max_interval_ms = 200
lease_ms = 3000
[routes]
a = "good"
b = "flaky"
c = "bad"
d = "slow"
${integ('good', '/sync')}
${integ('flaky', '/fail/503')}
${integ('bad', '/fail/422')}
${integ('slow', '/hang')}
`
}

test('weaver_bridge_* metrics count calls by outcome and reason; call.failed arrives once per failed call, signed', async () => {
  const api = await startFakeApi()
  const rx = await failureReceiver()
  try {
    const w = await weaver(observabilityConfig(api), { env: { WEAVER_BRIDGE_FAILURE_URL: rx.url, WEAVER_BRIDGE_FAILURE_SECRET: FAILURE_SECRET } })
    const a = await client(w, 'obs')
    for (const [block, index] of [['g1', 'a'], ['g2', 'a'], ['f1', 'b'], ['x1', 'c'], ['s1', 'd']]) {
      addBlock(a.doc, { id: block, type: 'text', content: block })
      requestIndex(a.doc, block, index, {})
    }
    await waitFor('slow processing', () => entry(a.doc, 's1', 'd')?.status === 'processing')
    removeIndex(a.doc, 's1', 'd')
    const all = await waitFor('every call terminal', async () => {
      const cs = await calls(w, '?room=obs')
      return cs.length === 5 && cs.every((c) => ['completed', 'failed', 'cancelled'].includes(c.status)) && cs
    })
    const byIndex = Object.fromEntries(all.map((c) => [c.index_name, c]))
    assert.equal(byIndex.b.failure_reason, 'http_5xx')
    assert.equal(byIndex.c.failure_reason, 'http_4xx')
    await waitFor('two call.failed webhooks', () => rx.hits.length >= 2)
    await sleep(500)
    // Once per failed call (the receiver took each at once).
    assert.equal(rx.hits.length, 2, rx.hits.map((h) => h.body).join('\n'))
    for (const hit of rx.hits) {
      assert.ok(verifyHook(FAILURE_SECRET_BYTES, hit), 'signature verifies')
      assert.ok(!verifyHook(SECRET_BYTES, hit), 'another secret does not')
      assert.equal(hit.headers['content-type'], 'application/json')
      const ev = JSON.parse(hit.body)
      assert.equal(ev.type, 'call.failed')
      const call = all.find((c) => c.id === ev.data.call_id)
      assert.ok(call, hit.body)
      assert.equal(hit.headers['webhook-id'], `msg_call_failed_${call.id}`)
      assert.equal(ev.timestamp, call.completed_at)
      assert.deepEqual(ev.data, {
        call_id: call.id,
        room: 'obs',
        block_id: call.block_id,
        index: call.index_name,
        attempt: 1,
        integration: call.integration,
        attempts: call.index_name === 'b' ? 3 : 1,
        error: call.error,
        reason: call.index_name === 'b' ? 'http_5xx' : 'http_4xx'
      })
    }

    const text = await (await fetch(`${w.httpUrl}/metrics`)).text()
    const m = samples(text)
    const calls_ = (integration, outcome) => metric(m, 'weaver_bridge_calls_total', { integration, outcome })
    assert.equal(calls_('good', 'done'), 2)
    assert.equal(calls_('flaky', 'failed'), 1)
    assert.equal(calls_('bad', 'failed'), 1)
    assert.equal(calls_('slow', 'cancelled'), 1)
    assert.equal(calls_('good', 'failed'), 0)
    assert.equal(metric(m, 'weaver_bridge_call_failures_total', { integration: 'flaky', reason: 'http_5xx' }), 1)
    assert.equal(metric(m, 'weaver_bridge_call_failures_total', { integration: 'bad', reason: 'http_4xx' }), 1)
    assert.equal(m.filter((s) => s.name === 'weaver_bridge_call_failures_total').reduce((n, s) => n + s.value, 0), 2)
    assert.equal(metric(m, 'weaver_bridge_retries_total', { integration: 'flaky', reason: 'http_5xx' }), 2)
    assert.equal(metric(m, 'weaver_bridge_retries_total', { integration: 'bad' }), 0)
    // One duration per finished call, under the same labels.
    for (const [integration, outcome, n] of [['good', 'done', 2], ['flaky', 'failed', 1], ['bad', 'failed', 1], ['slow', 'cancelled', 1]]) {
      assert.equal(metric(m, 'weaver_bridge_call_duration_seconds_count', { integration, outcome }), n, `${integration} ${outcome}`)
      assert.ok(metric(m, 'weaver_bridge_call_duration_seconds_sum', { integration, outcome }) >= 0)
      assert.equal(metric(m, 'weaver_bridge_call_duration_seconds_bucket', { integration, outcome, le: '+Inf' }), n)
    }
    // One try duration per request that came back (the hanging one is still out or timed out).
    assert.equal(metric(m, 'weaver_bridge_attempt_duration_seconds_count', { integration: 'good' }), 2)
    assert.equal(metric(m, 'weaver_bridge_attempt_duration_seconds_count', { integration: 'flaky' }), 3)
    assert.equal(metric(m, 'weaver_bridge_attempt_duration_seconds_count', { integration: 'bad' }), 1)
    assert.equal(metric(m, 'weaver_bridge_failure_webhooks_total', { outcome: 'ok' }), 2)
    assert.equal(metric(m, 'weaver_bridge_failure_webhooks_total', { outcome: 'retry' }), 0)
    await waitFor('no webhook pending', async () => metric(samples(await (await fetch(`${w.httpUrl}/metrics`)).text()), 'weaver_bridge_pending_failure_webhooks') === 0)
    assert.match(text, /^# HELP weaver_bridge_calls_total /m)
    // Room names never become labels.
    assert.doesNotMatch(text, /^weaver_bridge_[^ ]*obs/m)
    a.close()
    await w.stop()
  } finally { api.close(); rx.close() }
})

test('call.failed survives kill -9 between the failure and its delivery, and is delivered once after the restart', async () => {
  const api = await startFakeApi()
  const rx = await failureReceiver()
  rx.status = 503
  try {
    const dataDir = tempDataDir('weaver-bridge-')
    const env = { WEAVER_BRIDGE_FAILURE_URL: rx.url, WEAVER_BRIDGE_FAILURE_SECRET: FAILURE_SECRET }
    const w = await weaver(observabilityConfig(api), { dataDir, env })
    const a = await client(w, 'crash')
    addBlock(a.doc, { id: 'x', type: 'text', content: 'x' })
    requestIndex(a.doc, 'x', 'c', {})
    const [call] = await waitFor('failed', async () => { const cs = await calls(w, '?room=crash&status=failed'); return cs.length === 1 && cs })
    await waitFor('a refused delivery', () => rx.hits.length >= 1)
    a.close()
    await w.kill9()
    const refused = rx.hits.length
    rx.status = 204
    const w2 = await weaver(observabilityConfig(api), { dataDir, env })
    await waitFor('delivered after the restart', () => rx.hits.some((h) => h.answered === 204))
    await sleep(500)
    const taken = rx.hits.filter((h) => h.answered === 204)
    assert.equal(taken.length, 1, 'delivered once')
    assert.ok(rx.hits.length === refused + 1, `nothing after the delivery: ${rx.hits.length} hits, ${refused} refused`)
    for (const hit of rx.hits) {
      assert.equal(hit.headers['webhook-id'], `msg_call_failed_${call.id}`, 'the same id on every try')
      assert.ok(verifyHook(FAILURE_SECRET_BYTES, hit))
    }
    assert.equal(rx.hits[0].body, taken[0].body, 'the same body on every try')
    const ev = JSON.parse(taken[0].body)
    assert.equal(ev.data.call_id, call.id)
    assert.equal(ev.data.reason, 'http_4xx')
    const m = samples(await (await fetch(`${w2.httpUrl}/metrics`)).text())
    assert.equal(metric(m, 'weaver_bridge_failure_webhooks_total', { outcome: 'ok' }), 1)
    await waitFor('no webhook pending', async () => metric(samples(await (await fetch(`${w2.httpUrl}/metrics`)).text()), 'weaver_bridge_pending_failure_webhooks') === 0)
    await w2.stop()
  } finally { api.close(); rx.close() }
})

test('call.failed flags: a secret without a URL, or a bad secret, stops the start with the flag named', async () => {
  const { spawnSync } = await import('node:child_process')
  const { weaverBin } = await import('./lib/weaver.mjs')
  const dataDir = tempDataDir('weaver-bridge-')
  const run = (env) => spawnSync(weaverBin, ['serve', '--listen', '127.0.0.1:0', '--data', dataDir], { env: { ...process.env, ...env }, timeout: 20000 })
  let r = run({ WEAVER_BRIDGE_FAILURE_SECRET: FAILURE_SECRET })
  assert.notEqual(r.status, 0)
  assert.match(r.stderr.toString(), /--bridge-failure-secret.*without --bridge-failure-url/)
  r = run({ WEAVER_BRIDGE_FAILURE_URL: 'http://127.0.0.1:9/failed', WEAVER_BRIDGE_FAILURE_SECRET: 'not base64!' })
  assert.notEqual(r.status, 0)
  assert.match(r.stderr.toString(), /--bridge-failure-secret/)
  r = run({ WEAVER_BRIDGE_FAILURE_URL: 'ftp://127.0.0.1/failed' })
  assert.notEqual(r.status, 0)
  assert.match(r.stderr.toString(), /http\(s\)/)
})
