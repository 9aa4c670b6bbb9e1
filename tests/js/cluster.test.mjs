// Cluster mode, one node (docs/cluster.md): rooms live in NATS JetStream, not in --data.
// Stock y-websocket clients edit rooms; the node is killed with -9 and a new process with
// another --data dir serves every update any client was shown. /api/cluster answers, /readyz
// follows NATS's reachability, /api/rooms lists the rooms from JetStream.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { rmSync } from 'node:fs'
import { startWeaver, tempDataDir } from './lib/weaver.mjs'
import { yclient, waitFor } from './lib/yclient.mjs'
import { startNats } from './lib/nats.mjs'

const ROOMS = ['cl-alpha', 'cl-beta', 'cl-gamma']
const CONFIRMED = 30

const markers = (text) => (text.match(/\[[^\]]*\]|\([^)]*\)/g) || [])

async function getJson (url) {
  const r = await fetch(url)
  return { status: r.status, body: await r.json() }
}

async function readyz (httpUrl) {
  return (await fetch(`${httpUrl}/readyz`)).status
}

test('one cluster node on JetStream: kill -9 loses nothing shown, /api/cluster, /readyz, /api/rooms', { timeout: 180000 }, async (t) => {
  const nats = await startNats()
  const dirs = [tempDataDir('weaver-cluster-a-'), tempDataDir('weaver-cluster-b-')]
  const nodeArgs = ['--cluster', nats.url, '--node-id', 'n1', '--lease-ttl-ms', '3000']
  let node = null
  try {
    node = await startWeaver({ dataDir: dirs[0], args: nodeArgs })
    const info = await getJson(`${node.httpUrl}/api/cluster`)
    assert.equal(info.status, 200)
    assert.equal(info.body.node_id, 'n1')
    assert.deepEqual(info.body.nodes.map((n) => [n.node_id, n.url, n.alive]), [['n1', node.httpUrl, true]])

    // Writers and observers per room; the observers are what "shown to a client" means.
    const pairs = []
    for (const room of ROOMS) {
      pairs.push({ room, writer: await yclient(node.wsUrl, room), observer: await yclient(node.wsUrl, room) })
    }
    for (const { room, writer } of pairs) {
      for (let i = 0; i < CONFIRMED; i++) writer.text.insert(writer.text.length, `[${room}.${i}]`)
    }
    for (const { writer, observer, room } of pairs) {
      const confirmed = writer.text.toString()
      await waitFor(() => observer.text.toString() === confirmed, { what: `observer of ${room} has the confirmed writes` })
    }
    const owned = await getJson(`${node.httpUrl}/api/cluster`)
    assert.deepEqual(owned.body.owned_rooms, [...ROOMS].sort(), 'the rooms run on this node')

    // Keep writing and kill -9 mid-stream.
    let n = 0
    const pump = setInterval(() => {
      for (const { writer, room } of pairs) writer.text.insert(writer.text.length, `(${room}.${n})`)
      n++
    }, 2)
    await new Promise((resolve) => setTimeout(resolve, 150))
    await node.kill9()
    clearInterval(pump)
    const seen = new Map()
    let shown = 0
    for (const { room, writer, observer } of pairs) {
      const text = observer.text.toString()
      seen.set(room, text)
      shown += markers(text).length
      writer.destroy(); observer.destroy()
    }
    assert.ok(shown >= ROOMS.length * CONFIRMED, `the observers were shown ${shown} updates`)

    // A new process with another --data dir: the rooms come from JetStream.
    node = await startWeaver({ dataDir: dirs[1], args: nodeArgs })
    let kept = 0
    for (const room of ROOMS) {
      const fresh = await yclient(node.wsUrl, room)
      const stored = fresh.text.toString()
      fresh.destroy()
      const before = seen.get(room)
      assert.ok(stored.startsWith(before), `${room}: the new process has everything shown\nseen:   ${before.slice(-80)}\nstored: ${stored.slice(-80)}`)
      kept += markers(before).length
    }
    assert.equal(kept, shown, `all ${shown} updates shown are there`)
    t.diagnostic(`${shown} updates shown before kill -9, all of them kept`)

    const listed = await getJson(`${node.httpUrl}/api/rooms`)
    assert.equal(listed.status, 200)
    const names = listed.body.rooms.map((r) => r.name)
    for (const room of ROOMS) assert.ok(names.includes(room), `${room} listed in ${names}`)
    for (const r of listed.body.rooms.filter((r) => ROOMS.includes(r.name))) {
      assert.ok(r.last_seq >= CONFIRMED, `${r.name} last_seq ${r.last_seq}`)
    }
    const again = await getJson(`${node.httpUrl}/api/cluster`)
    assert.equal(again.status, 200)
    assert.equal(again.body.node_id, 'n1')
    assert.ok(again.body.nodes.some((x) => x.node_id === 'n1' && x.alive), JSON.stringify(again.body))

    // NATS down: not ready; back: ready, and rooms take writes again.
    assert.equal(await readyz(node.httpUrl), 200)
    await nats.stop()
    await waitFor(async () => (await readyz(node.httpUrl)) === 503, { timeoutMs: 15000, what: '/readyz 503 while NATS is down' })
    await nats.start()
    await waitFor(async () => (await readyz(node.httpUrl)) === 200, { timeoutMs: 20000, what: '/readyz 200 once NATS is back' })
    const room = ROOMS[0]
    await waitFor(async () => {
      const r = await fetch(`${node.httpUrl}/api/rooms?prefix=${room}`)
      return r.ok
    }, { timeoutMs: 20000, what: 'listing after NATS is back' })
    const writer = await yclient(node.wsUrl, room, { timeoutMs: 20000 })
    const observer = await yclient(node.wsUrl, room, { timeoutMs: 20000 })
    writer.text.insert(writer.text.length, '[after-nats-restart]')
    await waitFor(() => observer.text.toString().endsWith('[after-nats-restart]'), { timeoutMs: 20000, what: 'a write after NATS came back' })
    writer.destroy(); observer.destroy()
    await node.stop()
    node = null
  } finally {
    if (node) await node.kill9()
    await nats.dispose()
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
  }
})

test('--cluster without --node-id is refused with a clear message', { timeout: 30000 }, async () => {
  await assert.rejects(
    startWeaver({ args: ['--cluster', 'nats://127.0.0.1:4222'], timeoutMs: 10000 }),
    /--node-id/
  )
})
