// Service worker of the Weaver web demo: keeps the page itself loadable offline.
//
// The document lives in IndexedDB (y-indexeddb) and syncs over the WebSocket, neither of which
// goes through here. This worker only makes sure a reload without network still finds the page:
// it precaches the built files at install and answers page/asset requests network-first, falling
// back to the cache. The HTTP API (/api/...) is never cached: stale call data would mislead.
// vite.config.js fills in the file list and the content-derived cache version at build time.

const SHELL_FILES = ["assets/index.css","assets/index.js","index.html"]
const CACHE = 'weaver-demo-63c7ec2ab30165ef'
const SCOPE = new URL(self.registration.scope)
const INDEX = new URL('index.html', SCOPE).href

self.addEventListener('install', (event) => {
  event.waitUntil(
    caches.open(CACHE)
      .then((cache) => cache.addAll(SHELL_FILES.map((f) => new URL(f, SCOPE).href)))
      .then(() => self.skipWaiting())
  )
})

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith('weaver-demo-') && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim())
  )
})

self.addEventListener('fetch', (event) => {
  const req = event.request
  if (req.method !== 'GET') return
  const url = new URL(req.url)
  if (url.origin !== SCOPE.origin || !url.pathname.startsWith(SCOPE.pathname)) return
  if (url.pathname.startsWith(SCOPE.pathname + 'api/')) return
  const navigate = req.mode === 'navigate'
  // Pages are cached under index.html whatever their ?room=: it is one page.
  const key = navigate ? INDEX : url.origin + url.pathname
  if (!navigate && !SHELL_FILES.some((f) => new URL(f, SCOPE).href === key)) return
  event.respondWith((async () => {
    try {
      const res = await fetch(req)
      if (res.ok) {
        const copy = res.clone()
        event.waitUntil(caches.open(CACHE).then((c) => c.put(key, copy)))
      }
      return res
    } catch (err) {
      const cached = await caches.match(key)
      if (cached) return cached
      throw err
    }
  })())
})
