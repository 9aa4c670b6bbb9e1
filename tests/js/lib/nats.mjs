// A real nats-server for the cluster tests: JetStream with `sync_interval: always` (durable
// before acknowledged), on a free loopback port, with its store in a temp dir. The binary is
// $WEAVER_NATS_SERVER (scripts/test.sh exports it after scripts/nats.sh installed it).
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'

/** The nats-server binary; throws with the fix when it is not set up. */
export function natsServerBin () {
  const bin = process.env.WEAVER_NATS_SERVER
  if (!bin) {
    throw new Error('WEAVER_NATS_SERVER is not set: run scripts/nats.sh (it installs nats-server ≥ 2.11) and export WEAVER_NATS_SERVER=<the path it prints>; scripts/test.sh does both')
  }
  if (!existsSync(bin)) throw new Error(`WEAVER_NATS_SERVER=${bin} does not exist: run scripts/nats.sh`)
  return bin
}

export async function freePort () {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

async function waitForPort (port, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const open = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1')
      s.once('connect', () => { s.destroy(); resolve(true) })
      s.once('error', () => resolve(false))
    })
    if (open) return
    if (Date.now() > deadline) throw new Error(`${what} did not listen on ${port} within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/**
 * Starts nats-server; resolves once it is ready (its monitoring `/healthz` answers 200, which
 * includes JetStream). Returns { url, stop(), start(), dispose(), logs() }: `stop` ends the
 * process (SIGTERM), `start` runs it again on the same port and store.
 */
export async function startNats () {
  const bin = natsServerBin()
  const dir = mkdtempSync(path.join(tmpdir(), 'weaver-nats-'))
  const port = await freePort()
  const monitor = await freePort()
  const conf = path.join(dir, 'nats.conf')
  writeFileSync(conf, `listen: 127.0.0.1:${port}\nhttp: 127.0.0.1:${monitor}\njetstream {\n  store_dir: ${JSON.stringify(path.join(dir, 'jetstream'))}\n  sync_interval: always\n}\n`)
  let out = ''
  let proc = null
  let exited = null
  const start = async () => {
    proc = spawn(bin, ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] })
    proc.stdout.on('data', (d) => { out += d.toString() })
    proc.stderr.on('data', (d) => { out += d.toString() })
    exited = new Promise((resolve) => proc.once('exit', resolve))
    await waitForPort(monitor, 15000, 'nats-server monitoring')
    const deadline = Date.now() + 15000
    for (;;) {
      const ok = await fetch(`http://127.0.0.1:${monitor}/healthz`).then((r) => r.ok, () => false)
      if (ok) return
      if (Date.now() > deadline) throw new Error(`nats-server not healthy:\n${out}`)
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }
  const stop = async () => {
    if (proc && proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM')
    if (exited) await exited
    proc = null
  }
  await start()
  return {
    url: `nats://127.0.0.1:${port}`,
    start,
    stop,
    logs: () => out,
    dispose: async () => { await stop(); rmSync(dir, { recursive: true, force: true }) }
  }
}
