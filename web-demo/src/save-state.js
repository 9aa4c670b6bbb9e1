// Tracks whether every local change has reached the relay ("unsaved changes").
//
// y-websocket 3 has no sync-status event, so this keeps a shadow Y.Doc holding exactly what the
// relay has sent us over the WebSocket (step2 answers and broadcast updates). The relay persists
// an update before it broadcasts it, and echoes every update to its sender too, so anything in
// the shadow is durable on the server. The page is "saved" when the local document holds nothing
// the shadow lacks: same state vector and same deletions (compared as snapshots, which Yjs
// builds from maximal deleted runs, so struct splitting does not matter).
//
// Some local content never comes back as an echo: content loaded from IndexedDB that the server
// already had (its step2 skips what our step1 said we have) and offline edits uploaded in our own
// step2 answer. While unsaved and connected, the tracker therefore asks the relay for what the
// *shadow* lacks (a sync step1 carrying the shadow's state vector); the relay's step2 answer
// settles it. Messages from other tabs (BroadcastChannel) are ignored: only the relay counts.
//
// Asking is the page's only repeated sync step1 (y-websocket sends one per connection; its
// `resyncInterval` is off), and the relay limits step1s per connection (`--sync-step1-burst`,
// `--sync-step1-per-minute`, then close 1008). So asks back off while an answer changes nothing
// (1.5 s, doubling up to 30 s, reset by a new connection or once saved), and stop entirely on a
// read-only connection, whose edits the relay never takes: asking every 1.5 s forever is what
// got read-only pages closed with 1008 every ~30 s.
import * as Y from 'yjs'

const MESSAGE_SYNC = 0
const SYNC_STEP1 = 0
const SYNC_STEP2 = 1
const SYNC_UPDATE = 2
const ASK_FIRST_MS = 1500
const ASK_MAX_MS = 30000

function readVarUint (buf, pos) {
  let num = 0
  let mult = 1
  for (;;) {
    if (pos >= buf.length) throw new RangeError('truncated varUint')
    const b = buf[pos++]
    num += (b & 0x7f) * mult
    if (b < 0x80) return [num, pos]
    mult *= 128
    if (mult > 2 ** 53) throw new RangeError('varUint too large')
  }
}

function writeVarUint (out, num) {
  while (num > 0x7f) {
    out.push(0x80 | (num & 0x7f))
    num = Math.floor(num / 128)
  }
  out.push(num)
}

/** A y-websocket sync step1 frame carrying `stateVector`. */
function syncStep1Frame (stateVector) {
  const head = [MESSAGE_SYNC, SYNC_STEP1]
  writeVarUint(head, stateVector.length)
  const frame = new Uint8Array(head.length + stateVector.length)
  frame.set(head, 0)
  frame.set(stateVector, head.length)
  return frame
}

export class SaveTracker {
  /**
   * @param {Y.Doc} doc
   * @param {import('y-websocket').WebsocketProvider} provider
   * @param {(unsaved: boolean) => void} onChange
   */
  constructor (doc, provider, onChange) {
    this.doc = doc
    this.provider = provider
    this.onChange = onChange
    this.shadow = new Y.Doc({ gc: doc.gc })
    this.unsaved = false
    this._checkTimer = null
    this._askTimer = null
    this._askDelay = ASK_FIRST_MS
    this.readOnly = false

    const original = provider.messageHandlers[MESSAGE_SYNC]
    provider.messageHandlers[MESSAGE_SYNC] = (encoder, decoder, prov, emitSynced, messageType) => {
      // emitSynced is true for WebSocket frames and false for BroadcastChannel ones.
      if (emitSynced) this._observe(decoder.arr, decoder.pos)
      return original(encoder, decoder, prov, emitSynced, messageType)
    }
    doc.on('update', () => this._scheduleCheck())
    provider.on('sync', (synced) => {
      if (synced) {
        this._ask()
        // A new connection starts the backoff over.
        this._askDelay = ASK_FIRST_MS
      }
      this._scheduleCheck()
    })
    this._scheduleCheck()
  }

  _observe (buf, pos) {
    try {
      let syncType
      ;[syncType, pos] = readVarUint(buf, pos)
      if (syncType !== SYNC_STEP2 && syncType !== SYNC_UPDATE) return
      let len
      ;[len, pos] = readVarUint(buf, pos)
      Y.applyUpdate(this.shadow, buf.subarray(pos, pos + len))
      this._scheduleCheck()
    } catch (err) {
      console.warn('weaver: could not read a sync message for save tracking', err)
    }
  }

  _scheduleCheck () {
    if (this._checkTimer !== null) return
    this._checkTimer = setTimeout(() => {
      this._checkTimer = null
      this.check()
    }, 50)
  }

  /** Recomputes `unsaved` now; returns it. */
  check () {
    const unsaved = !Y.equalSnapshots(Y.snapshot(this.doc), Y.snapshot(this.shadow))
    if (unsaved !== this.unsaved) {
      this.unsaved = unsaved
      if (!unsaved) this._askDelay = ASK_FIRST_MS
      this.onChange(unsaved)
    }
    if (unsaved) this._scheduleAsk()
    return unsaved
  }

  /** Read-only access: nothing local will ever be confirmed, so never ask (see the top). */
  setReadOnly (readOnly) {
    this.readOnly = readOnly
    if (readOnly) {
      clearTimeout(this._askTimer)
      this._askTimer = null
    } else {
      this._scheduleCheck()
    }
  }

  _scheduleAsk () {
    if (this._askTimer !== null || this.readOnly) return
    // The echo of a live edit normally arrives within milliseconds; ask only if it did not.
    this._askTimer = setTimeout(() => {
      this._askTimer = null
      if (this.check()) this._ask()
    }, this._askDelay)
  }

  _ask () {
    const ws = this.provider.ws
    if (this.readOnly || !this.provider.wsconnected || !this.provider.synced || !ws || ws.readyState !== WebSocket.OPEN) return
    ws.send(syncStep1Frame(Y.encodeStateVector(this.shadow)))
    this._askDelay = Math.min(this._askDelay * 2, ASK_MAX_MS)
  }
}
