/**
 * Issue 10, finding 8: request bodies in flight are bounded per worker
 * (CACHE_MAX_INFLIGHT_BODY_BYTES); beyond, 503 with Retry-After, without
 * reading the body. Raw sockets, so the test decides when each body is sent.
 */
import t from 'tap'
import net from 'node:net'
import { startOrigin, startCache, closeAgent, type TestCache } from './fixtures.js'

t.teardown(closeAgent)

const MiB = 1024 * 1024

/** A client connection that records what it receives and whether the cache closed it. */
function client (cache: TestCache) {
  const port = Number(new URL(cache.url).port)
  const socket = net.connect(port, '127.0.0.1')
  const state = { data: '', closed: false, socket }
  socket.setEncoding('latin1')
  socket.on('data', (d: string) => { state.data += d })
  socket.on('close', () => { state.closed = true })
  socket.on('error', () => {})
  return state
}

async function until (what: string, check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

const status = (data: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0)

t.test('issue 10: declared bodies beyond the in-flight budget get 503 + Retry-After before a byte of them is read', async (t) => {
  const origin = await startOrigin((req, res) => {
    let n = 0
    req.on('data', (c: Buffer) => { n += c.length })
    req.on('end', () => { res.setHeader('cache-control', 'no-store'); res.end(`got ${n}`) })
  })
  // Three 1 MiB bodies fit; the fourth and later do not.
  const cache = await startCache(origin.url, { CACHE_MAX_BODY_BYTES: String(MiB), CACHE_MAX_INFLIGHT_BODY_BYTES: String(3 * MiB) })
  t.teardown(async () => { await cache.close(); await origin.close() })
  const budget = cache.app.engine.bodies

  // Eight clients send only their heads.
  const clients = Array.from({ length: 8 }, () => client(cache))
  for (const c of clients) c.socket.write(`POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: ${MiB}\r\nConnection: close\r\n\r\n`)
  await until('five refusals', () => clients.filter((c) => c.closed).length === 5)
  const refused = clients.filter((c) => c.closed)
  for (const c of refused) {
    t.equal(status(c.data), 503, 'refused with 503')
    t.match(c.data, /\r\nretry-after: 1\r\n/i, 'with Retry-After')
  }
  t.equal(budget.inflight, 3 * MiB, 'the three admitted bodies hold the whole budget')
  t.equal(origin.count(), 0, 'nothing was forwarded yet: the admitted bodies have not been sent')

  // The admitted three now send their bodies and are forwarded whole.
  const admitted = clients.filter((c) => !c.closed)
  for (const c of admitted) c.socket.write(Buffer.alloc(MiB, 120))
  await until('three answers', () => admitted.every((c) => c.closed))
  for (const c of admitted) {
    t.equal(status(c.data), 200)
    t.match(c.data, new RegExp(`got ${MiB}$`))
  }
  t.equal(origin.count('/form'), 3, 'exactly the admitted bodies reached the origin')
  t.equal(budget.inflight, 0, 'their bytes went back to the budget')

  // With the budget free again, a new body passes.
  const later = client(cache)
  later.socket.write(`POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello`)
  await until('the later answer', () => later.closed)
  t.equal(status(later.data), 200)
  t.equal(origin.count('/form'), 4)
})

t.test('issue 10: a chunked body is counted as it arrives; the byte that crosses the budget gets 503', async (t) => {
  const origin = await startOrigin((req, res) => { req.resume(); req.on('end', () => { res.setHeader('cache-control', 'no-store'); res.end('ok') }) })
  const cache = await startCache(origin.url, { CACHE_MAX_BODY_BYTES: String(MiB), CACHE_MAX_INFLIGHT_BODY_BYTES: String(1.5 * MiB) })
  t.teardown(async () => { await cache.close(); await origin.close() })
  const budget = cache.app.engine.bodies

  const holder = client(cache)
  holder.socket.write(`POST /holder HTTP/1.1\r\nHost: x\r\nContent-Length: ${MiB}\r\nConnection: close\r\n\r\n`)
  await until('the holder\'s reservation', () => budget.inflight === MiB)

  const streamer = client(cache)
  const half = MiB / 2
  // One chunk announced larger than what is sent so far: exactly the rest of the budget arrives first…
  streamer.socket.write(`POST /stream HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${(half + 1).toString(16)}\r\n`)
  streamer.socket.write(Buffer.alloc(half, 121))
  await until('the streamed half counted', () => budget.inflight === 1.5 * MiB)
  t.notOk(streamer.closed, 'a body within the budget is read on')
  // …then one byte more.
  streamer.socket.write('z')
  await until('the refusal', () => streamer.closed)
  t.equal(status(streamer.data), 503)
  t.match(streamer.data, /\r\nretry-after: 1\r\n/i)
  t.equal(budget.inflight, MiB, 'the refused body\'s bytes were given back at once')

  holder.socket.write(Buffer.alloc(MiB, 120))
  await until('the holder\'s answer', () => holder.closed)
  t.equal(status(holder.data), 200)
  t.equal(origin.count('/stream'), 0, 'the refused body never reached the origin')
  t.equal(origin.count('/holder'), 1)
  t.equal(budget.inflight, 0)
})

t.test('a body larger than CACHE_MAX_BODY_BYTES is still 413, and the budget is untouched', async (t) => {
  const origin = await startOrigin((req, res) => { req.resume(); res.end('x') })
  const cache = await startCache(origin.url, { CACHE_MAX_BODY_BYTES: '1024', CACHE_MAX_INFLIGHT_BODY_BYTES: String(MiB) })
  t.teardown(async () => { await cache.close(); await origin.close() })
  const c = client(cache)
  c.socket.write('POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\nConnection: close\r\n\r\n')
  await until('the refusal', () => c.closed)
  t.equal(status(c.data), 413)
  t.equal(cache.app.engine.bodies.inflight, 0)
  t.equal(origin.count(), 0)
})

t.test('CACHE_MAX_INFLIGHT_BODY_BYTES below CACHE_MAX_BODY_BYTES stops start-up', async (t) => {
  const { loadCacheConfig } = await import('../../cache/config.js')
  t.throws(() => loadCacheConfig({ UPSTREAMS: 'http://127.0.0.1:1', CACHE_MAX_BODY_BYTES: String(MiB), CACHE_MAX_INFLIGHT_BODY_BYTES: String(MiB - 1) }), /CACHE_MAX_INFLIGHT_BODY_BYTES: must be at least CACHE_MAX_BODY_BYTES/)
  t.equal(loadCacheConfig({ UPSTREAMS: 'http://127.0.0.1:1' }).CACHE_MAX_INFLIGHT_BODY_BYTES, 32 * MiB)
})
