//! The Weaver web demo: a collaborative, offline-capable blocks workspace on stock Yjs.
//!
//! Wiring only: one Y.Doc per page, synced with the relay by y-websocket (same origin, room
//! from `?room=`), kept in IndexedDB by y-indexeddb, rendered by BlockView cards, with presence
//! from awareness, a save-state tracker and the connection's state (connection.js). The document
//! schema lives in the @weaver/doc package (js/weaver-doc); this file deliberately writes the
//! document only through it.
import './style.css'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { IndexeddbPersistence } from 'y-indexeddb'
import * as weaverDoc from '@weaver/doc'
import { readBlocks, addBlock, getBlocksMap } from '@weaver/doc'
import { BlockView } from './block-view.js'
import { SaveTracker } from './save-state.js'
import { Connection, STATE_LABEL } from './connection.js'
import { Api } from './api.js'
import { loadUser, saveUser, peers, initials } from './presence.js'
import { HistoryPanel } from './history-panel.js'
import { h, setChildren } from './util.js'

// The relay's room names (crates/relay/src/room_name.rs): 1-128 of [A-Za-z0-9._~:@/-], a "/"
// only between segments that are neither empty nor "." or "..", minus the paths the server uses.
const ROOM_RE = /^[A-Za-z0-9._~:@/-]{1,128}$/
const RESERVED_ROOMS = new Set(['api', 'assets', 'healthz', 'readyz', 'metrics', 'index.html', 'sw.js'])
const validRoom = (r) => typeof r === 'string' && ROOM_RE.test(r) &&
  r.split('/').every((s) => s !== '' && s !== '.' && s !== '..') && !RESERVED_ROOMS.has(r)
const params = new URLSearchParams(location.search)
const requestedRoom = params.get('room')
const room = validRoom(requestedRoom) ? requestedRoom : 'demo'
const token = params.get('token')
// The relay answers WebSocket upgrades on /<room> of the origin that served this page.
// `?relay=ws://host:port` points a dev server (vite) at a separately running relay.
const relay = params.get('relay') || `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${location.pathname.replace(/[^/]*$/, '')}`
const apiBase = location.href

document.title = `${room} · Weaver`

// ---- document, persistence, network -------------------------------------------------------

const doc = new Y.Doc()
const persistence = new IndexeddbPersistence(`weaver-demo:${room}`, doc)
// y-websocket appends the room to the URL as it is: "org.team/doc" must travel as one path
// segment (org.team%2Fdoc), which the relay decodes.
const provider = new WebsocketProvider(relay, encodeURIComponent(room), doc, {
  connect: navigator.onLine,
  params: token ? { token } : {}
})
const awareness = provider.awareness
const api = new Api(apiBase, token)
const connection = new Connection({ provider, api, room, token, onChange: () => renderStatus() })

// Browsers report losing the network before a WebSocket notices; go offline at once and
// reconnect as soon as the network is back (the relay then receives our offline edits). A room
// the server closed for good (4400-4499: expired token, deleted room) waits for a new token.
window.addEventListener('offline', () => provider.disconnect())
window.addEventListener('online', () => { if (!connection.closed) provider.connect() })

// Whether this device's copy has ever been in sync with the server: an empty copy that never was
// says nothing about the room, so the page shows "Loading…" (or, unreachable, says so) instead
// of "No blocks yet". Kept next to the data, in y-indexeddb's own key-value store.
const SYNCED_KEY = 'weaver-demo:synced-with-server'
let localCopySynced = null
persistence.get(SYNCED_KEY).then((v) => { localCopySynced = v === true }, () => { localCopySynced = false }).then(() => scheduleRender())
provider.on('sync', (synced) => {
  if (synced && localCopySynced !== true) {
    localCopySynced = true
    persistence.set(SYNCED_KEY, true).catch(() => { /* no storage: only this session knows */ })
  }
})

// ---- header: room picker, connection, save state ------------------------------------------

