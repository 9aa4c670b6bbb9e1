// Small DOM and formatting helpers shared by the demo's views. No framework: `h` builds
// elements, the views keep references and patch them.

/**
 * `h('div.card.big', {onclick, dataset: {x: 1}, title: 't'}, child, 'text', [more])`.
 * Class names come from the tag string; `null`/`false` children are skipped.
 */
export function h (tag, props = {}, ...children) {
  const [name, ...classes] = tag.split('.')
  const el = document.createElement(name || 'div')
  if (classes.length) el.className = classes.join(' ')
  for (const [k, v] of Object.entries(props ?? {})) {
    if (v === undefined || v === null || v === false) continue
    if (k === 'dataset') Object.assign(el.dataset, v)
    else if (k === 'style' && typeof v === 'object') Object.assign(el.style, v)
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v)
    else if (k === 'class') el.className += (el.className ? ' ' : '') + v
    else if (k in el && typeof v !== 'string') el[k] = v
    else el.setAttribute(k, v === true ? '' : String(v))
  }
  append(el, children)
  return el
}

function append (el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue
    if (Array.isArray(c)) append(el, c)
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)))
  }
}

/** Replaces all children of `el`. */
export function setChildren (el, ...children) {
  el.replaceChildren()
  append(el, children)
}

/** Milliseconds since the epoch from a number (ms) or an ISO-8601 string; null if neither. */
export function toMillis (v) {
  if (typeof v === 'number' && Number.isFinite(v)) return v
  if (typeof v === 'string') {
    const t = Date.parse(v)
    return Number.isNaN(t) ? null : t
  }
  return null
}

/** "just now", "12 s ago", "3 min ago", or a clock time for older moments. */
export function ago (v, now = Date.now()) {
  const t = toMillis(v)
  if (t === null) return ''
  const s = Math.round((now - t) / 1000)
  if (s < 2) return 'just now'
  if (s < 60) return `${s} s ago`
  if (s < 3600) return `${Math.floor(s / 60)} min ago`
  return new Date(t).toLocaleString()
}

/** A clock time with milliseconds, for event timelines. */
export function clock (v) {
  const t = toMillis(v)
  if (t === null) return ''
  const d = new Date(t)
  const p = (n, w = 2) => String(n).padStart(w, '0')
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`
}

export function shortId (id) {
  if (typeof id !== 'string') return ''
  return id.length > 13 ? `${id.slice(0, 8)}…${id.slice(-4)}` : id
}

// One vocabulary for an index entry's status (from the document) and its APICall's status
// (from the bridge API): the same outcome reads the same in both places.
export const STATUS_LABEL = {
  notStarted: 'Queued',
  processing: 'Processing',
  done: 'Done',
  error: 'Error',
  pending: 'Queued',
  completed: 'Done',
  failed: 'Error',
  cancelled: 'Cancelled',
  canceled: 'Cancelled'
}
