import t from 'tap'
import * as hdr from 'hdr-histogram-js'
import { Collector, Group, MAX_TIMELINE_POINTS, parseCacheHeaders } from '../../loadtest/collect.js'
import { Recorder } from '../../loadtest/recorder.js'
import { planSchedule } from '../../loadtest/stages.js'
import type { RequestMeta } from '../../loadtest/group.js'

const GET_HOME: RequestMeta = { method: 'GET', endpoint: '/', read: true }
const GET_NEWS: RequestMeta = { method: 'GET', endpoint: '/news', read: true }
const POST_EVENTS: RequestMeta = { method: 'POST', endpoint: 'POST /events', read: false }

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
  for (let i = 1; i <= 100; i++) g.record(GET_HOME, 200, 100, i * 1000, i <= 90 ? 'HIT' : 'MISS', i === 100)
  g.record(POST_EVENTS, 303, 10, 5000, 'PASS', false)
  g.record(POST_EVENTS, 400, 10, 5000, 'PASS', false)
  g.record(GET_HOME, 503, 10, 1000, null, false)
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

t.test('open model: the arrival counts add up and become shares of what was intended', async t => {
  const cell = new Group('cell')
  for (let i = 0; i < 100; i++) cell.arrivals.intended++
  cell.arrivals.sent = 95
  cell.arrivals.late = 10
  cell.arrivals.lagged = 4
  cell.arrivals.dropped = 5
  const total = new Group()
  total.addData(cell.toData())
  total.addData(cell.toData())
  t.same(total.stats(1).arrivals, { intended: 200, sent: 190, late: 20, lagged: 8, dropped: 10, lateRatio: 0.1, droppedRatio: 0.05, laggedRatio: 0.04 })
  const closed = new Group('cell')
  closed.record(GET_HOME, 200, 1, 1000, null, false)
  t.equal(closed.toData().arrivals, undefined, 'the closed model sends no arrival counts')
  t.equal(closed.stats(1).arrivals, null)
})

t.test('the recorder cuts every response and transport error into seconds, stages and endpoints', async t => {
  let now = 10_000
  const r = new Recorder(10_000, () => now)
  r.setStep(0)
  r.response(GET_HOME, 200, 10, 3, 'MISS', false)
  r.response(GET_NEWS, 200, 10, 4, 'HIT', false)
  now = 11_500
  r.setStep(1)
  r.response(GET_NEWS, 200, 10, 2, 'HIT', false)
  r.transportError(GET_NEWS, true)
  const first = r.flush()
  t.same(first.map(x => x.t), [0], 'the seconds that are over, not the one running')
  t.same(first[0].cells.map(c => [c.stage, c.endpoint, c.data.requests, c.data.cache.hit, c.data.cache.miss]), [[0, '/', 1, 0, 1], [0, '/news', 1, 1, 0]])
  now = 14_200
  const later = r.flush()
  t.same(later.map(x => [x.t, x.cells.length]), [[1, 1], [2, 0], [3, 0]], 'one report per second, quiet seconds included')
  t.same([later[0].cells[0].stage, later[0].cells[0].data.requests, later[0].cells[0].data.transportErrors, later[0].cells[0].data.timeouts], [1, 1, 1, 1], 'the timeout counts against its endpoint')
  const last = r.flush(5, true)
  t.same(last.map(x => [x.t, x.partial ?? false]), [[4, true]], 'the last second is marked partial')
})

t.test('the collector adds sources up exactly: counts, and percentiles of all samples together', async t => {
  const plan = planSchedule([{ name: 'a', duration: 2, to: 2 }, { name: 'b', duration: 2, to: 4 }], { duration: 4, model: 'closed', target: 4, pool: 4, step: 1 })
  const sealed: number[] = []
  const c = new Collector({ plan, onSeal: e => sealed.push(e.t) })
  c.addSource('x/0', { agent: 'x', host: 'hx', slices: [{ index: 0, count: 2 }] })
  c.addSource('y/0', { agent: 'y', host: 'hy', slices: [{ index: 1, count: 2 }] })
  const all = hdr.build({ bitBucketSize: 64, numberOfSignificantValueDigits: 3, autoResize: true })
  const clocks = { x: 50_000, y: 50_000 }
  const recs = { x: new Recorder(50_000, () => clocks.x), y: new Recorder(50_000, () => clocks.y) }
  // x: fast answers; y: slow ones. The merged p99 must be y's tail, not an average.
  for (let s = 0; s < 4; s++) {
    for (const who of ['x', 'y'] as const) {
      const rec = recs[who]
      rec.setStep(s < 2 ? 0 : 1)
      for (let i = 0; i < (who === 'x' ? 900 : 100); i++) {
        clocks[who] = 50_000 + s * 1000 + i
        const ms = who === 'x' ? 1 + (i % 10) : 200 + i
        rec.response(i % 3 === 0 ? GET_NEWS : GET_HOME, i % 50 === 0 ? 500 : 200, 100, ms, 'HIT', false)
        all.recordValue(Math.round(ms * 1000))
      }
      if (who === 'y' && s === 3) rec.transportError(GET_NEWS, false)
    }
  }
  clocks.x = clocks.y = 54_000
  for (const r of recs.x.flush()) c.add('x/0', r)
  t.same(sealed, [], 'nothing is shown before every source has reported the second')
  const yReports = recs.y.flush()
  c.add('y/0', yReports[0])
  t.same(sealed, [0], 'a second is shown once both have reported it')
  for (const r of yReports.slice(1)) c.add('y/0', r)
  t.same(sealed, [0, 1, 2, 3])
  c.finish(4)
  t.equal(c.total.requests, 4000)
  t.equal(c.total.requests, [...c.sources.values()].reduce((n, s) => n + s.requests, 0), 'sources add up to the total')
  t.equal(c.total.transportErrors, 1)
  t.equal(c.endpoints.get('/news')!.transportErrors, 1, 'transport errors are counted per endpoint')
  t.equal(c.stages.get('a')!.requests + c.stages.get('b')!.requests, 4000)
  t.equal(c.timeline.reduce((n, e) => n + e.requests, 0), 4000, 'the timeline holds every sample')
  const p99 = all.getValueAtPercentile(99) / 1000
  const merged = c.total.stats(4).latency.p99!
  t.ok(Math.abs(merged - p99) <= p99 * 0.001, `merged p99 ${merged} = p99 of all samples ${p99}`)
  t.ok(merged > 200, 'the slow source\'s tail shows')
  t.equal(c.openBuckets, 0)
})

