// A Hocuspocus document forwarded to a room's owner that stops reading (docs/protocol.md,
// "Hocuspocus protocol", Cluster mode): the frames waiting for the owner are bounded in bytes
// (twice --max-message-bytes), not only in count, so a client sending large updates to a
// stalled owner is closed with 1013 (`owner_queue_full`) at once instead of the node holding
// up to 256 messages of the largest size for it.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { rmSync } from 'node:fs'
import * as Y from 'yjs'
import WebSocket from 'ws'
import { HocuspocusProvider } from '@hocuspocus/provider'
import { startWeaver, tempDataDir } from './lib/weaver.mjs'
import { yclient, waitFor } from './lib/yclient.mjs'
import { startNats } from './lib/nats.mjs'

const MAX_MESSAGE = 1 << 20

test('a forwarded Hocuspocus document whose owner stops reading is closed with 1013 once its frames pass the byte budget', { timeout: 120000 }, async () => {
  const nats = await startNats()
  const dirs = [tempDataDir('weaver-fw1-'), tempDataDir('weaver-fw2-')]
  const nodes = []
  const cleanup = []
  let stopped = null
  try {
    for (const [i, dataDir] of dirs.entries()) {
      nodes.push(await startWeaver({
        dataDir,
        // A long TTL: the stalled owner keeps its lease (and the forwarding its owner) for the
        // whole test, so only the budget can end the document.
        args: ['--cluster', nats.url, '--node-id', `fw${i + 1}`, '--lease-ttl-ms', '20000', '--max-message-bytes', String(MAX_MESSAGE)]
      }))
    }
    const [owner, other] = nodes
    const room = 'fw-budget'
    const y = await yclient(owner.wsUrl, room)
    cleanup.push(() => y.destroy())
    const closes = []
    const doc = new Y.Doc()
    const provider = new HocuspocusProvider({
      url: other.wsUrl,
      name: room,
      document: doc,
      WebSocketPolyfill: WebSocket,
      onClose: (e) => closes.push(e.event?.code)
    })
    cleanup.push(() => { provider.destroy(); doc.destroy() })
    await waitFor(() => provider.isSynced, { what: 'hocuspocus sync through a non-owner' })
    assert.match(other.logs(), /Hocuspocus document forwarded to the room's owner/)

    // The owner stops reading; 40 updates of 0.9 MiB (36 MiB: more than the sockets toward
    // the owner hold plus the 2 MiB budget) go to the forwarding node.
    process.kill(owner.proc.pid, 'SIGSTOP')
    stopped = owner
    for (let i = 0; i < 40 && closes.length === 0; i++) {
      doc.getText('t').insert(0, String(i % 10).repeat(900 * 1024))
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
    // Within the forwarding's own 5 s stall limit (which would close it with 1012).
    await waitFor(() => closes.length > 0, { what: 'the forwarded document closed', timeoutMs: 4000 })
    assert.equal(closes[0], 1013, `closed with ${closes}`)
    await waitFor(() => /owner_queue_full/.test(other.logs()), { what: 'the log line' })
    const line = other.logs().split('\n').find((l) => l.includes('owner_queue_full'))
    assert.match(line, /room="?fw-budget/, line)
  } finally {
    if (stopped) process.kill(stopped.proc.pid, 'SIGCONT')
    for (const c of cleanup) c()
    for (const n of nodes) await n.stop()
    await nats.dispose()
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
  }
})
