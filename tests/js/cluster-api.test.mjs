// Every API on every node in cluster mode (docs/cluster.md, "Every API on every node"; issue
// 17): three `weaver serve --cluster` nodes with --auth-key over one nats-server, stock
// y-websocket clients spread over them. Proves through the real binary: `GET /api/rooms` on
// any node lists every room of the cluster with the connections counted where its actor runs,
// paged across nodes and scoped by a tenant's prefix token; the room API of a room owned
// elsewhere (`/update` both ways, `/blocks`, `/awareness`, `DELETE`) answers on every node; a
// Hocuspocus provider on a non-owner edits a room with a y-websocket client on its owner (the
// document forwarded, its token checked by the owner, acks after the owner's commit); a change
// feed resumed with Last-Event-ID on any node while the room is written through every node has
// contiguous seqs; a change feed proxied from an owner killed while an 8 MiB update streams
// through passes only whole events, then a `closed` event of reason `owner_gone`.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { rmSync } from 'node:fs'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import { startWeaver, tempDataDir } from './lib/weaver.mjs'
import { waitFor } from './lib/yclient.mjs'
import { startNats } from './lib/nats.mjs'
import { generateKey, mintRoomToken } from '@weaver/doc/server'
import { HocuspocusProvider } from '@hocuspocus/provider'

process.setMaxListeners(0)

const TTL = 2000
const KEY = generateKey()
const tok = (room, extra = {}) => mintRoomToken({ key: KEY, room, write: true, expiresIn: 600, ...extra })
const ADMIN = mintRoomToken({ key: KEY, room: '', prefix: true, write: true, admin: true, expiresIn: 600 })

let nats = null
let nodes = []
const dirs = []
const clients = []

before(async () => {
  nats = await startNats()
  for (let i = 1; i <= 3; i++) {
    const dataDir = tempDataDir(`weaver-api${i}-`)
    dirs.push(dataDir)
    const node = await startWeaver({
      dataDir,
      args: ['--cluster', nats.url, '--node-id', `api${i}`, '--lease-ttl-ms', String(TTL)],
      // Rooms unload 1 s after their last client left: a feed's room moves soon.
      env: { WEAVER_AUTH_KEY: KEY, WEAVER_IDLE_UNLOAD_SECS: '1' }
    })
    node.id = `api${i}`
    nodes.push(node)
  }
  // Every node sees the others alive before the tests count on them.
  await waitFor(async () => {
    const r = await fetch(`${nodes[0].httpUrl}/api/cluster?token=${ADMIN}`)
    const body = await r.json()
    return body.nodes.filter((n) => n.alive).length === 3
  }, { what: 'three live nodes', timeoutMs: 15000, intervalMs: 50 })
})

