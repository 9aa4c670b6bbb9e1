// Many stored rooms: the bridge's start-up sweep reads stored bytes instead of loading rooms
// (issue 23). A store of 2,000 plain rooms (made through the HTTP API) and one room with a
// pending index request (tests/fixtures/scale, written offline, so no bridge has seen it)
// is started twice on the real binary: the pending request becomes a call, and after a
// restart nothing but that room is loaded, while `GET /api/rooms` still pages through all.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { cpSync } from 'node:fs'
import path from 'node:path'
import * as Y from 'yjs'
import { addBlock, requestIndex } from '@weaver/doc'
import { startWeaver, tempDataDir, repoRoot } from './lib/weaver.mjs'
import { waitFor } from './lib/yclient.mjs'

const PLAIN = 2000
const running = []
after(async () => { for (const w of running) await w.stop() })

async function start (dataDir) {
  const w = await startWeaver({ dataDir })
  running.push(w)
  return w
}

async function calls (w, room) {
  const r = await fetch(`${w.httpUrl}/api/calls?room=${room}`)
  assert.equal(r.status, 200)
  return (await r.json()).calls
}

async function post (w, room, update) {
  const r = await fetch(`${w.httpUrl}/api/rooms/${room}/update`, { method: 'POST', body: update })
  assert.ok(r.ok, `POST ${room}: ${r.status}`)
}

/** Every room of `GET /api/rooms`, page by page (`limit` per page); bounded in pages. */
async function listAll (w, limit) {
  const rooms = []
  let after = null
  for (let page = 0; page < 1000; page++) {
    const q = `limit=${limit}` + (after ? `&after=${encodeURIComponent(after)}` : '')
    const r = await fetch(`${w.httpUrl}/api/rooms?${q}`)
    assert.equal(r.status, 200)
    const body = await r.json()
    rooms.push(...body.rooms)
    if (!body.next) return rooms
    after = body.next
  }
  throw new Error('more than 1000 pages')
}

async function loadedGauge (w) {
  const text = await (await fetch(`${w.httpUrl}/metrics`)).text()
  const m = text.match(/^weaver_rooms_loaded (\d+)/m)
  assert.ok(m, 'weaver_rooms_loaded in /metrics')
  return Number(m[1])
}

test('start-up sweep: 2,000 stored plain rooms stay unloaded, a pending request becomes a call', async (t) => {
  const dataDir = tempDataDir('weaver-scale-')
  cpSync(path.join(repoRoot, 'tests/fixtures/scale/weaver-data'), dataDir, { recursive: true })

  // First start on the fixture: the sweep finds `work`'s request and creates its call.
  let w = await start(dataDir)
  const first = await waitFor(async () => (await calls(w, 'work'))[0], { timeoutMs: 20000, what: 'the call of the pending request' })
  assert.equal(first.index_name, 'search')
  assert.equal(first.block_id, 'b1')

  const names = Array.from({ length: PLAIN }, (_, i) => `plain-${String(i).padStart(4, '0')}`)
  for (let i = 0; i < PLAIN; i += 25) {
    await Promise.all(names.slice(i, i + 25).map((room) => {
      const doc = new Y.Doc()
      doc.getText('t').insert(0, `${room} says hello`)
      return post(w, room, Y.encodeStateAsUpdate(doc))
    }))
  }
  await w.stop()

  // Restart: ready without loading rooms; the sweep reads stored bytes and loads only `work`.
  const started = Date.now()
  w = await start(dataDir)
  await waitFor(async () => (await fetch(`${w.httpUrl}/readyz`)).status === 200, { what: 'ready' })
  t.diagnostic(`ready ${Date.now() - started} ms after spawn (debug build)`)
  await waitFor(() => w.logs().includes('bridge sweep of stored rooms done'), { timeoutMs: 60000, what: 'the end of the sweep' })
  t.diagnostic(`sweep done ${Date.now() - started} ms after spawn`)

  const rooms = await listAll(w, 97)
  const listed = rooms.map((r) => r.name)
  assert.equal(listed.length, PLAIN + 1, 'every stored room listed')
  assert.equal(new Set(listed).size, listed.length, 'no room listed twice')
  assert.deepEqual([...listed].sort(), [...names, 'work'].sort())
  assert.deepEqual(rooms.filter((r) => r.loaded).map((r) => r.name), ['work'], 'only the room with bridge work is loaded')
  assert.equal(await loadedGauge(w), 1)
  assert.equal((await calls(w, 'work')).length, 1, 'the swept call is not created twice')

  // A live request in a plain room is served as before (the live path, not the sweep).
  const doc = new Y.Doc()
  addBlock(doc, { id: 'late', type: 'text', content: 'late content' })
  requestIndex(doc, 'late', 'search', { dim: 3 })
  await post(w, 'plain-1999', Y.encodeStateAsUpdate(doc))
  const late = await waitFor(async () => (await calls(w, 'plain-1999'))[0], { timeoutMs: 20000, what: 'the live call' })
  assert.equal(late.block_id, 'late')
})
