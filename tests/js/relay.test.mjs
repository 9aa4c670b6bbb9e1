// The relay with stock yjs + y-websocket clients: two-client sync, concurrent editing,
// offline edits, many rooms, and the HTTP API, against the real `weaver` binary.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import * as Y from 'yjs'
import { readFileSync } from 'node:fs'
import WebSocket from 'ws'
import { startWeaver } from './lib/weaver.mjs'
import { yclient, waitFor, textOfUpdate } from './lib/yclient.mjs'

let weaver
before(async () => { weaver = await startWeaver() })
after(async () => { await weaver?.stop() })

test('two stock clients sync through the relay', { timeout: 30000 }, async () => {
  const a = await yclient(weaver.wsUrl, 'two-clients')
  const b = await yclient(weaver.wsUrl, 'two-clients')
  a.text.insert(0, 'hello from a')
  await waitFor(() => b.text.toString() === 'hello from a', { what: 'b sees a' })
  b.text.insert(b.text.length, ', hi from b')
  await waitFor(() => a.text.toString() === 'hello from a, hi from b', { what: 'a sees b' })
  a.destroy(); b.destroy()
})

test('8 clients editing one room concurrently converge', { timeout: 60000 }, async () => {
  const clients = await Promise.all(Array.from({ length: 8 }, () => yclient(weaver.wsUrl, 'eight')))
  const perClient = 40
  await Promise.all(clients.map(async (c, i) => {
    for (let k = 0; k < perClient; k++) {
      const pos = Math.floor(Math.random() * (c.text.length + 1))
      c.text.insert(pos, String.fromCharCode(97 + i))
      if (k % 5 === 0) await new Promise((resolve) => setTimeout(resolve, 2))
    }
  }))
  const total = 8 * perClient
  await waitFor(() => clients.every((c) => c.text.length === total), { timeoutMs: 30000, what: 'all edits everywhere' })
  const first = clients[0].text.toString()
  for (const c of clients) assert.equal(c.text.toString(), first)
  // The server holds the same document.
  const res = await fetch(`${weaver.httpUrl}/api/rooms/eight/update`)
  assert.equal(textOfUpdate(Buffer.from(await res.arrayBuffer())), first)
  clients.forEach((c) => c.destroy())
})

test('a write storm from stock clients is committed in held batches and converges', { timeout: 60000 }, async () => {
  // Each insert is its own transaction and so its own message: 8 × 150 messages within a few
  // milliseconds, far above the 2,000 updates/s from which a room holds its batches (5 ms).
  const room = 'storm'
  const clients = await Promise.all(Array.from({ length: 8 }, () => yclient(weaver.wsUrl, room)))
  try {
    const received = clients.map(() => 0)
    clients.forEach((c, i) => c.doc.on('update', (_u, origin) => { if (origin === c.provider) received[i]++ }))
    const perClient = 150
    clients.forEach((c, i) => {
      for (let k = 0; k < perClient; k++) {
        c.text.insert(Math.floor(Math.random() * (c.text.length + 1)), String.fromCharCode(97 + i))
      }
    })
    const total = 8 * perClient
    await waitFor(() => clients.every((c) => c.text.length === total), { timeoutMs: 30000, what: 'all edits everywhere' })
    const first = clients[0].text.toString()
    for (const c of clients) assert.equal(c.text.toString(), first)
    const res = await fetch(`${weaver.httpUrl}/api/rooms/${room}/update`)
    assert.equal(textOfUpdate(Buffer.from(await res.arrayBuffer())), first)
    const metrics = await (await fetch(`${weaver.httpUrl}/metrics`)).text()
    const held = Number(metrics.match(/^weaver_held_batches_total (\d+)/m)?.[1] ?? 0)
    assert.ok(held > 0, 'the storm was never held')
    // Each replica got the others' 1,050 inserts in far fewer messages than inserts.
    for (const n of received) assert.ok(n < total - perClient, `${n} messages for ${total - perClient} remote inserts`)
  } finally {
    clients.forEach((c) => c.destroy())
  }
})

