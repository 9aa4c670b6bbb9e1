// The "API calls" panel of one block: the bridge's APICalls for it and each call's event
// timeline (initialized → processing → completed | failed), read from the HTTP API.
//
// It fetches when opened, when the block's indexing statuses change, and every few seconds while
// a call is still running (the document only shows the final outcome of retries; the timeline
// shows each try). A server without the bridge API gets a friendly note, not an error wall.
import { ApiError } from './api.js'
import { h, setChildren, ago, clock, shortId, STATUS_LABEL } from './util.js'

const MAX_CALLS = 6
const POLL_MS = 2000
const TERMINAL = new Set(['completed', 'failed', 'cancelled', 'canceled'])
// The integration-events contract: the steps a person follows. The bridge's bookkeeping events
// (created, claimed, retry_scheduled, ...) often share a timestamp with them; they are folded
// into a collapsed "n internal steps" row under the step they follow (docs/bridge.md).
const PUBLIC_EVENTS = new Set(['initialized', 'processing', 'completed', 'failed'])
// Same words as the status badges (util.js STATUS_LABEL); the raw type stays in data-type.
const EVENT_LABEL = {
  initialized: 'Accepted by the API',
  processing: 'Processing',
  completed: 'Done',
  failed: 'Error',
  created: 'Created',
  claimed: 'Sent to the API',
  retry_scheduled: 'Retry scheduled',
  lease_expired: 'Worker lease expired',
  cancelled: 'Cancelled',
  late_result_ignored: 'Late result ignored',
  writeback_failed: 'Write-back failed'
}
const eventLabel = (e) => e.type === 'failed' && e.retryable === true ? 'Error, will retry' : EVENT_LABEL[e.type] ?? String(e.type).replace(/_/g, ' ')

export class CallsPanel {
  constructor (api, room, blockId) {
    this.api = api
    this.room = room
    this.blockId = blockId
    this.calls = null
    this.details = new Map()
    this.error = null
    this.loading = false
    this.stale = true
    this._abort = null
    this._refreshTimer = null
    this._pollTimer = null
    this.count = h('span.calls-count')
    this.body = h('div.calls-body')
    this.refreshButton = h('button.link-button', { type: 'button', onclick: (e) => { e.preventDefault(); this.refresh() } }, 'Refresh')
    this.el = h('details.calls', { ontoggle: () => this._onToggle() },
      h('summary', {}, h('span.calls-title', {}, 'API calls'), this.count),
      h('div.calls-toolbar', {}, h('span.muted', {}, 'From the bridge: one call per indexing attempt, with its events.'), this.refreshButton),
      this.body)
    this._render()
  }

  get open () { return this.el.open }

  _onToggle () {
    if (this.open) this.refresh()
    else this._stopPolling()
  }

  /** The block's indexing statuses changed: the calls most likely did too. */
  statusesChanged () {
    this.stale = true
    if (!this.open) return
    clearTimeout(this._refreshTimer)
    this._refreshTimer = setTimeout(() => this.refresh(), 250)
  }

  async refresh () {
    clearTimeout(this._refreshTimer)
    this._abort?.abort()
    const abort = new AbortController()
    this._abort = abort
    this.loading = true
    this._render()
    try {
      const calls = (await this.api.listCalls(this.room, this.blockId, { signal: abort.signal })).slice(0, MAX_CALLS)
      const details = await Promise.all(calls.map((c) =>
        typeof c?.id === 'string'
          ? this.api.getCall(c.id, { signal: abort.signal }).catch((err) => (err?.name === 'AbortError' ? Promise.reject(err) : { call: c, events: null, error: err }))
          : { call: c, events: [] }))
      if (abort.signal.aborted) return
      this.calls = calls
      this.details = new Map(calls.map((c, i) => [c.id, details[i]]))
      this.error = null
      this.stale = false
    } catch (err) {
      if (err?.name === 'AbortError') return
      this.error = err instanceof ApiError ? err : new ApiError('http', String(err?.message ?? err))
    } finally {
      if (this._abort === abort) {
        this.loading = false
        this._abort = null
        this._render()
        this._schedulePoll()
      }
    }
  }

  _schedulePoll () {
    this._stopPolling()
    if (!this.open || this.error?.kind === 'missing') return
    const running = (this.calls ?? []).some((c) => !TERMINAL.has(this.details.get(c.id)?.call?.status ?? c.status))
    if (running) this._pollTimer = setTimeout(() => this.refresh(), POLL_MS)
  }

  _stopPolling () {
    clearTimeout(this._pollTimer)
    this._pollTimer = null
  }

  destroy () {
    this._stopPolling()
    clearTimeout(this._refreshTimer)
    this._abort?.abort()
  }

