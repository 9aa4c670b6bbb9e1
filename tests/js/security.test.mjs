// Access control and abuse limits against the real `weaver serve --auth-key`: tokens minted with
// `@weaver/doc/server` as docs/security.md shows (and by `weaver token`), stock y-websocket clients
// passing them via `params`, raw `ws` sockets for exact status and close codes. Every refusal
// must hit only the offender: a normal client syncs the same room afterwards.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile, execFileSync, spawnSync } from 'node:child_process'
import { readdirSync, rmSync } from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import { startWeaver, weaverBin, tempDataDir } from './lib/weaver.mjs'
import { waitFor, textOfUpdate } from './lib/yclient.mjs'
import { generateKey, mintRoomToken } from '@weaver/doc/server'
import { addBlock, requestIndex } from '@weaver/doc'

const hex = generateKey()
const tok = (room, opts = {}) => mintRoomToken({ key: hex, room, write: true, expiresIn: 600, ...opts })
const readTok = (room, opts = {}) => tok(room, { write: false, ...opts })
const adminTok = () => tok('', { prefix: true, admin: true })

const LIMIT_ARGS = [
  '--max-connections-per-room', '3',
  '--sync-step1-burst', '2', '--sync-step1-per-minute', '1',
  '--awareness-per-sec', '2'
]

let weaver
before(async () => {
  weaver = await startWeaver({ args: LIMIT_ARGS, env: { WEAVER_AUTH_KEY: hex } })
})
after(async () => { await weaver?.stop() })

const metrics = async (w = weaver) => (await fetch(`${w.httpUrl}/metrics`)).text()
const counter = (text, name, reason) => Number(text.match(new RegExp(`^${name}\\{reason="${reason}"\\} (\\d+)`, 'm'))?.[1] ?? 0)

/** Tries a WebSocket upgrade; resolves { status } on refusal or { ws, frames, closed } when open. */
function connect (url, { headers } = {}) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { headers })
    ws.binaryType = 'nodebuffer'
    const frames = []
    const closed = new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })))
    ws.on('message', (data) => frames.push(Buffer.from(data)))
    ws.on('error', () => {})
    // With this listener ws leaves the refused request to us: end it, or the kept-alive HTTP
    // socket holds the test process open.
    ws.once('unexpected-response', (req, res) => { resolve({ status: res.statusCode }); res.resume(); req.destroy() })
    ws.once('open', () => resolve({ status: 101, ws, frames, closed }))
  })
}

/** A stock Y.Doc + WebsocketProvider passing `token` as y-websocket `params`. */
async function tclient (wsUrl, room, token, { sync = true } = {}) {
  const doc = new Y.Doc()
  const provider = new WebsocketProvider(wsUrl, room, doc, { WebSocketPolyfill: WebSocket, disableBc: true, params: { token } })
  if (sync) await waitFor(() => provider.synced, { what: `sync of ${room}` })
  return { doc, provider, text: doc.getText('t'), destroy: () => { provider.destroy(); doc.destroy() } }
}

function varUint (n) {
  const out = []
  while (n > 127) { out.push((n & 127) | 128); n = Math.floor(n / 128) }
  out.push(n)
  return out
}
const updateFrame = (update) => Buffer.from([0, 2, ...varUint(update.length), ...update])
function textUpdate (s) {
  const d = new Y.Doc()
  d.getText('t').insert(0, s)
  return Y.encodeStateAsUpdate(d)
}
function awarenessFrame (clientId, clock, state) {
  const json = Buffer.from(JSON.stringify(state))
  const body = [...varUint(1), ...varUint(clientId), ...varUint(clock), ...varUint(json.length), ...json]
  return Buffer.from([1, ...varUint(body.length), ...body])
}
const isDenied = (f) => f[0] === 2 && f[1] === 0
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** After a refusal: a writer in `room` still syncs an edit to a second writer. */
async function roomStillSyncs (room, w = weaver) {
  const a = await tclient(w.wsUrl, room, tok(room))
  const b = await tclient(w.wsUrl, room, tok(room))
  const mark = `ok-${Math.random()}`
  a.text.insert(0, mark)
  await waitFor(() => b.text.toString().includes(mark), { what: `sync in ${room} after a refusal` })
  a.destroy(); b.destroy()
}

