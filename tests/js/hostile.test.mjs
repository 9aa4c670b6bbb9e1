// Hostile frames from a raw WebSocket: each closes only its own connection with the documented
// code (docs/protocol.md) while stock clients in the same room keep syncing. Hostile TCP peers
// that never finish their HTTP request head are closed by the handshake deadline.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { startWeaver } from './lib/weaver.mjs'
import { yclient, waitFor, rawClient } from './lib/yclient.mjs'

const MAX = 64 * 1024
let weaver
before(async () => { weaver = await startWeaver({ args: ['--max-message-bytes', String(MAX)] }) })
after(async () => { await weaver?.stop() })

const cases = [
  { name: 'text frame', frame: 'hello', code: 1003 },
  { name: 'empty binary frame', frame: Buffer.alloc(0), code: 1002 },
  { name: 'unknown message type', frame: Buffer.from([9, 0]), code: 1002 },
  { name: 'unknown sync type', frame: Buffer.from([0, 9, 0]), code: 1002 },
  { name: 'truncated varint', frame: Buffer.from([0, 0, 0x80]), code: 1002 },
  { name: 'length prefix past the end', frame: Buffer.from([0, 2, 100, 1, 2, 3]), code: 1002 },
  { name: 'bad update bytes', frame: Buffer.from([0, 2, 4, 0xff, 0xff, 0xff, 0x7f]), code: 1007 },
  { name: 'bad awareness update', frame: Buffer.from([1, 3, 1, 1, 1]), code: 1007 },
  { name: 'oversized message', frame: Buffer.alloc(MAX + 1024, 1), code: 1009 }
]

test('hostile frames are closed with their code; the room keeps syncing', { timeout: 60000 }, async () => {
  const a = await yclient(weaver.wsUrl, 'hostile')
  const b = await yclient(weaver.wsUrl, 'hostile')
  try {
    for (const [i, c] of cases.entries()) {
      const raw = await rawClient(weaver.wsUrl, 'hostile')
      raw.ws.send(c.frame)
      const { code } = await raw.closed
      assert.equal(code, c.code, c.name)
      a.text.insert(a.text.length, `${i};`)
      await waitFor(() => b.text.toString() === a.text.toString(), { what: `sync after ${c.name}` })
      assert.ok(a.provider.wsconnected && b.provider.wsconnected, `stock clients still connected after ${c.name}`)
    }
    // A message split into fragments that only together exceed the limit is refused as well.
    const frag = await rawClient(weaver.wsUrl, 'hostile')
    const piece = Buffer.alloc(16 * 1024, 2)
    for (let i = 0; i < 6; i++) frag.ws.send(piece, { binary: true, fin: false })
    frag.ws.send(piece, { binary: true, fin: true })
    assert.equal((await frag.closed).code, 1009, 'fragmented oversized message')
    const metrics = await (await fetch(`${weaver.httpUrl}/metrics`)).text()
    assert.match(metrics, /weaver_rejected_messages_total\{reason="text_frame"\} 1/)
    assert.match(metrics, /weaver_rejected_messages_total\{reason="message_too_big"\} 2/)
  } finally {
    a.destroy(); b.destroy()
  }
  // The process is unaffected.
  assert.equal((await fetch(`${weaver.httpUrl}/healthz`)).status, 200)
})

/** A raw TCP connection; `closed` resolves with what the server sent once it closes the socket. */
function rawTcp (port, localAddress = '127.0.0.1') {
  const sock = net.connect({ port, host: '127.0.0.1', localAddress })
  const start = Date.now()
  let received = ''
  sock.on('data', (d) => { received += d })
  sock.on('error', () => {}) // a reset from the server is a close too
  const connected = new Promise((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject) })
  const closed = new Promise((resolve) => sock.once('close', () => resolve({ afterMs: Date.now() - start, received })))
  return { sock, connected, closed }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const within = (p, ms, what) => Promise.race([p, sleep(ms).then(() => { throw new Error(`${what} not within ${ms} ms`) })])
const counter = (text, reason) => Number(text.match(new RegExp(`^weaver_rejected_messages_total\\{reason="${reason}"\\} (\\d+)`, 'm'))?.[1] ?? 0)

