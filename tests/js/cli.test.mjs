// The binary's operator commands (issue 22): `weaver --version` names the commit it was built
// from, `weaver keygen` prints a key that `weaver serve` and `weaver token` accept, and
// `weaver serve --help` groups its flags in sections.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { rmSync } from 'node:fs'
import { startWeaver, weaverBin, tempDataDir, repoRoot } from './lib/weaver.mjs'
import WebSocket from 'ws'

// 'open' when the upgrade succeeds, else the HTTP status the server refused it with.
function upgrade (url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url)
    ws.once('open', () => { ws.close(); resolve('open') })
    ws.once('unexpected-response', (_req, res) => resolve(res.statusCode))
    ws.once('error', reject)
  })
}

const run = (args, env = {}) => execFileSync(weaverBin, args, { env: { ...process.env, ...env } }).toString()

test('weaver --version names the commit of the build', () => {
  const out = run(['--version']).trim()
  let head = null
  try { head = execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { cwd: repoRoot }).toString().trim() } catch { /* not a checkout */ }
  assert.match(out, /^weaver \d+\.\d+\.\d+ \(commit ([0-9a-f]{12}|unknown)\)$/)
  // The binary is built from this checkout in the test command; a stale binary would differ.
  if (head) assert.equal(out, `weaver ${out.split(' ')[1]} (commit ${head})`)
})

test('weaver keygen prints a fresh key that serve and token accept', { timeout: 60000 }, async () => {
  const a = run(['keygen']).trim()
  const b = run(['keygen']).trim()
  assert.match(a, /^[0-9a-f]{64}$/)
  assert.notEqual(a, b, 'two keys differ')
  const dataDir = tempDataDir('weaver-keygen-')
  const weaver = await startWeaver({ dataDir, env: { WEAVER_AUTH_KEY: a } })
  try {
    const token = run(['token', '--room', 'keygen-room', '--ttl', '5m'], { WEAVER_AUTH_KEY: a }).trim()
    const other = run(['token', '--room', 'keygen-room', '--ttl', '5m'], { WEAVER_AUTH_KEY: b }).trim()
    assert.equal(await upgrade(`${weaver.wsUrl}/keygen-room?token=${token}`), 'open', 'a token signed with the key opens the room')
    assert.equal(await upgrade(`${weaver.wsUrl}/keygen-room?token=${other}`), 401, 'another key\'s token is refused')
  } finally {
    await weaver.stop()
    rmSync(dataDir, { recursive: true, force: true })
  }
})

test('weaver serve --help groups its flags: network, storage, limits, auth, webhooks, cluster', () => {
  const help = run(['serve', '--help'])
  const headings = help.split('\n').filter((l) => /^[A-Z][A-Za-z ]*:$/.test(l)).map((l) => l.slice(0, -1))
  assert.deepEqual(headings, ['Options', 'Network', 'Storage', 'Limits', 'Auth', 'Webhooks', 'Cluster', 'Bridge', 'Logging'])
  const section = (name) => help.split(`\n${name}:\n`)[1].split(/\n[A-Z][A-Za-z ]*:\n/)[0]
  assert.match(section('Network'), /--listen/)
  assert.match(section('Network'), /--cors-origin/)
  assert.match(section('Storage'), /--data/)
  assert.match(section('Limits'), /--max-connections-per-room/)
  assert.match(section('Auth'), /--auth-key/)
  assert.match(section('Webhooks'), /--notify-url/)
  assert.match(section('Cluster'), /--node-id/)
})