test('token matrix on the WebSocket upgrade: 401/403 before any room loads', { timeout: 30000 }, async () => {
  const url = (room, t) => `${weaver.wsUrl}/${room}${t === undefined ? '' : `?token=${t}`}`
  const other = generateKey()
  const expired = tok('never-loaded', { expiresAt: Math.floor(Date.now() / 1000) - 1 })
  assert.equal((await connect(url('never-loaded'))).status, 401, 'no token')
  assert.equal((await connect(url('never-loaded', 'garbage'))).status, 401, 'malformed token')
  assert.equal((await connect(url('never-loaded', mintRoomToken({ key: other, room: 'never-loaded', write: true, expiresIn: 60 })))).status, 401, 'bad signature')
  assert.equal((await connect(url('never-loaded', expired))).status, 401, 'expired')
  assert.equal((await connect(url('never-loaded', tok('some-other-room')))).status, 403, 'wrong room')
  const viaPrefix = await connect(url('never-loaded', tok('never', { prefix: true })))
  assert.equal(viaPrefix.status, 101, 'prefix token')
  viaPrefix.ws.close()
  // Rejected upgrades loaded nothing: the only load of that room is the accepted prefix token's.
  await sleep(100)
  const m = await metrics()
  assert.equal(counter(m, 'weaver_auth_rejections_total', 'missing_token') >= 1, true)
  assert.equal(counter(m, 'weaver_auth_rejections_total', 'bad_signature'), 1)
  assert.equal(counter(m, 'weaver_auth_rejections_total', 'expired_token'), 1)
  assert.equal(counter(m, 'weaver_auth_rejections_total', 'wrong_room'), 1)
  // Room-scoped prefix: granted for team-7-x, not for team-70 (the separator matters).
  const pre = tok('team-7-', { prefix: true })
  const ok = await connect(url('team-7-notes', pre))
  assert.equal(ok.status, 101)
  ok.ws.close()
  assert.equal((await connect(url('team-70', pre))).status, 403)
  // The bearer header works as well as the query parameter.
  const hdr = await connect(`${weaver.wsUrl}/hdr-room`, { headers: { Authorization: `Bearer ${tok('hdr-room')}` } })
  assert.equal(hdr.status, 101)
  hdr.ws.close()
  // A room only ever rejected was never loaded.
  const before = weaver.logs()
  assert.equal((await connect(url('rejected-only', tok('x')))).status, 403)
  assert.equal((await connect(url('rejected-only'))).status, 401)
  await sleep(100)
  assert.ok(!weaver.logs().slice(before.length).includes('room=rejected-only}'), 'no room task for rejected requests')
})

test('read-only: syncs and receives, writes refused with one permission-denied, never stored', { timeout: 60000 }, async () => {
  const room = 'ro-room'
  const w = await tclient(weaver.wsUrl, room, tok(room))
  // Content with a deletion: Yjs sends its whole delete set in every step2, so a reader's
  // handshake reply is not empty, yet it is not a write and must not be denied.
  w.text.insert(0, 'hello!!')
  w.text.delete(5, 2)
  // Stock client with a read token: syncs the existing content and live updates.
  const warnings = []
  const origWarn = console.warn
  console.warn = (...a) => { warnings.push(a.join(' ')); if (!String(a[0]).startsWith('Permission denied')) origWarn(...a) }
  const ro = await tclient(weaver.wsUrl, room, readTok(room))
  await waitFor(() => ro.text.toString() === 'hello', { what: 'read-only client synced' })
  // Reconnecting: its step2 now carries the document's delete set; still not a write.
  ro.provider.disconnect()
  ro.provider.connect()
  await waitFor(() => ro.provider.synced, { what: 'reader resynced' })
  await sleep(300)
  assert.deepEqual(warnings.filter((s) => s.startsWith('Permission denied')), [], 'no denial for a reader handshake')
  w.text.insert(5, ' world')
  await waitFor(() => ro.text.toString() === 'hello world', { what: 'read-only client receives updates' })
  ro.text.insert(0, 'EVIL ')
  await waitFor(() => warnings.some((s) => s.startsWith('Permission denied')), { what: 'permission denied at the stock client' })
  ro.text.insert(0, 'MORE ')
  await sleep(300)
  assert.equal(warnings.filter((s) => s.startsWith('Permission denied')).length, 1, 'told once per connection')
  assert.equal(w.text.toString(), 'hello world', 'writer never sees the read-only edit')
  ro.destroy()
  // Raw read-only socket: an empty step2 (nothing new) is quietly ignored; real writes refused
  // with exactly one auth message `02 00 <reason>`; the socket stays open and keeps receiving.
  const raw = await connect(`${weaver.wsUrl}/${room}?token=${readTok(room)}`)
  assert.equal(raw.status, 101)
  await waitFor(() => raw.frames.length > 0, { what: 'step1' })
  raw.ws.send(Buffer.from([0, 1, 2, 0, 0]))
  // A step2 with only a delete set (what a reconnecting reader sends) is not a write either.
  raw.ws.send(Buffer.from([0, 1, 6, 0, 1, 5, 1, 0, 1]))
  await sleep(200)
  assert.equal(raw.frames.filter(isDenied).length, 0, 'empty step2 is not a write')
  raw.ws.send(updateFrame(textUpdate('raw evil')))
  raw.ws.send(updateFrame(textUpdate('raw evil 2')))
  await waitFor(() => raw.frames.some(isDenied), { what: 'permission denied frame' })
  const n = raw.frames.length
  w.text.insert(0, '>')
  await waitFor(() => raw.frames.length > n, { what: 'read-only socket still receives updates' })
  assert.equal(raw.frames.filter(isDenied).length, 1)
  assert.equal(raw.ws.readyState, WebSocket.OPEN)
  raw.ws.close()
  const m = await metrics()
  assert.ok(counter(m, 'weaver_rejected_messages_total', 'read_only') >= 3)
  // HTTP read: not stored. After a restart on the same data: still not there.
  const read = async (wv) => textOfUpdate(Buffer.from(await (await fetch(`${wv.httpUrl}/api/rooms/${room}/update`, { headers: { Authorization: `Bearer ${readTok(room)}` } })).arrayBuffer()))
  assert.equal(await read(weaver), '>hello world')
  w.destroy()
  const dataDir = tempDataDir()
  const w1 = await startWeaver({ dataDir, env: { WEAVER_AUTH_KEY: hex } })
  try {
    const a = await tclient(w1.wsUrl, room, tok(room))
    a.text.insert(0, 'kept')
    const ro2 = await tclient(w1.wsUrl, room, readTok(room))
    await waitFor(() => ro2.text.toString() === 'kept', { what: 'ro2 synced' })
    ro2.text.insert(0, 'NOPE ')
    await sleep(300)
    a.destroy(); ro2.destroy()
  } finally { await w1.stop('SIGTERM') }
  const w2 = await startWeaver({ dataDir, env: { WEAVER_AUTH_KEY: hex } })
  try {
    assert.equal(await read(w2), 'kept', 'read-only edit absent after restart')
    // A read-only client that comes online with offline edits uploads them in its step2: refused.
    const denials = () => warnings.filter((s) => s.startsWith('Permission denied')).length
    const baseline = denials()
    const doc = new Y.Doc()
    doc.getText('t').insert(0, 'offline ')
    const provider = new WebsocketProvider(w2.wsUrl, room, doc, { WebSocketPolyfill: WebSocket, disableBc: true, params: { token: readTok(room) } })
    await waitFor(() => provider.synced && doc.getText('t').toString().includes('kept'), { what: 'offline reader synced' })
    await waitFor(() => denials() === baseline + 1, { what: 'denial of the offline edit' })
    provider.destroy(); doc.destroy()
    assert.equal(await read(w2), 'kept', 'offline edit of a read-only client not stored')
  } finally { await w2.stop(); console.warn = origWarn }
})

