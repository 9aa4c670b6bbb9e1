// The Rust client through `weaver replica` (crates/weaver/src/replica_cmd.rs over weaver-client)
// against the real `weaver serve`, together with stock yjs/y-websocket clients: concurrent edits
// converge, offline edits survive a stopped server and a SIGKILL, exit codes, token states.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { rmSync } from 'node:fs'
import net from 'node:net'
import { startWeaver, tempDataDir, weaverBin } from './lib/weaver.mjs'
import { yclient, waitFor } from './lib/yclient.mjs'
import { generateKey, mintRoomToken } from '@weaver/doc/server'
import { addBlock, editContent, getBlockText, readBlocks } from '@weaver/doc'

/** Runs `weaver replica ... <cmd...>`; resolves { code, stdout, stderr }. */
function replica ({ server, room, dir, token, timeoutMs = 3000 }, ...cmd) {
  const args = ['replica', '--server', server, '--room', room, '--dir', dir, '--sync-timeout-ms', String(timeoutMs)]
  if (token) args.push('--token', token)
  return new Promise((resolve) => {
    const p = spawn(weaverBin, [...args, ...cmd], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    p.stdout.on('data', (d) => { stdout += d })
    p.stderr.on('data', (d) => { stderr += d })
    p.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr }))
  })
}

/** A loopback port nothing listens on. */
async function deadPort () {
  const s = net.createServer()
  await new Promise((resolve) => s.listen(0, '127.0.0.1', resolve))
  const { port } = s.address()
  await new Promise((resolve) => s.close(resolve))
  return port
}

const blocksOf = async (w, room) => (await (await fetch(`${w.httpUrl}/api/rooms/${room}/blocks`)).json())

test('weaver replica end to end: add-block, edit, request-index, show, sync and their exit codes', { timeout: 60000 }, async () => {
  const w = await startWeaver()
  const dir = tempDataDir('weaver-replica-')
  const at = { server: w.wsUrl, room: 'cli', dir }
  try {
    let r = await replica(at, 'add-block', 'b1', 'hello')
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stderr, /saved locally/)
    assert.match(r.stderr, /synced with the server/)
    r = await replica(at, 'edit', 'b1', ' world')
    assert.equal(r.code, 0, r.stderr)
    r = await replica(at, 'request-index', 'b1', 'search')
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stderr, /attempt 1/)
    r = await replica(at, 'sync')
    assert.equal(r.code, 0, r.stderr)

    const server = await blocksOf(w, 'cli')
    assert.equal(server.blocks[0].content, 'hello world')
    assert.equal(server.blocks[0].indexingList[0].index_name, 'search')
    // `show` prints exactly the API's shape; from a fresh directory it pulls everything first.
    await waitFor(async () => (await blocksOf(w, 'cli')).blocks[0].indexingList[0].status === 'done', { what: 'bridge result' })
    const fresh = { ...at, dir: tempDataDir('weaver-replica-') }
    r = await replica(fresh, 'show')
    assert.equal(r.code, 0, r.stderr)
    assert.deepEqual(JSON.parse(r.stdout), await blocksOf(w, 'cli'))
    rmSync(fresh.dir, { recursive: true, force: true })

    // edit of an unknown block: a local failure (1); unreachable server: add-block 0, sync 3.
    r = await replica(at, 'edit', 'nope', 'x')
    assert.equal(r.code, 1)
    const off = { ...at, server: `ws://127.0.0.1:${await deadPort()}`, timeoutMs: 500 }
    r = await replica(off, 'add-block', 'b2', 'offline')
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stderr, /not synced: the server is unreachable/)
    r = await replica(off, 'sync')
    assert.equal(r.code, 3, r.stderr)
    r = await replica(off, 'show')
    assert.equal(r.code, 0)
    assert.deepEqual(JSON.parse(r.stdout).blocks.map((b) => b.id), ['b1', 'b2'])
    // Back in reach: the offline block is pushed.
    r = await replica(at, 'sync')
    assert.equal(r.code, 0, r.stderr)
    assert.deepEqual((await blocksOf(w, 'cli')).blocks.map((b) => b.id), ['b1', 'b2'])
  } finally {
    await w.stop()
    rmSync(dir, { recursive: true, force: true })
  }
})