t.test('each endpoint\'s part of every timeline entry, and the bytes of each', async t => {
  const plan = planSchedule([{ name: 'a', duration: 3, to: 1 }], { duration: 3, model: 'closed', target: 1, pool: 1, step: 1 })
  const c = new Collector({ plan })
  c.addSource('x/0', { agent: 'x', host: 'hx', slices: [{ index: 0, count: 1 }] })
  let now = 0
  const rec = new Recorder(0, () => now)
  rec.setStep(0)
  // second 0: only /; second 1: nothing; second 2: / and /news (first seen)
  now = 100
  rec.response(GET_HOME, 200, 100, 2, null, false)
  rec.response(GET_HOME, 200, 100, 4, null, false)
  now = 2100
  rec.response(GET_HOME, 200, 100, 6, null, false)
  rec.response(GET_NEWS, 200, 300, 8, null, false)
  now = 3000
  for (const r of rec.flush()) c.add('x/0', r)
  c.finish(3)
  t.same(c.timeline.map(e => [e.requests, e.bytes]), [[2, 200], [0, 0], [2, 400]])
  const home = c.endpointSeconds.get('/')!
  const news = c.endpointSeconds.get('/news')!
  t.same(home.requests, [2, 0, 1])
  t.same(news.requests, [0, 0, 1], 'an endpoint first seen later has zeros before')
  t.same(news.p50.map(v => v === null ? null : Math.round(v)), [null, null, 8], 'within the histogram\'s 3 digits')
  t.equal(Math.round(home.p99[0]!), 4)
  t.equal(home.p50[1], null, 'no answer that second: no latency')
})

t.test('a lost source is not waited for, and what it sends afterwards is dropped', async t => {
  const plan = planSchedule([{ name: 'a', duration: 5, to: 2 }], { duration: 5, model: 'closed', target: 2, pool: 2, step: 1 })
  const sealed: number[] = []
  const c = new Collector({ plan, onSeal: e => sealed.push(e.t) })
  c.addSource('a/0', { agent: 'a', host: 'h', slices: [{ index: 0, count: 2 }] })
  c.addSource('b/0', { agent: 'b', host: 'h', slices: [{ index: 1, count: 2 }] })
  const cell = (n: number) => [{ stage: 0, endpoint: '/', data: { requests: n, reads: n, writes: 0, errors: 0, transportErrors: 0, timeouts: 0, bytes: 0, origin: 0, status: { 200: n }, cache: { hit: 0, stale: 0, miss: 0, pass: 0, none: n, collapsed: 0 }, hist: null } }]
  c.add('a/0', { t: 0, cells: cell(5) })
  c.add('a/0', { t: 1, cells: cell(5) })
  c.add('b/0', { t: 0, cells: cell(7) })
  t.same(sealed, [0])
  c.markLost('b/0', 1, 'no report for 5 s')
  t.same(sealed, [0, 1], 'the lost source no longer holds the timeline back')
  c.add('b/0', { t: 1, cells: cell(100) })
  t.equal(c.total.requests, 17, 'its late report is dropped')
  t.equal(c.sources.get('b/0')!.requests, 7)
})

t.test('memory stays bounded: a day-long plan gets wider buckets, sealed buckets drop their histograms', async t => {
  const plan = planSchedule([{ name: 'soak', duration: 86_400, to: 10 }], { duration: 86_400, model: 'closed', target: 10, pool: 10, step: 1 })
  const c = new Collector({ plan })
  t.equal(c.bucket, 24, '86,400 s / 3,600 points')
  c.addSource('s', { agent: 'local', host: 'h', slices: [] })
  const rec = (() => { let now = 0; const r = new Recorder(0, () => now); return { r, set: (ms: number) => { now = ms } } })()
  rec.r.setStep(0)
  let maxOpen = 0
  for (let s = 0; s < 7200; s++) {
    rec.set(s * 1000 + 10)
    rec.r.response(GET_HOME, 200, 1, 1 + (s % 7), null, false)
    rec.set(s * 1000 + 1000)
    for (const rep of rec.r.flush()) c.add('s', rep)
    maxOpen = Math.max(maxOpen, c.openBuckets)
  }
  t.equal(maxOpen, 1, 'at most the bucket being filled holds a histogram')
  t.equal(c.timeline.length, 300, '7,200 s in 24 s buckets')
  t.ok(c.timeline.every(e => e.span === 24 && e.requests === 24))
  t.ok(MAX_TIMELINE_POINTS * c.bucket >= 86_400)
})
