// Crash durability: whatever a second client has received from the relay survives `kill -9`.
// Repeated on one data directory, with writes still in flight at the moment of the kill.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { execFile, spawn } from 'node:child_process'
import { promisify } from 'node:util'
import { startWeaver, tempDataDir, weaverBin } from './lib/weaver.mjs'
import * as Y from 'yjs'
import { yclient, waitFor } from './lib/yclient.mjs'
import { addBlock, requestIndex, readBlock } from '@weaver/doc'

const ROUNDS = 12
const CONFIRMED = 40

test(`kill -9 never loses an update another client received (${ROUNDS} rounds)`, { timeout: 240000 }, async () => {
  const dataDir = tempDataDir('weaver-durability-')
  try {
    let survivedTotal = 0
    for (let round = 0; round < ROUNDS; round++) {
      const w = await startWeaver({ dataDir })
      const writer = await yclient(w.wsUrl, 'durable')
      const observer = await yclient(w.wsUrl, 'durable')
      const start = writer.text.toString()
      assert.equal(observer.text.toString(), start, 'both clients start from the stored document')
      // Phase 1: confirmed writes, one update each, until the observer has them all.
      for (let i = 0; i < CONFIRMED; i++) writer.text.insert(writer.text.length, `[${round}.${i}]`)
      const confirmed = writer.text.toString()
      await waitFor(() => observer.text.toString() === confirmed, { what: `observer has round ${round}` })
      // Phase 2: keep writing and kill mid-stream.
      let n = 0
      const pump = setInterval(() => { writer.text.insert(writer.text.length, `(${round}.${n++})`) }, 1)
      await new Promise((resolve) => setTimeout(resolve, 5 + (round % 4) * 10))
      await w.kill9()
      clearInterval(pump)
      // Everything the observer received came from the server before it died.
      const seen = observer.text.toString()
      writer.destroy(); observer.destroy()
      assert.ok(seen.startsWith(confirmed), 'observer saw the confirmed writes')

      const w2 = await startWeaver({ dataDir })
      const fresh = await yclient(w2.wsUrl, 'durable')
      const stored = fresh.text.toString()
      fresh.destroy()
      await w2.stop()
      assert.ok(stored.startsWith(seen), `round ${round}: the restarted server has everything the observer saw\nseen:   ${seen.slice(-80)}\nstored: ${stored.slice(-80)}`)
      survivedTotal += seen.length - start.length
    }
    assert.ok(survivedTotal > 0)
    // Acknowledged appends are made durable by the write-ahead journal (docs/storage.md).
    assert.ok(readdirSync(dataDir).includes('weaver.journal'), `a journal next to the database: ${readdirSync(dataDir)}`)
  } finally {
    rmSync(dataDir, { recursive: true, force: true })
  }
})

test('SIGTERM while clients write: prompt exit, everything echoed is kept', { timeout: 60000 }, async () => {
  const dataDir = tempDataDir('weaver-sigterm-')
  try {
    for (let round = 0; round < 3; round++) {
      const w = await startWeaver({ dataDir })
      const writer = await yclient(w.wsUrl, 'term')
      const observer = await yclient(w.wsUrl, 'term')
      let n = 0
      const pump = setInterval(() => { writer.text.insert(writer.text.length, `<${round}.${n++}>`) }, 1)
      await new Promise((resolve) => setTimeout(resolve, 100))
      const started = Date.now()
      const { code, signal } = await w.stop('SIGTERM')
      clearInterval(pump)
      assert.equal(code, 0, `clean exit (signal ${signal})\n${w.logs().slice(-2000)}`)
      assert.ok(Date.now() - started < 12000, 'exits within the shutdown timeout')
      assert.match(w.logs(), /code=1012/, 'clients were closed with 1012')
      const seen = observer.text.toString()
      writer.destroy(); observer.destroy()
      const w2 = await startWeaver({ dataDir })
      const fresh = await yclient(w2.wsUrl, 'term')
      const stored = fresh.text.toString()
      fresh.destroy()
      await w2.stop()
      assert.ok(stored.startsWith(seen), `round ${round}: stored state has everything the observer saw`)
      assert.ok(seen.length > 0)
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true })
  }
})