test('a client edits offline, reconnects and converges with edits made meanwhile', { timeout: 30000 }, async () => {
  const a = await yclient(weaver.wsUrl, 'offline')
  const b = await yclient(weaver.wsUrl, 'offline')
  a.text.insert(0, 'base.')
  await waitFor(() => b.text.toString() === 'base.')
  a.provider.disconnect()
  await waitFor(() => !a.provider.wsconnected)
  a.text.insert(a.text.length, ' offline-a')
  b.text.insert(0, 'online-b ')
  await new Promise((resolve) => setTimeout(resolve, 100))
  assert.ok(!b.text.toString().includes('offline-a'), 'offline edit not delivered while offline')
  a.provider.connect()
  await waitFor(() => a.text.toString() === b.text.toString() && a.text.toString().includes('offline-a') && a.text.toString().includes('online-b'), { what: 'convergence after reconnect' })
  // A third, fresh client gets both edits from the server.
  const c = await yclient(weaver.wsUrl, 'offline')
  assert.equal(c.text.toString(), a.text.toString())
  a.destroy(); b.destroy(); c.destroy()
})

test('200 rooms at once, each syncing its own content', { timeout: 120000 }, async () => {
  const rooms = Array.from({ length: 200 }, (_, i) => `many-${i}`)
  const pairs = await Promise.all(rooms.map(async (room) => {
    const [w, r] = await Promise.all([yclient(weaver.wsUrl, room, { timeoutMs: 60000 }), yclient(weaver.wsUrl, room, { timeoutMs: 60000 })])
    return { room, w, r }
  }))
  pairs.forEach(({ room, w }) => w.text.insert(0, `content of ${room}`))
  await waitFor(() => pairs.every(({ room, r }) => r.text.toString() === `content of ${room}`), { timeoutMs: 60000, what: 'every room synced' })
  pairs.forEach(({ w, r }) => { w.destroy(); r.destroy() })
  const metrics = await (await fetch(`${weaver.httpUrl}/metrics`)).text()
  assert.match(metrics, /weaver_connections_total \d+/)
})

test('HTTP API: read, write, diff, blocks, delete, health', { timeout: 30000 }, async () => {
  const a = await yclient(weaver.wsUrl, 'http-room')
  a.text.insert(0, 'ws edit')
  await waitFor(async () => textOfUpdate(Buffer.from(await (await fetch(`${weaver.httpUrl}/api/rooms/http-room/update`)).arrayBuffer())) === 'ws edit')
  // A write over HTTP reaches the connected client.
  const other = new Y.Doc()
  Y.applyUpdate(other, Buffer.from(await (await fetch(`${weaver.httpUrl}/api/rooms/http-room/update`)).arrayBuffer()))
  const sv = Y.encodeStateVector(other)
  other.getText('t').insert(other.getText('t').length, ' + http edit')
  const post = await fetch(`${weaver.httpUrl}/api/rooms/http-room/update`, { method: 'POST', body: Y.encodeStateAsUpdate(other, sv) })
  assert.equal(post.status, 204)
  await waitFor(() => a.text.toString() === 'ws edit + http edit', { what: 'http edit reaches ws client' })
  const diff = await fetch(`${weaver.httpUrl}/api/rooms/http-room/update?sv=${Buffer.from(sv).toString('base64url')}`)
  assert.equal(diff.status, 200)
  assert.equal(diff.headers.get('content-type'), 'application/octet-stream')
  assert.equal((await fetch(`${weaver.httpUrl}/api/rooms/http-room/update`, { method: 'POST', body: new Uint8Array([255, 255, 1]) })).status, 400)
  assert.equal((await fetch(`${weaver.httpUrl}/api/rooms/http-room/blocks`)).status, 200)
  assert.equal((await fetch(`${weaver.httpUrl}/healthz`)).status, 200)
  assert.equal((await fetch(`${weaver.httpUrl}/readyz`)).status, 200)
  assert.equal((await fetch(`${weaver.httpUrl}/bad%20room`)).status, 400)
  a.destroy()
  assert.equal((await fetch(`${weaver.httpUrl}/api/rooms/http-room`, { method: 'DELETE' })).status, 204)
  const after = Buffer.from(await (await fetch(`${weaver.httpUrl}/api/rooms/http-room/update`)).arrayBuffer())
  assert.equal(textOfUpdate(after), '')
})

