// Hocuspocus clients against the real `weaver serve`: the stock `@hocuspocus/provider` (pinned in
// package.json) at `ws://HOST:PORT` (the WebSocket upgrade at `/`), sharing rooms with stock
// y-websocket clients: sync both ways, several documents over one HocuspocusProviderWebsocket,
// awareness both ways, tokens (good, bad, read-only, expired), persistence over kill -9, and
// hostile frames of this framing (each closes only its socket; the server carries on).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import * as Y from 'yjs'
import WebSocket from 'ws'
import { HocuspocusProvider, HocuspocusProviderWebsocket } from '@hocuspocus/provider'
import * as encoding from 'lib0/encoding'
import { startWeaver, tempDataDir } from './lib/weaver.mjs'
import { yclient, waitFor } from './lib/yclient.mjs'
import { generateKey, mintRoomToken } from '@weaver/doc/server'

const hex = generateKey()
const nowSecs = () => Math.floor(Date.now() / 1000)
const tok = (room, opts = {}) => mintRoomToken({ key: hex, room, write: true, expiresAt: nowSecs() + 600, ...opts })

let open // weaver without tokens
let authed // weaver with --auth-key
before(async () => {
  open = await startWeaver()
  authed = await startWeaver({ env: { WEAVER_AUTH_KEY: hex } })
})
after(async () => {
  await open?.stop()
  await authed?.stop()
})

const metrics = async (w) => (await fetch(`${w.httpUrl}/metrics`)).text()
const gauge = (text, name) => Number(text.match(new RegExp(`^${name} (\\d+)`, 'm'))?.[1] ?? 0)
const counter = (text, name, reason) => Number(text.match(new RegExp(`^${name}\\{reason="${reason}"\\} (\\d+)`, 'm'))?.[1] ?? 0)

/** A HocuspocusProvider on its own socket, as an app creates it: `{ url, name, document }`. */
function hocus (w, name, opts = {}) {
  const document = opts.document ?? new Y.Doc()
  const events = { authenticated: [], failed: [], closes: [] }
  const provider = new HocuspocusProvider({
    url: w.wsUrl,
    name,
    document,
    WebSocketPolyfill: WebSocket,
    onAuthenticated: (e) => events.authenticated.push(e.scope),
    onAuthenticationFailed: (e) => events.failed.push(e.reason),
    onClose: (e) => events.closes.push(e.event?.code),
    ...opts
  })
  return { provider, document, text: document.getText('t'), events, destroy: () => { provider.destroy(); document.destroy() } }
}

test('a plain GET of / still serves the web demo page', async () => {
  const res = await fetch(`${open.httpUrl}/`)
  assert.equal(res.status, 200)
  assert.match(res.headers.get('content-type'), /text\/html/)
})

test('a Hocuspocus provider and a y-websocket client share a room, both ways, and every write is acknowledged after it is durable', async () => {
  const h = hocus(open, 'hp-shared')
  await waitFor(() => h.provider.isSynced, { what: 'hocuspocus sync' })
  assert.deepEqual(h.events.authenticated, ['read-write'])
  const y = await yclient(open.wsUrl, 'hp-shared')
  h.text.insert(0, 'from hocuspocus ')
  await waitFor(() => y.text.toString() === 'from hocuspocus ', { what: 'hocuspocus → y-websocket' })
  y.text.insert(y.text.length, 'from y-websocket')
  await waitFor(() => h.text.toString() === 'from hocuspocus from y-websocket', { what: 'y-websocket → hocuspocus' })
  // syncStatus: the provider counts its unsynced changes down to zero.
  await waitFor(() => h.provider.unsyncedChanges === 0 && !h.provider.hasUnsyncedChanges, { what: 'all changes acknowledged' })
  // What the provider had before it connected reaches the room too (its step2).
  const early = new Y.Doc()
  early.getText('t').insert(0, 'offline ')
  const late = hocus(open, 'hp-shared', { document: early })
  await waitFor(() => y.text.toString().includes('offline '), { what: 'offline edit uploaded' })
  await waitFor(() => late.text.toString() === y.text.toString(), { what: 'late provider converged' })
  late.destroy()
  h.destroy()
  y.destroy()
})