test('SIGTERM while 100 rooms are written: prompt exit, every room keeps what its observer saw', { timeout: 120000 }, async () => {
  const dataDir = tempDataDir('weaver-sigterm-rooms-')
  const ROOMS = 100
  const clients = []
  try {
    const w = await startWeaver({ dataDir })
    const pairs = []
    for (let r = 0; r < ROOMS; r++) {
      const writer = await yclient(w.wsUrl, `term-${r}`)
      const observer = await yclient(w.wsUrl, `term-${r}`)
      clients.push(writer, observer)
      pairs.push({ writer, observer })
    }
    let n = 0
    const pump = setInterval(() => { for (const { writer } of pairs) writer.text.insert(writer.text.length, `<${n}>`); n++ }, 10)
    await waitFor(() => pairs.every(({ observer }) => observer.text.length > 0), { what: 'every room written' })
    const started = Date.now()
    const { code, signal } = await w.stop('SIGTERM')
    const took = Date.now() - started
    clearInterval(pump)
    assert.equal(code, 0, `clean exit (signal ${signal})\n${w.logs().slice(-2000)}`)
    assert.ok(took < 10000, `exit took ${took} ms`)
    const seen = pairs.map(({ observer }) => observer.text.toString())
    const written = pairs.map(({ writer }) => writer.text.toString())
    for (const c of clients.splice(0)) c.destroy()
    const w2 = await startWeaver({ dataDir })
    try {
      for (let r = 0; r < ROOMS; r++) {
        const fresh = await yclient(w2.wsUrl, `term-${r}`)
        const stored = fresh.text.toString()
        fresh.destroy()
        assert.ok(seen[r].length > 0)
        assert.ok(stored.startsWith(seen[r]), `room ${r}: the stored state has everything the observer saw`)
        assert.ok(written[r].startsWith(stored), `room ${r}: the stored state is a prefix of what was written`)
      }
    } finally {
      await w2.stop()
    }
  } finally {
    for (const c of clients) c.destroy()
    rmSync(dataDir, { recursive: true, force: true })
  }
})

test('server restart under 200 connected clients: everyone reconnects, edits made while it was down converge everywhere', { timeout: 120000 }, async () => {
  const dataDir = tempDataDir('weaver-restart-storm-')
  const ROOMS = 40
  const PER_ROOM = 5
  const clients = []
  let w
  try {
    w = await startWeaver({ dataDir })
    const port = w.port
    const rooms = []
    for (let r = 0; r < ROOMS; r++) {
      const members = []
      for (let c = 0; c < PER_ROOM; c++) members.push(await yclient(w.wsUrl, `storm-${r}`))
      clients.push(...members)
      rooms.push(members)
    }
    rooms.forEach((members, r) => members.forEach((m, c) => m.text.insert(m.text.length, `[on ${r}.${c}]`)))
    const sameIn = (members) => members.every((m) => m.text.toString() === members[0].text.toString())
    await waitFor(() => rooms.every((members) => sameIn(members) && members[0].text.length > 0 && (members[0].text.toString().match(/\[on /g) || []).length === PER_ROOM), { what: 'online edits everywhere', timeoutMs: 30000 })

    await w.stop()
    // While the server is down every client edits offline.
    rooms.forEach((members, r) => members.forEach((m, c) => m.text.insert(0, `(off ${r}.${c})`)))
    w = await startWeaver({ dataDir, listen: `127.0.0.1:${port}` })
    // y-websocket reconnects by itself (backoff up to 2.5 s), resends what the server lacks and
    // receives what it lacks: every replica of a room ends identical with every edit.
    const complete = (members, r) => sameIn(members) && members.every((m) => m.provider.synced) &&
      Array.from({ length: PER_ROOM }, (_, c) => `(off ${r}.${c})`).every((mark) => members[0].text.toString().includes(mark))
    await waitFor(() => rooms.every(complete), { what: 'every room converged after the restart', timeoutMs: 60000 })
    // And the server stored it: a fresh client of each room sees the same text.
    for (let r = 0; r < ROOMS; r++) {
      const fresh = await yclient(w.wsUrl, `storm-${r}`)
      await waitFor(() => fresh.text.toString() === rooms[r][0].text.toString(), { what: `room ${r} stored` })
      fresh.destroy()
    }
  } finally {
    for (const c of clients) c.destroy()
    if (w) await w.stop()
    rmSync(dataDir, { recursive: true, force: true })
  }
})

test('kill -9 with 8 concurrent writers: every entry the observer saw survives (6 rounds)', { timeout: 180000 }, async () => {
  const dataDir = tempDataDir('weaver-durability-many-')
  try {
    for (let round = 0; round < 6; round++) {
      const w = await startWeaver({ dataDir })
      const writers = await Promise.all(Array.from({ length: 8 }, () => yclient(w.wsUrl, 'many')))
      const observer = await yclient(w.wsUrl, 'many')
      const pumps = writers.map((c, i) => {
        let n = 0
        const map = c.doc.getMap('m')
        return setInterval(() => { map.set(`r${round}-w${i}-${n++}`, n) }, 1 + (i % 3))
      })
      await waitFor(() => observer.doc.getMap('m').size >= (round + 1) * 100, { what: 'observer received writes' })
      await new Promise((resolve) => setTimeout(resolve, round * 7))
      await w.kill9()
      pumps.forEach(clearInterval)
      const seen = [...observer.doc.getMap('m').keys()]
      writers.forEach((c) => c.destroy()); observer.destroy()

      const w2 = await startWeaver({ dataDir })
      const fresh = await yclient(w2.wsUrl, 'many')
      const stored = fresh.doc.getMap('m')
      const lost = seen.filter((k) => !stored.has(k))
      fresh.destroy()
      await w2.stop()
      assert.deepEqual(lost, [], `round ${round}: ${lost.length} of ${seen.length} entries the observer saw were lost`)
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true })
  }
})

