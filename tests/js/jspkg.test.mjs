// The JavaScript package `@weaver/doc` (js/weaver-doc): its hand-written types check with `tsc`
// and cover every export, and its Node helpers (`@weaver/doc/server`) agree with the real
// binary: tokens it mints open rooms on `weaver serve --auth-key` exactly as `weaver token`'s do
// (same bytes for the same claims), and `verifyWebhook` accepts a real signed delivery from
// `weaver serve --notify-url` and refuses tampered, foreign and stale ones.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { execFileSync, spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import * as schema from '@weaver/doc'
import * as server from '@weaver/doc/server'
import { WeaverError, decodeRoomToken, generateKey, mintRoomToken, parseKey, verifyWebhook } from '@weaver/doc/server'
import { startWeaver, weaverBin, repoRoot } from './lib/weaver.mjs'
import { waitFor, textOfUpdate, yclient } from './lib/yclient.mjs'

const pkgDir = path.join(repoRoot, 'js/weaver-doc')
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

test('types: tsc --noEmit checks the .d.ts files against types-test.ts, which names every export', { timeout: 120000 }, () => {
  // --no: never let npx download some other package called `tsc`.
  const r = spawnSync('npx', ['--no', '--', 'tsc', '-p', 'js/weaver-doc/tsconfig.json', '--noEmit'], { cwd: repoRoot, encoding: 'utf8' })
  assert.equal(r.status, 0, `tsc failed:\n${r.stdout}${r.stderr}`)
  // tsc fails on a name the .d.ts lacks; this catches the other way round (an export without types).
  const src = readFileSync(path.join(pkgDir, 'types-test.ts'), 'utf8')
  const imported = (spec) => {
    const names = new Set()
    for (const m of src.matchAll(/import\s*(type\s*)?\{([^}]*)\}\s*from\s*'([^']+)'/g)) {
      if (m[3] === spec && !m[1]) for (const n of m[2].split(',')) if (n.trim()) names.add(n.trim())
    }
    return [...names].sort()
  }
  assert.deepEqual(imported('@weaver/doc'), Object.keys(schema).sort())
  assert.deepEqual(imported('@weaver/doc/server'), Object.keys(server).sort())
  const pkg = JSON.parse(readFileSync(path.join(pkgDir, 'package.json'), 'utf8'))
  assert.equal(pkg.license, 'MIT OR Apache-2.0')
  assert.equal(pkg.devDependencies.typescript, pkg.devDependencies.typescript.replace(/^[~^]/, ''), 'typescript pinned exactly')
})

test('mintRoomToken: the format of weaver-auth (its Node test vector) and argument checks', () => {
  // crates/auth/src/lib.rs, node_minted_token_verifies.
  const key = Buffer.from('0123456789abcdef0123456789abcdef')
  assert.equal(mintRoomToken({ key, room: 'team-7/', prefix: true, write: true, expiresAt: 1700000900 }),
    'AQMAAAAAZVP0hHRlYW0tNy8.qSLQBnmKfzmXAlbRfL3LJV1DyeSCQDGdd2OTUxjXMOY')
  const hex = generateKey()
  assert.match(hex, /^[0-9a-f]{64}$/)
  assert.notEqual(generateKey(), hex)
  const t = mintRoomToken({ key: hex, room: 'doc-1', now: 1000 })
  assert.deepEqual(decodeRoomToken(t), { room: 'doc-1', prefix: false, write: false, admin: false, expiresAt: 4600 }, 'defaults: read-only, one hour')
  assert.equal(decodeRoomToken(mintRoomToken({ key: hex, room: 'doc-1', expiresIn: '7d', now: 0 })).expiresAt, 604800)
  assert.deepEqual(decodeRoomToken(mintRoomToken({ key: hex, admin: true, now: 0 })), { room: '', prefix: true, write: false, admin: true, expiresAt: 3600 })
  const refused = (opts, code) => assert.throws(() => mintRoomToken({ key: hex, now: 0, ...opts }), (e) => e instanceof WeaverError && e.code === code, JSON.stringify(opts))
  refused({}, 'bad_claims')
  refused({ room: 'bad room' }, 'bad_claims')
  refused({ room: 'a//b' }, 'bad_claims')
  refused({ room: 'api' }, 'bad_claims')
  refused({ room: 'a', expiresIn: 0 }, 'bad_claims')
  refused({ room: 'a', expiresIn: '1w' }, 'bad_claims')
  refused({ room: 'a', key: 'c2hvcnQ=' }, 'bad_key')
  refused({ room: 'a', key: new Uint8Array(16) }, 'bad_key')
  assert.ok(mintRoomToken({ key: hex, room: 'org.team/doc', now: 0 }))
  assert.ok(mintRoomToken({ key: hex, room: 'team-7 ', prefix: true, now: 0 }), 'a prefix is not a room name')
  assert.equal(decodeRoomToken('not.a-token'), null)
})

