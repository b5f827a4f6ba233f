/**
 * Issue 10, finding 7: what the parser frames is what the cache sees, a bad
 * message after good ones is answered in its turn, and what the cache
 * forwards fits what the origin accepts. Raw sockets throughout; the origin
 * counts every request it sees.
 */
import t from 'tap'
import http from 'node:http'
import net from 'node:net'
import { startOrigin, startCache, closeAgent, rawExchange, rawExchangeFor, page } from './fixtures.js'

t.teardown(closeAgent)

const statusLines = (s: string) => (s.match(/HTTP\/1\.1 \d{3}/g) ?? []).map((l) => Number(l.slice(9)))

/** Writes `text` and collects until the cache closes or `waitMs` passes (for answers that keep the connection open). */
const exchange = (url: string, text: string, waitMs = 2000) => rawExchangeFor(url, text, waitMs)

t.test('issue 10: Transfer-Encoding hidden behind 2,000 empty fields is refused (431) and smuggles nothing', async (t) => {
  const origin = await startOrigin((req, res) => {
    req.resume()
    req.on('end', () => { res.setHeader('cache-control', 'no-store'); res.end(`origin saw ${req.method} ${req.url}`) })
  })
  const cache = await startCache(origin.url)
  t.teardown(async () => { await cache.close(); await origin.close() })
  const empties = 'a:\r\n'.repeat(2000)
  const smuggled = 'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n'
  for (const method of ['GET', 'POST']) {
    const { data, closed } = await exchange(cache.url, `${method} /form HTTP/1.1\r\nHost: x\r\n${empties}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n${smuggled}`)
    t.same(statusLines(data), [431], `${method}: one answer, 431`)
    t.ok(closed, `${method}: the connection is closed (its framing is unknown)`)
  }
  t.equal(origin.count('/smuggled'), 0, 'the smuggled request never reached the origin')
  t.equal(origin.count(), 0, 'nothing reached the origin')
})

t.test('the field-count limit: CACHE_MAX_HEADER_FIELDS fields pass, one more is 431', async (t) => {
  const origin = await startOrigin(page({ 'cache-control': 'no-store' }, (n) => `n${n}`))
  const cache = await startCache(origin.url, { CACHE_MAX_HEADER_FIELDS: '20' })
  t.teardown(async () => { await cache.close(); await origin.close() })
  // Host and Connection count: 18 more make 20.
  const fields = (n: number) => Array.from({ length: n }, (_, i) => `X-F${i}: v\r\n`).join('')
  const ok = await rawExchange(cache.url, `GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${fields(18)}\r\n`)
  t.same(statusLines(ok), [200], '20 fields: answered')
  const over = await rawExchange(cache.url, `GET /over HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${fields(19)}\r\n`)
  t.same(statusLines(over), [431], '21 fields: 431')
  t.match(over, /too many header fields/)
  t.equal(origin.count('/ok'), 1)
  t.equal(origin.count('/over'), 0)
})

t.test('issue 10: a complete request followed by junk is answered, then the junk gets 400 and the connection closes', async (t) => {
  const origin = await startOrigin((req, res) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (c: string) => { body += c })
    // A little latency, so the junk is parsed while the first answer is still being fetched.
    req.on('end', () => setTimeout(() => { res.setHeader('cache-control', 'no-store'); res.end(`origin saw ${req.method} ${req.url} [${body}]`) }, 50))
  })
  const cache = await startCache(origin.url)
  t.teardown(async () => { await cache.close(); await origin.close() })

  const get = await exchange(cache.url, 'GET /a HTTP/1.1\r\nHost: x\r\n\r\nJUNK JUNK\r\n\r\n')
  t.same(statusLines(get.data), [200, 400], 'the complete request is answered first, then the junk')
  t.match(get.data, /origin saw GET \/a \[\][\s\S]*malformed request/)
  t.ok(get.closed, 'the connection is closed after the 400')
  t.equal(origin.count('/a'), 1, 'the complete request reached the origin once')

  const post = await exchange(cache.url, 'POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\na=1\x00\x01garbage\r\n\r\n')
  t.same(statusLines(post.data), [200, 400])
  t.match(post.data, /origin saw POST \/form \[a=1\]/, 'the body was exactly its Content-Length')
  t.equal(origin.count('/form'), 1)

  const pipelined = await exchange(cache.url, 'GET /p1 HTTP/1.1\r\nHost: x\r\n\r\nGET /p2 HTTP/1.1\r\nHost: x\r\n\r\nGET /p3 HTTP/1.1\r\nHost: x\r\nX-Bad\r\n\r\n')
  t.same(statusLines(pipelined.data), [200, 200, 400], 'answers in request order, the bad one last')
  t.ok(pipelined.data.indexOf('GET /p1') < pipelined.data.indexOf('GET /p2'))
  t.equal(origin.count('/p1') + origin.count('/p2'), 2)
  t.equal(origin.count('/p3'), 0, 'the malformed message never reached the origin')

  // A body that breaks inside the request is still that request's 400, and nothing is forwarded.
  const before = origin.count()
  const broken = await exchange(cache.url, 'POST /chunks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n')
  t.same(statusLines(broken.data), [400])
  t.equal(origin.count() - before, 0)
})

