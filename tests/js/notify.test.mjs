// Room-change webhooks from the real `weaver serve --notify-url`: a stock y-websocket client
// edits, a plain Node HTTP server receives `room.updated`, checks the Standard Webhooks
// signature the way any receiver library does, and reads the room back over the HTTP API.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { spawnSync } from 'node:child_process'
import { startWeaver, weaverBin, tempDataDir } from './lib/weaver.mjs'
import { yclient, waitFor, textOfUpdate } from './lib/yclient.mjs'
import { webhookReceiver, verifyWebhook } from './lib/webhooks.mjs'

test('room.updated reaches the webhook receiver, signed, once per burst, with a seq to read back', { timeout: 60000 }, async () => {
  const secret = 'whsec_' + randomBytes(24).toString('base64')
  const rx = await webhookReceiver()
  const weaver = await startWeaver({ env: { WEAVER_NOTIFY_URL: rx.url, WEAVER_NOTIFY_SECRET: secret, WEAVER_NOTIFY_PREFIX: 'doc-', WEAVER_NOTIFY_DEBOUNCE_MS: '1000' } })
  try {
    const c = await yclient(weaver.wsUrl, 'doc-1')
    for (const word of ['one ', 'two ', 'three']) c.text.insert(c.text.length, word)
    const other = await yclient(weaver.wsUrl, 'scratch')
    other.text.insert(0, 'not announced')
    await waitFor(() => rx.accepted.length > 0, { what: 'a notification' })
    await new Promise((resolve) => setTimeout(resolve, 800))
    assert.equal(rx.accepted.length, 1, rx.accepted.map((h) => h.body).join('\n'))
    const hit = rx.accepted[0]
    assert.ok(verifyWebhook(secret, hit), 'signature verifies')
    assert.ok(!verifyWebhook('whsec_' + randomBytes(24).toString('base64'), hit), 'another secret does not')
    const event = JSON.parse(hit.body)
    assert.equal(event.type, 'room.updated')
    assert.equal(event.room, 'doc-1')
    assert.ok(event.seq >= 1)
    assert.match(hit.headers['webhook-id'], /^msg_doc-1_0_\d+$/)
    const state = Buffer.from(await (await fetch(`${weaver.httpUrl}/api/rooms/${event.room}/update`)).arrayBuffer())
    assert.equal(textOfUpdate(state), 'one two three')
    const metrics = await (await fetch(`${weaver.httpUrl}/metrics`)).text()
    assert.match(metrics, /^weaver_notify_deliveries_total\{outcome="ok"\} 1$/m)
    assert.match(metrics, /^weaver_notify_pending 0$/m)
    // An online backup carries the notifier's table too (a table it does not know fails it).
    const backup = await fetch(`${weaver.httpUrl}/api/backup`)
    assert.equal(backup.status, 200, await backup.clone().text())
    assert.ok((await backup.arrayBuffer()).byteLength > 0)
    c.destroy(); other.destroy()
  } finally {
    await weaver.stop()
    rx.close()
  }
})

test('notification flags: a bad secret or URL stops the start with the flag named', { timeout: 30000 }, () => {
  const dataDir = tempDataDir()
  const run = (env) => spawnSync(weaverBin, ['serve', '--listen', '127.0.0.1:0', '--data', dataDir], { env: { ...process.env, ...env }, timeout: 20000 })
  let r = run({ WEAVER_NOTIFY_SECRET: 'whsec_AAAA' })
  assert.notEqual(r.status, 0)
  assert.match(r.stderr.toString(), /--notify-secret.*without --notify-url/)
  r = run({ WEAVER_NOTIFY_URL: 'http://127.0.0.1:9/hook', WEAVER_NOTIFY_SECRET: 'not base64!' })
  assert.notEqual(r.status, 0)
  assert.match(r.stderr.toString(), /--notify-secret/)
  r = run({ WEAVER_NOTIFY_URL: 'ftp://127.0.0.1/hook' })
  assert.notEqual(r.status, 0)
  assert.match(r.stderr.toString(), /http or https/)
})
