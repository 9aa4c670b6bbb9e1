// Hostile frames from a raw WebSocket: each closes only its own connection with the documented
// code (docs/protocol.md) while stock clients in the same room keep syncing.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
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
  a.destroy(); b.destroy()
  // The process is unaffected.
  assert.equal((await fetch(`${weaver.httpUrl}/healthz`)).status, 200)
})