t.test('issue 10: every head the cache accepts still fits the origin once the cache has added its fields', async (t) => {
  // The origin is a node server at its default limit, the same as CACHE_MAX_HEADER_BYTES (16 KiB).
  let originRefused = 0
  const etag = `"${'e'.repeat(240)}"`
  const origin = await startOrigin((req, res) => {
    res.setHeader('cache-control', 'max-age=1')
    res.setHeader('etag', etag)
    if (req.headers['if-none-match'] === etag) { res.statusCode = 304; res.end(); return }
    res.end(`full ${req.url}`)
  })
  origin.server.on('clientError', (err: Error & { code?: string }, socket: net.Socket) => {
    originRefused++
    socket.end(`HTTP/1.1 ${err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400} Refused\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`)
  })
  t.equal(http.maxHeaderSize, 16384, 'the origin runs at node\'s default limit')
  const cache = await startCache(origin.url)
  t.teardown(async () => { await cache.close(); await origin.close() })

  const head = (pad: number, opts: { version?: string, host?: boolean, path?: string } = {}) =>
    `GET ${opts.path ?? '/p'} HTTP/${opts.version ?? '1.1'}\r\n${opts.host === false ? '' : 'Host: x\r\n'}Connection: close\r\nCache-Control: no-cache\r\nX-Pad: ${'p'.repeat(pad)}\r\n\r\n`
  const refusedByCache = (raw: string) => /^HTTP\/1\.1 431/.test(raw) && !/x-cache/i.test(raw)

  // The largest padding the cache accepts (binary search; the cache's own 431 has no X-Cache).
  let lo = 0
  let hi = 20_000
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1
    if (refusedByCache(await rawExchange(cache.url, head(mid)))) hi = mid
    else lo = mid
  }
  t.ok(lo > 14_000, `the cache accepts heads of ${lo} padding bytes (most of the 16 KiB)`)
  t.ok(refusedByCache(await rawExchange(cache.url, head(lo + 1))), 'one byte more is the cache\'s own 431')

  // At that size, in every form that makes the cache add more: HTTP/1.0 without Host
  // (a Host is added), no Accept-Encoding (one is added), and a revalidation (a
  // stored validator is added).
  for (const [name, text] of Object.entries({
    'HTTP/1.1': head(lo),
    'HTTP/1.0 without Host': head(lo, { version: '1.0', host: false, path: '/q' })
  })) {
    const raw = await rawExchange(cache.url, text)
    t.match(raw, /^HTTP\/1\.[01] 200/, `${name}: answered by the origin`)
  }
  cache.clock.advance(2000)
  const revalidated = await rawExchange(cache.url, head(lo))
  t.match(revalidated, /^HTTP\/1\.1 200/, 'a revalidation at the largest size')
  t.ok(origin.requests.some((r) => r.headers['if-none-match'] === etag), 'it carried the stored validator')
  t.equal(originRefused, 0, 'the origin never refused a head the cache forwarded')
})

t.test('the head limits must leave room for a client\'s head: start-up refuses settings that do not', async (t) => {
  const { loadCacheConfig } = await import('../../cache/config.js')
  const { clientHeadLimit } = await import('../../cache/request-head.js')
  const base = { UPSTREAMS: 'http://127.0.0.1:1' }
  t.equal(clientHeadLimit(loadCacheConfig(base)), 16384 - 1024 - 4 * 100, 'defaults: 16 KiB less 1 KiB and 4 bytes per field')
  t.throws(() => loadCacheConfig({ ...base, CACHE_MAX_HEADER_BYTES: '4096', CACHE_MAX_HEADER_FIELDS: '1000' }), /CACHE_MAX_HEADER_BYTES: must leave at least 2048 bytes/)
  t.throws(() => loadCacheConfig({ ...base, CACHE_MAX_HEADER_FIELDS: '2001' }), /CACHE_MAX_HEADER_FIELDS/)
})