test('handshake deadline: silent, partial and dribbling HTTP peers are closed; stock clients keep syncing', { timeout: 60000 }, async () => {
  const w = await startWeaver({ args: ['--handshake-timeout-secs', '1'] })
  const clients = []
  let drip
  try {
    const a = await yclient(w.wsUrl, 'slowloris')
    const b = await yclient(w.wsUrl, 'slowloris')
    clients.push(a, b)
    const silent = rawTcp(w.port) // connects, sends nothing
    const partial = rawTcp(w.port) // request line and a header, then nothing
    const dribble = rawTcp(w.port) // a header byte every 100 ms, never the blank line
    const kept = rawTcp(w.port) // one complete request, then idle on the kept-alive connection
    await Promise.all([silent.connected, partial.connected, dribble.connected, kept.connected])
    kept.sock.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
    partial.sock.write('GET /slowloris HTTP/1.1\r\nHost: 127.0.0.1\r\n')
    dribble.sock.write('GET /slowloris HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ')
    drip = setInterval(() => { if (!dribble.sock.destroyed) dribble.sock.write('a') }, 100)
    let closedAll = false
    const closes = Promise.all([silent.closed, partial.closed, dribble.closed, kept.closed]).finally(() => { closedAll = true })
    // While the three hang on to their sockets, the room keeps syncing.
    let rounds = 0
    const giveUp = Date.now() + 15000
    while (!closedAll && Date.now() < giveUp) {
      a.text.insert(a.text.length, `${rounds++};`)
      await waitFor(() => b.text.toString() === a.text.toString(), { what: `sync round ${rounds}` })
      await sleep(50)
    }
    clearInterval(drip)
    const [s, p, d, k] = await within(closes, 1000, 'closing the hanging sockets (15 s after they started)')
    for (const [name, r] of Object.entries({ silent: s, partial: p, dribble: d })) {
      assert.equal(r.received, '', `${name}: closed without a response`)
      // Closed by the deadline, not refused on the spot (the peers did nothing invalid).
      assert.ok(r.afterMs >= 900, `${name} closed after ${r.afterMs} ms`)
    }
    // The kept-alive connection was answered, then closed by the same deadline when it idled.
    assert.match(k.received, /^HTTP\/1\.1 200 /)
    assert.ok(k.afterMs >= 900, `kept-alive connection closed after ${k.afterMs} ms`)
    assert.ok(rounds >= 1)
    assert.ok(a.provider.wsconnected && b.provider.wsconnected, 'stock clients still connected')
    // The server still accepts: a new client gets the document.
    const c = await yclient(w.wsUrl, 'slowloris')
    clients.push(c)
    assert.equal(c.text.toString(), a.text.toString())
    const m = await (await fetch(`${w.httpUrl}/metrics`)).text()
    // Counted: the three that never completed a request; not the idle kept-alive one.
    assert.equal(counter(m, 'handshake_timeout'), 3, m.match(/^weaver_rejected.*$/gm)?.join('\n'))
    assert.match(w.logs(), /reason="?handshake_timeout/)
  } finally {
    // Also on failure: live providers would keep reconnecting and the file would never end.
    clearInterval(drip)
    for (const c of clients) c.destroy()
    await w.stop()
  }
})

test('shutdown closes connections still sending their request head, within the HTTP grace', { timeout: 60000 }, async () => {
  // Default (10 s) deadline: only shutdown itself can end these connections in time.
  const w = await startWeaver({})
  const a = await yclient(w.wsUrl, 'shutdown-slow')
  try {
    const silent = rawTcp(w.port)
    const partial = rawTcp(w.port)
    await Promise.all([silent.connected, partial.connected])
    partial.sock.write('GET /shutdown-slow HTTP/1.1\r\nHost: 127.0.0.1\r\n')
    await sleep(200)
    const { code } = await w.stop('SIGTERM')
    assert.equal(code, 0, w.logs())
    await within(Promise.all([silent.closed, partial.closed]), 5000, 'closing the hanging sockets')
    assert.doesNotMatch(w.logs(), /did not stop in time|timed out/, w.logs())
    assert.match(w.logs(), /bye/)
  } finally {
    a.destroy()
    await w.stop()
  }
})

test('HTTP connection caps: per client address and in total; upgraded sockets do not count', { timeout: 60000 }, async () => {
  const w = await startWeaver({ args: ['--handshake-timeout-secs', '20', '--max-http-connections', '6', '--max-http-connections-per-ip', '3'] })
  const socks = []
  const clients = []
  const silent = async (from) => { const r = rawTcp(w.port, from); socks.push(r); await r.connected; return r }
  try {
    // Stock clients hold a slot only during their handshake.
    for (let i = 0; i < 4; i++) clients.push(await yclient(w.wsUrl, 'caps', { localAddress: '127.0.0.2' }))
    const held = []
    for (let i = 0; i < 3; i++) held.push(await silent('127.0.0.2'))
    // A fourth from the same address is closed at once, with nothing sent.
    const fourth = await silent('127.0.0.2')
    const r = await within(fourth.closed, 2000, 'refusing the 4th connection of one address')
    assert.equal(r.received, '')
    // Another address still gets in, and stock clients from it sync with those already there.
    const other = await yclient(w.wsUrl, 'caps', { localAddress: '127.0.0.3' })
    clients.push(other)
    other.text.insert(0, 'still syncing')
    await waitFor(() => clients[0].text.toString() === 'still syncing', { what: 'sync while one address is capped' })
    // Three more silent sockets from a third address reach the total of 6: now everyone waits.
    for (let i = 0; i < 3; i++) held.push(await silent('127.0.0.4'))
    const over = await silent('127.0.0.5')
    assert.equal((await within(over.closed, 2000, 'refusing beyond the total')).received, '')
    // The held sockets were never closed early; releasing them frees their slots at once.
    for (const h of held) assert.equal(h.sock.destroyed, false)
    for (const h of held) h.sock.destroy()
    const m = await within((async () => {
      for (;;) {
        try { return await (await fetch(`${w.httpUrl}/metrics`)).text() } catch { await sleep(50) }
      }
    })(), 5000, 'an HTTP request after the slots were released')
    assert.ok(counter(m, 'http_connection_limit_per_ip') >= 1, m.match(/^weaver_rejected.*$/gm)?.join('\n'))
    assert.ok(counter(m, 'http_connection_limit') >= 1)
    clients.push(await yclient(w.wsUrl, 'caps', { localAddress: '127.0.0.2' }))
    assert.equal(clients.at(-1).text.toString(), 'still syncing')
  } finally {
    for (const s of socks) s.sock.destroy()
    for (const c of clients) c.destroy()
    await w.stop()
  }
})