test('token expiring during a connection closes it with 4401', { timeout: 30000 }, async () => {
  const room = 'expiring'
  const short = tok(room, { expiresIn: 2 })
  const raw = await connect(`${weaver.wsUrl}/${room}?token=${short}`)
  assert.equal(raw.status, 101)
  const started = Date.now()
  const { code, reason } = await raw.closed
  assert.equal(code, 4401)
  assert.equal(reason, 'token expired')
  assert.ok(Date.now() - started < 4000)
  // A stock provider sees the same close. y-websocket >= 3.1 treats 44xx as terminal (event
  // `closed`, no retry with the dead token): the app refreshes the token and reconnects.
  const c = await tclient(weaver.wsUrl, room, tok(room, { expiresIn: 2 }))
  const closes = []
  c.provider.on('closed', (ev) => closes.push(ev.code))
  await waitFor(() => closes.includes(4401), { what: 'provider closed with 4401' })
  assert.equal(c.provider.shouldConnect, false, 'the stock client stops retrying')
  c.provider.params.token = tok(room)
  c.provider.connect()
  await waitFor(() => c.provider.wsconnected && c.provider.synced, { what: 'reconnected with a fresh token' })
  c.destroy()
  await roomStillSyncs(room)
})

test('HTTP API: room endpoints take the same tokens; cross-room and delete need admin', { timeout: 30000 }, async () => {
  const base = weaver.httpUrl
  const room = 'http-sec'
  const get = (t, path = `/api/rooms/${room}/update`) => fetch(`${base}${path}`, { headers: t ? { Authorization: `Bearer ${t}` } : {} })
  const post = (t, body) => fetch(`${base}/api/rooms/${room}/update${t ? `?token=${t}` : ''}`, { method: 'POST', body })
  const del = (t) => fetch(`${base}/api/rooms/${room}`, { method: 'DELETE', headers: t ? { Authorization: `Bearer ${t}` } : {} })
  assert.equal((await get()).status, 401)
  const r401 = await get('nope')
  assert.equal(r401.status, 401)
  assert.equal(r401.headers.get('www-authenticate'), 'Bearer')
  assert.equal((await get(tok('elsewhere'))).status, 403)
  assert.equal((await get(readTok(room))).status, 200)
  assert.equal((await get(readTok(room), `/api/rooms/${room}/blocks`)).status, 200)
  assert.equal((await post(readTok(room), textUpdate('x'))).status, 403, 'read token cannot POST')
  assert.equal((await post(undefined, textUpdate('x'))).status, 401)
  assert.equal((await post(tok(room), textUpdate('written'))).status, 204)
  assert.equal(textOfUpdate(Buffer.from(await (await get(readTok(room))).arrayBuffer())), 'written')
  assert.equal((await del(tok(room))).status, 403, 'write token cannot delete')
  assert.equal((await del(readTok(room, { admin: true }))).status, 204, 'admin token for the room deletes')
  assert.equal((await del(adminTok())).status, 204, 'admin token for every room deletes')
  // Cross-room bridge endpoints need an admin token for every room; webhooks stay open to
  // their own signature check (never a token 401).
  assert.equal((await get(undefined, '/api/calls')).status, 401)
  assert.equal((await get(tok(room, { admin: true }), '/api/calls')).status, 403, 'room-scoped admin is not enough')
  assert.equal((await get(adminTok(), '/api/calls')).status, 200)
  assert.equal((await get(adminTok(), `/api/calls?room=${room}`)).status, 200)
  // A backup holds every room and call: the same rule.
  assert.equal((await get(undefined, '/api/backup')).status, 401)
  assert.equal((await get(readTok(room, { admin: true }), '/api/backup')).status, 403, 'room-scoped admin is not enough')
  const backup = await get(adminTok(), '/api/backup')
  assert.equal(backup.status, 200)
  assert.ok((await backup.arrayBuffer()).byteLength > 0)
  // `weaver backup` passes its token on, and says why it was refused.
  const dir = tempDataDir('weaver-backup-auth-')
  try {
    const run = (...args) => promisify(execFile)(weaverBin, ['backup', '--server', base, '--out', path.join(dir, 'b.redb'), ...args])
    await assert.rejects(run(), (e) => e.code === 1 && /401 Unauthorized/.test(e.stderr))
    await assert.rejects(run('--token', tok(room, { admin: true })), (e) => e.code === 1 && /403 Forbidden/.test(e.stderr))
    assert.deepEqual(readdirSync(dir), [])
    assert.match((await run('--token', adminTok())).stdout, /integrity verified/)
    assert.deepEqual(readdirSync(dir), ['b.redb'])
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  const hook = await fetch(`${base}/api/webhooks/ext`, { method: 'POST', body: '{}' })
  assert.equal(hook.headers.get('www-authenticate'), null, `webhook answered by its own check (${hook.status})`)
  assert.notEqual((await hook.json()).error, 'a token is required')
  // Open routes.
  for (const p of ['/healthz', '/readyz', '/metrics', '/']) assert.equal((await fetch(`${base}${p}`)).status, 200, p)
  // Bad room names are refused as 400 before the token check.
  assert.equal((await get(tok(room), '/api/rooms/bad%20room/update')).status, 400)
})

test('`weaver token` output opens the room it names', { timeout: 30000 }, async () => {
  const env = { ...process.env, WEAVER_AUTH_KEY: hex }
  const t = execFileSync(weaverBin, ['token', '--room', 'cli-room', '--ttl', '5m'], { env }).toString().trim()
  const ro = execFileSync(weaverBin, ['token', '--room', 'cli-', '--prefix', '--read-only'], { env }).toString().trim()
  const c = await tclient(weaver.wsUrl, 'cli-room', t)
  c.text.insert(0, 'from cli token')
  const r = await tclient(weaver.wsUrl, 'cli-room', ro)
  await waitFor(() => r.text.toString() === 'from cli token', { what: 'prefix read token syncs' })
  assert.equal((await connect(`${weaver.wsUrl}/other?token=${t}`)).status, 403)
  c.destroy(); r.destroy()
  const bad = spawnSync(weaverBin, ['token', '--room', 'x'], { env: { ...process.env, WEAVER_AUTH_KEY: 'short' } })
  assert.notEqual(bad.status, 0)
})

test('key rotation: --auth-key-previous keeps old tokens working until a restart drops it', { timeout: 60000 }, async () => {
  const room = 'rotation'
  const old = generateKey()
  const fresh = generateKey()
  const oldTok = mintRoomToken({ key: old, room, write: true, expiresIn: 600 })
  const dataDir = tempDataDir()
  const before = await startWeaver({ dataDir, env: { WEAVER_AUTH_KEY: old } })
  try {
    const c = await tclient(before.wsUrl, room, oldTok)
    c.text.insert(0, 'written under the old key')
    await waitFor(async () => textOfUpdate(Buffer.from(await (await fetch(`${before.httpUrl}/api/rooms/${room}/update?token=${oldTok}`)).arrayBuffer())) === 'written under the old key', { what: 'stored' })
    c.destroy()
  } finally { await before.stop() }

  // Mid-rotation: the new key mints (`weaver token`), the old one still verifies.
  const during = await startWeaver({ dataDir, env: { WEAVER_AUTH_KEY: fresh, WEAVER_AUTH_KEY_PREVIOUS: `${generateKey()},${old}` } })
  try {
    const newTok = execFileSync(weaverBin, ['token', '--room', room], { env: { ...process.env, WEAVER_AUTH_KEY: fresh } }).toString().trim()
    const a = await tclient(during.wsUrl, room, oldTok)
    const b = await tclient(during.wsUrl, room, newTok)
    await waitFor(() => a.text.toString() === 'written under the old key' && b.text.toString() === a.text.toString(), { what: 'both tokens sync' })
    b.text.insert(b.text.length, ', then the new')
    await waitFor(() => a.text.toString().endsWith(', then the new'), { what: 'old-token client receives' })
    a.destroy(); b.destroy()
    const stranger = mintRoomToken({ key: generateKey(), room, expiresIn: 600 })
    assert.equal((await connect(`${during.wsUrl}/${room}?token=${stranger}`)).status, 401)
  } finally { await during.stop() }

  // Rotation finished: only the new key.
  const after = await startWeaver({ dataDir, env: { WEAVER_AUTH_KEY: fresh } })
  try {
    assert.equal((await connect(`${after.wsUrl}/${room}?token=${oldTok}`)).status, 401)
    const res = await fetch(`${after.httpUrl}/api/rooms/${room}/update?token=${oldTok}`)
    assert.equal(res.status, 401)
    assert.match((await res.json()).error, /signature/)
  } finally { await after.stop() }

  // A previous key without the new one is a configuration error, said at start.
  const env = { ...process.env, WEAVER_AUTH_KEY_PREVIOUS: old }
  delete env.WEAVER_AUTH_KEY
  const r = spawnSync(weaverBin, ['serve', '--listen', '127.0.0.1:0', '--data', dataDir], { env, timeout: 20000 })
  assert.notEqual(r.status, 0)
  assert.match(r.stderr.toString(), /--auth-key-previous.*without --auth-key/)
  const bad = spawnSync(weaverBin, ['serve', '--listen', '127.0.0.1:0', '--data', dataDir, '--auth-key', fresh, '--auth-key-previous', 'abcd'], { timeout: 20000 })
  assert.notEqual(bad.status, 0)
  assert.match(bad.stderr.toString(), /WEAVER_AUTH_KEY_PREVIOUS \(key 1\): .*at least 32/)
  rmSync(dataDir, { recursive: true, force: true })
})

test('limit: connections per room (503 before the upgrade), other rooms unaffected', { timeout: 30000 }, async () => {
  const room = 'crowded'
  const socks = []
  for (let i = 0; i < 3; i++) {
    const s = await connect(`${weaver.wsUrl}/${room}?token=${tok(room)}`)
    assert.equal(s.status, 101)
    socks.push(s)
  }
  assert.equal((await connect(`${weaver.wsUrl}/${room}?token=${tok(room)}`)).status, 503)
  const other = await connect(`${weaver.wsUrl}/not-crowded?token=${tok('not-crowded')}`)
  assert.equal(other.status, 101)
  other.ws.close()
  assert.ok(counter(await metrics(), 'weaver_rejected_messages_total', 'room_connection_limit') >= 1)
  socks.forEach((s) => s.ws.close())
  await Promise.all(socks.map((s) => s.closed))
  await waitFor(async () => (await connect(`${weaver.wsUrl}/${room}?token=${tok(room)}`).then((s) => { s.ws?.close(); return s.status })) === 101, { what: 'slot freed' })
  await roomStillSyncs(room)
})

test('limit: SyncStep1 rate per connection closes the offender with 1008', { timeout: 30000 }, async () => {
  const room = 'step1-flood'
  const s = await connect(`${weaver.wsUrl}/${room}?token=${tok(room)}`)
  const step1 = Buffer.from([0, 0, 1, 0])
  const step2s = () => s.frames.filter((f) => f[0] === 0 && f[1] === 1).length
  // Within the burst (2): answered.
  s.ws.send(step1); s.ws.send(step1)
  await waitFor(() => step2s() === 2, { what: 'two step2 answers' })
  // Beyond it (refill 1/min): closed.
  for (let i = 0; i < 3; i++) s.ws.send(step1)
  const { code } = await s.closed
  assert.equal(code, 1008)
  assert.ok(counter(await metrics(), 'weaver_rejected_messages_total', 'sync_step1_rate') >= 1)
  await roomStillSyncs(room)
})

test('limit: awareness flood is dropped beyond the rate; the flooder stays, others are fine', { timeout: 30000 }, async () => {
  const room = 'aw-flood'
  const watcher = await tclient(weaver.wsUrl, room, tok(room))
  const seen = []
  watcher.provider.awareness.on('change', ({ added, updated }) => { for (const id of [...added, ...updated]) if (id === 77) seen.push(id) })
  const s = await connect(`${weaver.wsUrl}/${room}?token=${tok(room)}`)
  for (let clock = 1; clock <= 40; clock++) s.ws.send(awarenessFrame(77, clock, { n: clock }))
  await sleep(500)
  // Burst 2× the rate (4) plus what refilled in the meantime; far fewer than 40.
  assert.ok(seen.length >= 1 && seen.length <= 8, `watcher saw ${seen.length} of 40 awareness updates`)
  assert.ok(counter(await metrics(), 'weaver_rejected_messages_total', 'awareness_rate') >= 30)
  assert.equal(s.ws.readyState, WebSocket.OPEN)
  s.ws.close()
  watcher.destroy()
  await roomStillSyncs(room)
})

test('limit: awareness broadcast rate per room caps many senders together', { timeout: 60000 }, async () => {
  const w = await startWeaver({ args: ['--awareness-per-sec', '1000', '--room-awareness-per-sec', '2'], env: { WEAVER_AUTH_KEY: hex } })
  try {
    const room = 'aw-room-cap'
    const watcher = await tclient(w.wsUrl, room, tok(room))
    let seen = 0
    watcher.provider.awareness.on('change', ({ added, updated }) => { seen += [...added, ...updated].filter((id) => id >= 100 && id < 200).length })
    const socks = []
    for (let i = 0; i < 4; i++) socks.push(await connect(`${w.wsUrl}/${room}?token=${tok(room)}`))
    for (let clock = 1; clock <= 10; clock++) for (const [i, s] of socks.entries()) s.ws.send(awarenessFrame(100 + i, clock, { c: clock }))
    await sleep(500)
    // Room burst 4 plus ~1 refilled in the meantime, out of 40 sent by 4 connections.
    assert.ok(seen >= 1 && seen <= 8, `watcher saw ${seen} of 40`)
    assert.ok(counter(await metrics(w), 'weaver_rejected_messages_total', 'room_awareness_rate') >= 30)
    assert.ok(socks.every((s) => s.ws.readyState === WebSocket.OPEN), 'senders stay connected')
    socks.forEach((s) => s.ws.close())
    watcher.destroy()
    await roomStillSyncs(room, w)
  } finally { await w.stop() }
})

test('--read-only-awareness deny drops read-only presence; allow (default) passes it', { timeout: 60000 }, async () => {
  const w = await startWeaver({ args: ['--read-only-awareness', 'deny'], env: { WEAVER_AUTH_KEY: hex } })
  try {
    const room = 'ro-aw'
    const writer = await tclient(w.wsUrl, room, tok(room))
    const ro = await tclient(w.wsUrl, room, readTok(room))
    ro.provider.awareness.setLocalStateField('user', 'reader')
    writer.provider.awareness.setLocalStateField('user', 'writer')
    await waitFor(() => ro.provider.awareness.getStates().get(writer.doc.clientID)?.user === 'writer', { what: 'reader sees the writer' })
    await sleep(300)
    assert.equal(writer.provider.awareness.getStates().get(ro.doc.clientID), undefined, 'writer never sees the reader')
    assert.ok(counter(await metrics(w), 'weaver_rejected_messages_total', 'read_only_awareness') >= 1)
    writer.destroy(); ro.destroy()
  } finally { await w.stop() }
  // Default instance: allowed.
  const room = 'ro-aw-allow'
  const writer = await tclient(weaver.wsUrl, room, tok(room))
  const ro = await tclient(weaver.wsUrl, room, readTok(room))
  ro.provider.awareness.setLocalStateField('user', 'reader')
  await waitFor(() => writer.provider.awareness.getStates().get(ro.doc.clientID)?.user === 'reader', { what: 'writer sees the reader' })
  writer.destroy(); ro.destroy()
})

test('without --auth-key: loud warning on loopback; non-loopback refused unless --insecure-no-auth', { timeout: 30000 }, async () => {
  const w = await startWeaver({})
  try {
    assert.match(w.logs(), /WARN.*AUTHENTICATION IS OFF/)
    assert.equal((await fetch(`${w.httpUrl}/api/rooms/open/update`)).status, 200)
  } finally { await w.stop() }
  const dir = tempDataDir()
  // Refused before anything binds: no network exposure from the test.
  const env = { ...process.env }
  delete env.WEAVER_AUTH_KEY
  const r = spawnSync(weaverBin, ['serve', '--listen', '0.0.0.0:0', '--data', dir], { env, timeout: 20000 })
  assert.notEqual(r.status, 0)
  assert.match(r.stderr.toString(), /refusing to listen on 0\.0\.0\.0:0 without authentication/)
  const badKey = spawnSync(weaverBin, ['serve', '--listen', '127.0.0.1:0', '--data', dir, '--auth-key', 'abcd'], { timeout: 20000 })
  assert.notEqual(badKey.status, 0)
  assert.match(badKey.stderr.toString(), /at least 32/)
})

test('room listing: a tenant prefix token lists its own rooms and nothing else', { timeout: 30000 }, async () => {
  const u = (t) => `${weaver.httpUrl}/api/rooms/${t}/update`
  for (const room of ['acme-one', 'acme-two', 'globex-one']) {
    const doc = new Y.Doc()
    doc.getText('t').insert(0, room)
    const res = await fetch(`${u(room)}?token=${tok(room)}`, { method: 'POST', body: Y.encodeStateAsUpdate(doc) })
    assert.equal(res.status, 204)
  }
  const acme = readTok('acme-', { prefix: true })
  const list = (query, token) => fetch(`${weaver.httpUrl}/api/rooms${query}`, token ? { headers: { authorization: `Bearer ${token}` } } : {})

  const own = await list('?prefix=acme-', acme)
  assert.equal(own.status, 200)
  assert.deepEqual((await own.json()).rooms.map((r) => r.name), ['acme-one', 'acme-two'])
  // Without ?prefix= the listing asks for every room, which the tenant's token does not grant;
  // a duplicate prefix parameter cannot widen what the token check saw.
  assert.equal((await list('', acme)).status, 403)
  const dup = await list('?prefix=acme-&prefix=', acme)
  if (dup.status === 200) assert.ok((await dup.json()).rooms.every((r) => r.name.startsWith('acme-')))
  else assert.equal(dup.status, 403)
  assert.equal((await list('?prefix=globex-', acme)).status, 403)
  assert.equal((await list('?prefix=acme-one', readTok('acme-one'))).status, 403)
  assert.equal((await list('?prefix=acme-')).status, 401)
  const all = await list('', adminTok())
  assert.equal(all.status, 200)
  const names = (await all.json()).rooms.map((r) => r.name)
  for (const room of ['acme-one', 'acme-two', 'globex-one']) assert.ok(names.includes(room), names.join())

  // `weaver rooms` pages through the same API with the same token rules.
  const cli = (args, env = {}) => spawnSync(weaverBin, ['rooms', '--server', weaver.httpUrl, ...args], { env: { ...process.env, ...env }, timeout: 20000 })
  const lines = cli(['--prefix', 'acme-', '--json'], { WEAVER_TOKEN: acme })
  assert.equal(lines.status, 0, lines.stderr.toString())
  assert.deepEqual(lines.stdout.toString().trim().split('\n').map((l) => JSON.parse(l).name), ['acme-one', 'acme-two'])
  const table = cli(['--prefix', 'acme-', '--token', acme])
  assert.equal(table.status, 0, table.stderr.toString())
  assert.match(table.stdout.toString(), /^ROOM\s+LAST_SEQ\s+STORED_B/)
  assert.match(table.stdout.toString(), /^acme-two\s+1\s+\d+\s+1\s+(yes|no)\s+0$/m)
  const refused = cli(['--prefix', 'globex-'], { WEAVER_TOKEN: acme })
  assert.equal(refused.status, 1)
  assert.match(refused.stderr.toString(), /^weaver rooms: GET .*403 Forbidden/)
})

test('room tokens read their room\'s APICalls; another room\'s call answers 404; retry and refresh need write', async () => {
  const base = weaver.httpUrl
  const room = 'calls-sec'
  const other = 'calls-sec-other'
  const indexIn = async (r) => {
    const doc = new Y.Doc()
    addBlock(doc, { id: 'b1', type: 'text', content: 'one\n\ntwo' })
    requestIndex(doc, 'b1', 'search', { dim: 3 })
    const res = await fetch(`${base}/api/rooms/${r}/update`, { method: 'POST', headers: { Authorization: `Bearer ${tok(r)}` }, body: Y.encodeStateAsUpdate(doc) })
    assert.equal(res.status, 204)
  }
  await indexIn(room)
  await indexIn(other)
  const as = (t, p, init = {}) => fetch(`${base}${p}`, { ...init, headers: { Authorization: `Bearer ${t}` } })
  const callsOf = async (r) => waitFor(async () => {
    const res = await as(adminTok(), `/api/calls?room=${r}`)
    const { calls } = await res.json()
    return calls.length > 0 && calls.every((c) => c.status === 'completed') && calls
  }, { what: `the call of ${r}` })
  const [mine] = await callsOf(room)
  const [theirs] = await callsOf(other)

  // Listing: a read token of the room is enough for its calls; not for another room's, nor all.
  const list = await as(readTok(room), `/api/calls?room=${room}`)
  assert.equal(list.status, 200)
  assert.deepEqual((await list.json()).calls.map((c) => c.id), [mine.id])
  assert.equal((await as(readTok(room), `/api/calls?room=${other}`)).status, 403)
  assert.equal((await as(readTok(room), '/api/calls')).status, 403)
  assert.equal((await fetch(`${base}/api/calls?room=${room}`)).status, 401)
  // A prefix token reads the calls of the rooms it grants.
  assert.equal((await as(readTok('calls-', { prefix: true }), `/api/calls?room=${other}`)).status, 200)

  // Details: checked against the call's room; another room's call is indistinguishable from a
  // missing one.
  const one = await as(readTok(room), `/api/calls/${mine.id}`)
  assert.equal(one.status, 200)
  assert.equal((await one.json()).call.id, mine.id)
  assert.equal((await as(readTok(room), `/api/calls/${theirs.id}`)).status, 404)
  assert.equal((await as(readTok(room), '/api/calls/0190b5a0-0000-7000-8000-000000000000')).status, 404)
  assert.equal((await fetch(`${base}/api/calls/${mine.id}`)).status, 401)

  // Retry and refresh: write access to the call's room (or admin); read-only is 403, another
  // room's call 404.
  for (const action of ['retry', 'refresh']) {
    assert.equal((await as(readTok(room), `/api/calls/${mine.id}/${action}`, { method: 'POST' })).status, 403, `${action} with a read token`)
    assert.equal((await as(tok(room), `/api/calls/${theirs.id}/${action}`, { method: 'POST' })).status, 404, `${action} of another room's call`)
    assert.notEqual((await as(tok(room), `/api/calls/${mine.id}/${action}`, { method: 'POST' })).status, 403, `${action} with a write token`)
    assert.notEqual((await as(tok(room), `/api/calls/${mine.id}/${action}`, { method: 'POST' })).status, 404)
  }
})

test('CORS (--cors-origin) on the HTTP API and the change feed; --ws-allowed-origin on the WebSocket upgrade', { timeout: 60000 }, async () => {
  const app = 'https://app.example'
  const evil = 'https://evil.example'
  const w = await startWeaver({
    args: ['--cors-origin', app, '--ws-allowed-origin', app],
    env: { WEAVER_AUTH_KEY: hex }
  })
  try {
    const room = 'cors-room'
    // Preflight: answered before any token check, only for an allowed origin.
    const preflight = (origin, path = `/api/rooms/${room}/update`) => fetch(`${w.httpUrl}${path}`, {
      method: 'OPTIONS',
      headers: { Origin: origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization, content-type' }
    })
    const ok = await preflight(app)
    assert.ok(ok.status >= 200 && ok.status < 300, `preflight status ${ok.status}`)
    assert.equal(ok.headers.get('access-control-allow-origin'), app)
    assert.match(ok.headers.get('access-control-allow-methods') ?? '', /POST/)
    assert.match(ok.headers.get('access-control-allow-headers') ?? '', /authorization/i)
    const denied = await preflight(evil)
    assert.equal(denied.headers.get('access-control-allow-origin'), null)
    const feedPre = await preflight(app, `/api/rooms/${room}/changes`)
    assert.equal(feedPre.headers.get('access-control-allow-origin'), app)
    // Simple requests: allowed origins get the header (with auth still enforced), others not.
    const get = (origin, path, t = readTok(room)) => fetch(`${w.httpUrl}${path}`, { headers: { Origin: origin, Authorization: `Bearer ${t}` } })
    const g = await get(app, `/api/rooms/${room}/blocks`)
    assert.equal(g.status, 200)
    assert.equal(g.headers.get('access-control-allow-origin'), app)
    assert.equal((await get(evil, `/api/rooms/${room}/blocks`)).headers.get('access-control-allow-origin'), null)
    const refused = await get(app, `/api/rooms/${room}/blocks`, tok('elsewhere'))
    assert.equal(refused.status, 403)
    assert.equal(refused.headers.get('access-control-allow-origin'), app, 'a refusal is readable by the allowed page')
    const feedCtl = new AbortController()
    const feed = await fetch(`${w.httpUrl}/api/rooms/${room}/changes`, { headers: { Origin: app, Authorization: `Bearer ${readTok(room)}` }, signal: feedCtl.signal })
    assert.equal(feed.status, 200)
    assert.equal(feed.headers.get('access-control-allow-origin'), app)
    feedCtl.abort()
    // WebSocket: a denied Origin is refused before the upgrade; allowed and absent pass.
    const url = `${w.wsUrl}/${room}?token=${readTok(room)}`
    assert.equal((await connect(url, { headers: { Origin: evil } })).status, 403)
    for (const headers of [{ Origin: app }, {}]) {
      const c = await connect(url, { headers })
      assert.equal(c.status, 101, JSON.stringify(headers))
      c.ws.close()
    }
    assert.ok(counter(await metrics(w), 'weaver_auth_rejections_total', 'origin') >= 1)
  } finally {
    await w.stop()
  }
  // The env variables take comma-separated lists.
  const w2 = await startWeaver({ env: { WEAVER_CORS_ORIGIN: 'https://a.example, https://b.example', WEAVER_WS_ALLOWED_ORIGIN: 'https://a.example,https://b.example' } })
  try {
    const r = await fetch(`${w2.httpUrl}/api/rooms/x/blocks`, { headers: { Origin: 'https://b.example' } })
    assert.equal(r.headers.get('access-control-allow-origin'), 'https://b.example')
    assert.equal((await connect(`${w2.wsUrl}/x`, { headers: { Origin: 'https://c.example' } })).status, 403)
    const c = await connect(`${w2.wsUrl}/x`, { headers: { Origin: 'https://b.example' } })
    assert.equal(c.status, 101)
    c.ws.close()
  } finally {
    await w2.stop()
  }
})
