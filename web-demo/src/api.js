// Client for the bridge's HTTP API (APICalls and their events), as the demo page uses it.
//
// Reads: the listing of a block's calls and one call's event timeline. The room's versions
// (history panel): listing, a version's blocks, saving one and restoring one. Errors come back as
// a typed `ApiError` with a `kind` the UI turns into a friendly message ("missing" when this
// server has no bridge API, "network" when it cannot be reached, "forbidden" when the token may
// not read it, "http" otherwise). Also the probe that tells a refused live connection from an
// unreachable server.

import { toMillis } from './util.js'

export class ApiError extends Error {
  constructor (kind, message, status = 0) {
    super(message)
    this.kind = kind
    this.status = status
  }
}

export class Api {
  /** @param {string} base URL the page was served from; `token` is sent as a bearer token. */
  constructor (base, token = null) {
    this.base = new URL('./', base)
    this.token = token
  }

  _headers () {
    const headers = { Accept: 'application/json' }
    if (this.token) headers.Authorization = `Bearer ${this.token}`
    return headers
  }

  async _get (path, { signal } = {}) {
    const headers = this._headers()
    let res
    try {
      res = await fetch(new URL(path, this.base), { headers, signal, cache: 'no-store' })
    } catch (err) {
      if (err?.name === 'AbortError') throw err
      throw new ApiError('network', 'The server could not be reached.')
    }
    if (res.status === 404 || res.status === 405 || res.status === 501) {
      throw new ApiError('missing', 'This server does not expose the bridge API.', res.status)
    }
    if (res.status === 401 || res.status === 403) {
      throw new ApiError('forbidden', `The API answered ${res.status}.`, res.status)
    }
    if (res.status === 502 || res.status === 503 || res.status === 504) {
      throw new ApiError('network', 'The bridge API is unreachable right now.', res.status)
    }
    if (!res.ok) {
      let detail = ''
      try {
        const body = await res.json()
        detail = body?.error?.message ?? body?.error ?? body?.message ?? ''
      } catch { /* not JSON */ }
      throw new ApiError('http', `The API answered ${res.status}${detail ? `: ${detail}` : ''}.`, res.status)
    }
    const type = res.headers.get('content-type') ?? ''
    if (!type.includes('json')) throw new ApiError('missing', 'This server does not expose the bridge API.', res.status)
    try {
      return await res.json()
    } catch {
      throw new ApiError('http', 'The API answered with invalid JSON.', res.status)
    }
  }

  /** A POST with an optional JSON body; answers the JSON reply (errors as in `_get`). */
  async _post (path, body) {
    const headers = this._headers()
    if (body !== undefined) headers['Content-Type'] = 'application/json'
    let res
    try {
      res = await fetch(new URL(path, this.base), { method: 'POST', headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' })
    } catch {
      throw new ApiError('network', 'The server could not be reached.')
    }
    let json = null
    try { json = await res.json() } catch { /* no body */ }
    if (res.status === 401 || res.status === 403) throw new ApiError('forbidden', `The API answered ${res.status}.`, res.status)
    if (res.status === 404) throw new ApiError('missing', json?.error ?? 'Not found.', res.status)
    if (!res.ok) throw new ApiError('http', `The API answered ${res.status}${json?.error ? `: ${json.error}` : ''}.`, res.status)
    return json
  }

  /** `GET /api/rooms/{room}/versions` → the room's versions, newest first. */
  async listVersions (room, opts) {
    const body = await this._get(`api/rooms/${encodeURIComponent(room)}/versions`, opts)
    return Array.isArray(body?.versions) ? body.versions : []
  }

  /** `GET /api/rooms/{room}/versions/{id}/blocks` → `{blocks: [...]}` at that version. */
  async versionBlocks (room, id, opts) {
    return this._get(`api/rooms/${encodeURIComponent(room)}/versions/${encodeURIComponent(id)}/blocks`, opts)
  }

  /** `POST /api/rooms/{room}/versions` → the new version. */
  async createVersion (room, label) {
    return this._post(`api/rooms/${encodeURIComponent(room)}/versions`, label ? { label } : undefined)
  }

  /** `POST /api/rooms/{room}/versions/{id}/restore` → `{restored, seq, pre_restore}`. */
  async restoreVersion (room, id) {
    return this._post(`api/rooms/${encodeURIComponent(room)}/versions/${encodeURIComponent(id)}/restore`)
  }

  /** `GET /api/calls?room=&block=` → array of calls, newest first. */
  async listCalls (room, blockId, opts) {
    const q = new URLSearchParams({ room, block: blockId })
    const body = await this._get(`api/calls?${q}`, opts)
    const calls = Array.isArray(body?.calls) ? body.calls : []
    return calls.slice().sort((a, b) => (toMillis(b.created_at) ?? 0) - (toMillis(a.created_at) ?? 0) ||
      (Number(b.attempt) || 0) - (Number(a.attempt) || 0))
  }

  /**
   * `GET /api/rooms` → the server's rooms, `[{name, connections, …}]` (one page, name order).
   * Refused (a token that cannot list) or unreachable: the caller does without.
   */
  async listRooms ({ limit = 50, ...opts } = {}) {
    const body = await this._get(`api/rooms?limit=${limit}`, opts)
    return Array.isArray(body?.rooms) ? body.rooms : []
  }

  /** `GET /api/calls/{id}` → `{call, events}`. */
  async getCall (id, opts) {
    const body = await this._get(`api/calls/${encodeURIComponent(id)}`, opts)
    return { call: body?.call ?? null, events: Array.isArray(body?.events) ? body.events : [] }
  }

  /**
   * The HTTP status of `GET /api/rooms/{room}/awareness` (checks the token like the WebSocket
   * upgrade does, never loads the room); throws ApiError('network') when nothing answers.
   */
  async probeRoom (room, { timeoutMs = 5000 } = {}) {
    try {
      const res = await fetch(new URL(`api/rooms/${encodeURIComponent(room)}/awareness`, this.base), {
        headers: this._headers(), cache: 'no-store', signal: AbortSignal.timeout(timeoutMs)
      })
      res.body?.cancel().catch(() => {})
      return res.status
    } catch {
      throw new ApiError('network', 'The server could not be reached.')
    }
  }
}
