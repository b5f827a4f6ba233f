import t from 'tap'
import { startOrigin, startCache, send, closeAgent, rawExchange, finalAnswer } from './fixtures.js'

t.teardown(closeAgent)

const uncached = (name: string) => (_req: unknown, res: import('node:http').ServerResponse) => { res.setHeader('cache-control', 'no-store'); res.end(name) }

t.test('round-robin over upstreams; least-connections prefers the idle one', async (t) => {
  const a = await startOrigin(uncached('a'))
  const b = await startOrigin(uncached('b'))
  const rr = await startCache([a.url, b.url])
  t.teardown(async () => { await rr.close(); await a.close(); await b.close() })
  const bodies = []
  for (let i = 0; i < 4; i++) bodies.push((await send(rr.url + `/x${i}`)).body)
  t.same(bodies, ['a', 'b', 'a', 'b'])

  const slow = await startOrigin((_req, res) => { setTimeout(() => { res.setHeader('cache-control', 'no-store'); res.end('slow') }, 200) })
  const fast = await startOrigin(uncached('fast'))
  const lc = await startCache([slow.url, fast.url], { CACHE_DIRECTOR: 'least-connections' })
  t.teardown(async () => { await lc.close(); await slow.close(); await fast.close() })
  const first = send(lc.url + '/busy')
  await new Promise((resolve) => setTimeout(resolve, 30))
  const others = [await send(lc.url + '/y1'), await send(lc.url + '/y2')]
  t.same(others.map((o) => o.body), ['fast', 'fast'], 'the busy upstream is avoided')
  t.equal((await first).body, 'slow')
})

t.test('an idempotent request is retried on another upstream; passive ejection; probes', async (t) => {
  const good = await startOrigin(uncached('good'))
  const dead = await startOrigin(uncached('dead'))
  const deadUrl = dead.url
  await dead.close() // connection refused from now on
  const cache = await startCache([deadUrl, good.url], { CACHE_EJECT_AFTER_ERRORS: '2', CACHE_EJECT_MS: '10000' })
  t.teardown(async () => { await cache.close(); await good.close() })
  const answers = []
  for (let i = 0; i < 4; i++) answers.push((await send(cache.url + `/r${i}`)).body)
  t.same(answers, ['good', 'good', 'good', 'good'], 'refused connections retried on the healthy upstream')
  const director = cache.app.engine.director
  t.notOk(director.isUp(director.upstreams[0]), 'the dead upstream was ejected after two errors')
  const before = good.count()
  await send(cache.url + '/z')
  t.equal(good.count() - before, 1)
  cache.clock.advance(10_001)
  t.ok(director.isUp(director.upstreams[0]), 'ejection ends after CACHE_EJECT_MS')
  t.notOk(await director.probe(director.upstreams[0]))
  t.notOk(await director.probe(director.upstreams[0]))
  t.notOk(director.isUp(director.upstreams[0]), 'two failed probes mark it sick')
  t.ok(await director.probe(director.upstreams[1]))
  const post = await send(cache.url + '/form', { method: 'POST', body: 'a=1' })
  t.equal(post.body, 'good')
})

t.test('/-/health: 200 with a healthy upstream or something to serve, 503 otherwise', async (t) => {
  const origin = await startOrigin((_req, res) => { res.setHeader('cache-control', 'max-age=600'); res.end('page') })
  const cache = await startCache(origin.url)
  t.teardown(async () => { await cache.close(); await origin.close().catch(() => {}) })
  t.equal((await send(cache.url + '/-/health')).status, 200)
  const director = cache.app.engine.director
  await origin.close()
  await director.probe(director.upstreams[0])
  await director.probe(director.upstreams[0])
  const down = await send(cache.url + '/-/health')
  t.equal(down.status, 503)
  t.match(JSON.parse(down.body), { status: 'unavailable', upstreams: { healthy: 0, total: 1 } })
  // Marked down, it is still tried (issue 10): the fetch itself fails, and says so.
  const page = await send(cache.url + '/page')
  t.equal(page.status, 502, 'the upstream was tried and could not be reached')
  t.match(page.headers['cache-status'], /detail=upstream-error/)
})

t.test('probes run against /-/health of every upstream', async (t) => {
  let probes = 0
  const origin = await startOrigin(uncached('x'))
  origin.server.prependListener('request', (req) => { if (req.url === '/-/health') probes++ })
  const cache = await startCache(origin.url, { CACHE_PROBE_INTERVAL_MS: '50' })
  t.teardown(async () => { await cache.close(); await origin.close() })
  await new Promise((resolve) => setTimeout(resolve, 180))
  t.ok(probes >= 2, `probed ${probes} times`)
})