test('online backup: a consistent copy taken while a client writes restores into a new server', { timeout: 90000 }, async () => {
  const dataDir = tempDataDir('weaver-backup-src-')
  const restoreDir = tempDataDir('weaver-backup-dst-')
  const cliDir = tempDataDir('weaver-backup-cli-')
  const open = []
  let w, w2, w3
  try {
    // Frequent compactions: the copy must pair each room's snapshot with the right log tail.
    w = await startWeaver({ dataDir, env: { WEAVER_COMPACT_AFTER_UPDATES: '50' } })
    // Bridge state too: an index request the built-in integration completes.
    const a = await yclient(w.wsUrl, 'indexed'); open.push(a)
    addBlock(a.doc, { id: 'b1', type: 'text', content: 'one\n\ntwo' })
    requestIndex(a.doc, 'b1', 'search', { dim: 3 })
    await waitFor(() => readBlock(a.doc, 'b1')?.indexingList.find((e) => e.index_name === 'search')?.status === 'done', { what: 'index done' })
    const callsBefore = (await (await fetch(`${w.httpUrl}/api/calls?room=indexed`)).json()).calls
    assert.equal(callsBefore.length, 1)
    // A writer appends continuously; the observer only ever holds durable text.
    const writer = await yclient(w.wsUrl, 'live'); open.push(writer)
    const observer = await yclient(w.wsUrl, 'live'); open.push(observer)
    let n = 0
    const pump = setInterval(() => { writer.text.insert(writer.text.length, `<${n++}>`) }, 1)
    try {
      await waitFor(() => observer.text.length > 200, { what: 'writes flowing' })
      const before = observer.text.toString()
      const res = await fetch(`${w.httpUrl}/api/backup`)
      assert.equal(res.status, 200, await res.clone().text())
      assert.equal(res.headers.get('content-type'), 'application/octet-stream')
      assert.match(res.headers.get('content-disposition'), /^attachment; filename="weaver-backup-\d+\.redb"$/)
      const body = Buffer.from(await res.arrayBuffer())
      assert.equal(body.length, Number(res.headers.get('content-length')))
      writeFileSync(path.join(restoreDir, 'weaver.redb'), body)
      // Writes went on during the backup and go on after it.
      const during = observer.text.length
      await waitFor(() => observer.text.length > during + 20, { what: 'writes after the backup' })
      clearInterval(pump)
      const after = writer.text.toString()
      await waitFor(() => observer.text.toString() === after, { what: 'observer caught up' })

      w2 = await startWeaver({ dataDir: restoreDir })
      const restored = await yclient(w2.wsUrl, 'live'); open.push(restored)
      const got = restored.text.toString()
      // One committed state: everything durable before the request, and a prefix of what
      // followed (one writer appending), never a torn or reordered mix.
      assert.ok(got.startsWith(before), `the backup has what was durable before it\nbefore: ${before.slice(-60)}\ngot:    ${got.slice(-60)}`)
      assert.ok(after.startsWith(got), `the backup is a prefix of the history\ngot:   ${got.slice(-60)}\nafter: ${after.slice(-60)}`)
      const idx = await yclient(w2.wsUrl, 'indexed'); open.push(idx)
      const e = readBlock(idx.doc, 'b1').indexingList.find((x) => x.index_name === 'search')
      assert.equal(e.status, 'done')
      assert.equal(e.result.chunks_indexed, 2)
      const callsAfter = (await (await fetch(`${w2.httpUrl}/api/calls?room=indexed`)).json()).calls
      assert.deepEqual(callsAfter.map((c) => [c.id, c.status]), callsBefore.map((c) => [c.id, 'completed']))
      // The restored server is a working server: it takes writes.
      restored.text.insert(0, '#')
      const again = await yclient(w2.wsUrl, 'live'); open.push(again)
      assert.equal(again.text.toString(), '#' + got)
      assert.match(w.logs(), /backup written; streaming it tables=\d+ bytes=\d+/)

      // `weaver backup` saves the same kind of copy, verified, to a file; the writes have
      // stopped, so it holds exactly the final text.
      const out = path.join(cliDir, 'weaver.redb')
      const { stdout } = await promisify(execFile)(weaverBin, ['backup', '--server', w.httpUrl, '--out', out])
      assert.match(stdout, /saved to .*weaver\.redb: \d+ bytes, \d+ tables, integrity verified/)
      assert.deepEqual(readdirSync(cliDir), ['weaver.redb'], 'no partial file is left')
      w3 = await startWeaver({ dataDir: cliDir })
      const fromCli = await yclient(w3.wsUrl, 'live'); open.push(fromCli)
      assert.equal(fromCli.text.toString(), after)
      // A server that is not there: a clear error, nothing written.
      await assert.rejects(promisify(execFile)(weaverBin, ['backup', '--server', 'http://127.0.0.1:9', '--out', path.join(cliDir, 'x.redb')]),
        (e) => e.code === 1 && /weaver backup: GET http:\/\/127\.0\.0\.1:9\/api\/backup/.test(e.stderr))
      // The server started on cliDir added its journal; the failed backup added nothing.
      assert.deepEqual(readdirSync(cliDir).sort(), ['weaver.journal', 'weaver.redb'], 'a failed backup writes nothing')
    } finally {
      clearInterval(pump)
    }
  } finally {
    for (const c of open) c.destroy()
    if (w) await w.stop()
    if (w2) await w2.stop()
    if (w3) await w3.stop()
    for (const d of [dataDir, restoreDir, cliDir]) rmSync(d, { recursive: true, force: true })
  }
})