test('parseKey reads keys as the server does: hex first, then strict base64', () => {
  const bytes = randomBytes(32)
  const hex = bytes.toString('hex')
  for (const text of [hex, hex.toUpperCase(), ` ${hex}\n`, bytes.toString('base64'), bytes.toString('base64').replace(/=+$/, ''), bytes.toString('base64url')]) {
    assert.deepEqual(Buffer.from(parseKey(text)), bytes, text)
  }
  const bad = (text) => assert.throws(() => parseKey(text), (e) => e instanceof WeaverError && e.code === 'bad_key', text)
  bad('')
  bad(randomBytes(31).toString('hex'))
  bad(bytes.toString('base64') + '!')
  bad(bytes.toString('base64').slice(0, -2) + '+_') // mixed alphabets
  bad(bytes.toString('base64') + '==')
})

/** Tries a WebSocket upgrade: the HTTP status of a refusal, or 101. */
function upgradeStatus (url) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url)
    ws.on('error', () => {})
    ws.once('unexpected-response', (req, res) => { resolve(res.statusCode); res.resume(); req.destroy() })
    ws.once('open', () => { ws.close(); resolve(101) })
  })
}

async function tclient (wsUrl, room, token) {
  const doc = new Y.Doc()
  const provider = new WebsocketProvider(wsUrl, room, doc, { WebSocketPolyfill: WebSocket, disableBc: true, params: { token } })
  await waitFor(() => provider.synced, { what: `sync of ${room}` })
  return { doc, text: doc.getText('t'), destroy: () => { provider.destroy(); doc.destroy() } }
}

test('a token minted by the package opens its room on weaver serve --auth-key; read-only cannot write; other rooms 403', { timeout: 60000 }, async () => {
  const bytes = randomBytes(32)
  // The server gets the key as base64, the package as hex: both are the same key.
  const weaver = await startWeaver({ env: { WEAVER_AUTH_KEY: bytes.toString('base64') } })
  const key = bytes.toString('hex')
  const room = 'pkg-room'
  const write = mintRoomToken({ key, room, write: true, expiresIn: '15m' })
  const read = mintRoomToken({ key: parseKey(key), room })
  const content = async () => {
    const res = await fetch(`${weaver.httpUrl}/api/rooms/${room}/update`, { headers: { Authorization: `Bearer ${read}` } })
    assert.equal(res.status, 200)
    return textOfUpdate(Buffer.from(await res.arrayBuffer()))
  }
  const warn = console.warn
  const clients = []
  try {
    const w = await tclient(weaver.wsUrl, room, write)
    clients.push(w)
    w.text.insert(0, 'from the package')
    await waitFor(async () => (await content()) === 'from the package', { what: 'write stored' })
    // A stock client with the read-only token syncs, but its edit never reaches the room.
    console.warn = (...a) => { if (!String(a[0]).startsWith('Permission denied')) warn(...a) }
    const r = await tclient(weaver.wsUrl, room, read)
    clients.push(r)
    await waitFor(() => r.text.toString() === 'from the package', { what: 'reader synced' })
    r.text.insert(0, 'EVIL ')
    await sleep(500)
    assert.equal(await content(), 'from the package')
    assert.equal(w.text.toString(), 'from the package')
    const post = (token) => fetch(`${weaver.httpUrl}/api/rooms/${room}/update`, { method: 'POST', headers: { Authorization: `Bearer ${token}` }, body: Y.encodeStateAsUpdate(new Y.Doc()) })
    assert.equal((await post(read)).status, 403, 'read token cannot POST')
    assert.equal((await post(write)).status, 204)
    assert.equal(await upgradeStatus(`${weaver.wsUrl}/other-room?token=${write}`), 403, 'wrong room')
    assert.equal(await upgradeStatus(`${weaver.wsUrl}/${room}?token=${mintRoomToken({ key: generateKey(), room, write: true })}`), 401, 'another key')
    assert.equal(await upgradeStatus(`${weaver.wsUrl}/${room}?token=${mintRoomToken({ key, room, expiresAt: 1 })}`), 401, 'expired')
    assert.equal(await upgradeStatus(`${weaver.wsUrl}/pkg-team-a?token=${mintRoomToken({ key, room: 'pkg-team-', prefix: true })}`), 101, 'prefix token')
  } finally {
    for (const c of clients) c.destroy()
    console.warn = warn
    await weaver.stop()
  }
})

