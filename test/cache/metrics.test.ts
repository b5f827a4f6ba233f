import t from 'tap'
import { startOrigin, startCache, send, closeAgent, admin } from './fixtures.js'
import { scraper } from '../helpers/metrics.js'

t.teardown(closeAgent)

t.test('/-/metrics counts hits, misses, stale, coalesced waits, purges, bytes, evictions, upstream health and latency', async (t) => {
  const origin = await startOrigin((_req, res) => { res.setHeader('cache-control', 'public, s-maxage=10, stale-while-revalidate=10'); res.setHeader('surrogate-key', 'home'); res.end('m') })
  const cache = await startCache(origin.url)
  t.teardown(async () => { await cache.close(); await origin.close() })
  await send(cache.url + '/m')
  await send(cache.url + '/m')
  cache.clock.advance(12_000)
  await send(cache.url + '/m')
  await send(cache.url + '/', { method: 'PURGE', headers: { ...admin, 'surrogate-key': 'home' } })
  const m = await send(cache.url + '/-/metrics', { headers: scraper })
  t.equal(m.status, 200)
  t.match(m.headers['content-type'], /text\/plain/)
  t.match(m.body, /flashcrowd_cache_requests_total\{outcome="hit",role="cache"\} 1/)
  t.match(m.body, /flashcrowd_cache_requests_total\{outcome="miss",role="cache"\} 1/)
  t.match(m.body, /flashcrowd_cache_requests_total\{outcome="stale",role="cache"\} 1/)
  t.match(m.body, /flashcrowd_cache_purges_total\{kind="keys",role="cache"\} 1/)
  t.match(m.body, /flashcrowd_cache_coalesced_waits_total/)
  t.match(m.body, /flashcrowd_cache_bytes_stored/)
  t.match(m.body, /flashcrowd_cache_evictions_total/)
  t.match(m.body, /flashcrowd_cache_upstream_healthy\{upstream="http:\/\/127\.0\.0\.1:\d+",role="cache"\} 1/)
  t.match(m.body, /flashcrowd_cache_upstream_seconds_count/)
  t.equal((await send(cache.url + '/-/nope')).status, 404)
})

t.test('issue 25: a visitor\'s GET /-/metrics gets no metrics; only the scraper\'s token opens it', async (t) => {
  // The origin would answer anything with a page full of counters: nothing may reach it either.
  const origin = await startOrigin((_req, res) => { res.setHeader('cache-control', 'public, max-age=60'); res.end('flashcrowd_origin_secret 1\n') })
  const cache = await startCache(origin.url)
  const closed = await startCache(origin.url, { METRICS_TOKEN: '' })
  t.teardown(async () => { await cache.close(); await closed.close(); await origin.close() })
  await send(cache.url + '/warm')
  for (const visitor of [{}, { 'x-forwarded-for': '10.0.0.1' }, { cookie: 'a=b' }] as Array<Record<string, string>>) {
    const m = await send(cache.url + '/-/metrics', { headers: visitor })
    t.equal(m.status, 401, 'no credentials: 401')
    t.equal(m.headers['www-authenticate'], 'Bearer')
    t.notMatch(m.body, /flashcrowd_|127\.0\.0\.1/, 'no counter, no upstream address')
  }
  for (const wrong of [admin, { authorization: 'Bearer not-the-metrics-token-000' }, { authorization: `Basic ${Buffer.from('x:y').toString('base64')}` }]) {
    const m = await send(cache.url + '/-/metrics', { headers: wrong })
    t.ok(m.status === 401 || m.status === 403, `${wrong.authorization.slice(0, 6)}…: refused (${m.status})`)
    t.notMatch(m.body, /flashcrowd_/)
  }
  t.equal((await send(cache.url + '/-/metrics', { headers: admin })).status, 403, 'the admin token is not the scraper\'s: PURGE rights do not read metrics, nor the reverse')
  t.equal((await send(cache.url + '/-/metrics?x=1', { headers: {} })).status, 404, 'no other /-/ path leads to them')
  const scraped = await send(cache.url + '/-/metrics', { headers: scraper })
  t.equal(scraped.status, 200)
  t.match(scraped.body, /flashcrowd_cache_requests_total/)
  t.equal(scraped.headers['cache-control'] ?? 'no-store', 'no-store')
  t.equal((await send(closed.url + '/-/metrics', { headers: scraper })).status, 403, 'no METRICS_TOKEN configured: the door is shut for everyone')
  t.equal(origin.count('/-/metrics'), 0, 'never forwarded to a frontend')
})

t.test('issue 25: 5xx answers are counted by status: the origin\'s passed on and the cache\'s own', async (t) => {
  const origin = await startOrigin((_req, res) => { res.statusCode = 500; res.setHeader('cache-control', 'no-store'); res.end('broken') })
  const cache = await startCache(origin.url)
  const unreachable = await startCache('http://127.0.0.1:9')
  t.teardown(async () => { await cache.close(); await unreachable.close(); await origin.close() })
  t.equal((await send(cache.url + '/a')).status, 500)
  t.equal((await send(cache.url + '/b')).status, 500)
  const down = (await send(unreachable.url + '/a')).status
  t.ok(down === 502 || down === 503, `no upstream: ${down}`)
  const scrape = async (c: typeof cache) => (await send(c.url + '/-/metrics', { headers: scraper })).body
  t.match(await scrape(cache), /flashcrowd_cache_server_errors_total\{code="500",role="cache"\} 2/)
  t.match(await scrape(unreachable), new RegExp(`flashcrowd_cache_server_errors_total\\{code="${down}",role="cache"\\} 1`))
})
