/**
 * Issue 10, finding 9: probes that fit any origin. Real origins on port 0
 * that count what they are asked (probes included), with probe paths and
 * statuses of their own.
 */
import t from 'tap'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { startCache, send, closeAgent, admin, TOKEN } from './fixtures.js'
import { loadCacheConfig } from '../../cache/config.js'
import type { Logger } from '../../cache/engine.js'

t.teardown(closeAgent)

interface Site {
  url: string
  hits: (path: string) => number
  close: () => Promise<void>
}

/** An origin whose every answer (its health path too, if it has one) comes from `answer`. */
async function site (name: string, answer: (path: string) => number): Promise<Site> {
  const seen = new Map<string, number>()
  const server = http.createServer((req, res) => {
    const path = req.url!
    seen.set(path, (seen.get(path) ?? 0) + 1)
    res.statusCode = answer(path)
    res.setHeader('cache-control', 'no-store')
    res.end(`${name} ${path}`)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    hits: (path) => seen.get(path) ?? 0,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) })
  }
}

async function until (what: string, check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

function capture (): Logger & { warnings: Array<{ obj: object | string, msg?: string }> } {
  const warnings: Array<{ obj: object | string, msg?: string }> = []
  return { warnings, debug () {}, info () {}, error () {}, warn (obj, msg) { warnings.push({ obj, msg }) } }
}

t.test('issue 10: in front of a site without /-/health, the only upstream stays in service and one warning is logged', async (t) => {
  // A plain site: no health endpoint, 404 for anything it does not have.
  const origin = await site('plain', (path) => path === '/-/health' ? 404 : 200)
  const logger = capture()
  const cache = await startCache(origin.url, { CACHE_PROBE_INTERVAL_MS: '50' }, { logger })
  t.teardown(async () => { await cache.close(); await origin.close() })
  await until('several probe rounds', () => origin.hits('/-/health') >= 4)
  const page = await send(cache.url + '/about')
  t.equal(page.status, 200, 'pages are served')
  t.equal(page.body, 'plain /about')
  const health = await send(cache.url + '/-/health')
  t.equal(health.status, 200)
  t.same(JSON.parse(health.body).upstreams, { healthy: 1, total: 1 }, 'the upstream counts as healthy')
  t.equal(logger.warnings.length, 1, 'one warning, however many probes')
  t.match(logger.warnings[0], { obj: { probePath: '/-/health', status: 404 }, msg: /CACHE_PROBE_PATH/ })
  // From now on a probe only asks whether it answers: a dead upstream is still found out.
  const u = cache.app.engine.director.upstreams[0]
  t.equal(u.probeMode, 'liveness')
})

t.test('issue 10: a single upstream is never ejected, by errors or by probes', async (t) => {
  let healthStatus = 200
  const origin = await site('only', (path) => path === '/-/health' ? healthStatus : path.startsWith('/fail') ? 503 : 200)
  const cache = await startCache(origin.url, { CACHE_EJECT_AFTER_ERRORS: '2' })
  t.teardown(async () => { await cache.close(); await origin.close() })
  for (let i = 0; i < 5; i++) t.equal((await send(cache.url + `/fail?${i}`)).status, 503, 'the origin\'s own 503 is passed on')
  const director = cache.app.engine.director
  t.ok(director.isUp(director.upstreams[0]), 'five 5xx in a row did not eject it')
  t.equal((await send(cache.url + '/ok')).status, 200)

  // Its health endpoint starts failing, but it still serves pages.
  healthStatus = 500
  await director.probe(director.upstreams[0])
  await director.probe(director.upstreams[0])
  t.notOk(director.isUp(director.upstreams[0]), 'the probes mark it down')
  t.equal(JSON.parse((await send(cache.url + '/-/health')).body).upstreams.healthy, 0, 'and /-/health says so')
  const before = origin.hits('/still')
  const still = await send(cache.url + '/still')
  t.equal(still.status, 200, 'it is still tried, and answers')
  t.equal(origin.hits('/still') - before, 1)
})

t.test('issue 10: when every upstream is marked down, they are all still tried', async (t) => {
  const a = await site('a', (path) => path === '/-/health' ? 500 : 200)
  const b = await site('b', (path) => path === '/-/health' ? 500 : 200)
  const cache = await startCache([a.url, b.url])
  t.teardown(async () => { await cache.close(); await a.close(); await b.close() })
  const director = cache.app.engine.director
  for (let i = 0; i < 2; i++) await director.probeAll()
  t.equal(director.upstreams.filter((u) => director.isUp(u)).length, 0, 'both marked down')
  const bodies = []
  for (let i = 0; i < 4; i++) {
    const r = await send(cache.url + `/p${i}`)
    t.equal(r.status, 200)
    bodies.push(r.body.split(' ')[0])
  }
  t.same(bodies.sort(), ['a', 'a', 'b', 'b'], 'in turn')
})

t.test('CACHE_PROBE_PATH and CACHE_PROBE_EXPECT_STATUS: a probe that answers the wrong status takes that upstream out of rotation', async (t) => {
  const good = await site('good', (path) => path === '/healthz' ? 204 : 200)
  const sick = await site('sick', (path) => path === '/healthz' ? 200 : 200)
  const cache = await startCache([good.url, sick.url], { CACHE_PROBE_PATH: '/healthz', CACHE_PROBE_EXPECT_STATUS: '204', CACHE_PROBE_INTERVAL_MS: '50' })
  t.teardown(async () => { await cache.close(); await good.close(); await sick.close() })
  const director = cache.app.engine.director
  await until('the sick upstream marked down', () => !director.isUp(director.upstreams[1]))
  t.ok(director.isUp(director.upstreams[0]))
  t.equal(good.hits('/-/health') + sick.hits('/-/health'), 0, 'the default path is not probed')
  t.ok(sick.hits('/healthz') >= 2)
  const bodies = []
  for (let i = 0; i < 4; i++) bodies.push((await send(cache.url + `/q${i}`)).body.split(' ')[0])
  t.same(bodies, ['good', 'good', 'good', 'good'], 'traffic goes to the upstream whose probe passes')
})

t.test('CACHE_PROBE_PATH empty disables probes; unset is /-/health', async (t) => {
  t.equal(loadCacheConfig({ UPSTREAMS: 'http://127.0.0.1:1', CACHE_PROBE_PATH: '' }).CACHE_PROBE_PATH, '')
  t.equal(loadCacheConfig({ UPSTREAMS: 'http://127.0.0.1:1' }).CACHE_PROBE_PATH, '/-/health')
  t.throws(() => loadCacheConfig({ UPSTREAMS: 'http://127.0.0.1:1', CACHE_PROBE_PATH: 'health' }), /CACHE_PROBE_PATH/)
  t.throws(() => loadCacheConfig({ UPSTREAMS: 'http://127.0.0.1:1', CACHE_PROBE_EXPECT_STATUS: '2xx' }), /CACHE_PROBE_EXPECT_STATUS/)
  const origin = await site('x', () => 200)
  const cache = await startCache(origin.url, { CACHE_PROBE_PATH: '', CACHE_PROBE_INTERVAL_MS: '50' })
  t.teardown(async () => { await cache.close(); await origin.close() })
  const director = cache.app.engine.director
  t.notOk(director.probing, 'no probe timer')
  t.equal(await director.probe(director.upstreams[0]), false, 'a probe asks nothing')
  t.equal(origin.hits('/-/health') + origin.hits(''), 0, 'the origin was never probed')
  t.equal((await send(cache.url + '/')).status, 200)
})

t.test('issue 10: the public /-/health gives counts only; the admin token shows the upstreams', async (t) => {
  const a = await site('a', () => 200)
  const b = await site('b', () => 200)
  const cache = await startCache([a.url, b.url])
  t.teardown(async () => { await cache.close(); await a.close(); await b.close() })
  const pub = await send(cache.url + '/-/health')
  t.equal(pub.status, 200)
  t.same(JSON.parse(pub.body).upstreams, { healthy: 2, total: 2 })
  for (const u of [a.url, b.url]) t.notOk(pub.body.includes(new URL(u).host), 'no upstream address in the public answer')
  t.notMatch(pub.body, /127\.0\.0\.1/)
  const detail = await send(cache.url + '/-/health', { headers: admin })
  t.equal(detail.status, 200)
  t.match(JSON.parse(detail.body).upstreams, { healthy: 2, total: 2, list: [{ url: a.url, healthy: true }, { url: b.url, healthy: true }] })
  t.equal(detail.headers['cache-control'], 'no-store')
  const wrong = await send(cache.url + '/-/health', { headers: { authorization: `Bearer ${TOKEN}x` } })
  t.equal(wrong.status, 403, 'a wrong token is refused, not shown the list')
  t.notMatch(wrong.body, /127\.0\.0\.1/)
})
