// Upgrades: files written by an older binary still open. tests/fixtures/redb4 holds a server
// store and a weaver-client replica written by a weaver built on redb 4.6 (see its make.mjs);
// this binary must open both (the server with its integrity check on), serve the same rooms,
// APICalls and webhook state, and push the replica's offline edit.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import path from 'node:path'
import { spawn } from 'node:child_process'
import { cpSync, readFileSync, rmSync } from 'node:fs'
import * as Y from 'yjs'
import { repoRoot, startWeaver, tempDataDir, weaverBin } from './lib/weaver.mjs'
import { waitFor } from './lib/yclient.mjs'

const fixture = path.join(repoRoot, 'tests/fixtures/redb4')
const manifest = JSON.parse(readFileSync(path.join(fixture, 'manifest.json'), 'utf8'))

function run (...args) {
  return new Promise((resolve) => {
    const p = spawn(weaverBin, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    p.stdout.on('data', (d) => { stdout += d })
    p.stderr.on('data', (d) => { stderr += d })
    p.on('exit', (code) => resolve({ code, stdout, stderr }))
  })
}

/** What a room's state shows a client: its text `t`, its map `m`. */
function content (base64) {
  const doc = new Y.Doc()
  Y.applyUpdate(doc, Buffer.from(base64, 'base64'))
  return { t: doc.getText('t').toString(), m: doc.getMap('m').toJSON() }
}

test('a store and a replica written by the redb 4 binary open and serve the same content', { timeout: 60000 }, async () => {
  const dataDir = tempDataDir('weaver-upgrade-')
  const replicaDir = path.join(dataDir, 'replica')
  cpSync(path.join(fixture, 'weaver-data'), dataDir, { recursive: true })
  cpSync(path.join(fixture, 'replica'), replicaDir, { recursive: true })
  const hits = []
  const rx = http.createServer((req, res) => {
    let body = ''
    req.on('data', (d) => { body += d })
    req.on('end', () => { hits.push(JSON.parse(body)); res.writeHead(204).end() })
  })
  await new Promise((resolve) => rx.listen(0, '127.0.0.1', resolve))
  let w
  try {
    w = await startWeaver({ dataDir, env: { WEAVER_NOTIFY_URL: `http://127.0.0.1:${rx.address().port}/hook`, WEAVER_NOTIFY_DEBOUNCE_MS: '200' } })
    for (const [room, old] of Object.entries(manifest.rooms)) {
      const update = Buffer.from(await (await fetch(`${w.httpUrl}/api/rooms/${room}/update`)).arrayBuffer()).toString('base64')
      assert.deepEqual(content(update), content(old.update), `room ${room}`)
      assert.deepEqual(await (await fetch(`${w.httpUrl}/api/rooms/${room}/blocks`)).json(), old.blocks, `blocks of ${room}`)
    }
    const calls = (await (await fetch(`${w.httpUrl}/api/calls?room=indexed`)).json()).calls
    assert.deepEqual(calls, manifest.calls)
    // notify_rooms still knows what was delivered: nothing is announced again at start-up...
    await new Promise((resolve) => setTimeout(resolve, 1500))
    assert.deepEqual(hits, [], 'rooms already announced by the old binary are not announced again')
    // ...and the replica's offline edit arrives, announced with the next seq.
    let r = await run('replica', '--server', w.wsUrl, '--room', 'notes', '--dir', replicaDir, 'sync')
    assert.equal(r.code, 0, r.stderr)
    r = await run('replica', '--server', w.wsUrl, '--room', 'notes', '--dir', replicaDir, 'show')
    assert.equal(r.code, 0, r.stderr)
    assert.deepEqual(JSON.parse(r.stdout), manifest.replicaBlocks)
    const blocks = (await (await fetch(`${w.httpUrl}/api/rooms/notes/blocks`)).json()).blocks
    assert.deepEqual(blocks.map((b) => [b.id, b.content]).sort(), [['r1', 'from the replica'], ['r2', 'made offline']])
    await waitFor(() => hits.length > 0, { what: 'room.updated for notes' })
    assert.deepEqual(hits.map((h) => [h.room, h.seq]), [['notes', manifest.notified.notes + 1]])
    // The upgraded store copies into a backup that passes redb's integrity check.
    const out = path.join(dataDir, 'backup.redb')
    r = await run('backup', '--server', w.httpUrl, '--out', out)
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /integrity verified/)
  } finally {
    if (w) await w.stop()
    rx.close()
    rmSync(dataDir, { recursive: true, force: true })
  }
})
