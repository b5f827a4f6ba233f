import t from 'tap'
import { startOrigin, startCache, send, closeAgent, admin } from './fixtures.js'

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
  const m = await send(cache.url + '/-/metrics')
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
