// The deployment kit (deploy/, issue 22), checked as far as this machine can without a container
// engine: the container entrypoint run directly against the built binary, the systemd unit with
// `systemd-analyze verify`, shellcheck on the entrypoint, the compose file's shape, the
// Dockerfile's promises, and `cargo install --path crates/weaver`.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync, execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync, rmSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { weaverBin, repoRoot, tempDataDir } from './lib/weaver.mjs'

const deploy = path.join(repoRoot, 'deploy')
const entrypoint = path.join(deploy, 'docker-entrypoint.sh')
const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0

function entry (args, env, opts = {}) {
  return spawnSync(entrypoint, args, { env: { PATH: process.env.PATH, WEAVER_BIN: weaverBin, ...env }, encoding: 'utf8', timeout: 20000, ...opts })
}

// Starts the entrypoint in the background and resolves once the server logged its address.
function startEntry (env) {
  const proc = spawn(entrypoint, [], { env: { PATH: process.env.PATH, WEAVER_BIN: weaverBin, RUST_LOG: 'info', ...env } })
  let log = ''
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line:\n${log}`)), 20000)
    proc.stderr.on('data', (d) => {
      log += d
      const m = log.match(/listening.*?addr=?"?(127\.0\.0\.1:\d+)/)
      if (m) { clearTimeout(timer); resolve({ proc, addr: m[1], log: () => log }) }
    })
    proc.once('exit', (code) => { clearTimeout(timer); reject(new Error(`exited ${code}:\n${log}`)) })
  })
}

test('entrypoint: refuses to run open on a non-loopback address, says how to fix it', () => {
  const r = entry([], { WEAVER_LISTEN: '0.0.0.0:0', WEAVER_DATA: tempDataDir('weaver-entry-') })
  assert.equal(r.status, 64)
  assert.match(r.stderr, /WEAVER_AUTH_KEY/)
  assert.match(r.stderr, /weaver keygen/)
  const flag = entry(['serve', '--max-connections', '5'], { WEAVER_LISTEN: '[::]:0' })
  assert.equal(flag.status, 64, 'flags after serve do not bypass the check')
})

test('entrypoint: serves with a key; healthcheck follows /readyz; weaver subcommands pass through', { timeout: 60000 }, async () => {
  const key = entry(['weaver', 'keygen'], {}).stdout.trim()
  assert.match(key, /^[0-9a-f]{64}$/)
  const dataDir = tempDataDir('weaver-entry-')
  // 127.0.0.1:0 lets the test pick no port; the healthcheck needs the real one, so ask for a free port first.
  const port = await freePort()
  const server = await startEntry({ WEAVER_AUTH_KEY: key, WEAVER_LISTEN: `127.0.0.1:${port}`, WEAVER_DATA: dataDir })
  try {
    assert.equal(server.addr, `127.0.0.1:${port}`)
    assert.equal(entry(['healthcheck'], { WEAVER_LISTEN: `0.0.0.0:${port}` }).status, 0, 'ready → healthy')
    assert.equal((await fetch(`http://127.0.0.1:${port}/readyz`)).status, 200)
    // Tokens minted through the entrypoint open rooms on the served key.
    const token = entry(['weaver', 'token', '--room', 'entry-room'], { WEAVER_AUTH_KEY: key }).stdout.trim()
    assert.equal((await fetch(`http://127.0.0.1:${port}/api/rooms/entry-room/awareness`, { headers: { authorization: `Bearer ${token}` } })).status, 200)
    assert.equal((await fetch(`http://127.0.0.1:${port}/api/rooms/entry-room/awareness`)).status, 401, 'auth is on')
  } finally {
    server.proc.kill('SIGTERM')
    await new Promise((resolve) => server.proc.once('exit', resolve))
    rmSync(dataDir, { recursive: true, force: true })
  }
  assert.equal(entry(['healthcheck'], { WEAVER_LISTEN: `0.0.0.0:${port}` }).status, 1, 'nothing listening → unhealthy')
  const open = await startEntry({ WEAVER_INSECURE_NO_AUTH: 'true', WEAVER_LISTEN: '127.0.0.1:0', WEAVER_DATA: tempDataDir('weaver-entry-') })
  open.proc.kill('SIGTERM')
  await new Promise((resolve) => open.proc.once('exit', resolve))
})

async function freePort () {
  const net = await import('node:net')
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)) })
    s.once('error', reject)
  })
}

test('entrypoint passes shellcheck', { skip: has('shellcheck') ? false : 'shellcheck not installed (apt-get install shellcheck)' }, () => {
  const r = spawnSync('shellcheck', [entrypoint], { encoding: 'utf8' })
  assert.equal(r.status, 0, r.stdout + r.stderr)
})