test('a damaged database file is refused at start with a clear error, not a panic', { timeout: 60000 }, async () => {
  const dataDir = tempDataDir('weaver-damaged-')
  try {
    const w = await startWeaver({ dataDir })
    const doc = new Y.Doc()
    const marker = 'MARKER-' + 'x'.repeat(20000)
    doc.getText('t').insert(0, marker)
    const r = await fetch(`${w.httpUrl}/api/rooms/big/update`, { method: 'POST', body: Y.encodeStateAsUpdate(doc) })
    assert.equal(r.status, 204)
    await w.stop()
    const file = path.join(dataDir, 'weaver.redb')
    const bytes = readFileSync(file)
    const at = bytes.indexOf(Buffer.from('MARKER-'))
    assert.ok(at > 0, 'the update is stored in the file')
    for (let i = at; i < at + 64; i++) bytes[i] ^= 0xff
    writeFileSync(file, bytes)
    await assert.rejects(startWeaver({ dataDir, timeoutMs: 20000 }), (e) => {
      assert.match(e.message, /weaver exited early/)
      assert.match(e.message, /is damaged .*restore a backup/)
      assert.doesNotMatch(e.message, /panicked/)
      return true
    })
  } finally {
    rmSync(dataDir, { recursive: true, force: true })
  }
})