t.test('a DNS-named upstream follows scaling without a restart', async (t) => {
  const { Director } = await import('../../cache/director.js')
  const one = await startOrigin(uncached('one'))
  t.teardown(() => one.close())
  const port = new URL(one.url).port
  // 127.0.0.2 is loopback but nothing listens there: an instance that went away.
  let answer = ['127.0.0.2']
  const director = new Director({
    upstreams: [`http://frontend.test:${port}`],
    mode: 'round-robin', connections: 2, timeoutMs: 2000, probeIntervalMs: 0, probeTimeoutMs: 500,
    ejectAfterErrors: 3, ejectMs: 1000, clock: { now: () => Date.now() },
    lookup: async (host) => { t.equal(host, 'frontend.test'); return answer }
  })
  t.teardown(() => director.close())
  await director.resolve()
  t.same(director.upstreams.map((u) => u.url), [`http://127.0.0.2:${port}`])
  answer = ['127.0.0.2', '127.0.0.1']
  await director.resolve()
  t.equal(director.upstreams.length, 2, 'a new instance appears without a restart')
  const kept = director.upstreams.find((u) => u.url.includes('127.0.0.1'))
  answer = ['127.0.0.1']
  await director.resolve()
  t.same(director.upstreams.map((u) => u.url), [`http://127.0.0.1:${port}`], 'a removed instance is dropped')
  t.equal(director.upstreams[0], kept, 'a kept instance keeps its pool and health')
  const res = await director.fetch({ method: 'GET', path: '/', headers: {} })
  t.equal(await res.body.text(), 'one')
})

t.test('issue: Expect: 100-continue is answered by the cache, never forwarded, and cannot eject the upstream', async (t) => {
  let sawExpect = 0
  const origin = await startOrigin((req, res) => {
    if (req.headers.expect !== undefined) sawExpect++
    let body = ''
    req.on('data', (c) => { body += c })
    req.on('end', () => { res.setHeader('cache-control', 'public, s-maxage=60'); res.end(`${req.method} ${req.url} ${body}`) })
  })
  // Default CACHE_EJECT_AFTER_ERRORS is 3: five refused fetches used to eject the only upstream.
  const cache = await startCache(origin.url)
  t.teardown(async () => { await cache.close(); await origin.close() })
  for (let i = 0; i < 5; i++) {
    const a = finalAnswer(await rawExchange(cache.url, `GET /e${i} HTTP/1.1\r\nHost: site\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`))
    t.equal(a.status, 200, `GET with Expect #${i} answered`)
    t.equal(a.body, `GET /e${i} `)
  }
  const post = finalAnswer(await rawExchange(cache.url, 'POST /form HTTP/1.1\r\nHost: site\r\nExpect: 100-continue\r\nContent-Length: 3\r\nConnection: close\r\n\r\na=1'))
  t.equal(post.status, 200, 'a passed request with a body and Expect goes through')
  t.equal(post.body, 'POST /form a=1')
  t.equal(sawExpect, 0, 'the origin never saw Expect (RFC 9110 §10.1.1: the expectation was met here)')
  const director = cache.app.engine.director
  t.ok(director.isUp(director.upstreams[0]), 'the upstream was not ejected')
  t.equal((await send(cache.url + '/innocent')).status, 200, 'the site still answers')
})

t.test('issue: only network errors, timeouts and 5xx count towards passive ejection', async (t) => {
  const { Director, isUpstreamFault } = await import('../../cache/director.js')
  const handler = (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => { res.statusCode = req.url === '/fail' ? 503 : 200; res.end('x') }
  const origin = await startOrigin(handler)
  const other = await startOrigin(handler)
  t.teardown(async () => { await origin.close(); await other.close() })
  // Two upstreams: a single one is never ejected (probes.test.ts).
  const director = new Director({
    upstreams: [origin.url, other.url], mode: 'round-robin', connections: 8, timeoutMs: 2000, probeIntervalMs: 0, probeTimeoutMs: 500,
    ejectAfterErrors: 2, ejectMs: 10_000, clock: { now: () => Date.now() }
  })
  t.teardown(() => director.close())
  const u = director.upstreams[0]
  for (let i = 0; i < 3; i++) {
    // Refused before anything reaches the upstream: by the director's guard, and by undici itself.
    await t.rejects(director.fetch({ method: 'GET', path: '/', headers: { expect: '100-continue' } }), { code: 'FC_BAD_REQUEST_HEADER' })
    await t.rejects(director.fetch({ method: 'GET', path: '/', headers: { 'x-bad': 'a\u0000b' } }), { code: 'UND_ERR_INVALID_ARG' })
  }
  t.ok(director.isUp(u), 'a request the client library refused does not eject the upstream')
  t.equal(u.consecutiveErrors, 0)
  t.notOk(isUpstreamFault(Object.assign(new Error('x'), { code: 'UND_ERR_NOT_SUPPORTED' })))
  t.notOk(isUpstreamFault(Object.assign(new Error('x'), { code: 'UND_ERR_INVALID_ARG' })))
  t.ok(isUpstreamFault(Object.assign(new Error('x'), { code: 'ECONNREFUSED' })))
  t.ok(isUpstreamFault(Object.assign(new Error('x'), { code: 'UND_ERR_HEADERS_TIMEOUT' })))
  t.ok(isUpstreamFault(Object.assign(new Error('x'), { code: 'HPE_INVALID_CONSTANT' })))
  // Round-robin alternates: four fetches make two in a row on each upstream.
  for (let i = 0; i < 4; i++) await (await director.fetch({ method: 'GET', path: '/fail', headers: {} })).body.dump()
  t.notOk(director.isUp(u), 'two 5xx in a row still eject it')
})
