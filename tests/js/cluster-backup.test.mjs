// Backup and restore of a cluster (docs/cluster.md, "Backup and restore"): stock y-websocket
// clients write rooms (with versions) on a 2-node cluster; `weaver backup` from one node saves
// every room of the cluster, read from JetStream without moving any room; (a) a single node
// started on that file serves every room and version as they were, (b) `weaver restore
// --cluster` loads the file into a new NATS, and a node there serves them at the same seqs;
// (c) the single node's own backup moves it into another new cluster the same way. An APICall
// made in the cluster (the bridge's outbox on JetStream) is in the backup: the single node
// and the restored cluster list it.
// A garbage or truncated file is refused before anything is written; restoring twice refuses;
// restoring into a cluster whose nodes are alive refuses unless --force.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { startWeaver, tempDataDir, weaverBin } from './lib/weaver.mjs'
import { yclient, waitFor, textOfUpdate } from './lib/yclient.mjs'
import { startNats } from './lib/nats.mjs'
import { addBlock, requestIndex } from '@weaver/doc'

const run = promisify(execFile)
// Compaction after 20 updates: the busy room is stored as snapshot + tail.
const COMMON = ['--lease-ttl-ms', '2000', '--version-every-secs', '0', '--compact-after-updates', '20']
const ROOMS = ['cb-busy', 'cb-small', 'cb-plain']
// A room whose block asks the bridge (the default `local` integration) for one call.
const CALLS_ROOM = 'cb-calls'

/** The APICalls of `room` a node lists, once there is a bridge to answer. */
async function callsOf (base, room) {
  let calls = null
  await waitFor(async () => {
    const r = await api(base, 'GET', `/api/calls?room=${room}`)
    calls = r.status === 200 ? r.json.calls : null
    return calls !== null
  }, { what: `GET /api/calls on ${base}`, timeoutMs: 20000, intervalMs: 100 })
  return calls
}

async function api (base, method, p, body) {
  const res = await fetch(`${base}${p}`, {
    method,
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined
  })
  const text = await res.text()
  return { status: res.status, json: text && res.headers.get('content-type')?.includes('json') ? JSON.parse(text) : null }
}

/** What a room is, as any node serves it: text, seqs, versions and each version's text. */
async function snapshotOf (base, room) {
  const client = await yclient(base.replace('http', 'ws'), room)
  const text = client.text.toString()
  client.destroy()
  const listed = (await api(base, 'GET', `/api/rooms?prefix=${room}`)).json.rooms.find((r) => r.name === room)
  const versions = (await api(base, 'GET', `/api/rooms/${room}/versions`)).json.versions
  const versionTexts = []
  for (const v of versions) {
    const r = await fetch(`${base}/api/rooms/${room}/versions/${v.id}/update`)
    assert.equal(r.status, 200)
    versionTexts.push(textOfUpdate(Buffer.from(await r.arrayBuffer())))
  }
  return { text, last_seq: listed?.last_seq, versions: versions.map((v) => [v.id, v.label, v.kind]), versionTexts }
}