test('writes failing on disk (file-size limit): nothing unpersisted is shown, the server survives and says it needs a restart, all durable data is there after it', { timeout: 90000 }, async () => {
  const dataDir = tempDataDir('weaver-efbig-')
  const open = []
  let w
  try {
    w = await startWeaver({ dataDir })
    const a = await yclient(w.wsUrl, 'full'); open.push(a)
    for (let i = 0; i < 50; i++) a.text.insert(a.text.length, `[${i}]`)
    const confirmed = a.text.toString()
    const b = await yclient(w.wsUrl, 'full'); open.push(b)
    await waitFor(() => b.text.toString() === confirmed, { what: 'confirmed writes' })
    for (const c of open.splice(0)) c.destroy()
    await w.stop()

    // Restart with the database file allowed to grow by 256 KiB only: a 1 MB paste cannot be
    // committed (EFBIG, like a full disk for this file).
    const limit = statSync(path.join(dataDir, 'weaver.redb')).size + 256 * 1024
    w = await startWeaver({ dataDir, wrapper: ['prlimit', `--fsize=${limit}`, '--'] })
    assert.equal((await fetch(`${w.httpUrl}/readyz`)).status, 200)
    const writer = await yclient(w.wsUrl, 'full'); open.push(writer)
    const observer = await yclient(w.wsUrl, 'full'); open.push(observer)
    assert.equal(observer.text.toString(), confirmed)
    // Random, so no compression makes it small.
    const paste = Array.from({ length: 1 << 20 }, () => String.fromCharCode(97 + Math.floor(Math.random() * 26))).join('')
    writer.text.insert(0, paste)
    await waitFor(() => /persisting failed/.test(w.logs()), { what: 'the commit to fail', timeoutMs: 30000 })
    // The room's log line carries the storage error itself.
    assert.match(w.logs(), /persisting failed.*File too large/)
    await new Promise((resolve) => setTimeout(resolve, 300))
    assert.equal(w.proc.exitCode, null, 'the server is still running')
    assert.equal(w.proc.signalCode, null, 'no SIGXFSZ death')
    assert.equal((await fetch(`${w.httpUrl}/healthz`)).status, 200)
    // redb refuses every write after an I/O error until it is reopened: not ready, and why.
    const ready = await fetch(`${w.httpUrl}/readyz`)
    assert.equal(ready.status, 503)
    assert.match(await ready.text(), /storage failed.*restart/)
    assert.match(await (await fetch(`${w.httpUrl}/metrics`)).text(), /weaver_store_failed 1/)
    assert.equal(observer.text.toString(), confirmed, 'nothing that failed to persist reached another client')
    assert.doesNotMatch(w.logs(), /panicked/)
    for (const c of open.splice(0)) c.destroy()
    await w.stop()

    // Space back: the store opens with every page verified, holds exactly the durable text,
    // and takes writes again.
    w = await startWeaver({ dataDir })
    assert.equal((await fetch(`${w.httpUrl}/readyz`)).status, 200)
    const fresh = await yclient(w.wsUrl, 'full'); open.push(fresh)
    assert.equal(fresh.text.toString(), confirmed)
    fresh.text.insert(fresh.text.length, '<after>')
    const other = await yclient(w.wsUrl, 'full'); open.push(other)
    await waitFor(() => other.text.toString() === confirmed + '<after>', { what: 'a write after the restart' })
  } finally {
    for (const c of open) c.destroy()
    if (w) await w.stop()
    rmSync(dataDir, { recursive: true, force: true })
  }
})

