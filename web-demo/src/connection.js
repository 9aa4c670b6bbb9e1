// The page's link to the relay as a person should see it, with a sentence saying why:
//
//   online       connected and synced
//   connecting   trying (first attempt, or between two retries before we know more)
//   offline      the browser has no network (its own `navigator.onLine`)
//   unavailable  the browser is online but the server cannot be reached (down, restarting)
//   refused      the server answers but refuses this page's live connection (connection limit,
//                a token it does not accept, a room it does not grant, or a final close code)
//   expired      the access token ran out (close 4401, or a 401 for a token past its expiry)
//
// A browser only reports a refused WebSocket upgrade as close 1006, whatever the HTTP status,
// so after two failed attempts in a row the page asks the server over plain HTTP
// (`api.probeRoom`: same token check as the upgrade, never loads the room) and classifies the
// answer. It also owns what the page's token allows (read-only access, learnt from the token's
// claims or from the relay's "permission denied") and `setToken`, the hook an application uses
// to hand the page a fresh token.
import { readClaims, expired } from './token.js'

const MESSAGE_AUTH = 2
const PERMISSION_DENIED = 0
const PROBE_EVERY_MS = 2000
// Failed attempts in a row before a probe result replaces "Connecting…": one failure is
// often just a reconnect racing a restart.
const FAILURES_BEFORE_VERDICT = 2

export class Connection {
  /**
   * @param {{provider: import('y-websocket').WebsocketProvider, api: import('./api.js').Api,
   *   room: string, token: string|null, onChange: () => void}} opts
   */
  constructor ({ provider, api, room, token, onChange }) {
    this.provider = provider
    this.api = api
    this.room = room
    this.onChange = onChange
    this.token = token
    this.claims = readClaims(token)
    this.writeDenied = false
    /** The server's final close (4400-4499), after which y-websocket does not reconnect. */
    this.closed = null
    /** What the last probe said since the page was last in sync: {state, detail}. */
    this.verdict = null
    this._probing = false
    this._probedAt = 0
    this._socketToken = token

    provider.on('status', ({ status }) => {
      if (status === 'connecting') this._socketToken = this.token
      onChange()
    })
    provider.on('sync', (synced) => {
      if (synced) {
        this.verdict = null
        this.closed = null
      }
      onChange()
    })
    provider.on('connection-close', (event) => {
      // `null`: we closed it ourselves (offline, or the silence watchdog): nothing to learn.
      if (event !== null && navigator.onLine) this._probe()
      onChange()
    })
    provider.on('closed', ({ code, reason }) => {
      // A token handed over while the old one was still in use: continue with it.
      if (code === 4401 && this.token !== this._socketToken && navigator.onLine) {
        provider.connect()
        return
      }
      this.closed = { code, reason }
      if (code === 4401) window.dispatchEvent(new CustomEvent('weaver:token-expired', { detail: { room } }))
      onChange()
    })
    // The relay answers the first write of a read-only connection with y-protocols' "permission
    // denied" (docs/security.md); the stock handler only logs it.
    const authHandler = provider.messageHandlers[MESSAGE_AUTH]
    provider.messageHandlers[MESSAGE_AUTH] = (encoder, decoder, prov, emitSynced, type) => {
      if (decoder.arr[decoder.pos] === PERMISSION_DENIED) {
        this.writeDenied = true
        onChange()
        return
      }
      authHandler(encoder, decoder, prov, emitSynced, type)
    }
  }

  /** Edits from this page cannot reach the relay: a read token, or the relay said so. */
  get readOnly () {
    return (this.claims !== null && !this.claims.write) || this.writeDenied
  }

  /** One of online, connecting, offline, unavailable, refused, expired (see the top). */
  get state () {
    const p = this.provider
    if (this.closed) return this.closed.code === 4401 ? 'expired' : 'refused'
    if (!navigator.onLine || !p.shouldConnect) return 'offline'
    if (p.wsconnected && p.synced) return 'online'
    if (this.verdict && !p.wsconnected && p.wsUnsuccessfulReconnects >= FAILURES_BEFORE_VERDICT) return this.verdict.state
    return 'connecting'
  }

  /** Why the page is in its state, in one sentence. */
  get reason () {
    switch (this.state) {
      case 'online': return 'Connected: edits reach the server as you type.'
      case 'connecting': return 'Connecting to the server…'
      case 'offline': return 'This browser is offline.'
      case 'expired': return 'Your access token expired.'
      default:
        if (this.closed) {
          return this.closed.code === 4410
            ? 'This room was deleted on the server.'
            : `The server closed this room for this page (${this.closed.code}${this.closed.reason ? `: ${this.closed.reason}` : ''}).`
        }
        return this.verdict?.detail ?? ''
    }
  }

  /** The reason, and what happens to the person's edits meanwhile. */
  get detail () {
    const kept = 'Your changes are kept on this device'
    switch (this.state) {
      case 'online':
      case 'connecting': return this.reason
      case 'offline': return `${this.reason} ${kept} and sent when the network is back.`
      case 'expired': return `${this.reason} ${kept}; the page continues once the application hands it a new token.`
      default: return `${this.reason} ${kept}${this.closed ? '' : '; the page keeps retrying'}.`
    }
  }

  /**
   * Hands the page a new access token (e.g. after `weaver:token-expired`): later connections and
   * API requests use it, and a page stopped by an expired or refused token reconnects at once.
   */
  setToken (token) {
    if (typeof token !== 'string' || token === '') throw new TypeError('setToken: a token string is required')
    this.token = token
    this.claims = readClaims(token)
    this.writeDenied = false
    this.provider.params = { ...this.provider.params, token }
    this.api.token = token
    // A reload should not bring the old token back.
    const url = new URL(location.href)
    if (url.searchParams.has('token')) {
      url.searchParams.set('token', token)
      history.replaceState(history.state, '', url)
    }
    const wasStopped = this.closed !== null || this.verdict !== null
    this.closed = null
    this.verdict = null
    if (wasStopped && navigator.onLine && this.provider.ws === null) this.provider.connect()
    this.onChange()
  }

  async _probe () {
    if (this._probing || Date.now() - this._probedAt < PROBE_EVERY_MS) return
    this._probing = true
    this._probedAt = Date.now()
    let verdict
    try {
      verdict = this._classify(await this.api.probeRoom(this.room))
    } catch {
      verdict = { state: 'unavailable', detail: 'The server cannot be reached (it may be down or restarting), although this browser is online.' }
    } finally {
      this._probing = false
    }
    // Connected meanwhile: the answer is already stale.
    if (this.provider.synced) return
    this.verdict = verdict
    this.onChange()
  }

  _classify (status) {
    if (status === 401) {
      if (!this.token) return { state: 'refused', detail: 'This server requires an access token (open the page with ?token=…).' }
      if (expired(this.claims)) return { state: 'expired', detail: '' }
      return { state: 'refused', detail: 'The server does not accept this page\'s access token.' }
    }
    if (status === 403) return { state: 'refused', detail: `This access token does not grant the room "${this.room}".` }
    if (status === 503 || status === 502 || status === 504) return { state: 'unavailable', detail: `The server is shutting down or overloaded (HTTP ${status}).` }
    if (status >= 200 && status < 300) return { state: 'refused', detail: 'The server is up but refused the live connection, most likely because it is at its connection limit.' }
    return { state: 'refused', detail: `The server refused the live connection (HTTP ${status}).` }
  }
}

export const STATE_LABEL = {
  online: 'Online',
  connecting: 'Connecting…',
  offline: 'Offline',
  unavailable: 'Server unavailable',
  refused: 'Refused',
  expired: 'Session expired'
}