test('a cluster backup starts a single node and restores into a new cluster; bad files and a second restore are refused', { timeout: 240000 }, async (t) => {
  const nats = await startNats()
  const fresh = await startNats()
  const dirs = [tempDataDir('weaver-cb-n1-'), tempDataDir('weaver-cb-n2-'), tempDataDir('weaver-cb-single-'), tempDataDir('weaver-cb-new-'), tempDataDir('weaver-cb-files-')]
  const nodes = []
  const clients = []
  try {
    for (const [i, id] of ['n1', 'n2'].entries()) {
      nodes.push(await startWeaver({ dataDir: dirs[i], args: ['--cluster', nats.url, '--node-id', id, ...COMMON] }))
    }
    const [n1, n2] = nodes
    // Writers on alternating nodes; observers on the other node.
    for (const [i, room] of ROOMS.entries()) {
      const writer = await yclient((i % 2 ? n2 : n1).wsUrl, room)
      const observer = await yclient((i % 2 ? n1 : n2).wsUrl, room)
      clients.push({ room, writer, observer })
    }
    const write = (room, n, tag) => {
      const { writer } = clients.find((c) => c.room === room)
      for (let i = 0; i < n; i++) writer.text.insert(writer.text.length, `[${tag}${i}]`)
    }
    const settled = () => Promise.all(clients.map(({ room, writer, observer }) =>
      waitFor(() => observer.text.toString() === writer.text.toString(), { what: `${room} converged` })))
    write('cb-busy', 30, 'a'); write('cb-small', 3, 's'); write('cb-plain', 5, 'p')
    await settled()
    assert.equal((await api(n1.httpUrl, 'POST', '/api/rooms/cb-busy/versions', { label: 'busy-1' })).status, 201)
    assert.equal((await api(n2.httpUrl, 'POST', '/api/rooms/cb-small/versions', { label: 'small-1' })).status, 201)
    write('cb-busy', 30, 'b'); write('cb-small', 2, 't')
    await settled()
    assert.equal((await api(n2.httpUrl, 'POST', '/api/rooms/cb-busy/versions', { label: 'busy-2' })).status, 201)
    write('cb-busy', 3, 'c')
    await settled()

    // One APICall through the cluster's bridge, finished before the backup.
    const caller = await yclient(n2.wsUrl, CALLS_ROOM)
    clients.push({ room: CALLS_ROOM, writer: caller, observer: caller })
    addBlock(caller.doc, { id: 'cb1', type: 'text', content: 'one\n\ntwo' })
    requestIndex(caller.doc, 'cb1', 'search', {})
    let call = null
    await waitFor(async () => {
      const calls = (await callsOf(n1.httpUrl, CALLS_ROOM)).filter((c) => c.status === 'completed')
      call = calls[0]
      return calls.length === 1
    }, { what: 'the call completed in the cluster', timeoutMs: 20000, intervalMs: 100 })

    const before = {}
    for (const room of ROOMS) before[room] = await snapshotOf(n1.httpUrl, room)
    assert.deepEqual(before['cb-busy'].versions.map((v) => v[1]), ['busy-2', 'busy-1'], 'newest first')
    const rooms = await api(n1.httpUrl, 'GET', '/api/rooms?prefix=cb-busy')
    assert.ok(rooms.json.rooms[0].snapshot_seq > 0, `cb-busy was compacted: ${JSON.stringify(rooms.json.rooms)}`)
    const owned = async () => (await Promise.all(nodes.map(async (n) => (await api(n.httpUrl, 'GET', '/api/cluster')).json.owned_rooms.sort()))).join('|')
    const ownedBefore = await owned()

    // The backup, from either node: every room of the cluster.
    const file = path.join(dirs[4], 'cluster.redb')
    const { stdout } = await run(weaverBin, ['backup', '--server', n2.httpUrl, '--out', file])
    assert.match(stdout, /integrity verified/)
    assert.match(n2.logs(), /backup written; streaming it/)
    // No room moved and no owner was fenced: owners unchanged, and writes still flow.
    assert.equal(await owned(), ownedBefore, 'the backup took no room over')
    write('cb-plain', 1, 'after-backup')
    await settled()
    const laterPlain = clients.find((c) => c.room === 'cb-plain').writer.text.toString()

    // (a) A single node on the file, as `--data DIR/weaver.redb`.
    writeFileSync(path.join(dirs[2], 'weaver.redb'), readFileSync(file))
    const single = await startWeaver({ dataDir: dirs[2], args: ['--version-every-secs', '0'] })
    const singleFile = path.join(dirs[4], 'single.redb')
    try {
      for (const room of ROOMS) assert.deepEqual(await snapshotOf(single.httpUrl, room), before[room], `${room} on a single node`)
      const singleCalls = await callsOf(single.httpUrl, CALLS_ROOM)
      assert.deepEqual(singleCalls.map((c) => [c.id, c.status]), [[call.id, 'completed']], 'the cluster\'s call on the single node')
      // The single node goes on (a new room), and its own backup (with its bridge's and
      // notifier's tables) moves it into another new cluster below.
      const solo = await yclient(single.wsUrl, 'cb-solo')
      solo.text.insert(0, 'only on the single node')
      await waitFor(async () => (await snapshotOf(single.httpUrl, 'cb-solo')).text === 'only on the single node', { what: 'cb-solo stored' })
      solo.destroy()
      before['cb-solo'] = await snapshotOf(single.httpUrl, 'cb-solo')
      await run(weaverBin, ['backup', '--server', single.httpUrl, '--out', singleFile])
    } finally {
      await single.stop()
    }

    // Hostile files, into the new NATS: refused before anything is written.
    const garbage = path.join(dirs[4], 'garbage.redb')
    writeFileSync(garbage, Buffer.alloc(100000, 0x5a))
    const truncated = path.join(dirs[4], 'truncated.redb')
    const whole = readFileSync(file)
    writeFileSync(truncated, whole.subarray(0, Math.floor(whole.length / 2)))
    for (const bad of [garbage, truncated, path.join(dirs[4], 'missing.redb')]) {
      await assert.rejects(run(weaverBin, ['restore', '--cluster', fresh.url, bad]),
        (e) => e.code === 1 && /weaver restore: .*is not a valid database/.test(e.stderr), `${bad} refused`)
    }

    // A cluster with live nodes (n1 and n2 still run) is refused: they may create the rooms
    // being written in. --force passes that check (and meets the rooms it already has).
    const live = await run(weaverBin, ['restore', '--cluster', nats.url, '--lease-ttl-ms', '2000', file]).then(() => null, (e) => e)
    assert.ok(live && live.code !== 0, 'a restore into a running cluster fails')
    assert.match(live.stderr, /weaver restore: the cluster has 2 live nodes, nothing was restored: "n1 \(.*\)", "n2 \(.*\)"; stop them first .* or pass --force/)
    const forced = await run(weaverBin, ['restore', '--cluster', nats.url, '--lease-ttl-ms', '2000', '--force', file]).then(() => null, (e) => e)
    assert.ok(forced && forced.code === 1, 'forced, it still refuses rooms the cluster has')
    assert.match(forced.stderr, /already has 4 of the backup's 4 rooms, nothing was restored .*its bridge outbox is not empty either/)

    // (b) Restore into the new NATS: the earlier refusals wrote nothing (no room is refused
    // as existing), and a node there serves every room at the same seqs.
    const restored = await run(weaverBin, ['restore', '--cluster', fresh.url, file])
    assert.match(restored.stdout, /restored 4 rooms \(3 versions\)/)
    assert.match(restored.stdout, /bridge outbox: restored/)
    const again = await run(weaverBin, ['restore', '--cluster', fresh.url, file]).then(() => null, (e) => e)
    assert.ok(again && again.code === 1, 'a second restore fails')
    assert.match(again.stderr, /already has 4 of the backup's 4 rooms, nothing was restored .*its bridge outbox is not empty either/)
    for (const room of ROOMS) assert.ok(again.stderr.includes(`"${room}"`), `${room} named: ${again.stderr}`)
    const againRooms = await run(weaverBin, ['restore', '--cluster', fresh.url, '--skip-existing', file])
    assert.match(againRooms.stdout, /restored 0 rooms/)
    assert.match(againRooms.stdout, /bridge outbox: left alone/)
    const node = await startWeaver({ dataDir: dirs[3], args: ['--cluster', fresh.url, '--node-id', 'm1', ...COMMON] })
    nodes.push(node)
    for (const room of ROOMS) assert.deepEqual(await snapshotOf(node.httpUrl, room), before[room], `${room} in the new cluster`)
    const restoredCalls = await callsOf(node.httpUrl, CALLS_ROOM)
    assert.deepEqual(restoredCalls.map((c) => [c.id, c.status]), [[call.id, 'completed']], 'the call in the new cluster')
    // The restored cluster takes writes, continuing the seqs.
    const c = await yclient(node.wsUrl, 'cb-small')
    clients.push({ room: 'cb-x', writer: c, observer: c })
    c.text.insert(0, '#')
    await waitFor(async () => (await snapshotOf(node.httpUrl, 'cb-small')).last_seq === before['cb-small'].last_seq + 1, { what: 'a write after the restore' })
    assert.notEqual(laterPlain, before['cb-plain'].text, 'the write after the backup is not in it')

    // A single node's own backup into a third NATS: the single node moves into a cluster.
    const third = await startNats()
    let m2 = null
    try {
      const moved = await run(weaverBin, ['restore', '--cluster', third.url, singleFile])
      assert.match(moved.stdout, /restored 5 rooms \(3 versions\)/)
      m2 = await startWeaver({ args: ['--cluster', third.url, '--node-id', 'm2', ...COMMON] })
      for (const room of [...ROOMS, 'cb-solo']) assert.deepEqual(await snapshotOf(m2.httpUrl, room), before[room], `${room} moved into a cluster`)
    } finally {
      if (m2) await m2.stop()
      await third.dispose()
    }
    t.diagnostic(`backup ${whole.length} bytes; seqs ${ROOMS.map((r) => `${r}=${before[r].last_seq}`).join(' ')}`)
  } finally {
    for (const c of clients) { c.writer.destroy(); if (c.observer !== c.writer) c.observer.destroy() }
    for (const n of nodes) await n.stop()
    await nats.dispose()
    await fresh.dispose()
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
  }
})