const $ = (sel) => document.querySelector(sel)
const roomInput = $('#room-input')
roomInput.value = room
$('#room-form').addEventListener('submit', (e) => {
  e.preventDefault()
  const next = roomInput.value.trim()
  if (!validRoom(next)) {
    notify(RESERVED_ROOMS.has(next) ? `"${next}" is reserved by the server; pick another name.` : 'Room names use letters, digits and . _ ~ - : @ / (up to 128; "/" only between non-empty parts, like org.team/doc).')
    roomInput.focus()
    return
  }
  const url = new URL(location.href)
  url.searchParams.set('room', next)
  location.assign(url)
})
$('#room-title').textContent = room
// The room picker offers the rooms opened recently on this device, then the server's rooms
// (with who is in them now) when this page's token may list them.
let recentRooms = [room]
try {
  recentRooms = [room, ...JSON.parse(localStorage.getItem('weaver-demo-rooms') ?? '[]').filter((r) => r !== room && validRoom(r))].slice(0, 8)
  localStorage.setItem('weaver-demo-rooms', JSON.stringify(recentRooms))
} catch { /* no storage: only the server's rooms */ }
function renderRoomSuggestions (serverRooms = []) {
  const recent = recentRooms.map((r) => h('option', { value: r }))
  const others = serverRooms
    .filter((r) => validRoom(r.name) && !recentRooms.includes(r.name))
    .map((r) => h('option', { value: r.name, label: r.connections > 0 ? `${r.name} · ${r.connections} connected` : r.name }))
  setChildren($('#recent-rooms'), [...recent, ...others])
}
renderRoomSuggestions()
// A page opened with a token is usually scoped to its room, which cannot list: do not ask.
if (!token) api.listRooms().then(renderRoomSuggestions, () => { /* offline: recent rooms only */ })
if (requestedRoom && requestedRoom !== room) notify(`"${requestedRoom}" is not a valid room name; opened "${room}".`)

const connPill = $('#conn')
const saveState = $('#save')
let unsaved = false

const connNote = $('#conn-note')
const accessBadge = $('#access')
let shownState = null
let shownReadOnly = null

function renderStatus () {
  const state = connection.state
  const readOnly = connection.readOnly
  connPill.dataset.state = state
  connPill.querySelector('.label').textContent = STATE_LABEL[state]
  connPill.title = state === 'online' ? `Connected to ${relay}${room}` : connection.detail
  // States a person would not guess from the pill alone get their sentence on the page.
  const explain = state === 'unavailable' || state === 'refused' || state === 'expired'
  connNote.hidden = !explain
  connNote.dataset.state = state
  if (explain && connNote.textContent !== connection.detail) connNote.textContent = connection.detail
  accessBadge.hidden = !readOnly
  saveState.dataset.unsaved = String(unsaved)
  saveState.hidden = readOnly && !unsaved
  saveState.textContent = unsaved
    ? (readOnly ? 'Local edits not saved (read-only)' : state === 'online' ? 'Saving changes…' : 'Unsaved changes')
    : 'All changes saved'
  saveState.title = unsaved
    ? (readOnly ? 'This page may only read: its local edits stay on this device and never reach the server.' : 'Some local edits have not reached the relay yet. They are kept on this device and sent when connected.')
    : 'Every local edit has been stored by the relay.'
  document.body.dataset.connection = state
  document.body.dataset.readonly = String(readOnly)
  document.title = `${unsaved && !readOnly ? '● ' : ''}${room} · Weaver`
  if (state !== shownState || readOnly !== shownReadOnly) {
    shownState = state
    if (readOnly !== shownReadOnly) {
      shownReadOnly = readOnly
      saveTracker.setReadOnly(readOnly)
      $('#add-block').disabled = readOnly
      $('#add-block').title = readOnly ? 'Read-only access: blocks cannot be added' : ''
    }
    scheduleRender()
  }
}

provider.on('status', renderStatus)
provider.on('sync', renderStatus)
provider.on('sync', () => scheduleRender())
provider.on('connection-close', renderStatus)
window.addEventListener('offline', renderStatus)
window.addEventListener('online', renderStatus)
setInterval(renderStatus, 1000)
// renderStatus first runs once the module has finished: saveTracker exists by then.
const saveTracker = new SaveTracker(doc, provider, (u) => { unsaved = u; renderStatus() })
saveTracker.setReadOnly(connection.readOnly)

// ---- blocks --------------------------------------------------------------------------------

const list = $('#blocks')
const views = new Map()
let focusedBlock = null

