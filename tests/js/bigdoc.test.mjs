// A multi-megabyte text through the real `weaver` binary with stock yjs clients (issue 23).
// Weaver's yrs (vendor/yrs/WEAVER.md) cuts string blocks to 16 KiB: when a stock client sends
// its text as one huge item, and when it appends in chunks that Yjs squashes into one item.
// Another stock client must see exactly the same text, both must converge after editing in the
// middle (across the server's block boundaries), and a restarted server must reload it intact.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { rmSync } from 'node:fs'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import { startWeaver, tempDataDir } from './lib/weaver.mjs'
import { yclient, waitFor, textOfUpdate } from './lib/yclient.mjs'

// Mixed widths (1-4 UTF-8 bytes, a surrogate pair) so the server's 16 KiB cuts land next to
// multi-byte characters.
function bigText (bytes, seed) {
  const unit = `${seed} lorem ipsum é 女 😀 dolor sit amet; `
  return unit.repeat(Math.ceil(bytes / Buffer.byteLength(unit)))
}

async function storedText (weaver, room) {
  const res = await fetch(`${weaver.httpUrl}/api/rooms/${room}/update`)
  assert.equal(res.status, 200)
  return textOfUpdate(Buffer.from(await res.arrayBuffer()))
}

test('a multi-MB text: stock clients sync it, edit its middle and converge; a restart reloads it', { timeout: 300000 }, async () => {
  const dataDir = tempDataDir('weaver-bigdoc-')
  const room = 'bigdoc'
  let weaver = await startWeaver({ dataDir })
  const clients = []
  try {
    // Client a types 3 MB while offline: on connecting, its sync reply carries one 3 MB item.
    const docA = new Y.Doc()
    const textA = docA.getText('t')
    const offline = bigText(3_000_000, 'offline')
    textA.insert(0, offline)
    const providerA = new WebsocketProvider(weaver.wsUrl, room, docA, { WebSocketPolyfill: WebSocket, disableBc: true })
    const a = { doc: docA, text: textA, provider: providerA, destroy: () => { providerA.destroy(); docA.destroy() } }
    clients.push(a)
    await waitFor(() => providerA.synced, { what: 'a synced' })
    // Then 1 MB more online, appended in ~64 KB transactions (Yjs squashes them into one item).
    // Each chunk is whole characters: a slice by UTF-16 index could cut a surrogate pair, which
    // Yjs would send as two U+FFFD.
    let online = ''
    for (let i = 0; online.length < 1_000_000; i++) {
      const chunk = bigText(64_000, `online${i}`)
      a.text.insert(a.text.length, chunk)
      online += chunk
    }
    const expected = offline + online
    assert.equal(a.text.toString(), expected)
    await waitFor(async () => (await storedText(weaver, room)) === expected, { timeoutMs: 60000, intervalMs: 200, what: 'server has the whole text' })

    // Client b joins: it gets the server's (bounded-block) encoding and sees identical text.
    const b = await yclient(weaver.wsUrl, room, { timeoutMs: 60000 })
    clients.push(b)
    await waitFor(() => b.text.length === a.text.length, { timeoutMs: 60000, what: 'b has the whole text' })
    assert.equal(b.text.toString(), expected)

    // Both edit the middle concurrently: inserts and deletes at many positions, some deletes
    // longer than a block (16 KiB) so they span the server's block boundaries.
    // Positions avoid the middle of a surrogate pair (Yjs would turn both halves into U+FFFD).
    let seed = 1
    const rand = (n) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n }
    const whole = (s, i) => (i > 0 && i < s.length && /[\uD800-\uDBFF]/.test(s[i - 1]) ? i - 1 : i)
    for (let k = 0; k < 40; k++) {
      for (const c of [a, b]) {
        const s = c.text.toString()
        const at = whole(s, Math.floor(s.length / 4) + rand(Math.floor(s.length / 2)))
        if (k % 3 === 2) c.text.delete(at, whole(s, at + (k % 2 ? 5 : 40000)) - at)
        else c.text.insert(at, `<${c === a ? 'a' : 'b'}${k}>`)
      }
    }
    await waitFor(() => a.text.toString() === b.text.toString(), { timeoutMs: 60000, intervalMs: 100, what: 'a and b converge' })
    const final = a.text.toString()
    assert.notEqual(final, expected)
    assert.ok(final.includes('<a0>') && final.includes('<b0>'))
    await waitFor(async () => (await storedText(weaver, room)) === final, { timeoutMs: 60000, intervalMs: 200, what: 'server has the edits' })
    for (const c of clients.splice(0)) c.destroy()

    // Restart on the same data directory: the text reloads identically.
    const { code } = await weaver.stop()
    assert.equal(code, 0)
    weaver = await startWeaver({ dataDir })
    const fresh = await yclient(weaver.wsUrl, room, { timeoutMs: 60000 })
    clients.push(fresh)
    await waitFor(() => fresh.text.length === final.length, { timeoutMs: 60000, what: 'fresh client has the text' })
    assert.equal(fresh.text.toString(), final)
    assert.equal(await storedText(weaver, room), final)
  } finally {
    for (const c of clients) c.destroy()
    await weaver.stop()
    rmSync(dataDir, { recursive: true, force: true })
  }
})