after(async () => {
  for (const c of clients) c.destroy()
  for (const n of nodes) {
    if (n.proc.exitCode === null && n.proc.signalCode === null) await n.kill9()
  }
  if (nats) await nats.dispose()
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

/** A stock y-websocket client of `room` on `node`, synced. */
async function client (node, room) {
  const doc = new Y.Doc()
  const provider = new WebsocketProvider(node.wsUrl, room, doc, {
    WebSocketPolyfill: WebSocket,
    disableBc: true,
    maxBackoffTime: 500,
    params: { token: tok(room) }
  })
  const c = { doc, provider, text: doc.getText('t'), destroy () { provider.destroy(); doc.destroy() } }
  clients.push(c)
  await waitFor(() => provider.synced, { what: `sync of ${room} on ${node.id}` })
  return c
}

async function owners (rooms) {
  const owned = new Map()
  for (const node of nodes) {
    const body = await (await fetch(`${node.httpUrl}/api/cluster?token=${ADMIN}`)).json()
    for (const room of body.owned_rooms.filter((r) => rooms.includes(r))) owned.set(room, node)
  }
  return owned
}

/** Every page of `GET /api/rooms?prefix=` on `node`, `limit` per page. */
async function listAll (node, prefix, limit, token = ADMIN) {
  const rooms = []
  let after = null
  for (let pages = 0; pages < 50; pages++) {
    const q = new URLSearchParams({ prefix, limit: String(limit), token })
    if (after) q.set('after', after)
    const r = await fetch(`${node.httpUrl}/api/rooms?${q}`)
    assert.equal(r.status, 200, await r.clone().text())
    const page = await r.json()
    assert.equal(page.unreachable, undefined, `unreachable nodes: ${page.unreachable}`)
    assert.ok(page.rooms.length <= limit)
    rooms.push(...page.rooms)
    if (!page.next) return rooms
    after = page.next
  }
  throw new Error('more than 50 pages')
}

test('GET /api/rooms on every node lists every room of the cluster with its connections, paged, and scoped by a prefix token', async () => {
  // Room i is placed on node i % 3 (its first client), and has i % 3 + 1 clients: the others
  // on the next nodes, forwarded to the owner.
  const rooms = []
  for (let i = 0; i < 7; i++) rooms.push(`ca-list-${i}`)
  const want = new Map()
  for (const [i, room] of rooms.entries()) {
    const first = await client(nodes[i % 3], room)
    first.text.insert(0, `hello ${room}`)
    const n = (i % 3) + 1
    for (let k = 1; k < n; k++) await client(nodes[(i + k) % 3], room)
    want.set(room, n)
  }
  const owned = await owners(rooms)
  assert.equal(owned.size, rooms.length, 'every room has one owner')
  assert.ok(new Set([...owned.values()].map((n) => n.id)).size > 1, 'rooms run on several nodes')
  // Every room's content is stored before the listing counts it as stored.
  for (const room of rooms) {
    await waitFor(async () => {
      const r = await fetch(`${nodes[0].httpUrl}/api/rooms?prefix=${room}&token=${ADMIN}`)
      const page = await r.json()
      return page.rooms.some((x) => x.name === room && x.last_seq > 0)
    }, { what: `${room} stored`, intervalMs: 50 })
  }
  for (const node of nodes) {
    for (const limit of [2, 3, 100]) {
      const listed = await listAll(node, 'ca-list-', limit)
      assert.deepEqual(listed.map((r) => r.name), rooms, `names on ${node.id}, ${limit} per page`)
      for (const r of listed) {
        assert.equal(r.connections, want.get(r.name), `connections of ${r.name} listed on ${node.id}`)
        assert.equal(r.loaded, true, `${r.name} loaded somewhere, listed on ${node.id}`)
        assert.ok(r.last_seq > 0)
      }
    }
  }
  // A tenant's prefix token lists its rooms only, on every node; a wider prefix is refused.
  const tenant = mintRoomToken({ key: KEY, room: 'ca-list-', prefix: true, expiresIn: 600 })
  for (const node of nodes) {
    assert.equal((await listAll(node, 'ca-list-', 4, tenant)).length, rooms.length)
    const wide = await fetch(`${node.httpUrl}/api/rooms?prefix=ca-&token=${tenant}`)
    assert.equal(wide.status, 403)
  }
})

test('the room API of a room owned elsewhere answers on every node: /update both ways, /blocks, /awareness, DELETE', async () => {
  const room = 'ca-routes'
  const onA = await client(nodes[0], room)
  onA.provider.awareness.setLocalStateField('user', 'a')
  onA.text.insert(0, 'from A')
  const owner = (await owners([room])).get(room)
  assert.ok(owner, 'the room has an owner')
  const others = nodes.filter((n) => n !== owner)
  for (const node of others) {
    const t = tok(room)
    // A write on a non-owner reaches the owner's clients.
    const doc = new Y.Doc()
    Y.applyUpdate(doc, new Uint8Array(await (await fetch(`${node.httpUrl}/api/rooms/${room}/update?token=${t}`)).arrayBuffer()))
    assert.ok(doc.getText('t').toString().includes('from A'), `state read on ${node.id}`)
    const before = Y.encodeStateVector(doc)
    doc.getText('t').insert(0, `[${node.id}]`)
    const post = await fetch(`${node.httpUrl}/api/rooms/${room}/update?token=${t}`, { method: 'POST', body: Y.encodeStateAsUpdate(doc, before) })
    assert.equal(post.status, 204, await post.text())
    await waitFor(() => onA.text.toString().includes(`[${node.id}]`), { what: `write through ${node.id}` })
    const blocks = await fetch(`${node.httpUrl}/api/rooms/${room}/blocks?token=${t}`)
    assert.equal(blocks.status, 200, await blocks.clone().text())
    await blocks.json()
    const presence = await (await fetch(`${node.httpUrl}/api/rooms/${room}/awareness?token=${t}`)).json()
    assert.equal(presence.connections, 1, `connections seen from ${node.id}`)
    assert.ok(presence.clients.some((c) => c.state.user === 'a'), `awareness seen from ${node.id}`)
  }
  // Deleting on a non-owner empties the room on every node (the client leaves first, so it
  // cannot write the room back; cluster-nodes.test.mjs checks the 4410 close).
  onA.provider.disconnect()
  const del = await fetch(`${others[0].httpUrl}/api/rooms/${room}?token=${ADMIN}`, { method: 'DELETE' })
  assert.equal(del.status, 204, await del.text())
  for (const node of nodes) {
    const page = await (await fetch(`${node.httpUrl}/api/rooms?prefix=${room}&token=${ADMIN}`)).json()
    assert.ok(!page.rooms.some((r) => r.name === room && r.stored_bytes > 0), `deleted, listed on ${node.id}`)
  }
})

test('a Hocuspocus provider on a non-owner converges with a y-websocket client on the owner; its writes are acknowledged and a bad token is refused', async () => {
  const room = 'ca-hocus'
  const y = await client(nodes[0], room)
  const owner = (await owners([room])).get(room)
  const other = nodes.find((n) => n !== owner)
  const events = { authenticated: [], failed: [] }
  const doc = new Y.Doc()
  const provider = new HocuspocusProvider({
    url: other.wsUrl,
    name: room,
    document: doc,
    token: tok(room),
    WebSocketPolyfill: WebSocket,
    onAuthenticated: (e) => events.authenticated.push(e.scope),
    onAuthenticationFailed: (e) => events.failed.push(e.reason)
  })
  clients.push({ destroy () { provider.destroy(); doc.destroy() } })
  await waitFor(() => provider.isSynced, { what: 'hocuspocus sync through a non-owner' })
  assert.deepEqual(events.authenticated, ['read-write'], 'authenticated once')
  doc.getText('t').insert(0, 'from hocuspocus ')
  await waitFor(() => y.text.toString().includes('from hocuspocus '), { what: 'hocuspocus → owner' })
  y.text.insert(y.text.length, 'from y-websocket')
  await waitFor(() => doc.getText('t').toString() === y.text.toString(), { what: 'owner → hocuspocus' })
  await waitFor(() => provider.unsyncedChanges === 0 && !provider.hasUnsyncedChanges, { what: 'writes acknowledged by the owner' })
  // The owner serves the forwarded document: it counts both clients.
  const presence = await (await fetch(`${owner.httpUrl}/api/rooms/${room}/awareness?token=${tok(room)}`)).json()
  assert.equal(presence.connections, 2)
  // A token for another room is refused (by this node, before anything is forwarded).
  const badEvents = []
  const bad = new HocuspocusProvider({
    url: other.wsUrl,
    name: room,
    document: new Y.Doc(),
    token: tok('ca-elsewhere'),
    WebSocketPolyfill: WebSocket,
    onAuthenticationFailed: (e) => badEvents.push(e.reason)
  })
  clients.push({ destroy () { bad.destroy() } })
  await waitFor(() => badEvents.length > 0, { what: 'a bad token refused' })
})

/** Reads an SSE response until `until(text)` holds; returns the text read. */
async function readUntil (reader, until, what, timeoutMs = 20000) {
  const decoder = new TextDecoder()
  let text = ''
  const deadline = Date.now() + timeoutMs
  while (!until(text)) {
    const left = deadline - Date.now()
    if (left <= 0) throw new Error(`timed out waiting for ${what}; read:\n${text}`)
    const next = await Promise.race([
      reader.read(),
      new Promise((resolve) => setTimeout(() => resolve({ timeout: true }), left))
    ])
    if (next.timeout) continue
    if (next.done) {
      if (until(text)) break
      throw new Error(`feed ended before ${what}; read:\n${text}`)
    }
    text += decoder.decode(next.value, { stream: true })
  }
  return text
}

test('a change feed on the node running its room ends with closed/moved when the room unloads there, and resumes from any node', async () => {
  const room = 'ca-moved'
  const [x, y] = nodes
  const doc = new Y.Doc()
  doc.getText('t').insert(0, 'first')
  const post = async (node, update) => {
    const r = await fetch(`${node.httpUrl}/api/rooms/${room}/update?token=${tok(room)}`, { method: 'POST', body: update })
    assert.equal(r.status, 204, await r.text())
  }
  await post(x, Y.encodeStateAsUpdate(doc))
  const res = await fetch(`${x.httpUrl}/api/rooms/${room}/changes?token=${tok(room)}`)
  assert.equal(res.status, 200)
  const reader = res.body.getReader()
  const seen = await readUntil(reader, (t) => t.includes('event: sync'), 'the sync event')
  const lastId = Number(seen.match(/^id: (\d+)$/m)[1])
  // No client holds the room: it unloads after 1 s and the feed says so.
  await readUntil(reader, (t) => t.includes('"reason":"moved"'), 'the moved event')
  // Written through another node meanwhile, read back by a feed resumed on the first node.
  const sv = Y.encodeStateVector(doc)
  const before = Y.encodeStateAsUpdate(doc)
  doc.getText('t').insert(0, 'second ')
  await post(y, Y.encodeStateAsUpdate(doc, sv))
  const again = await fetch(`${x.httpUrl}/api/rooms/${room}/changes?token=${tok(room)}`, { headers: { 'last-event-id': String(lastId) } })
  assert.equal(again.status, 200)
  const resumed = await readUntil(again.body.getReader(), (t) => t.includes('event: update'), 'the update written meanwhile')
  assert.ok(!resumed.includes('event: sync'), 'resumed, not synced again')
  // A mirror holding what the first feed showed catches up with the resumed one.
  const mirror = new Y.Doc()
  Y.applyUpdate(mirror, before)
  for (const m of resumed.matchAll(/^event: update\nid: \d+\ndata: (.*)$/gm)) Y.applyUpdate(mirror, Buffer.from(m[1], 'base64'))
  assert.equal(mirror.getText('t').toString(), 'second first')
})

/** Reads an SSE response to its end (bounded in time); returns the text read. */
async function readToEnd (reader, what, timeoutMs = 20000) {
  const decoder = new TextDecoder()
  let text = ''
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const left = deadline - Date.now()
    if (left <= 0) throw new Error(`timed out waiting for the end of ${what}; read ${text.length} chars`)
    const next = await Promise.race([reader.read(), new Promise((resolve) => setTimeout(() => resolve({ timeout: true }), left))])
    if (next.timeout) continue
    if (next.done) return text + decoder.decode()
    text += decoder.decode(next.value, { stream: true })
  }
}

/** The events of an SSE text (`{event, id, data}`), and what follows the last one's end. */
function parseSse (text) {
  const blocks = text.split('\n\n')
  const tail = blocks.pop()
  const events = []
  for (const block of blocks) {
    const ev = { event: 'message', id: null, data: [] }
    for (const line of block.split('\n')) {
      if (line.startsWith(':') || line === '') continue
      const at = line.indexOf(':')
      const [field, value] = at < 0 ? [line, ''] : [line.slice(0, at), line.slice(at + 1).replace(/^ /, '')]
      if (field === 'event') ev.event = value
      else if (field === 'id') ev.id = value
      else if (field === 'data') ev.data.push(value)
      else ev.event = `unknown field ${field}`
    }
    if (ev.data.length > 0 || ev.event !== 'message') events.push({ ...ev, data: ev.data.join('\n') })
  }
  return { events, tail }
}

test('a change feed resumed with Last-Event-ID on any node, while another node writes, has no gap and no repeat', async () => {
  const room = 'ca-resume'
  const doc = new Y.Doc()
  let written = 0
  let stop = false
  // Writes through the nodes in turn (each forwarded to the room's owner), every few ms.
  const writing = (async () => {
    for (let i = 0; i < 3000 && !stop; i++) {
      const sv = Y.encodeStateVector(doc)
      doc.getText('t').insert(doc.getText('t').length, `${i % 10}`)
      const node = nodes[i % 3]
      const r = await fetch(`${node.httpUrl}/api/rooms/${room}/update?token=${tok(room)}`, { method: 'POST', body: Y.encodeStateAsUpdate(doc, sv) })
      assert.equal(r.status, 204, await r.text())
      written++
      // A pause long enough for the room to unload (1 s idle) and its lease to go: the next
      // feed resumes on a node where the room is not loaded, while the writes start again.
      if (i === 40) await new Promise((resolve) => setTimeout(resolve, 2500))
      else await new Promise((resolve) => setTimeout(resolve, 5))
    }
  })()
  const ids = []
  let first = null
  try {
    await waitFor(() => written > 0, { what: 'a first write' })
    for (let round = 0; round < 8; round++) {
      const node = nodes[round % 3]
      const headers = ids.length ? { 'last-event-id': String(ids.at(-1)) } : first !== null ? { 'last-event-id': String(first) } : {}
      const ac = new AbortController()
      const res = await fetch(`${node.httpUrl}/api/rooms/${room}/changes?token=${tok(room)}`, { headers, signal: ac.signal })
      assert.equal(res.status, 200)
      const reader = res.body.getReader()
      const want = round === 3 ? 1 : 6
      const text = await readUntil(reader, (t) => {
        const { events } = parseSse(t)
        return events.some((e) => e.event === 'closed') || events.filter((e) => e.event === 'update').length >= want
      }, `updates in round ${round}`, 20000)
      ac.abort()
      for (const e of parseSse(text).events) {
        if (e.event === 'sync') {
          assert.equal(first, null, `round ${round} resumed without a full sync`)
          first = Number(e.id)
        } else if (e.event === 'update') {
          // A full sync's first updates may be in the sync too (feed.rs); resumes never repeat.
          if (ids.length > 0 || Number(e.id) > first) ids.push(Number(e.id))
        } else if (e.event === 'closed') {
          assert.equal(JSON.parse(e.data).reason, 'moved', `round ${round}: ${e.data}`)
          break
        }
      }
      if (round === 2) {
        // The pause lets the room go everywhere; the next feed resumes on a node where it is
        // not loaded, while the writes start again.
        await waitFor(async () => (await owners([room])).size === 0, { what: 'the room unloaded', timeoutMs: 10000, intervalMs: 50 })
        await waitFor(() => written > 41, { what: 'the writes again', timeoutMs: 10000, intervalMs: 1 })
      }
    }
  } finally {
    stop = true
    await writing
  }
  assert.ok(ids.length >= 30, `updates seen: ${ids.length}`)
  assert.deepEqual(ids, ids.map((_, i) => first + 1 + i), 'seqs contiguous from the sync on, across every resume')
})

// Last: it kills a node.
test('when the owner is killed, a change feed proxied from it ends with a closed event, and a forwarded Hocuspocus document closes with 1012 and converges on the new owner', async (t) => {
  const room = 'ca-feed'
  const writer = await client(nodes[0], room)
  writer.text.insert(0, 'before')
  const owner = (await owners([room])).get(room)
  const [other, third] = nodes.filter((n) => n !== owner)
  const res = await fetch(`${other.httpUrl}/api/rooms/${room}/changes?token=${tok(room)}`)
  assert.equal(res.status, 200)
  const reader = res.body.getReader()
  let feed = await readUntil(reader, (t) => t.includes('event: sync'), 'the sync event')
  writer.text.insert(0, 'live ')
  feed += await readUntil(reader, (t) => t.includes('event: update'), 'a live update')
  // A Hocuspocus provider on a non-owner, and a y-websocket client on the third node.
  const closes = []
  const doc = new Y.Doc()
  const provider = new HocuspocusProvider({
    url: other.wsUrl,
    name: room,
    document: doc,
    token: tok(room),
    WebSocketPolyfill: WebSocket,
    onClose: (e) => closes.push(e.event?.code)
  })
  clients.push({ destroy () { provider.destroy(); doc.destroy() } })
  await waitFor(() => provider.isSynced, { what: 'hocuspocus sync' })
  const watcher = await client(third, room)
  // A large update; the feed's reader reads the start of its event, then stops: the rest is
  // stuck on its way (more than the sockets between hold) when the owner is killed.
  const BIG = 8 << 20
  writer.text.insert(0, 'x'.repeat(BIG))
  feed += await readUntil(reader, (t) => t.length > 64 * 1024, 'the start of the large event')
  await owner.kill9()
  feed += await readToEnd(reader, 'the proxied feed')
  const { events, tail } = parseSse(feed)
  assert.equal(tail, '', 'nothing after the last whole event')
  for (const e of events) {
    if (e.event === 'closed') {
      JSON.parse(e.data)
    } else {
      assert.ok(['sync', 'update'].includes(e.event), `event ${e.event.slice(0, 80)}`)
      assert.match(e.id, /^\d+$/)
      assert.ok(e.data.length % 4 === 0 && /^[A-Za-z0-9+/]*={0,2}$/.test(e.data), `whole base64 in ${e.event} ${e.id} (${e.data.length} chars)`)
      Y.decodeUpdate(Buffer.from(e.data, 'base64'))
    }
  }
  const last = events.at(-1)
  assert.equal(last.event, 'closed', 'the feed ends with closed')
  assert.equal(JSON.parse(last.data).reason, 'owner_gone')
  assert.equal(events.filter((e) => e.event === 'closed').length, 1)
  t.diagnostic(`the large update ${events.some((e) => e.data.length > BIG) ? 'arrived whole' : 'was cut off and dropped'}`)
  await waitFor(() => closes.includes(1012), { what: 'the forwarded document closed with 1012', timeoutMs: 20000 })
  // The room is placed again (after the dead owner's lease expires); the provider reconnects.
  doc.getText('t').insert(0, '[after failover]')
  await waitFor(() => watcher.text.toString().includes('[after failover]'), { what: 'a write after failover', timeoutMs: 30000 })
  await waitFor(() => doc.getText('t').toString() === watcher.text.toString(), { what: 'convergence after failover', timeoutMs: 30000 })
})
