// Presence: who is in the room, in which block, under what name and colour (Yjs awareness).
//
// The local user's name and colour are kept in localStorage so they survive reloads; the state
// published in awareness is `{ user: {name, color}, focus: blockId | null }`. Remote cursors
// inside the text are deliberately not shown (a textarea cannot draw them).

const COLORS = ['#e11d48', '#d97706', '#059669', '#0284c7', '#7c3aed', '#db2777', '#0d9488', '#4f46e5', '#ea580c', '#65a30d']
const ADJECTIVES = ['Amber', 'Brisk', 'Calm', 'Deft', 'Eager', 'Fuzzy', 'Gentle', 'Happy', 'Jolly', 'Keen', 'Lucky', 'Mellow', 'Nimble', 'Quiet', 'Rapid', 'Sunny', 'Witty', 'Zesty']
const ANIMALS = ['Otter', 'Falcon', 'Panda', 'Lynx', 'Heron', 'Badger', 'Koala', 'Marten', 'Puffin', 'Gecko', 'Bison', 'Raven', 'Walrus', 'Ibex', 'Tapir', 'Wombat']

const pick = (xs) => xs[Math.floor(Math.random() * xs.length)]
const KEY = 'weaver-demo-user'

/** The local user's `{name, color}`, created at random on first visit. */
export function loadUser () {
  try {
    const u = JSON.parse(localStorage.getItem(KEY) ?? 'null')
    if (u && typeof u.name === 'string' && typeof u.color === 'string') return u
  } catch { /* storage unavailable or corrupt: make a new one */ }
  const u = { name: `${pick(ADJECTIVES)} ${pick(ANIMALS)}`, color: pick(COLORS) }
  saveUser(u)
  return u
}

export function saveUser (u) {
  try { localStorage.setItem(KEY, JSON.stringify(u)) } catch { /* private mode: keep it in memory */ }
}

/** Everyone else in the room: `[{clientId, name, color, focus}]`, sorted by name. */
export function peers (awareness) {
  const out = []
  awareness.getStates().forEach((state, clientId) => {
    if (clientId === awareness.clientID) return
    const user = state?.user
    if (!user || typeof user.name !== 'string') return
    out.push({
      clientId,
      name: user.name.slice(0, 40),
      color: typeof user.color === 'string' && /^#[0-9a-f]{3,8}$/i.test(user.color) ? user.color : '#64748b',
      focus: typeof state.focus === 'string' ? state.focus : null
    })
  })
  return out.sort((a, b) => a.name.localeCompare(b.name) || a.clientId - b.clientId)
}

export function initials (name) {
  const parts = name.trim().split(/\s+/).filter(Boolean)
  return ((parts[0]?.[0] ?? '?') + (parts[1]?.[0] ?? '')).toUpperCase()
}