test('the package mints exactly what weaver token mints for the same claims, and the server takes both', { timeout: 60000 }, async () => {
  const key = generateKey()
  const weaver = await startWeaver({ env: { WEAVER_AUTH_KEY: key } })
  try {
    const cases = [
      { args: ['--room', 'same-room', '--ttl', '15m'], claims: { room: 'same-room', write: true, expiresIn: '15m' }, ttl: 900 },
      { args: ['--room', 'team-7-', '--prefix', '--read-only', '--ttl', '90s'], claims: { room: 'team-7-', prefix: true, expiresIn: 90 }, ttl: 90 },
      { args: ['--room', 'same-room', '--admin'], claims: { room: 'same-room', write: true, admin: true }, ttl: 3600 },
      { args: ['--admin', '--read-only', '--ttl', '2h'], claims: { admin: true, expiresIn: '2h' }, ttl: 7200 }
    ]
    for (const { args, claims, ttl } of cases) {
      const before = Math.floor(Date.now() / 1000)
      const cli = execFileSync(weaverBin, ['token', ...args], { env: { ...process.env, WEAVER_AUTH_KEY: key }, encoding: 'utf8' }).trim()
      const ours = mintRoomToken({ key, ...claims })
      const after = Math.floor(Date.now() / 1000)
      const a = decodeRoomToken(cli)
      const b = decodeRoomToken(ours)
      for (const t of [a, b]) assert.ok(t.expiresAt - ttl >= before && t.expiresAt - ttl <= after, `${args}: expiry ${t.expiresAt} in [${before}, ${after}] + ${ttl}`)
      assert.deepEqual({ ...b, expiresAt: 0 }, { ...a, expiresAt: 0 }, `${args}: same claims`)
      // Same claims to the second: the same bytes, signature included.
      assert.equal(mintRoomToken({ key, ...claims, expiresAt: a.expiresAt }), cli, args.join(' '))
      const room = a.prefix ? `${a.room}x` : a.room
      for (const token of [cli, ours]) {
        assert.equal(await upgradeStatus(`${weaver.wsUrl}/${room}?token=${token}`), 101, `${args}: ${token === cli ? 'weaver token' : 'package'}`)
      }
    }
  } finally {
    await weaver.stop()
  }
})

function receiver () {
  const hits = []
  const srv = http.createServer((req, res) => {
    const chunks = []
    req.on('data', (d) => chunks.push(d))
    req.on('end', () => { hits.push({ headers: req.headers, body: Buffer.concat(chunks) }); res.writeHead(204).end() })
  })
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve({ url: `http://127.0.0.1:${srv.address().port}/hook`, hits, close: () => srv.close() })))
}

test('verifyWebhook accepts a real room.updated delivery and refuses a tampered body, a wrong secret and an old timestamp', { timeout: 60000 }, async () => {
  const secret = 'whsec_' + randomBytes(24).toString('base64')
  const other = 'whsec_' + randomBytes(24).toString('base64')
  const rx = await receiver()
  const weaver = await startWeaver({ env: { WEAVER_NOTIFY_URL: rx.url, WEAVER_NOTIFY_SECRET: secret, WEAVER_NOTIFY_DEBOUNCE_MS: '200' } })
  let c
  try {
    c = await yclient(weaver.wsUrl, 'hooked')
    c.text.insert(0, 'changed')
    await waitFor(() => rx.hits.length > 0, { what: 'a notification' })
    const { headers, body } = rx.hits[0]
    const event = verifyWebhook({ secret, headers, body })
    assert.equal(event.type, 'room.updated')
    assert.equal(event.room, 'hooked')
    assert.ok(event.seq >= 1)
    // The same delivery as a string body, through a Fetch Headers, and with a rotated-out secret first.
    assert.deepEqual(verifyWebhook({ secret: [other, secret], headers: new Headers(headers), body: body.toString('utf8') }), event)
    const refused = (opts, code, what) => assert.throws(() => verifyWebhook({ secret, headers, body, ...opts }), (e) => e instanceof WeaverError && e.code === code, what)
    refused({ body: Buffer.from(body.toString('utf8').replace('"hooked"', '"other"')) }, 'bad_signature', 'tampered body')
    refused({ body: Buffer.concat([body, Buffer.from(' ')]) }, 'bad_signature', 'one byte more')
    refused({ secret: other }, 'bad_signature', 'wrong secret')
    const ts = Number(headers['webhook-timestamp'])
    refused({ now: ts + 301 }, 'expired', 'an old delivery replayed')
    refused({ now: ts - 301 }, 'expired', 'from the future')
    assert.equal(verifyWebhook({ secret, headers, body, now: ts + 300 }).room, 'hooked', 'inside the default tolerance')
    refused({ now: ts + 60, toleranceSecs: 30 }, 'expired', 'a tighter tolerance')
    refused({ headers: { ...headers, 'webhook-timestamp': String(ts + 1) } }, 'bad_signature', 'the timestamp is signed')
    refused({ headers: { ...headers, 'webhook-id': 'msg_other' } }, 'bad_signature', 'the id is signed')
    refused({ headers: { ...headers, 'webhook-signature': undefined } }, 'malformed', 'unsigned')
    refused({ headers: { ...headers, 'webhook-timestamp': 'soon' } }, 'malformed', 'not a number')
    refused({ secret: 'whsec_!!' }, 'bad_secret', 'bad secret')
    assert.throws(() => verifyWebhook({ secret, headers, body: JSON.parse(body) }), TypeError, 'parsed body')
  } finally {
    c?.destroy()
    await weaver.stop()
    rx.close()
  }
})