const ctx = {
  doc,
  api,
  room,
  notify,
  setFocus (id) {
    if (id === focusedBlock) return
    focusedBlock = id
    awareness.setLocalStateField('focus', id)
  }
}

function render () {
  const { blocks } = readBlocks(doc)
  const seen = new Set()
  const readOnly = connection.readOnly
  let prev = null
  for (const [i, b] of blocks.entries()) {
    seen.add(b.id)
    let view = views.get(b.id)
    if (!view) {
      view = new BlockView(b.id, ctx)
      views.set(b.id, view)
    }
    view.setReadOnly(readOnly)
    view.update(b, i + 1)
    // Keep DOM order = id order without moving nodes that are already in place (moving a
    // focused textarea would blur it).
    const want = prev ? prev.el.nextSibling : list.firstChild
    if (want !== view.el) list.insertBefore(view.el, want)
    prev = view
  }
  for (const [id, view] of views) {
    if (!seen.has(id)) {
      view.destroy()
      views.delete(id)
      if (focusedBlock === id) ctx.setFocus(null)
    }
  }
  const view = renderEmpty(blocks.length)
  // "0 blocks" next to "Loading…" would be the same guess as "No blocks yet".
  $('#block-count').textContent = view === 'loading' ? 'Loading' : view === 'unreachable' ? 'Not on this device yet' : blocks.length === 1 ? '1 block' : `${blocks.length} blocks`
  renderPeers()
}

/**
 * What stands in for an empty list: "No blocks yet" only when someone who knows says so (the
 * server, or a local copy that was once in sync with it); "Loading…" while waiting for them;
 * and, when the server cannot be reached and this device has no copy, that.
 */
function renderEmpty (count) {
  const state = connection.state
  const known = provider.synced || (persistence.synced && localCopySynced === true)
  const waiting = !persistence.synced || localCopySynced === null || state === 'connecting' || state === 'online'
  const view = count > 0 ? 'blocks' : known ? 'empty' : waiting ? 'loading' : 'unreachable'
  $('#empty').hidden = view !== 'empty'
  $('#loading').hidden = view !== 'loading'
  $('#no-local-copy').hidden = view !== 'unreachable'
  if (view === 'unreachable') $('#no-local-copy-why').textContent = connection.reason
  list.dataset.view = view
  return view
}

let renderQueued = false
function scheduleRender () {
  if (renderQueued) return
  renderQueued = true
  queueMicrotask(() => { renderQueued = false; render() })
}
getBlocksMap(doc).observeDeep(scheduleRender)
// Keeps relative times ("2 min ago") fresh on a quiet page.
setInterval(scheduleRender, 30000)

function newBlockId () {
  // Time first so blocks list in creation order (readBlocks sorts by id), random to stay unique.
  const rand = crypto.getRandomValues(new Uint32Array(1))[0].toString(36).padStart(7, '0').slice(0, 6)
  return `b${Date.now().toString(36)}-${rand}`
}

$('#add-form').addEventListener('submit', (e) => {
  e.preventDefault()
  if (connection.readOnly) return
  const id = newBlockId()
  addBlock(doc, { id, type: 'text', content: '' })
  render()
  views.get(id)?.focusText()
})

// ---- presence ------------------------------------------------------------------------------

const user = loadUser()
awareness.setLocalState({ user, focus: null })

const nameInput = $('#my-name')
const myAvatar = $('#my-avatar')
function renderMe () {
  nameInput.value = user.name
  myAvatar.style.background = user.color
  myAvatar.textContent = initials(user.name)
}
renderMe()
nameInput.addEventListener('change', () => {
  const name = nameInput.value.trim().slice(0, 40)
  if (!name) { renderMe(); return }
  user.name = name
  saveUser(user)
  awareness.setLocalStateField('user', { ...user })
  renderMe()
})
myAvatar.addEventListener('click', () => {
  const colors = ['#e11d48', '#d97706', '#059669', '#0284c7', '#7c3aed', '#db2777', '#0d9488', '#4f46e5']
  user.color = colors[(colors.indexOf(user.color) + 1) % colors.length]
  saveUser(user)
  awareness.setLocalStateField('user', { ...user })
  renderMe()
})

