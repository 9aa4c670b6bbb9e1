// Starts the real `weaver` binary on a free loopback port for a test, and stops it.
// The binary is $WEAVER_BIN or target/debug/weaver (built by scripts/test.sh before node runs).
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..')
export const weaverBin = process.env.WEAVER_BIN || path.join(repoRoot, 'target/debug/weaver')

export function tempDataDir (prefix = 'weaver-test-') {
  return mkdtempSync(path.join(tmpdir(), prefix))
}

/**
 * Starts `weaver serve --listen 127.0.0.1:0 (or `listen`) --data <dir> ...args` and resolves once the bound
 * address is logged (`listening addr=127.0.0.1:PORT`).
 * Returns { port, httpUrl, wsUrl, dataDir, proc, logs(), stop(), kill9() }.
 */
export async function startWeaver ({ dataDir, args = [], env = {}, timeoutMs = 30000, wrapper = [], listen = '127.0.0.1:0' } = {}) {
  if (!existsSync(weaverBin)) throw new Error(`weaver binary not found at ${weaverBin}; run cargo build -p weaver`)
  const ownDir = !dataDir
  dataDir = dataDir || tempDataDir()
  // `wrapper` runs weaver under another command, e.g. ['prlimit', '--fsize=N', '--'].
  const argv = [weaverBin, 'serve', '--listen', listen, '--data', dataDir, ...args]
  const proc = spawn(wrapper.length ? wrapper[0] : argv[0], [...wrapper.slice(1), ...(wrapper.length ? argv : argv.slice(1))], {
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info', NO_COLOR: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  const onData = (d) => { out += d.toString() }
  proc.stdout.on('data', onData)
  proc.stderr.on('data', onData)
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })))
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`weaver did not start within ${timeoutMs} ms:\n${out}`)), timeoutMs)
    const check = () => {
      const m = out.match(/listening.*?addr=(?:http:\/\/)?127\.0\.0\.1:(\d+)/)
      if (m) { clearTimeout(timer); resolve(Number(m[1])) }
    }
    proc.stdout.on('data', check)
    proc.stderr.on('data', check)
    exited.then(({ code, signal }) => { clearTimeout(timer); reject(new Error(`weaver exited early (${code ?? signal}):\n${out}`)) })
  })
  const stop = async (signal = 'SIGTERM') => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal)
    const r = await exited
    if (ownDir) rmSync(dataDir, { recursive: true, force: true })
    return r
  }
  return {
    port,
    httpUrl: `http://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${port}`,
    dataDir,
    proc,
    exited,
    logs: () => out,
    stop,
    // SIGKILL without removing the data directory: the caller restarts on it.
    kill9: async () => { proc.kill('SIGKILL'); return exited }
  }
}
