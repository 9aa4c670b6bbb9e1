// Cluster mode with several nodes (docs/cluster.md, issue 16): three `weaver serve --cluster`
// processes over ONE nats-server (shared by the whole file), stock y-websocket clients of one
// room spread over the nodes. Proves through the real binary: one owner per room and
// forwarding (clients of one room on different nodes converge and see each other's
// awareness), failover after kill -9 of an owner (nothing shown lost, measured), fencing of an
// owner paused past its lease (SIGSTOP/SIGCONT), a NATS restart under load, and deletion from
// any node.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { readdirSync, readFileSync, rmSync } from 'node:fs'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import { startWeaver, tempDataDir } from './lib/weaver.mjs'
import { waitFor, textOfUpdate } from './lib/yclient.mjs'
import { startNats } from './lib/nats.mjs'

process.setMaxListeners(0)

const TTL = 2000
const markers = (text) => (text.match(/\[[^\]]*\]/g) || [])
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

let nats = null
const dirs = []
const procs = []

before(async () => { nats = await startNats() })
after(async () => {
  for (const p of procs) {
    if (p.proc.exitCode === null && p.proc.signalCode === null) {
      p.proc.kill('SIGCONT')
      await p.kill9()
    }
  }
  if (nats) await nats.dispose()
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

/** Starts `n` nodes with ids `${prefix}1…`; each gets its own --data dir. */
async function startNodes (prefix, n = 3) {
  const nodes = []
  for (let i = 1; i <= n; i++) {
    const dataDir = tempDataDir(`weaver-${prefix}${i}-`)
    dirs.push(dataDir)
    const node = await startWeaver({
      dataDir,
      args: ['--cluster', nats.url, '--node-id', `${prefix}${i}`, '--lease-ttl-ms', String(TTL)]
    })
    node.id = `${prefix}${i}`
    procs.push(node)
    nodes.push(node)
  }
  return nodes
}

async function getJson (url) {
  const r = await fetch(url)
  return { status: r.status, body: await r.json() }
}

async function owners (nodes, rooms) {
  const owned = new Map()
  for (const node of nodes) {
    const { status, body } = await getJson(`${node.httpUrl}/api/cluster`)
    assert.equal(status, 200)
    for (const room of body.owned_rooms.filter((r) => rooms.includes(r))) {
      assert.ok(!owned.has(room), `${room} owned by ${owned.get(room)} and ${node.id}`)
      owned.set(room, node.id)
    }
  }
  return owned
}

/**
 * A stock y-websocket client that can move: its Y.Doc stays, its provider is replaced by one
 * on another node (as an app with several server URLs would do).
 */
function movableClient (room, name) {
  const doc = new Y.Doc()
  const c = {
    room,
    name,
    doc,
    text: doc.getText('t'),
    provider: null,
    node: null,
    closes: [],
    connect (node) {
      if (c.provider) c.provider.destroy()
      c.node = node
      const provider = new WebsocketProvider(node.wsUrl, room, doc, {
        WebSocketPolyfill: WebSocket,
        disableBc: true,
        maxBackoffTime: 500
      })
      provider.on('connection-close', (event) => { if (c.provider === provider) c.closes.push(event?.code) })
      provider.awareness.setLocalStateField('user', name)
      c.provider = provider
      return c
    },
    async synced (timeoutMs = 15000) {
      await waitFor(() => c.provider.synced, { timeoutMs, what: `sync of ${name} in ${room}` })
      return c
    },
    destroy () { if (c.provider) c.provider.destroy(); doc.destroy() }
  }
  return c
}

/** Whether every thread of `pid` is stopped (state T in /proc). */
function allThreadsStopped (pid) {
  return readdirSync(`/proc/${pid}/task`).every((tid) => {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('T')
  })
}

async function serverText (node, room) {
  const r = await fetch(`${node.httpUrl}/api/rooms/${room}/update`)
  assert.equal(r.status, 200, `GET /api/rooms/${room}/update on ${node.id}`)
  return textOfUpdate(Buffer.from(await r.arrayBuffer()))
}

test('3 nodes: clients of one room on different nodes converge and share awareness; one owner per room', { timeout: 60000 }, async () => {
  const nodes = await startNodes('a')
  const rooms = ['na-0', 'na-1', 'na-2', 'na-3', 'na-4', 'na-5']
  const clients = []
  try {
    for (const [r, room] of rooms.entries()) {
      // The first client of each room goes to a different node, so ownership spreads.
      for (let k = 0; k < 3; k++) {
        const node = nodes[(r + k) % 3]
        clients.push(await movableClient(room, `${room}@${node.id}`).connect(node).synced())
      }
    }
    for (let i = 0; i < 10; i++) {
      for (const c of clients) c.text.insert(c.text.length, `[${c.name}.${i}]`)
    }
    for (const room of rooms) {
      const mine = clients.filter((c) => c.room === room)
      await waitFor(() => mine.every((c) => markers(c.text.toString()).length === 30 && c.text.toString() === mine[0].text.toString()),
        { what: `${room} converges over 3 nodes` })
      await waitFor(() => mine.every((c) => {
        const names = [...c.provider.awareness.getStates().values()].map((s) => s.user).sort()
        return JSON.stringify(names) === JSON.stringify(mine.map((m) => m.name).sort())
      }), { what: `awareness of ${room} across nodes` })
      assert.equal(await serverText(nodes[0], room), mine[0].text.toString(), `${room} via the HTTP room API of any node`)
    }
    const owned = await owners(nodes, rooms)
    assert.deepEqual([...owned.keys()].sort(), rooms, 'every room has exactly one owner')
    for (const [r, room] of rooms.entries()) assert.equal(owned.get(room), nodes[r % 3].id, `${room} runs where its first client came`)
  } finally {
    for (const c of clients) c.destroy()
    for (const n of nodes) await n.stop()
  }
})

test('3 nodes: kill -9 of the busiest owner mid-write loses nothing shown; failover is measured', { timeout: 90000 }, async (t) => {
  const nodes = await startNodes('b')
  const rooms = ['nb-0', 'nb-1', 'nb-2', 'nb-3', 'nb-4']
  const clients = []
  let pump = null
  try {
    for (const [r, room] of rooms.entries()) {
      for (let k = 0; k < 3; k++) {
        const node = nodes[(r + k) % 3]
        const w = movableClient(room, `w${room}@${node.id}`).connect(node)
        const o = movableClient(room, `o${room}@${node.id}`).connect(node)
        w.writer = true
        clients.push(await w.synced(), await o.synced())
      }
    }
    const owned = await owners(nodes, rooms)
    const count = (id) => [...owned.values()].filter((x) => x === id).length
    const victim = nodes.reduce((a, b) => (count(b.id) > count(a.id) ? b : a))
    const survivors = nodes.filter((n) => n !== victim)
    const victimRooms = rooms.filter((room) => owned.get(room) === victim.id)
    assert.ok(victimRooms.length >= 2, `the victim owns ${victimRooms}`)

    // Every writer writes every 20 ms; markers name their write time's index.
    let n = 0
    let killedAt = null
    let firstAfterKill = null
    pump = setInterval(() => {
      for (const c of clients) {
        if (!c.writer) continue
        if (killedAt !== null && c.node === victim) continue
        c.text.insert(c.text.length, `[${c.name}.${n}]`)
      }
      n++
    }, 20)
    await sleep(600)
    killedAt = Date.now()
    firstAfterKill = n + 1
    await victim.kill9()
    // What every client on a surviving node was shown at the kill.
    const shown = new Map(rooms.map((room) => [room, new Set()]))
    for (const c of clients) {
      if (c.node !== victim) for (const m of markers(c.text.toString())) shown.get(c.room).add(m)
    }

    // Failover: a write made after the kill, in a room the victim owned, reaches an observer
    // on a surviving node (so it was committed by the room's new owner).
    const failover = new Map()
    const afterKill = (c) => markers(c.text.toString()).some((m) => {
      const i = Number(m.slice(m.lastIndexOf('.') + 1, -1))
      return !m.includes(`@${c.node.id}.`) && i >= firstAfterKill
    })
    await waitFor(() => {
      for (const room of victimRooms) {
        if (failover.has(room)) continue
        if (clients.some((c) => c.room === room && !c.writer && c.node !== victim && afterKill(c))) failover.set(room, Date.now() - killedAt)
      }
      return failover.size === victimRooms.length
    }, { timeoutMs: TTL + 8000, intervalMs: 5, what: 'a commit in every room the killed node owned' })
    const first = Math.min(...failover.values())
    const slowest = Math.max(...failover.values())
    console.log(`failover after kill -9 (lease TTL ${TTL} ms): first commit seen by a client on another node after ${first} ms, every room of the killed node after ${slowest} ms`)
    t.diagnostic(`failover ${first} ms (first room), ${slowest} ms (all ${victimRooms.length} rooms), TTL ${TTL} ms`)
    assert.ok(slowest <= TTL + 2000, `failover ${slowest} ms must be ≤ TTL + 2 s`)

    // Durable before shown: the survivors hold everything any client on them was shown, before
    // the killed node's clients come back with their own copies.
    for (const room of rooms) {
      const stored = new Set(markers(await serverText(survivors[0], room)))
      const missing = [...shown.get(room)].filter((m) => !stored.has(m))
      assert.deepEqual(missing, [], `${room}: shown before the kill and stored`)
    }

    // The killed node's clients move to a surviving node with their documents.
    for (const c of clients.filter((c) => c.node === victim)) c.connect(survivors[clients.indexOf(c) % 2])
    await sleep(300)
    clearInterval(pump)
    pump = null
    for (const room of rooms) {
      const mine = clients.filter((c) => c.room === room)
      await waitFor(() => mine.every((c) => c.provider.synced && c.text.toString() === mine[0].text.toString()), { what: `${room}: every replica identical` })
      const final = mine[0].text.toString()
      assert.ok(markers(final).length > 0)
      for (const m of shown.get(room)) assert.ok(final.includes(m), `${room} keeps ${m}`)
      assert.equal(await serverText(survivors[1], room), final, `${room}: JetStream holds what the clients converged on`)
    }
    const after = await owners(survivors, rooms)
    assert.deepEqual([...after.keys()].sort(), rooms, 'every room owned by one surviving node')
  } finally {
    if (pump) clearInterval(pump)
    for (const c of clients) c.destroy()
    for (const n of nodes) await n.stop()
  }
})

test('fencing: an owner paused past its lease commits and broadcasts nothing after SIGCONT; its sockets close 1012', { timeout: 60000 }, async () => {
  const nodes = await startNodes('c')
  const [A, B, C] = nodes
  const room = 'nc-fence'
  const clients = []
  let stopped = false
  try {
    // A owns the room: its first client came there.
    const aw = await movableClient(room, 'aw').connect(A).synced()
    const ao = await movableClient(room, 'ao').connect(A).synced()
    const bw = await movableClient(room, 'bw').connect(B).synced()
    const co = await movableClient(room, 'co').connect(C).synced()
    clients.push(aw, ao, bw, co)
    assert.equal((await owners(nodes, [room])).get(room), A.id)
    for (let i = 0; i < 5; i++) for (const w of [aw, bw]) w.text.insert(w.text.length, `[${w.name}.before.${i}]`)
    await waitFor(() => clients.every((c) => markers(c.text.toString()).length === 10 && c.text.toString() === aw.text.toString()), { what: 'confirmed writes before the pause' })

    // The clients that stay on A do not move by themselves: what they hold after SIGCONT is
    // what A sent them. aw keeps writing into its socket to A while A is paused.
    for (const c of [aw, ao]) c.provider.on('connection-close', () => { if (c.provider.shouldConnect) setImmediate(() => c.provider.disconnect()) })
    A.proc.kill('SIGSTOP')
    stopped = true
    const pausedAt = Date.now()
    // SIGSTOP takes effect once every thread of A was scheduled to stop; on a busy machine a
    // thread may still run for a moment and legitimately commit a write sent meanwhile.
    await waitFor(() => allThreadsStopped(A.proc.pid), { timeoutMs: 5000, what: 'A stopped' })
    for (let i = 0; i < 5; i++) aw.text.insert(aw.text.length, `[aw.paused.${i}]`)
    await sleep(TTL + 500)
    const wroteAt = Date.now()
    for (let i = 0; i < 5; i++) bw.text.insert(bw.text.length, `[bw.after.${i}]`)
    await waitFor(() => markers(co.text.toString()).filter((m) => m.startsWith('[bw.after.')).length === 5,
      { timeoutMs: TTL + 6000, what: 'writes on B confirmed to an observer on C after the takeover' })
    const takeover = await owners([B, C], [room])
    assert.ok(takeover.has(room), `another node owns ${room} now`)
    const newOwner = nodes.find((n) => n.id === takeover.get(room))
    console.log(`takeover from a paused owner: writes made ${wroteAt - pausedAt} ms after SIGSTOP confirmed on another node ${Date.now() - wroteAt} ms later (TTL ${TTL} ms)`)

    A.proc.kill('SIGCONT')
    stopped = false
    await waitFor(() => aw.closes.length > 0 && ao.closes.length > 0, { timeoutMs: 10000, what: 'A closes its sockets after SIGCONT' })
    assert.equal(ao.closes[0], 1012, 'the observer on A: room moved')
    assert.equal(aw.closes[0], 1012, 'the writer on A: room moved')
    await sleep(300)
    // Nothing of what aw wrote into the paused owner was committed or broadcast by it.
    const stored = await serverText(newOwner, room)
    assert.ok(!stored.includes('[aw.paused.'), `the paused owner committed nothing after losing its lease: ${stored}`)
    const seenOnA = ao.text.toString()
    assert.ok(!seenOnA.includes('[aw.paused.'), 'the paused owner broadcast nothing after losing its lease')
    for (const m of markers(seenOnA)) assert.ok(stored.includes(m), `${m}, shown by A, is in the new owner's state`)
    for (const m of markers(co.text.toString())) assert.ok(stored.includes(m), `${m}, confirmed on C, is stored`)

    // A's clients come back (through A, which now forwards): nothing diverges.
    for (const c of [aw, ao]) c.connect(A)
    await waitFor(() => clients.every((c) => c.provider.synced && c.text.toString() === bw.text.toString()), { what: 'every replica identical' })
    const final = bw.text.toString()
    assert.equal(markers(final).length, 20)
    for (const node of nodes) assert.equal(await serverText(node, room), final, `${node.id} serves the same room`)
    const after = await owners(nodes, [room])
    assert.equal(after.get(room), newOwner.id, 'the room stayed with the new owner')
  } finally {
    if (stopped) A.proc.kill('SIGCONT')
    for (const c of clients) c.destroy()
    for (const n of nodes) await n.stop()
  }
})

test('NATS restart under load: nodes go not-ready and recover, clients reconnect, nothing shown is lost', { timeout: 90000 }, async () => {
  const nodes = await startNodes('d')
  const rooms = ['nd-0', 'nd-1', 'nd-2']
  const clients = []
  let pump = null
  try {
    for (const [r, room] of rooms.entries()) {
      for (let k = 0; k < 3; k++) {
        const node = nodes[(r + k) % 3]
        const w = movableClient(room, `w${room}@${node.id}`).connect(node)
        w.writer = true
        clients.push(await w.synced(), await movableClient(room, `o${room}@${node.id}`).connect(node).synced())
      }
    }
    let n = 0
    pump = setInterval(() => {
      for (const c of clients) if (c.writer) c.text.insert(c.text.length, `[${c.name}.${n}]`)
      n++
    }, 25)
    await sleep(500)
    await nats.stop()
    const shown = new Map(rooms.map((room) => [room, new Set()]))
    for (const c of clients.filter((c) => !c.writer)) for (const m of markers(c.text.toString())) shown.get(c.room).add(m)
    for (const node of nodes) {
      await waitFor(async () => (await fetch(`${node.httpUrl}/readyz`)).status === 503, { timeoutMs: 15000, what: `${node.id} not ready while NATS is down` })
    }
    await sleep(500)
    await nats.start()
    for (const node of nodes) {
      await waitFor(async () => (await fetch(`${node.httpUrl}/readyz`)).status === 200, { timeoutMs: 20000, what: `${node.id} ready once NATS is back` })
    }
    // Writes go through again: a marker written now reaches every client of its room.
    const mark = n
    await waitFor(() => rooms.every((room) => clients.filter((c) => c.room === room && !c.writer).every((c) =>
      markers(c.text.toString()).some((m) => Number(m.slice(m.lastIndexOf('.') + 1, -1)) > mark))),
    { timeoutMs: TTL + 10000, what: 'writes after the restart reach every observer' })
    clearInterval(pump)
    pump = null
    for (const room of rooms) {
      const mine = clients.filter((c) => c.room === room)
      await waitFor(() => mine.every((c) => c.provider.synced && c.text.toString() === mine[0].text.toString()), { timeoutMs: 20000, what: `${room}: every replica identical` })
      const final = mine[0].text.toString()
      const stored = await serverText(nodes[0], room)
      assert.equal(stored, final, `${room}: stored state equals the replicas`)
      for (const m of shown.get(room)) assert.ok(final.includes(m), `${room} keeps ${m} shown before NATS stopped`)
    }
    const owned = await owners(nodes, rooms)
    assert.deepEqual([...owned.keys()].sort(), rooms, 'every room has one owner again')
  } finally {
    if (pump) clearInterval(pump)
    for (const c of clients) c.destroy()
    for (const n of nodes) await n.stop()
  }
})

test('DELETE /api/rooms/{room} on a non-owner and on the owner: the room is empty on every node', { timeout: 60000 }, async () => {
  const nodes = await startNodes('e')
  const [A, B, C] = nodes
  const room = 'ne-del'
  const clients = []
  try {
    for (const round of [B, A]) {
      const a = await movableClient(room, `a-${round.id}`).connect(A).synced()
      const b = await movableClient(room, `b-${round.id}`).connect(B).synced()
      clients.push(a, b)
      a.text.insert(0, `[a.${round.id}]`)
      b.text.insert(0, `[b.${round.id}]`)
      await waitFor(() => markers(a.text.toString()).length === 2 && a.text.toString() === b.text.toString(), { what: 'writes before deletion' })
      assert.equal((await owners(nodes, [room])).get(room), A.id)
      const closed = [a, b].map((c) => new Promise((resolve) => c.provider.once('closed', (e) => resolve(e.code))))
      const r = await fetch(`${round.httpUrl}/api/rooms/${room}`, { method: 'DELETE' })
      assert.equal(r.status, 204, `DELETE on ${round === A ? 'the owner' : 'a non-owner'}`)
      assert.deepEqual(await Promise.all(closed), [4410, 4410], 'clients on the owner and on a forwarding node are told')
      for (const node of nodes) assert.equal(await serverText(node, room), '', `${room} is empty on ${node.id}`)
      for (const c of [a, b]) c.destroy()
      clients.length = 0
      const fresh = await movableClient(room, 'fresh').connect(C).synced()
      assert.equal(fresh.text.toString(), '', 'a new client sees an empty room')
      fresh.destroy()
    }
  } finally {
    for (const c of clients) c.destroy()
    for (const n of nodes) await n.stop()
  }
})
