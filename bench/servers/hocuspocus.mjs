// Hocuspocus 4 anchor as the benchmark runs it: in memory, no extensions, stock defaults
// (flushDelay 0 = one coalesced broadcast per event-loop turn). Usage: HOST=127.0.0.1 PORT=1235 node hocuspocus.mjs
import { Server } from '@hocuspocus/server'

const server = new Server({
  address: process.env.HOST || '127.0.0.1',
  port: Number(process.env.PORT || 1235),
  quiet: true,
  stopOnSignals: true
})
await server.listen()
console.log(`listening addr=${process.env.HOST || '127.0.0.1'}:${process.env.PORT || 1235}`)
