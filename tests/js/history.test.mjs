// Document history through the real binary with stock yjs + y-websocket clients: a restore
// reaches connected clients live (no reconnect), an offline client's edits merge with the
// restored document when it reconnects, and restoring the pre-restore version undoes it; in
// cluster mode versions live in JetStream and survive the node.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { rmSync } from 'node:fs'
import { startWeaver, tempDataDir } from './lib/weaver.mjs'
import { yclient, waitFor, textOfUpdate } from './lib/yclient.mjs'
import { startNats } from './lib/nats.mjs'

let weaver
before(async () => { weaver = await startWeaver({ args: ['--version-every-secs', '0'] }) })
after(async () => { await weaver?.stop() })

async function api (method, path, body, base = weaver.httpUrl) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined
  })
  const text = await res.text()
  return { status: res.status, json: text ? JSON.parse(text) : null }
}

const view = (c) => JSON.stringify({ t: c.text.toString(), meta: c.doc.getMap('meta').toJSON() })

test('a restore reaches connected clients live and an offline client merges with it', { timeout: 60000 }, async () => {
  const room = 'history-live'
  const a = await yclient(weaver.wsUrl, room)
  const b = await yclient(weaver.wsUrl, room)
  const c = await yclient(weaver.wsUrl, room)
  const sockets = [a, b].map((x) => x.provider.ws)
  let disconnects = 0
  for (const x of [a, b]) x.provider.on('status', ({ status }) => { if (status === 'disconnected') disconnects++ })
  try {
    a.doc.transact(() => {
      a.text.insert(0, 'hello')
      a.doc.getMap('meta').set('title', 'v1')
    })
    await waitFor(() => c.text.toString() === 'hello', { what: 'c sees the first edit' })
    const created = await api('POST', `/api/rooms/${room}/versions`, { label: 'first' })
    assert.equal(created.status, 201)
    assert.equal(created.json.label, 'first')
    assert.equal(typeof created.json.id, 'string')
    const version = created.json.id

    a.doc.transact(() => {
      a.text.insert(5, ' world!!')
      a.doc.getMap('meta').set('title', 'v2')
      a.doc.getMap('meta').set('extra', true)
    })
    await waitFor(() => c.text.toString() === 'hello world!!', { what: 'c sees the second edit' })
    // c goes offline and edits there.
    c.provider.disconnect()
    c.doc.transact(() => {
      c.text.insert(c.text.length, ' offline')
      c.doc.getMap('meta').set('offline', 1)
    })

    const listed = await api('GET', `/api/rooms/${room}/versions`)
    assert.equal(listed.status, 200)
    assert.deepEqual(listed.json.versions.map((v) => v.id), [version])

    const restored = await api('POST', `/api/rooms/${room}/versions/${version}/restore`)
    assert.equal(restored.status, 200)
    assert.equal(restored.json.restored, version)
    assert.equal(restored.json.pre_restore.kind, 'pre-restore')
    const expected = JSON.stringify({ t: 'hello', meta: { title: 'v1' } })
    await waitFor(() => view(a) === expected && view(b) === expected, { what: 'a and b see the restored version' })
    // Live: the same sockets, never disconnected.
    assert.equal(disconnects, 0)
    assert.deepEqual([a, b].map((x) => x.provider.ws), sockets)

    // c reconnects: its offline edits merge with the restored document by the CRDT rules.
    c.provider.connect()
    await waitFor(() => view(a) === view(c) && view(b) === view(c) && c.provider.synced, { what: 'convergence after c reconnects' })
    assert.equal(a.text.toString(), 'hello offline')
    assert.deepEqual(a.doc.getMap('meta').toJSON(), { title: 'v1', offline: 1 })

    // Undo: restoring the pre-restore version brings back what the restore replaced (and
    // keeps what c added since, which no version had).
    const undo = await api('POST', `/api/rooms/${room}/versions/${restored.json.pre_restore.id}/restore`)
    assert.equal(undo.status, 200)
    await waitFor(() => a.text.toString().startsWith('hello world!!') && view(a) === view(b) && view(b) === view(c), { what: 'the undo everywhere' })
    assert.equal(a.doc.getMap('meta').get('title'), 'v2')
    assert.equal(a.doc.getMap('meta').get('extra'), true)

    const all = await api('GET', `/api/rooms/${room}/versions`)
    assert.deepEqual(all.json.versions.map((v) => v.kind), ['pre-restore', 'pre-restore', 'explicit'])
    assert.equal((await api('GET', `/api/rooms/${room}/versions/12345/update`)).status, 404)
  } finally {
    a.destroy(); b.destroy(); c.destroy()
  }
})

test('cluster mode: versions live in JetStream, survive a kill -9 and a node with an empty --data, and restore there', { timeout: 120000 }, async () => {
  const nats = await startNats()
  const dirs = [tempDataDir('weaver-history-a-'), tempDataDir('weaver-history-b-')]
  const args = ['--cluster', nats.url, '--node-id', 'h1', '--lease-ttl-ms', '2000', '--version-every-secs', '0']
  let node = null
  let client = null
  try {
    node = await startWeaver({ dataDir: dirs[0], args })
    const room = 'history-cluster'
    client = await yclient(node.wsUrl, room)
    client.doc.getMap('meta').set('title', 'kept in JetStream')
    client.text.insert(0, 'before')
    const durable = (text) => waitFor(async () => {
      const r = await fetch(`${node.httpUrl}/api/rooms/${room}/update`)
      return textOfUpdate(Buffer.from(await r.arrayBuffer())) === text
    }, { what: `the server has ${JSON.stringify(text)}` })
    await durable('before')
    const created = await api('POST', `/api/rooms/${room}/versions`, { label: 'cluster' }, node.httpUrl)
    assert.equal(created.status, 201)
    client.text.insert(client.text.length, ' and after')
    client.doc.getMap('meta').set('title', 'changed')
    await durable('before and after')
    client.destroy()
    client = null
    await node.kill9()

    // Another process with another (empty) data directory: everything is in JetStream.
    node = await startWeaver({ dataDir: dirs[1], args })
    const listed = await api('GET', `/api/rooms/${room}/versions`, undefined, node.httpUrl)
    assert.equal(listed.status, 200)
    assert.deepEqual(listed.json.versions.map((v) => [v.id, v.label, v.kind]), [[created.json.id, 'cluster', 'explicit']])
    client = await yclient(node.wsUrl, room)
    assert.equal(client.text.toString(), 'before and after')
    const restored = await api('POST', `/api/rooms/${room}/versions/${created.json.id}/restore`, undefined, node.httpUrl)
    assert.equal(restored.status, 200, JSON.stringify(restored.json))
    await waitFor(() => client.text.toString() === 'before' && client.doc.getMap('meta').get('title') === 'kept in JetStream', { what: 'the restore, live' })
    const after = await api('GET', `/api/rooms/${room}/versions`, undefined, node.httpUrl)
    assert.deepEqual(after.json.versions.map((v) => v.kind), ['pre-restore', 'explicit'])
  } finally {
    client?.destroy()
    if (node) await node.kill9()
    await nats.dispose()
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
  }
})