test('Rust replica and stock JS clients edit one room concurrently and converge; offline edits made while the server was stopped arrive', { timeout: 90000 }, async () => {
  const dataDir = tempDataDir('weaver-client-conv-')
  const dir = tempDataDir('weaver-replica-')
  let w = await startWeaver({ dataDir })
  const port = w.port
  const at = { server: w.wsUrl, room: 'mixed', dir }
  let js
  try {
    js = await yclient(w.wsUrl, 'mixed')
    addBlock(js.doc, { id: 'shared', type: 'text', content: 'base' })
    let r = await replica(at, 'sync')
    assert.equal(r.code, 0, r.stderr)
    // Concurrent: the JS client and the Rust replica append to the same block.
    const runs = []
    for (let i = 0; i < 5; i++) {
      editContent(js.doc, 'shared', 0, 0, `js${i} `)
      runs.push(replica(at, 'edit', 'shared', ` rs${i}`))
      await runs[runs.length - 1]
    }
    for (const x of await Promise.all(runs)) assert.equal(x.code, 0, x.stderr)
    r = await replica(at, 'sync')
    assert.equal(r.code, 0, r.stderr)
    await waitFor(() => /rs4/.test(getBlockText(js.doc, 'shared')), { what: 'rust edits at the JS client' })
    r = await replica(at, 'show')
    assert.deepEqual(JSON.parse(r.stdout), readBlocks(js.doc))

    // The server stops: the replica keeps editing, the JS client too (its own offline copy).
    await w.stop()
    r = await replica({ ...at, timeoutMs: 300 }, 'edit', 'shared', ' rs-offline')
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stderr, /unreachable/)
    r = await replica({ ...at, timeoutMs: 300 }, 'add-block', 'rs-new', 'made while down')
    assert.equal(r.code, 0)
    editContent(js.doc, 'shared', 0, 0, 'js-offline ')

    w = await startWeaver({ dataDir, listen: `127.0.0.1:${port}` })
    r = await replica({ ...at, timeoutMs: 10000 }, 'sync')
    assert.equal(r.code, 0, r.stderr)
    await waitFor(() => js.provider.synced && readBlocks(js.doc).blocks.length === 2, { what: 'the JS client to reconnect and receive the offline block' })
    await waitFor(async () => {
      const server = await blocksOf(w, 'mixed')
      const text = server.blocks.find((b) => b.id === 'shared')?.content ?? ''
      return text.includes('js-offline') && text.includes('rs-offline')
    }, { what: 'both offline edits on the server' })
    r = await replica(at, 'show')
    assert.deepEqual(JSON.parse(r.stdout), await blocksOf(w, 'mixed'))
    assert.deepEqual(readBlocks(js.doc), await blocksOf(w, 'mixed'))
  } finally {
    js?.destroy()
    await w.stop()
    rmSync(dataDir, { recursive: true, force: true })
    rmSync(dir, { recursive: true, force: true })
  }
})

test('SIGKILL right after an offline edit returned: the next process on the same directory pushes it', { timeout: 60000 }, async () => {
  const dir = tempDataDir('weaver-replica-')
  const port = await deadPort()
  try {
    // Offline, with a long timeout: the process is still retrying when it is killed.
    const args = ['replica', '--server', `ws://127.0.0.1:${port}`, '--room', 'killed', '--dir', dir, '--sync-timeout-ms', '30000', 'add-block', 'k1', 'survives kill -9']
    const p = spawn(weaverBin, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let stderr = ''
    p.stderr.on('data', (d) => { stderr += d })
    const exited = new Promise((resolve) => p.on('exit', (code, signal) => resolve({ code, signal })))
    await waitFor(() => /saved locally/.test(stderr), { what: 'the edit to return' })
    p.kill('SIGKILL')
    assert.equal((await exited).signal, 'SIGKILL')

    const w = await startWeaver({ listen: `127.0.0.1:${port}` })
    try {
      const r = await replica({ server: w.wsUrl, room: 'killed', dir }, 'sync')
      assert.equal(r.code, 0, r.stderr)
      assert.equal((await blocksOf(w, 'killed')).blocks[0].content, 'survives kill -9')
    } finally {
      await w.stop()
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('read-only and expired tokens: edits stay local, sync says so (exit 4), a write token pushes them', { timeout: 60000 }, async () => {
  const hex = generateKey()
  const w = await startWeaver({ env: { WEAVER_AUTH_KEY: hex } })
  const dir = tempDataDir('weaver-replica-')
  const at = { server: w.wsUrl, room: 'guarded', dir, timeoutMs: 1500 }
  const token = (opts) => mintRoomToken({ key: hex, room: 'guarded', expiresIn: 600, ...opts })
  try {
    let r = await replica({ ...at, token: token({ write: false }) }, 'add-block', 'ro', 'read only')
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stderr, /not synced: the token is read-only/)
    r = await replica({ ...at, token: token({ write: false }) }, 'sync')
    assert.equal(r.code, 4, r.stderr)
    assert.match(r.stderr, /read-only/)

    r = await replica({ ...at, token: token({ write: true, expiresAt: Math.floor(Date.now() / 1000) - 5 }) }, 'sync')
    assert.equal(r.code, 4, r.stderr)
    assert.match(r.stderr, /refused or expired/)

    const admin = mintRoomToken({ key: hex, room: '', prefix: true, admin: true, expiresIn: 600 })
    const stored = async () => (await (await fetch(`${w.httpUrl}/api/rooms/guarded/blocks`, { headers: { authorization: `Bearer ${admin}` } })).json())
    assert.deepEqual((await stored()).blocks, [])
    r = await replica({ ...at, token: token({ write: true }) }, 'sync')
    assert.equal(r.code, 0, r.stderr)
    assert.equal((await stored()).blocks[0].content, 'read only')
  } finally {
    await w.stop()
    rmSync(dir, { recursive: true, force: true })
  }
})