// Issue 21: the data directory and the server's stderr on one small volume. Once the volume is
// full, a log line cannot be written either; tracing used to report that with `eprintln!`,
// which panicked in whatever task logged (the signal task among them), and SIGTERM then never
// ended the process.
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0
test('full disk with the log on the same volume: SIGTERM still exits within the shutdown timeout, nothing shown is lost', { timeout: 180000, skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const exec = promisify(execFile)
  const vol = mkdtempSync(path.join(tmpdir(), 'weaver-fullvol-'))
  try {
    await exec('mount', ['-t', 'tmpfs', '-o', 'size=24m', 'tmpfs', vol])
  } catch (e) {
    rmSync(vol, { recursive: true, force: true })
    t.skip(`cannot mount a tmpfs: ${e.message}`)
    return
  }
  const dataDir = path.join(vol, 'data')
  mkdirSync(dataDir)
  const logFile = path.join(vol, 'data.log')
  const open = []
  let proc
  let w2
  try {
    const logFd = openSync(logFile, 'a')
    const SHUTDOWN_SECS = 3
    proc = spawn(weaverBin, ['serve', '--listen', '127.0.0.1:0', '--data', dataDir, '--shutdown-timeout-secs', String(SHUTDOWN_SECS)], {
      env: { ...process.env, RUST_LOG: 'info', NO_COLOR: '1' },
      stdio: ['ignore', 'ignore', logFd]
    })
    closeSync(logFd)
    const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })))
    const port = await waitFor(() => {
      const m = readFileSync(logFile, 'utf8').match(/listening.*?addr=(?:http:\/\/)?127\.0\.0\.1:(\d+)/)
      return m && Number(m[1])
    }, { what: 'weaver to listen', timeoutMs: 30000 })
    const httpUrl = `http://127.0.0.1:${port}`
    const wsUrl = `ws://127.0.0.1:${port}`
    const writer = await yclient(wsUrl, 'full'); open.push(writer)
    const observer = await yclient(wsUrl, 'full'); open.push(observer)
    // 8 KiB random updates (no compression makes them small) until the store fails.
    const chunk = () => Array.from({ length: 8192 }, () => String.fromCharCode(97 + Math.floor(Math.random() * 26))).join('')
    let n = 0
    const pump = setInterval(() => { writer.text.insert(writer.text.length, `<${n++}>` + chunk()) }, 2)
    try {
      await waitFor(async () => (await fetch(`${httpUrl}/readyz`)).status === 503, { what: 'the store to fail on the full volume', timeoutMs: 120000, intervalMs: 100 })
    } finally {
      clearInterval(pump)
    }
    assert.equal((await fetch(`${httpUrl}/healthz`)).status, 200)
    const seen = observer.text.toString()
    assert.ok(seen.length > 0, 'the observer saw writes before the disk filled')
    for (const c of open.splice(0)) c.destroy()
    // redb grows its file in large steps, so the failed growth can leave room that the log
    // would use up soon enough: take it now (a filler file, then the slack of the log file's
    // last page, byte by byte), so the next log line fails with ENOSPC.
    const fill = (file, size) => {
      const fd = openSync(file, 'a')
      try {
        for (;;) writeSync(fd, Buffer.alloc(size, 10))
      } catch (e) {
        assert.equal(e.code, 'ENOSPC')
      } finally {
        closeSync(fd)
      }
    }
    fill(path.join(vol, 'filler'), 64 * 1024)
    fill(logFile, 1)

    const started = Date.now()
    proc.kill('SIGTERM')
    const result = await Promise.race([exited, new Promise((resolve) => setTimeout(() => resolve(null), (SHUTDOWN_SECS + 7) * 1000))])
    if (result === null) proc.kill('SIGKILL')
    assert.ok(result !== null, `SIGTERM did not end the process within ${SHUTDOWN_SECS + 7} s`)
    assert.ok(Date.now() - started < (SHUTDOWN_SECS + 7) * 1000)

    // Space back: everything the observer was shown is stored.
    rmSync(path.join(vol, 'filler'))
    await exec('mount', ['-o', 'remount,size=256m', vol])
    w2 = await startWeaver({ dataDir })
    const fresh = await yclient(w2.wsUrl, 'full'); open.push(fresh)
    assert.ok(fresh.text.toString().startsWith(seen), 'the restarted server has everything the observer saw')
  } finally {
    for (const c of open) c.destroy()
    if (w2) await w2.stop()
    if (proc && proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
    await new Promise((resolve) => setTimeout(resolve, 200))
    await exec('umount', [vol]).catch(() => {})
    rmSync(vol, { recursive: true, force: true })
  }
})