test('awareness between stock clients: states propagate and vanish on disconnect', { timeout: 30000 }, async () => {
  const a = await yclient(weaver.wsUrl, 'presence')
  const b = await yclient(weaver.wsUrl, 'presence')
  a.provider.awareness.setLocalStateField('user', { name: 'alice' })
  await waitFor(() => b.provider.awareness.getStates().get(a.doc.clientID)?.user?.name === 'alice', { what: 'b sees alice' })
  // A late joiner receives the known states right after connecting.
  const c = await yclient(weaver.wsUrl, 'presence')
  await waitFor(() => c.provider.awareness.getStates().get(a.doc.clientID)?.user?.name === 'alice', { what: 'c sees alice' })
  // The same picture over HTTP, for apps that show who is in a document without joining it.
  const presence = async () => (await fetch(`${weaver.httpUrl}/api/rooms/presence/awareness`)).json()
  let p
  await waitFor(async () => { p = await presence(); return p.clients.some((x) => x.client_id === a.doc.clientID) }, { what: 'alice in GET …/awareness' })
  assert.equal(p.connections, 3)
  assert.deepEqual(p.clients.find((x) => x.client_id === a.doc.clientID).state, a.provider.awareness.getLocalState())
  // Dropping the socket (no goodbye message from the client) removes the state via the server.
  a.provider.shouldConnect = false
  a.provider.ws.terminate()
  await waitFor(() => !b.provider.awareness.getStates().has(a.doc.clientID), { what: 'alice removed at b' })
  await waitFor(async () => { p = await presence(); return p.connections === 2 && !p.clients.some((x) => x.client_id === a.doc.clientID) }, { what: 'alice gone over HTTP' })
  a.destroy(); b.destroy(); c.destroy()
})

function rssKiB (pid) {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)
  return m ? Number(m[1]) : 0
}

test('idle rooms are unloaded and memory does not grow with room churn', { timeout: 120000 }, async () => {
  const w = await startWeaver({ args: ['--idle-unload-secs', '1'] })
  try {
    const loaded = async () => Number((await (await fetch(`${w.httpUrl}/metrics`)).text()).match(/^weaver_rooms_loaded (\d+)/m)?.[1] ?? -1)
    let peak = 0
    for (let round = 0; round < 3; round++) {
      const clients = await Promise.all(Array.from({ length: 150 }, (_, i) => yclient(w.wsUrl, `churn-${round}-${i}`)))
      clients.forEach((c, i) => c.text.insert(0, `room ${i} `.repeat(50)))
      await waitFor(async () => (await loaded()) === 150, { what: '150 rooms loaded' })
      await new Promise((resolve) => setTimeout(resolve, 200))
      peak = Math.max(peak, rssKiB(w.proc.pid))
      clients.forEach((c) => c.destroy())
      await waitFor(async () => (await loaded()) === 0, { timeoutMs: 20000, what: 'all rooms unloaded' })
    }
    const after = rssKiB(w.proc.pid)
    // Rooms left memory; what the allocator keeps is reused, so churn does not accumulate.
    assert.ok(after <= peak * 1.1, `RSS after unloading ${after} KiB vs loaded peak ${peak} KiB`)
  } finally {
    await w.stop()
  }
})

test('awareness client id that moves to a new connection survives the old one closing', { timeout: 30000 }, async () => {
  const { default: WebSocket } = await import('ws')
  const varUint = (n) => { const o = []; while (n > 127) { o.push((n & 127) | 128); n = Math.floor(n / 128) } o.push(n); return o }
  const frame = (clientId, clock, state) => {
    const json = Buffer.from(JSON.stringify(state))
    const body = [...varUint(1), ...varUint(clientId), ...varUint(clock), ...varUint(json.length), ...json]
    return Buffer.from([1, ...varUint(body.length), ...body])
  }
  const open = async () => {
    const ws = new WebSocket(`${weaver.wsUrl}/presence-move`)
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
    return ws
  }
  const watcher = await yclient(weaver.wsUrl, 'presence-move')
  const sockets = []
  try {
    const removed = []
    watcher.provider.awareness.on('change', ({ removed: r }) => removed.push(...r))
    const name = () => watcher.provider.awareness.getStates().get(4242)?.name
    // A reconnecting client announces its id on the new socket before the old one is reaped.
    const old = await open()
    sockets.push(old)
    old.send(frame(4242, 1, { name: 'before' }))
    await waitFor(() => name() === 'before', { what: 'watcher sees the first connection' })
    const fresh = await open()
    sockets.push(fresh)
    fresh.send(frame(4242, 2, { name: 'after' }))
    await waitFor(() => name() === 'after', { what: 'watcher sees the second connection' })
    old.close()
    await new Promise((resolve) => old.once('close', resolve))
    await new Promise((resolve) => setTimeout(resolve, 500))
    assert.deepEqual(removed, [], 'closing the old socket removed the state the new one owns')
    assert.equal(name(), 'after')
    // The owner's departure still removes it.
    fresh.close()
    await waitFor(() => removed.includes(4242), { what: 'removed when its owner leaves' })
  } finally {
    for (const ws of sockets) ws.terminate()
    watcher.destroy()
  }
})

