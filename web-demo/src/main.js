//! The Weaver web demo: a collaborative, offline-capable blocks workspace on stock Yjs.
//!
//! Wiring only: one Y.Doc per page, synced with the relay by y-websocket (same origin, room
//! from `?room=`), kept in IndexedDB by y-indexeddb, rendered by BlockView cards, with presence
//! from awareness and a save-state tracker. The document schema lives in weaver-doc.js; this file
//! deliberately writes the document only through it.
import './style.css'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { IndexeddbPersistence } from 'y-indexeddb'
import * as weaverDoc from './weaver-doc.js'
import { readBlocks, addBlock, getBlocksMap } from './weaver-doc.js'
import { BlockView } from './block-view.js'
import { SaveTracker } from './save-state.js'
import { Api } from './api.js'
import { loadUser, saveUser, peers, initials } from './presence.js'
import { h, setChildren } from './util.js'

// The relay's room names ([A-Za-z0-9._~-]), minus the paths the server itself uses.
const ROOM_RE = /^[A-Za-z0-9][A-Za-z0-9._~-]{0,63}$/
const RESERVED_ROOMS = new Set(['api', 'assets', 'healthz', 'readyz', 'metrics', 'index.html', 'sw.js'])
const validRoom = (r) => typeof r === 'string' && ROOM_RE.test(r) && !RESERVED_ROOMS.has(r)
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
const provider = new WebsocketProvider(relay, room, doc, {
  connect: navigator.onLine,
  params: token ? { token } : {}
})
const awareness = provider.awareness
const api = new Api(apiBase, token)

// Browsers report losing the network before a WebSocket notices; go offline at once and
// reconnect as soon as the network is back (the relay then receives our offline edits).
window.addEventListener('offline', () => provider.disconnect())
window.addEventListener('online', () => provider.connect())
// The relay closed for good (4400-4499: e.g. a missing or expired token): say so.
provider.on('closed', ({ code, reason }) => notify(`The relay refused this room (${code}${reason ? `: ${reason}` : ''}). Edits stay on this device.`))

// ---- header: room picker, connection, save state ------------------------------------------

const $ = (sel) => document.querySelector(sel)
const roomInput = $('#room-input')
roomInput.value = room
$('#room-form').addEventListener('submit', (e) => {
  e.preventDefault()
  const next = roomInput.value.trim()
  if (!validRoom(next)) {
    notify(RESERVED_ROOMS.has(next) ? `"${next}" is reserved by the server; pick another name.` : 'Room names use letters, digits, ".", "_", "~" and "-" (up to 64).')
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

function connectionState () {
  if (!navigator.onLine || !provider.shouldConnect) return 'offline'
  if (provider.wsconnected && provider.synced) return 'online'
  if (provider.wsconnecting || provider.wsconnected) return 'connecting'
  // Between reconnect attempts (backoff) the provider is neither: it is trying.
  return provider.wsUnsuccessfulReconnects > 3 ? 'offline' : 'connecting'
}

function renderStatus () {
  const state = connectionState()
  connPill.dataset.state = state
  connPill.querySelector('.label').textContent = state === 'online' ? 'Online' : state === 'connecting' ? 'Connecting…' : 'Offline'
  connPill.title = state === 'online' ? `Connected to ${relay}${room}` : state === 'connecting' ? 'Connecting to the relay…' : 'Working offline: changes are kept on this device'
  saveState.dataset.unsaved = String(unsaved)
  saveState.textContent = unsaved
    ? (state === 'online' ? 'Saving changes…' : 'Unsaved changes')
    : 'All changes saved'
  saveState.title = unsaved
    ? 'Some local edits have not reached the relay yet. They are kept on this device and sent when connected.'
    : 'Every local edit has been stored by the relay.'
  document.body.dataset.connection = state
  document.title = `${unsaved ? '● ' : ''}${room} · Weaver`
}

provider.on('status', renderStatus)
provider.on('sync', renderStatus)
provider.on('sync', () => scheduleRender())
provider.on('connection-close', renderStatus)
window.addEventListener('offline', renderStatus)
window.addEventListener('online', renderStatus)
setInterval(renderStatus, 1000)
const saveTracker = new SaveTracker(doc, provider, (u) => { unsaved = u; renderStatus() })

// ---- blocks --------------------------------------------------------------------------------

const list = $('#blocks')
const emptyState = $('#empty')
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
  let prev = null
  for (const b of blocks) {
    seen.add(b.id)
    let view = views.get(b.id)
    if (!view) {
      view = new BlockView(b.id, ctx)
      views.set(b.id, view)
    }
    view.update(b)
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
  // Until a local copy or the relay has answered, "no blocks" would be a guess: say nothing.
  emptyState.hidden = blocks.length > 0 || !(persistence.synced || provider.synced)
  $('#block-count').textContent = blocks.length === 1 ? '1 block' : `${blocks.length} blocks`
  renderPeers()
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
  const type = $('#add-type').value
  const id = newBlockId()
  addBlock(doc, { id, type, content: '' })
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
  $('#peer-count').textContent = String(others.length + 1)
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
  readBlocks: () => readBlocks(doc),
  status: () => ({ connection: connectionState(), unsaved, synced: provider.synced, localLoaded: persistence.synced })
}
