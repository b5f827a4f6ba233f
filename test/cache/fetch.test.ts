/**
 * cache/fetch.ts: what fetching holds in memory (issue 23, finding 2). An
 * answer of unknown length is read to be stored up to CACHE_MAX_OBJECT_BYTES;
 * clients that stop reading such answers must not make the cache hold that
 * much per connection: what all fetches read ahead of their clients is bounded
 * per worker (CACHE_MAX_FETCH_BUFFER_BYTES), and past it an answer goes
 * through at its client's pace. Memory is measured as the ArrayBuffer bytes
 * still reachable after a full collection (bodies live there), in this
 * process: the origin writes one shared buffer over and over.
 */
import t from 'tap'
import net from 'node:net'
import v8 from 'node:v8'
import vm from 'node:vm'
import { startOrigin, startCache, closeAgent, send } from './fixtures.js'

t.teardown(closeAgent)

v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc') as () => void
const held = (): number => { gc(); return process.memoryUsage().arrayBuffers }
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

t.test('issue 23: clients that stop reading unknown-length answers hold the fetch buffer at most, not an object each', async (t) => {
  const piece = Buffer.alloc(64 * 1024, 97)
  const BIG = 16 * 1024 * 1024
  let sent = 0
  const origin = await startOrigin((req, res) => {
    res.setHeader('cache-control', 'public, max-age=60')
    if (!req.url!.startsWith('/big/')) { res.end('small ' + req.url); return }
    // Storable, no Content-Length, larger than CACHE_MAX_OBJECT_BYTES (4 MiB by default).
    let left = BIG
    const pump = (): void => {
      while (left > 0) {
        left -= piece.length
        sent += piece.length
        if (!res.write(piece)) { res.once('drain', pump); return }
      }
      res.end()
    }
    pump()
  })
  const cache = await startCache(origin.url)
  t.teardown(async () => { await cache.close(); await origin.close() })
  const port = Number(new URL(cache.url).port)
  await send(cache.url + '/warm')
  const before = held()
  const N = 20
  const sockets: net.Socket[] = []
  for (let i = 0; i < N; i++) {
    const socket = net.connect(port, '127.0.0.1')
    socket.on('error', () => {})
    socket.pause() // never reads
    socket.write(`GET /big/${i} HTTP/1.1\r\nHost: site.test\r\n\r\n`)
    sockets.push(socket)
  }
  t.teardown(() => { for (const s of sockets) s.destroy() })
  // Until every answer has stalled: the origin has sent nothing more for a while.
  await sleep(500)
  for (let last = -1, still = 0, i = 0; still < 4 && i < 100; i++) {
    still = sent === last ? still + 1 : 0
    last = sent
    await sleep(250)
  }
  const grown = held() - before
  const limit = 40 * 1024 * 1024
  t.ok(grown < limit, `${N} stalled answers of unknown length hold ${(grown / 1048576).toFixed(1)} MiB (under ${limit / 1048576} MiB; an object's worth each would be ${N * 4} MiB)`)
  // Each fetch notices a spent budget after one more read (a socket read is at most 64 KiB).
  const inflight = cache.app.engine.fetchBuffers.inflight
  t.ok(inflight <= cache.app.engine.config.CACHE_MAX_FETCH_BUFFER_BYTES + N * 64 * 1024, `the fetch buffer stays within its bound, one read over per fetch at most (${(inflight / 1048576).toFixed(1)} MiB)`)
  // Other visitors are answered meanwhile (no time asserted: the machine is shared).
  const fresh = await Promise.all(Array.from({ length: 5 }, (_, i) => send(cache.url + `/fresh/${i}`)))
  t.ok(fresh.every((a) => a.status === 200), 'fresh misses are answered while the stalled clients hold their answers')
  for (const s of sockets) s.destroy()
  // A client that goes away gives its share back.
  for (let i = 0; i < 200 && cache.app.engine.fetchBuffers.inflight > 0; i++) await sleep(25)
  t.equal(cache.app.engine.fetchBuffers.inflight, 0, 'every byte is given back once the clients are gone')
})