/** Opens a change feed with fetch (Node has no EventSource) and parses its SSE events. */
async function openFeed (url, headers = {}) {
  const ctl = new AbortController()
  const res = await fetch(url, { headers: { Accept: 'text/event-stream', ...headers }, signal: ctl.signal })
  assert.equal(res.status, 200)
  const events = []
  const pump = (async () => {
    const dec = new TextDecoder()
    let buf = ''
    try {
      for await (const chunk of res.body) {
        buf += dec.decode(chunk, { stream: true })
        let at
        while ((at = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, at)
          buf = buf.slice(at + 2)
          const ev = {}
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) continue
            const i = line.indexOf(':')
            const [k, v] = i < 0 ? [line, ''] : [line.slice(0, i), line.slice(i + 1).replace(/^ /, '')]
            ev[k] = ev[k] === undefined ? v : ev[k] + '\n' + v
          }
          if (ev.event || ev.data) events.push(ev)
        }
      }
    } catch {}
  })()
  return { events, close: async () => { ctl.abort(); await pump } }
}

test('change feed: SSE ids, Last-Event-ID resumes with only what was committed after it, stale ids get a full sync', { timeout: 30000 }, async () => {
  const room = 'sse-resume'
  const feedUrl = `${weaver.httpUrl}/api/rooms/${room}/changes`
  const src = new Y.Doc()
  const post = async (s) => {
    const before = Y.encodeStateVector(src)
    src.getText('t').insert(src.getText('t').length, s)
    const r = await fetch(`${weaver.httpUrl}/api/rooms/${room}/update`, { method: 'POST', body: Y.encodeStateAsUpdate(src, before) })
    assert.equal(r.status, 204)
  }
  const textOf = (events) => {
    const d = new Y.Doc()
    for (const e of events) if (e.event === 'sync' || e.event === 'update') Y.applyUpdate(d, Buffer.from(e.data, 'base64'))
    return d.getText('t').toString()
  }
  const mirror = []
  const f1 = await openFeed(feedUrl)
  await waitFor(() => f1.events.length >= 1, { what: 'the sync event' })
  assert.equal(f1.events[0].event, 'sync')
  assert.equal(f1.events[0].id, '0', 'an empty room: the sync covers seq 0')
  for (const s of ['a', 'b', 'c']) await post(s)
  await waitFor(() => f1.events.length >= 4, { what: 'three updates' })
  await f1.close()
  assert.deepEqual(f1.events.slice(1).map((e) => [e.event, e.id]), [['update', '1'], ['update', '2'], ['update', '3']])
  mirror.push(...f1.events)
  assert.equal(textOf(mirror), 'abc')

  // Disconnected meanwhile: two more commits.
  await post('d'); await post('e')
  const f2 = await openFeed(feedUrl, { 'Last-Event-ID': '3' })
  await waitFor(() => f2.events.length >= 2, { what: 'the missed updates' })
  await new Promise((resolve) => setTimeout(resolve, 200))
  await f2.close()
  assert.deepEqual(f2.events.map((e) => [e.event, e.id]), [['update', '4'], ['update', '5']], 'only what was committed after 3, no sync')
  mirror.push(...f2.events)
  assert.equal(textOf(mirror), 'abcde')

  // For clients that cannot set headers; live updates after the replay keep their ids.
  const f3 = await openFeed(`${feedUrl}?last_event_id=4`)
  await waitFor(() => f3.events.length >= 1, { what: 'the replay' })
  await post('f')
  await waitFor(() => f3.events.length >= 2, { what: 'a live update' })
  await f3.close()
  assert.deepEqual(f3.events.map((e) => [e.event, e.id]), [['update', '5'], ['update', '6']])

  // The sync event of a fresh feed carries the seq it covers.
  const f4 = await openFeed(feedUrl)
  await waitFor(() => f4.events.length >= 1, { what: 'sync' })
  await f4.close()
  assert.deepEqual([f4.events[0].event, f4.events[0].id], ['sync', '6'])
  assert.equal(textOf(f4.events), 'abcdef')

  // An id beyond the room's seq (a deleted room starts again at 1): a full sync.
  assert.equal((await fetch(`${weaver.httpUrl}/api/rooms/${room}`, { method: 'DELETE' })).status, 204)
  const again = new Y.Doc()
  again.getText('t').insert(0, 'new life')
  assert.equal((await fetch(`${weaver.httpUrl}/api/rooms/${room}/update`, { method: 'POST', body: Y.encodeStateAsUpdate(again) })).status, 204)
  const f5 = await openFeed(feedUrl, { 'Last-Event-ID': '6' })
  await waitFor(() => f5.events.length >= 1, { what: 'a full sync' })
  await f5.close()
  assert.deepEqual([f5.events[0].event, f5.events[0].id], ['sync', '1'])
  assert.equal(textOf(f5.events), 'new life')
})