test('several documents over one HocuspocusProviderWebsocket, each in its own room', async () => {
  // Earlier tests' sockets are gone first, so the gauges below count only this one.
  await waitFor(async () => gauge(await metrics(open), 'weaver_hocuspocus_documents') === 0, { what: 'earlier documents closed' })
  const before = gauge(await metrics(open), 'weaver_connections')
  const socket = new HocuspocusProviderWebsocket({ url: open.wsUrl, WebSocketPolyfill: WebSocket })
  const names = ['hp-multi-a', 'hp-multi-b', 'hp-multi-c']
  const providers = names.map((name) => {
    const p = new HocuspocusProvider({ websocketProvider: socket, name, document: new Y.Doc() })
    p.attach()
    return p
  })
  await waitFor(() => providers.every((p) => p.isSynced), { what: 'all documents synced' })
  const m = await metrics(open)
  assert.equal(gauge(m, 'weaver_hocuspocus_documents'), 3)
  assert.equal(gauge(m, 'weaver_connections') - before, 1, 'three documents, one socket')
  const ys = await Promise.all(names.map((n) => yclient(open.wsUrl, n)))
  providers.forEach((p, i) => p.document.getText('t').insert(0, `doc ${i}`))
  for (let i = 0; i < names.length; i++) {
    await waitFor(() => ys[i].text.toString() === `doc ${i}`, { what: `room ${names[i]}` })
  }
  ys.forEach((y, i) => y.text.insert(y.text.length, '!'))
  await waitFor(() => providers.every((p, i) => p.document.getText('t').toString() === `doc ${i}!`), { what: 'edits back to each document' })
  // Detaching one document leaves the others working.
  providers[1].destroy()
  await waitFor(async () => gauge(await metrics(open), 'weaver_hocuspocus_documents') === 2, { what: 'document detached' })
  ys[0].text.insert(0, '>')
  await waitFor(() => providers[0].document.getText('t').toString() === '>doc 0!', { what: 'other document still live' })
  // sessionAwareness: two providers of the same document on one socket (`name\0session`).
  const twins = [0, 1].map(() => {
    const p = new HocuspocusProvider({ websocketProvider: socket, name: 'hp-multi-a', document: new Y.Doc(), sessionAwareness: true })
    p.attach()
    return p
  })
  await waitFor(() => twins.every((p) => p.isSynced && p.document.getText('t').toString() === '>doc 0!'), { what: 'session-aware twins synced' })
  twins[0].document.getText('t').insert(0, 'twin ')
  await waitFor(() => twins[1].document.getText('t').toString() === 'twin >doc 0!' && ys[0].text.toString() === 'twin >doc 0!', { what: 'twin edit everywhere' })
  twins.forEach((p) => p.destroy())
  providers[0].destroy()
  providers[2].destroy()
  socket.destroy()
  ys.forEach((y) => y.destroy())
})

test('awareness both ways between Hocuspocus and y-websocket clients', async () => {
  const h = hocus(open, 'hp-aware')
  await waitFor(() => h.provider.isSynced, { what: 'hocuspocus sync' })
  const y = await yclient(open.wsUrl, 'hp-aware')
  h.provider.setAwarenessField('user', { name: 'hocus' })
  await waitFor(() => [...y.provider.awareness.getStates().values()].some((s) => s.user?.name === 'hocus'), { what: 'hocuspocus presence at y-websocket' })
  y.provider.awareness.setLocalStateField('user', { name: 'ywebsocket' })
  await waitFor(() => [...h.provider.awareness.getStates().values()].some((s) => s.user?.name === 'ywebsocket'), { what: 'y-websocket presence at hocuspocus' })
  h.destroy()
  await waitFor(() => ![...y.provider.awareness.getStates().values()].some((s) => s.user?.name === 'hocus'), { what: 'hocuspocus presence gone' })
  y.destroy()
})

test('tokens: a room token is accepted, a bad or expired one fires onAuthenticationFailed, a read-only one gives a read-only provider whose writes never reach the server', async () => {
  const good = hocus(authed, 'hp-auth', { token: tok('hp-auth') })
  await waitFor(() => good.provider.isSynced, { what: 'authenticated sync' })
  assert.deepEqual(good.events.authenticated, ['read-write'])
  good.text.insert(0, 'written')
  await waitFor(() => good.provider.unsyncedChanges === 0, { what: 'write acknowledged' })

  for (const [what, token, reason] of [
    ['another room', tok('other-room'), /does not grant this room/],
    ['garbage', 'not-a-token', /invalid token/],
    ['none', null, /token is required/],
    ['expired', tok('hp-auth', { expiresAt: nowSecs() - 10 }), /expired/]
  ]) {
    const bad = hocus(authed, 'hp-auth', { token })
    await waitFor(() => bad.events.failed.length > 0, { what: `onAuthenticationFailed (${what})` })
    assert.match(bad.events.failed[0], reason, what)
    assert.equal(bad.provider.isSynced, false, `${what}: never synced`)
    assert.equal(bad.text.toString(), '', `${what}: saw nothing of the room`)
    bad.destroy()
  }

  const reader = hocus(authed, 'hp-auth', { token: tok('hp-auth', { write: false }) })
  await waitFor(() => reader.provider.isSynced, { what: 'read-only sync' })
  assert.deepEqual(reader.events.authenticated, ['readonly'])
  assert.equal(reader.provider.authorizedScope, 'readonly')
  assert.equal(reader.text.toString(), 'written', 'a reader reads')
  reader.text.insert(0, 'HACK ')
  // The refusal is answered (syncStatus false), the change never counted as saved.
  await new Promise((resolve) => setTimeout(resolve, 300))
  assert.ok(reader.provider.hasUnsyncedChanges, 'a refused write stays unsynced')
  good.text.insert(good.text.length, '+')
  await waitFor(() => reader.text.toString().endsWith('written+'), { what: 'reader still receives' })
  const state = await (await fetch(`${authed.httpUrl}/api/rooms/hp-auth/update?token=${tok('hp-auth')}`)).arrayBuffer()
  const server = new Y.Doc()
  Y.applyUpdate(server, new Uint8Array(state))
  assert.equal(server.getText('t').toString(), 'written+', 'the read-only write never reached the server')
  assert.ok(counter(await metrics(authed), 'weaver_rejected_messages_total', 'read_only') >= 1)
  reader.destroy()
  good.destroy()
})