  _render () {
    this.el.dataset.state = this.error ? `error-${this.error.kind}` : this.loading && this.calls === null ? 'loading' : 'ready'
    this.count.textContent = this.calls === null ? '' : String(this.calls.length)
    this.count.hidden = this.calls === null || this.calls.length === 0
    this.refreshButton.disabled = this.loading
    if (this.error) {
      const msg = this.error.kind === 'missing'
        ? ['The bridge API is not available on this server yet.', 'Indexing statuses above still come from the document.']
        : this.error.kind === 'network'
          ? ['Could not reach the server.', 'The list refreshes when the connection is back.']
          : this.error.kind === 'forbidden'
            // A token granting the room reads its calls (docs/security.md): this one does not.
            ? ['This page\'s token does not grant this room\'s call history.', 'The indexing statuses above come from the document and are up to date.']
            : [this.error.message, '']
      setChildren(this.body, h('div.calls-note', { dataset: { kind: this.error.kind } }, h('strong', {}, msg[0]), msg[1] ? h('span', {}, ' ' + msg[1]) : null))
      return
    }
    if (this.calls === null) {
      setChildren(this.body, h('div.calls-note.muted', {}, this.loading ? 'Loading…' : ''))
      return
    }
    if (this.calls.length === 0) {
      setChildren(this.body, h('div.calls-note.muted', { dataset: { kind: 'empty' } }, 'No API calls yet. Request indexing above and the bridge will create one.'))
      return
    }
    setChildren(this.body, h('ol.call-list', {}, this.calls.map((c) => this._renderCall(c))))
  }

  _renderCall (listed) {
    const d = this.details.get(listed.id) ?? { call: listed, events: [] }
    const c = { ...listed, ...(d.call ?? {}) }
    const status = typeof c.status === 'string' ? c.status : 'pending'
    const events = Array.isArray(d.events) ? d.events.slice().sort((a, b) => (Number(a.seq) || 0) - (Number(b.seq) || 0)) : []
    return h('li.call', { dataset: { callId: c.id, status } },
      h('div.call-head', {},
        h('span.badge', { dataset: { status } }, STATUS_LABEL[status] ?? status),
        h('span.call-name', {}, `${c.index_name ?? '?'}`, h('span.muted', {}, ` via ${c.integration ?? '?'}`)),
        h('span.call-attempt', {}, `attempt ${c.attempt ?? '?'}`, typeof c.tries === 'number' && c.tries > 0 ? h('span.muted', {}, ` · ${c.tries} ${c.tries === 1 ? 'try' : 'tries'}`) : null),
        h('span.call-id.mono', { title: c.id }, shortId(c.id)),
        h('span.call-time.muted', { title: c.created_at ?? '' }, ago(c.created_at))),
      c.error ? h('div.call-error', {}, String(c.error)) : null,
      c.status === 'completed' && c.response_data && typeof c.response_data === 'object'
        ? h('div.call-meta', {}, 'result ', h('span.mono', {}, resultText(c.response_data)))
        : null,
      c.external_id ? h('div.call-meta.muted', {}, 'external id ', h('span.mono', {}, String(c.external_id))) : null,
      d.events === null
        ? h('div.muted.small', {}, 'Timeline unavailable: ', d.error?.message ?? '')
        : h('ol.timeline', {}, timelineRows(events)))
  }
}

/** Public steps as rows; each run of internal events as one collapsed row after its step. */
function timelineRows (events) {
  const rows = []
  let run = []
  const flush = () => {
    if (run.length === 0) return
    const n = run.length
    rows.push(h('li.internal-steps', {},
      h('details', {},
        h('summary.muted', { title: run.map((e) => e.type).join(', ') }, `${n} internal step${n === 1 ? '' : 's'}`),
        h('ol.timeline.internal-list', {}, run.map(eventRow)))))
    run = []
  }
  for (const e of events) {
    if (PUBLIC_EVENTS.has(e.type)) {
      flush()
      rows.push(eventRow(e))
    } else {
      run.push(e)
    }
  }
  flush()
  return rows
}

function eventRow (e) {
  return h(PUBLIC_EVENTS.has(e.type) ? 'li.event' : 'li.event.internal', { dataset: e.retryable === true ? { type: String(e.type), retryable: 'true' } : { type: String(e.type) } },
    h('span.event-dot'),
    h('span.event-type', { title: String(e.type) }, eventLabel(e)),
    e.attempt !== undefined && e.attempt !== null ? h('span.muted', {}, ` #${e.attempt}`) : null,
    h('span.event-time.mono.muted', {}, clock(e.at)),
    eventDetail(e))
}

function eventDetail (e) {
  const bits = []
  if (e.try !== undefined && e.try !== null) bits.push(`try ${e.try}`)
  if (e.external_id) bits.push(`external id ${e.external_id}`)
  if (e.http_status ?? e.status_code) bits.push(`HTTP ${e.http_status ?? e.status_code}`)
  if (e.error) bits.push(String(e.error))
  else if (e.message) bits.push(String(e.message))
  if (e.retryable === true) bits.push('will retry')
  else if (e.retryable === false) bits.push('final')
  if (e.next_at) bits.push(`next try at ${clock(e.next_at)}`)
  const data = e.data ?? e.result
  if (data && typeof data === 'object') bits.push(resultText(data))
  if (e.reason) bits.push(String(e.reason))
  if (e.detail) bits.push(String(e.detail))
  return bits.length ? h('span.event-detail', { title: bits.join(' · ') }, bits.join(' · ')) : null
}

/** "3 chunks · 12 ms" from an indexing result object. */
export function resultText (r) {
  if (!r || typeof r !== 'object') return ''
  const bits = []
  if (typeof r.chunks_indexed === 'number') bits.push(`${r.chunks_indexed} chunk${r.chunks_indexed === 1 ? '' : 's'}`)
  if (typeof r.duration_ms === 'number') bits.push(`${r.duration_ms} ms`)
  for (const [k, v] of Object.entries(r)) {
    if (k === 'chunks_indexed' || k === 'duration_ms') continue
    if (['string', 'number', 'boolean'].includes(typeof v)) bits.push(`${k.replace(/_/g, ' ')} ${v}`)
  }
  return bits.join(' · ')
}