function blockLabel (id) {
  const text = weaverDoc.getBlockText(doc, id)?.toString().trim().split('\n')[0] ?? ''
  return text ? (text.length > 28 ? `${text.slice(0, 28)}…` : text) : 'an empty block'
}

function renderPeers () {
  const others = peers(awareness)
  const byBlock = new Map()
  for (const p of others) {
    if (p.focus && views.has(p.focus)) {
      if (!byBlock.has(p.focus)) byBlock.set(p.focus, [])
      byBlock.get(p.focus).push(p)
    }
  }
  for (const [id, view] of views) view.setPeers(byBlock.get(id) ?? [])
  // Awareness only flows through the server: without it the page cannot know who is there.
  const state = connection.state
  if (state !== 'online') {
    $('#peer-count').textContent = '?'
    $('#peer-count').title = 'Unknown until connected'
    setChildren($('#peers'), h('li.peers-unknown.muted', { dataset: { state } }, state === 'offline'
      ? 'Who else is here is unknown while offline: others may still be in this room.'
      : state === 'connecting'
        ? 'Who else is here shows once connected.'
        : 'Who else is here is unknown while not connected.'))
    return
  }
  $('#peer-count').textContent = String(others.length + 1)
  $('#peer-count').removeAttribute('title')
  setChildren($('#peers'), others.length === 0
    ? h('li.peers-empty.muted', {}, 'Nobody else is here. Open this room in another window to collaborate.')
    : others.map((p) => h('li.peer', { dataset: { clientId: String(p.clientId) } },
      h('span.avatar', { style: { background: p.color } }, initials(p.name)),
      h('span.peer-text', {},
        h('span.peer-name', {}, p.name),
        h('span.peer-where.muted', {}, p.focus && views.has(p.focus) ? `editing “${blockLabel(p.focus)}”` : 'viewing')))))
}
awareness.on('change', renderPeers)
// Leave the room visibly when the page goes away (others would otherwise wait for the 30 s
// awareness timeout); come back if the browser restores the page from its back/forward cache.
window.addEventListener('pagehide', () => awareness.setLocalState(null))
window.addEventListener('pageshow', (e) => { if (e.persisted) awareness.setLocalState({ user, focus: focusedBlock }) })

// ---- history -------------------------------------------------------------------------------

const historyPanel = new HistoryPanel($('#history'), { api, room, notify })
historyPanel.refresh()
// New automatic versions appear while the room is edited; a light poll keeps the list fresh.
setInterval(() => { if (connection.state === 'online') historyPanel.refresh() }, 15000)

// ---- notifications, offline shell, test hook ----------------------------------------------

let toastTimer = null
function notify (msg) {
  const t = $('#toast')
  t.textContent = msg
  t.hidden = false
  clearTimeout(toastTimer)
  toastTimer = setTimeout(() => { t.hidden = true }, 5000)
}

const offlineNote = $('#offline-ready')
if ('serviceWorker' in navigator && window.isSecureContext) {
  navigator.serviceWorker.register('./sw.js').then(() => navigator.serviceWorker.ready).then(() => {
    offlineNote.textContent = 'This page works offline.'
    offlineNote.dataset.ready = 'true'
  }).catch((err) => {
    offlineNote.textContent = 'Offline reloads are unavailable in this browser.'
    console.warn('weaver: service worker registration failed', err)
  })
} else {
  offlineNote.textContent = 'Offline reloads need a secure context (https or localhost).'
}

$('#client-id').textContent = String(doc.clientID)
persistence.on('synced', () => { $('#local-copy').textContent = 'loaded'; render() })

render()
renderStatus()

// For tests and the curious: the live objects behind the page.
window.weaver = window.demo = {
  Y,
  doc,
  provider,
  awareness,
  persistence,
  room,
  saveTracker,
  weaverDoc,
  connection,
  readBlocks: () => readBlocks(doc),
  history: historyPanel,
  status: () => ({ connection: connection.state, detail: connection.detail, readOnly: connection.readOnly, unsaved, synced: provider.synced, localLoaded: persistence.synced }),
  // For the application embedding the page: hand over a fresh access token (e.g. on the
  // `weaver:token-expired` window event); the page reconnects with it.
  setToken: (t) => connection.setToken(t)
}