test('systemd unit: systemd-analyze verify, hardening, stop timeout above the shutdown timeout', { skip: has('systemd-analyze') ? false : 'systemd-analyze not installed' }, () => {
  const unit = readFileSync(path.join(deploy, 'weaver.service'), 'utf8')
  for (const line of ['StateDirectory=weaver', 'Restart=on-failure', 'NoNewPrivileges=yes', 'ProtectSystem=strict', 'ProtectHome=yes', 'PrivateTmp=yes', 'CapabilityBoundingSet=', 'ExecStart=/usr/local/bin/weaver serve']) {
    assert.ok(unit.split('\n').includes(line), `unit has ${line}`)
  }
  const stop = Number(unit.match(/^TimeoutStopSec=(\d+)$/m)?.[1])
  const shutdown = Number(execFileSync(weaverBin, ['serve', '--help']).toString().match(/--shutdown-timeout-secs[^\n]*\n[^\n]*\[default: (\d+)\]/)?.[1])
  assert.ok(shutdown > 0 && stop > shutdown, `TimeoutStopSec ${stop} > --shutdown-timeout-secs default ${shutdown}`)
  // verify checks ExecStart's binary exists: point it at this build.
  const dir = mkdtempSync(path.join(tmpdir(), 'weaver-unit-'))
  const file = path.join(dir, 'weaver.service')
  writeFileSync(file, unit.replace('ExecStart=/usr/local/bin/weaver', `ExecStart=${weaverBin}`))
  const r = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8' })
  rmSync(dir, { recursive: true, force: true })
  assert.equal(r.status, 0, r.stdout + r.stderr)
  assert.equal(r.stderr.trim(), '', 'no warnings')
})

test('compose file: NATS with JetStream fsync always, three nodes with distinct ids, ports and volumes', { skip: spawnSync('python3', ['-c', 'import yaml']).status === 0 ? false : 'python3-yaml not installed' }, () => {
  const json = execFileSync('python3', ['-c', 'import sys, json, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))', path.join(deploy, 'compose.yaml')]).toString()
  const compose = JSON.parse(json)
  const nodes = Object.entries(compose.services).filter(([name]) => name.startsWith('weaver'))
  assert.equal(nodes.length, 3)
  const ids = nodes.map(([, s]) => s.environment.WEAVER_NODE_ID)
  assert.equal(new Set(ids).size, 3)
  for (const [name, s] of nodes) {
    assert.equal(s.environment.WEAVER_CLUSTER, 'nats://nats:4222')
    assert.equal(s.environment.WEAVER_ADVERTISE_URL, `http://${name}:1234`)
    assert.match(s.environment.WEAVER_AUTH_KEY, /^\$\{WEAVER_AUTH_KEY:\?/, 'the key must be given, never defaulted')
    assert.equal(s.build.dockerfile, 'deploy/Dockerfile')
  }
  assert.equal(new Set(nodes.map(([, s]) => s.ports[0])).size, 3)
  assert.match(readFileSync(path.join(deploy, 'nats.conf'), 'utf8'), /^\s*sync_interval: always$/m)
})

test('Dockerfile: multi-stage, non-root, /data volume, 0.0.0.0 listen, healthcheck on the entrypoint', () => {
  const df = readFileSync(path.join(deploy, 'Dockerfile'), 'utf8')
  assert.equal((df.match(/^FROM /gm) || []).length, 2, 'build and runtime stages')
  assert.match(df, /^USER weaver:weaver$/m)
  assert.match(df, /^VOLUME \["\/data"\]$/m)
  assert.match(df, /WEAVER_LISTEN=0\.0\.0\.0:1234/)
  assert.match(df, /^HEALTHCHECK .*\n\s+CMD \["\/usr\/local\/bin\/docker-entrypoint\.sh", "healthcheck"\]$/m)
  assert.match(df, /^ENTRYPOINT \["\/usr\/local\/bin\/docker-entrypoint\.sh"\]$/m)
  // The image's rust must build this workspace: at least its rust-version.
  const msrv = readFileSync(path.join(repoRoot, 'Cargo.toml'), 'utf8').match(/^rust-version = "([\d.]+)"/m)[1]
  assert.match(df, new RegExp(`^FROM rust:${msrv.replace('.', '\\.')}-bookworm AS build$`, 'm'))
  for (const copied of df.matchAll(/^COPY (?!--from)(\S+) /gm)) {
    if (copied[1] !== '.') assert.ok(existsSync(path.join(repoRoot, copied[1])), `${copied[1]} exists`)
  }
})

test('cargo install --path crates/weaver installs a binary that serves the embedded demo from anywhere', { timeout: 600000, skip: has('cargo') ? false : 'no cargo' }, async () => {
  const root = mkdtempSync(path.join(tmpdir(), 'weaver-install-'))
  // The test command's own build directory: install only links what `cargo build` already made.
  const r = spawnSync('cargo', ['install', '--locked', '--debug', '--path', 'crates/weaver', '--root', root], { cwd: repoRoot, env: { ...process.env, CARGO_TARGET_DIR: path.join(repoRoot, 'target') }, encoding: 'utf8' })
  assert.equal(r.status, 0, r.stderr)
  const bin = path.join(root, 'bin', 'weaver')
  const dataDir = tempDataDir('weaver-installed-')
  const proc = spawn(bin, ['serve', '--listen', '127.0.0.1:0', '--data', dataDir], { cwd: tmpdir(), env: { ...process.env, RUST_LOG: 'info' } })
  try {
    const addr = await new Promise((resolve, reject) => {
      let log = ''
      const timer = setTimeout(() => reject(new Error(log)), 20000)
      proc.stderr.on('data', (d) => { log += d; const m = log.match(/listening.*?addr=?"?(127\.0\.0\.1:\d+)/); if (m) { clearTimeout(timer); resolve(m[1]) } })
    })
    const page = await fetch(`http://${addr}/`)
    assert.equal(page.status, 200)
    assert.match(await page.text(), /<html/i)
  } finally {
    proc.kill('SIGTERM')
    await new Promise((resolve) => proc.once('exit', resolve))
    rmSync(root, { recursive: true, force: true })
    rmSync(dataDir, { recursive: true, force: true })
  }
})
