// A plain Node HTTP receiver of room-change webhooks and the Standard Webhooks signature
// check any receiver library does, shared by the single-node and cluster notifier tests.
import http from 'node:http'
import { createHmac, timingSafeEqual } from 'node:crypto'

/**
 * Records every request; answers 204 unless held. While held, requests get no answer (they
 * are in flight for the sender) and are dropped on release: a sender that died meanwhile never
 * learned of them, so they do not count as accepted.
 */
export function webhookReceiver () {
  const accepted = []
  const seen = []
  let held = null
  const server = http.createServer((req, res) => {
    let body = ''
    req.on('data', (d) => { body += d })
    req.on('end', () => {
      const hit = { headers: req.headers, body }
      seen.push(hit)
      if (held) { held.push(res); return }
      accepted.push(hit)
      res.writeHead(204).end()
    })
  })
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({
    url: `http://127.0.0.1:${server.address().port}/hook`,
    accepted,
    seen,
    hold () { held = [] },
    release () { for (const res of held) res.destroy(); held = null },
    close: () => { server.closeAllConnections(); server.close() }
  })))
}

/** Whether `hit` carries a valid `v1` signature by `secret` (a `whsec_` string). */
export function verifyWebhook (secret, { headers, body }) {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64')
  const expected = createHmac('sha256', key).update(`${headers['webhook-id']}.${headers['webhook-timestamp']}.${body}`).digest()
  return (headers['webhook-signature'] ?? '').split(' ').some((s) => {
    const [v, sig] = s.split(',')
    const got = Buffer.from(sig ?? '', 'base64')
    return v === 'v1' && got.length === expected.length && timingSafeEqual(got, expected)
  })
}
