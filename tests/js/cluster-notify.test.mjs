// Room-change webhooks in cluster mode (issue 17): three `weaver serve --cluster --notify-url`
// nodes over one nats-server, stock y-websocket clients editing several rooms on several
// nodes, a plain Node HTTP receiver. One node runs the cluster's notifier (the `notifier`
// role); it is killed with -9 while deliveries are in flight. Every webhook the receiver
// accepted (2xx) is accepted once: per room the seqs strictly increase, `webhook-id`s never
// repeat, every signature verifies, and each room's last seq arrives (from the next leader).
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { rmSync } from 'node:fs'
import { startWeaver, tempDataDir } from './lib/weaver.mjs'
import { yclient, waitFor } from './lib/yclient.mjs'
import { startNats } from './lib/nats.mjs'
import { webhookReceiver, verifyWebhook } from './lib/webhooks.mjs'

process.setMaxListeners(0)

const TTL = 2000
const ROOMS = ['cn-a', 'cn-b', 'cn-c']
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const leads = (node) => /this node runs the cluster's room notifications/.test(node.logs())

let nats = null
const dirs = []
const procs = []
after(async () => {
  for (const p of procs) if (p.proc.exitCode === null && p.proc.signalCode === null) await p.kill9()
  if (nats) await nats.dispose()
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

async function lastSeqs (node) {
  const r = await fetch(`${node.httpUrl}/api/rooms?prefix=cn-`)
  assert.equal(r.status, 200)
  const { rooms } = await r.json()
  return new Map(rooms.map((x) => [x.name, x.last_seq]))
}

test('the notifier killed -9 mid-stream: every accepted webhook once, in seq order, the last seq delivered', { timeout: 180000 }, async (t) => {
  nats = await startNats()
  const secret = 'whsec_' + randomBytes(24).toString('base64')
  const rx = await webhookReceiver()
  const nodes = []
  for (let i = 1; i <= 3; i++) {
    const dataDir = tempDataDir(`weaver-cn${i}-`)
    dirs.push(dataDir)
    const node = await startWeaver({
      dataDir,
      args: ['--cluster', nats.url, '--node-id', `cn${i}`, '--lease-ttl-ms', String(TTL)],
      env: {
        WEAVER_NOTIFY_URL: rx.url,
        WEAVER_NOTIFY_SECRET: secret,
        WEAVER_NOTIFY_PREFIX: 'cn-',
        WEAVER_NOTIFY_DEBOUNCE_MS: '150',
        WEAVER_NOTIFY_MAX_WAIT_MS: '600'
      }
    })
    node.id = `cn${i}`
    procs.push(node)
    nodes.push(node)
  }
  const clients = []
  try {
    const leader = await waitFor(() => nodes.find(leads), { timeoutMs: 20000, what: 'a notifier leader' })
    assert.equal(nodes.filter(leads).length, 1, 'exactly one node runs the notifier')
    const others = nodes.filter((n) => n !== leader)
    // Two writers per room, on the two nodes that survive (a room's owner may be the leader:
    // its clients are forwarded and reconnect after the failover).
    for (const room of ROOMS) {
      for (const node of others) clients.push({ room, c: await yclient(node.wsUrl, room) })
    }
    let writing = true
    let n = 0
    const writer = (async () => {
      while (writing && n < 2000) {
        for (const { c } of clients) c.text.insert(c.text.length, `${n % 10}`)
        n++
        await sleep(40)
      }
    })()

    // Mid-stream: deliveries of every room accepted, then held in flight, then the kill.
    await waitFor(() => ROOMS.every((room) => rx.accepted.some((h) => JSON.parse(h.body).room === room)), { timeoutMs: 20000, what: 'deliveries of every room' })
    rx.hold()
    const seenAtHold = rx.seen.length
    await waitFor(() => rx.seen.length > seenAtHold, { timeoutMs: 10000, what: 'a delivery in flight' })
    // A delivery answered just before the hold gets its ledger write (milliseconds on loopback).
    await sleep(200)
    const acceptedAtKill = rx.accepted.length
    const killedAt = Date.now()
    await leader.kill9()
    rx.release()
    t.diagnostic(`killed ${leader.id} with ${rx.seen.length - rx.accepted.length} deliveries in flight`)

    const next = await waitFor(() => others.find(leads), { timeoutMs: 30000, what: 'a new notifier leader' })
    await waitFor(() => rx.accepted.length > acceptedAtKill, { timeoutMs: 30000, what: 'a webhook from the new leader' })
    t.diagnostic(`${next.id} took the notifier over; first webhook ${Date.now() - killedAt} ms after kill -9 (lease TTL ${TTL} ms)`)
    await sleep(1000)
    writing = false
    await writer
    // Every client's edits stored: both writers of a room see the same text on the server.
    for (const room of ROOMS) {
      const mine = clients.filter((x) => x.room === room).map((x) => x.c)
      await waitFor(() => mine.every((c) => c.provider.synced && c.text.toString() === mine[0].text.toString()), { timeoutMs: 30000, what: `clients of ${room} converged` })
    }
    await waitFor(async () => {
      const seqs = await lastSeqs(next)
      return ROOMS.every((room) => rx.accepted.some((h) => { const e = JSON.parse(h.body); return e.room === room && e.seq === seqs.get(room) }))
    }, { timeoutMs: 30000, intervalMs: 200, what: "every room's last seq delivered" })

    const seqs = await lastSeqs(next)
    const ids = new Set()
    const perRoom = new Map()
    for (const hit of rx.accepted) {
      assert.ok(verifyWebhook(secret, hit), `signature of ${hit.headers['webhook-id']}`)
      assert.ok(!ids.has(hit.headers['webhook-id']), `${hit.headers['webhook-id']} accepted twice`)
      ids.add(hit.headers['webhook-id'])
      const e = JSON.parse(hit.body)
      assert.equal(e.type, 'room.updated')
      const list = perRoom.get(e.room) ?? []
      assert.ok(list.length === 0 || list[list.length - 1] < e.seq, `${e.room}: seq ${e.seq} after ${list}`)
      list.push(e.seq)
      perRoom.set(e.room, list)
    }
    for (const room of ROOMS) {
      const list = perRoom.get(room)
      assert.equal(list[list.length - 1], seqs.get(room), `${room}: last seq delivered`)
      t.diagnostic(`${room}: ${list.length} webhooks up to seq ${seqs.get(room)}`)
    }
    assert.deepEqual([...perRoom.keys()].sort(), ROOMS)
  } finally {
    for (const { c } of clients) c.destroy()
    for (const node of nodes) if (node.proc.exitCode === null && node.proc.signalCode === null) await node.stop()
    rx.close()
  }
})