test('room names of y-websocket apps: doc:123, user@host, org.team/doc (URL-encoded) work on WebSocket and HTTP; unsafe names are refused', { timeout: 30000 }, async () => {
  for (const name of ['doc:123', 'user@example.com', 'org.team/doc', 'org.team/doc/v2']) {
    const seg = encodeURIComponent(name)
    const a = await yclient(weaver.wsUrl, seg)
    const b = await yclient(weaver.wsUrl, seg)
    a.text.insert(0, `in ${name}`)
    await waitFor(() => b.text.toString() === `in ${name}`, { what: `sync in ${name}` })
    a.destroy(); b.destroy()
    const got = await fetch(`${weaver.httpUrl}/api/rooms/${seg}/update`)
    assert.equal(got.status, 200, name)
    assert.equal(textOfUpdate(Buffer.from(await got.arrayBuffer())), `in ${name}`)
    assert.equal((await fetch(`${weaver.httpUrl}/api/rooms/${seg}/blocks`)).status, 200)
  }
  // `:` and `@` need no encoding; the same room either way.
  const plain = await fetch(`${weaver.httpUrl}/api/rooms/doc:123/update`)
  assert.equal(textOfUpdate(Buffer.from(await plain.arrayBuffer())), 'in doc:123')
  // The listing shows the names as they are, and a prefix with '/' selects them.
  const listed = await (await fetch(`${weaver.httpUrl}/api/rooms?prefix=${encodeURIComponent('org.team/')}`)).json()
  assert.deepEqual(listed.rooms.map((r) => r.name), ['org.team/doc', 'org.team/doc/v2'])
  // Refused: 400 on HTTP routes and before the WebSocket upgrade.
  // ('..' alone is collapsed by URL parsing before it is sent; the unit test covers it.)
  for (const bad of ['/lead', 'trail/', 'a//b', 'a/../b', 'a/./b', 'sp ace', 'per%cent', 'q?x', 'é', 'x'.repeat(129)]) {
    const seg = encodeURIComponent(bad)
    assert.equal((await fetch(`${weaver.httpUrl}/api/rooms/${seg}/update`)).status, 400, `GET update ${bad}`)
    assert.equal((await fetch(`${weaver.httpUrl}/api/rooms/${seg}/update`, { method: 'POST', body: new Uint8Array([0, 0]) })).status, 400, `POST ${bad}`)
    assert.equal((await fetch(`${weaver.httpUrl}/${seg}`)).status, 400, `WebSocket route ${bad}`)
    const status = await new Promise((resolve) => {
      const ws = new WebSocket(`${weaver.wsUrl}/${seg}`)
      ws.on('unexpected-response', (req, res) => { resolve(res.statusCode); res.resume(); req.destroy() })
      ws.on('open', () => { ws.close(); resolve(101) })
      ws.on('error', () => {})
    })
    assert.equal(status, 400, `upgrade ${bad}`)
  }
})