test('a token that expires while the socket is open closes it with 4401; the provider reconnects and its expired token fires onAuthenticationFailed', async () => {
  const h = hocus(authed, 'hp-expiry', { token: tok('hp-expiry', { expiresAt: nowSecs() + 2 }) })
  await waitFor(() => h.provider.isSynced, { what: 'sync before expiry' })
  await waitFor(() => h.events.closes.includes(4401), { timeoutMs: 6000, what: 'close 4401' })
  await waitFor(() => h.events.failed.some((r) => /expired/.test(r)), { timeoutMs: 10000, what: 'onAuthenticationFailed after reconnecting' })
  h.destroy()
})

test('what a Hocuspocus client saw acknowledged survives kill -9 of the server', async () => {
  const dataDir = tempDataDir()
  const w = await startWeaver({ dataDir })
  const h = hocus(w, 'hp-durable')
  await waitFor(() => h.provider.isSynced, { what: 'sync' })
  for (let i = 0; i < 20; i++) h.text.insert(h.text.length, `${i},`)
  await waitFor(() => h.provider.unsyncedChanges === 0, { what: 'every change acknowledged' })
  const expected = h.text.toString()
  h.provider.configuration.websocketProvider.disconnect()
  await w.kill9()
  const again = await startWeaver({ dataDir })
  try {
    const y = await yclient(again.wsUrl, 'hp-durable')
    assert.equal(y.text.toString(), expected)
    y.destroy()
    const h2 = hocus(again, 'hp-durable')
    await waitFor(() => h2.provider.isSynced, { what: 'resync' })
    assert.equal(h2.text.toString(), expected)
    h2.destroy()
  } finally {
    h.destroy()
    await again.stop()
  }
})

/** A raw socket at `/`: send frames, collect frames and the close. */
async function rawHocus (w) {
  const ws = new WebSocket(w.wsUrl)
  ws.binaryType = 'nodebuffer'
  const frames = []
  const closed = new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })))
  ws.on('message', (data) => frames.push(Buffer.from(data)))
  ws.on('error', () => {})
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
  return { ws, frames, closed }
}

const addressed = (name, ...rest) => {
  const e = encoding.createEncoder()
  encoding.writeVarString(e, name)
  for (const b of rest) encoding.writeUint8(e, b)
  return encoding.toUint8Array(e)
}
const authFrame = (name, token = '') => {
  const e = encoding.createEncoder()
  encoding.writeVarString(e, name)
  encoding.writeVarUint(e, 2)
  encoding.writeVarUint(e, 0)
  encoding.writeVarString(e, token)
  return encoding.toUint8Array(e)
}

test('hostile Hocuspocus frames close only their socket, with a clear code; the server carries on', async () => {
  const before = await metrics(open)
  const cases = [
    ['garbage after a valid document name', [authFrame('hp-hostile'), addressed('hp-hostile', 0, 2, 0xff, 0xff, 0xff, 0xff)], 1002],
    ['a huge document-name length', [Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3])], 1002],
    ['an unknown message type', [authFrame('hp-hostile'), addressed('hp-hostile', 42)], 1002],
    ['an unknown auth type', [Uint8Array.from([...addressed('hp-hostile', 2, 9)])], 1002],
    ['a text frame', ['hello'], 1003],
    ['an invalid update', [authFrame('hp-hostile'), addressed('hp-hostile', 0, 2, 3, 0xff, 0xff, 0xff)], 1007]
  ]
  for (const [what, frames, code] of cases) {
    const c = await rawHocus(open)
    for (const f of frames) c.ws.send(f)
    const { code: got } = await c.closed
    assert.equal(got, code, what)
  }
  const after = await metrics(open)
  assert.ok(counter(after, 'weaver_rejected_messages_total', 'malformed_frame') > counter(before, 'weaver_rejected_messages_total', 'malformed_frame'))
  // Too many documents on one socket.
  const many = await rawHocus(open)
  for (let i = 0; i < 65; i++) many.ws.send(authFrame(`hp-many-${i}`))
  assert.equal((await many.closed).code, 1008)
  // The server is fine: a provider syncs the room the hostile frames named.
  const h = hocus(open, 'hp-hostile')
  await waitFor(() => h.provider.isSynced, { what: 'sync after hostile frames' })
  h.text.insert(0, 'ok')
  const y = await yclient(open.wsUrl, 'hp-hostile')
  await waitFor(() => y.text.toString() === 'ok', { what: 'room works' })
  y.destroy()
  h.destroy()
})
