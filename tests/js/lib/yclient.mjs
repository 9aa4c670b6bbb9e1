// Stock Yjs clients for the tests: a Y.Doc synced through the stock y-websocket
// WebsocketProvider (with the `ws` package as the WebSocket implementation), plus polling helpers.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

// Each y-protocols Awareness registers a process 'exit' listener; tests open hundreds.
process.setMaxListeners(0)

/** Connects a fresh Y.Doc to `room`; resolves once the provider reports `synced`. */
export async function yclient (wsUrl, room, { timeoutMs = 15000, localAddress } = {}) {
  const doc = new Y.Doc()
  // `localAddress` (e.g. 127.0.0.2) makes the client a different peer IP on loopback.
  const Polyfill = localAddress ? class extends WebSocket { constructor (url, protocols) { super(url, protocols, { localAddress }) } } : WebSocket
  const provider = new WebsocketProvider(wsUrl, room, doc, { WebSocketPolyfill: Polyfill, disableBc: true })
  await waitFor(() => provider.synced, { timeoutMs, what: `sync of ${room}` })
  return {
    doc,
    provider,
    text: doc.getText('t'),
    destroy: () => { provider.destroy(); doc.destroy() }
  }
}

/** Polls `cond` every few ms until it is truthy or the time runs out (then throws). */
export async function waitFor (cond, { timeoutMs = 15000, intervalMs = 10, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await cond()
    if (v) return v
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}

/** The text `t` of the document a v1 update describes. */
export function textOfUpdate (update) {
  const doc = new Y.Doc()
  Y.applyUpdate(doc, new Uint8Array(update))
  return doc.getText('t').toString()
}

/** Opens a raw WebSocket and collects its frames; resolves after the server's first frame. */
export async function rawClient (wsUrl, room) {
  const ws = new WebSocket(`${wsUrl}/${room}`)
  ws.binaryType = 'nodebuffer'
  const frames = []
  const closed = new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })))
  ws.on('message', (data, isBinary) => frames.push({ data: Buffer.from(data), isBinary }))
  ws.on('error', () => {})
  await waitFor(() => frames.length > 0, { what: 'first frame' })
  return { ws, frames, closed }
}
