import t from 'tap'
import { Collector, Group, parseCacheHeaders } from '../../loadtest/collect.js'

t.test('reads X-Cache and Cache-Status (RFC 9211)', async t => {
  t.same(parseCacheHeaders({ 'X-Cache': 'HIT' }), { state: 'HIT', collapsed: false })
  t.same(parseCacheHeaders({ 'x-cache': 'stale' }), { state: 'STALE', collapsed: false })
  t.same(parseCacheHeaders({ 'cache-status': 'flashcrowd; hit' }), { state: 'HIT', collapsed: false })
  t.same(parseCacheHeaders({ 'Cache-Status': 'flashcrowd; fwd=miss; stored' }), { state: 'MISS', collapsed: false })
  t.same(parseCacheHeaders({ 'cache-status': 'flashcrowd; fwd=uri-miss; collapsed' }), { state: 'MISS', collapsed: true })
  t.same(parseCacheHeaders({ 'cache-status': 'flashcrowd; fwd=bypass' }), { state: 'PASS', collapsed: false })
  t.same(parseCacheHeaders({ 'cache-status': 'origin-cache; fwd=miss, edge; hit' }), { state: 'HIT', collapsed: false }, 'any cache in the chain that hit')
  t.same(parseCacheHeaders({ 'x-cache': 'STALE', 'cache-status': 'flashcrowd; hit; fwd=stale' }), { state: 'STALE', collapsed: false }, 'X-Cache tells grace from hit')
  t.same(parseCacheHeaders({ 'content-type': 'text/html' }), { state: null, collapsed: false })
})

t.test('a group counts statuses, errors, cache outcomes, origin requests and percentiles', async t => {
  const g = new Group()
  const read = { method: 'GET', endpoint: '/' }
  const write = { method: 'POST', endpoint: 'POST /events' }
  for (let i = 1; i <= 100; i++) g.record(read, 200, 100, i * 1000, { state: i <= 90 ? 'HIT' : 'MISS', collapsed: i === 100 }, 0)
  g.record(write, 303, 10, 5000, { state: 'PASS', collapsed: false }, 0)
  g.record(write, 400, 10, 5000, { state: 'PASS', collapsed: false }, 0)
  g.record(read, 503, 10, 1000, { state: null, collapsed: false }, 0)
  g.recordTransportError(true)
  const s = g.stats(2)
  t.equal(s.requests, 103)
  t.equal(s.rps, 51.5)
  t.same([s.reads, s.writes], [101, 2])
  t.equal(s.errors, 3, '400, 503 and the timeout')
  t.equal(s.errorRate, +(3 / 104).toFixed(6))
  t.same([s.transportErrors, s.timeouts], [1, 1])
  t.same(s.status, { 200: 100, 303: 1, 400: 1, 503: 1 })
  t.same(s.non2xx, { 303: 1, 400: 1, 503: 1 })
  t.same(s.cache, { hit: 90, stale: 0, miss: 10, pass: 0, none: 1, collapsed: 1, hitRatio: 0.9 })
  t.equal(s.originRequests, 9 + 2 + 1, '9 misses (one collapsed), 2 writes, 1 uncached read')
  // 103 samples: 1..100 ms, two writes at 5 ms, the 503 at 1 ms; HDR keeps 3 significant digits
  const near = (a: number | null, b: number): boolean => a !== null && Math.abs(a - b) <= b * 0.001 + 1e-9
  t.ok(near(s.latency.p50, 49), `p50 ${s.latency.p50}`)
  t.ok(near(s.latency.p99, 99), `p99 ${s.latency.p99}`)
  t.ok(near(s.latency.max, 100), `max ${s.latency.max}`)
  t.ok(near(s.latency.min, 1), `min ${s.latency.min}`)
})

t.test('open model: slow answers back-fill the requests they held up (coordinated omission)', async t => {
  const plain = new Group()
  const corrected = new Group()
  for (let i = 0; i < 99; i++) {
    plain.record({ method: 'GET', endpoint: '/' }, 200, 1, 1000, { state: null, collapsed: false }, 0)
    corrected.record({ method: 'GET', endpoint: '/' }, 200, 1, 1000, { state: null, collapsed: false }, 10_000)
  }
  plain.record({ method: 'GET', endpoint: '/' }, 200, 1, 1_000_000, { state: null, collapsed: false }, 0)
  corrected.record({ method: 'GET', endpoint: '/' }, 200, 1, 1_000_000, { state: null, collapsed: false }, 10_000)
  t.ok(plain.stats(1).latency.p90! < 1.01, 'uncorrected p90 is the fast answers')
  t.ok(corrected.stats(1).latency.p90! > 100, 'a 1 s stall at 100 req/s per connection weighs on p90')
  t.equal(corrected.stats(1).requests, 100, 'request count is what was really sent')
})

t.test('collector attributes samples to stage, endpoint and second', async t => {
  let now = 0
  const c = new Collector({ now: () => now })
  c.start()
  c.beginStep({ stage: 'ramp', stageIndex: 0, connections: 1, rate: null })
  c.noteHeaders({ method: 'GET', endpoint: '/' }, { 'X-Cache': 'MISS' })
  c.onResponse(200, 10, 3)
  now = 1500
  c.beginStep({ stage: 'hold', stageIndex: 1, connections: 2, rate: null })
  c.noteHeaders({ method: 'GET', endpoint: '/news' }, { 'x-cache': 'HIT' })
  c.onResponse(200, 10, 2)
  now = 3200
  c.onTransportError(new Error('request timed out'))
  c.finish()
  t.same(c.stageTimings, [{ name: 'ramp', index: 0, start: 0, end: 1.5 }, { name: 'hold', index: 1, start: 1.5, end: 3.2 }])
  t.same([...c.endpoints.keys()], ['/', '/news'])
  t.equal(c.stages.get('hold')!.timeouts, 1)
  t.same(c.seconds.map(s => [s.t, s.stage, s.group.requests, s.group.errors]), [[0, 'ramp', 1, 0], [1, 'hold', 1, 0], [2, 'hold', 0, 0], [3, 'hold', 0, 1]], 'one entry per second, gaps filled')
  t.equal(c.total.cache.hit, 1)
})
