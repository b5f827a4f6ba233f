import t, { type Test } from 'tap'
import { startOrigin, startCache, send, closeAgent } from './fixtures.js'
import { Coalescer } from '../../cache/coalesce.js'
import { FakeClock } from './fixtures.js'

t.teardown(closeAgent)

t.test('200 concurrent cold requests → 1 origin fetch', async (t) => {
  // The origin answers once the other 199 are waiting (or after 10 s, and
  // the counts below fail): however slow the machine, all 200 arrive while
  // the first fetch is under way.
  const origin = await startOrigin((req, res) => {
    const started = Date.now()
    const poll = () => {
      if (cache.app.engine.coalescer.waits < 199 && Date.now() - started < 10_000) { setTimeout(poll, 5); return }
      res.setHeader('cache-control', 'public, s-maxage=60')
      res.end('popular')
    }
    poll()
  })
  const cache = await startCache(origin.url)
  t.teardown(async () => { await cache.close(); await origin.close() })
  const answers = await Promise.all(Array.from({ length: 200 }, () => send(cache.url + '/hot')))
  t.equal(origin.count(), 1)
  t.ok(answers.every((a) => a.status === 200 && a.body === 'popular'))
  const collapsed = answers.filter((a) => /collapsed/.test(a.headers['cache-status'])).length
  t.equal(collapsed, 199, 'every other request waited on the first fetch (RFC 9211 collapsed)')
  t.equal(cache.app.engine.coalescer.waits, 199)
})

t.test('uncacheable answers become hit-for-miss: later requests do not queue', async (t) => {
  let concurrent = 0
  let maxConcurrent = 0
  // Answers are held until ten are at the origin at once (or 5 s pass): if
  // requests queued behind one another, ten would never be there together.
  let held: Array<() => void> = []
  let holdFor = 1
  const origin = await startOrigin((req, res) => {
    concurrent++
    maxConcurrent = Math.max(maxConcurrent, concurrent)
    const answer = () => { concurrent--; res.setHeader('cache-control', 'private'); res.end('mine') }
    held.push(answer)
    const release = () => { const h = held; held = []; for (const a of h) a() }
    if (held.length >= holdFor) release()
    else setTimeout(release, 5000)
  })
  const cache = await startCache(origin.url)
  t.teardown(async () => { await cache.close(); await origin.close() })
  await send(cache.url + '/u')
  t.ok(cache.app.engine.coalescer.isUncacheable(cache.app.engine.store.count === 0 ? '127.0.0.1:' + cache.url.split(':')[2] + '/u' : ''), 'marker set')
  maxConcurrent = 0
  holdFor = 10
  const answers = await Promise.all(Array.from({ length: 10 }, () => send(cache.url + '/u')))
  t.equal(origin.count(), 11)
  t.equal(maxConcurrent, 10, 'all ten went to the origin side by side, none waited on another')
  t.ok(answers.every((a) => a.headers['x-cache'] === 'MISS' && /detail=not-storable/.test(a.headers['cache-status'])))
  cache.clock.advance(31_000)
  t.notOk(cache.app.engine.coalescer.isUncacheable('127.0.0.1:' + cache.url.split(':')[2] + '/u'), 'marker expires')
})

t.test('waiting is capped (503) and timed (504)', async (t) => {
  const pending: Array<() => void> = []
  const origin = await startOrigin((req, res) => { pending.push(() => { res.setHeader('cache-control', 'max-age=60'); res.end('late') }) })
  const cache = await startCache(origin.url, { CACHE_COALESCE_MAX_WAITERS: '2', CACHE_COALESCE_TIMEOUT_MS: '1000' })
  t.teardown(async () => { for (const p of pending.splice(0)) p(); await cache.close(); await origin.close() })
  const leader = send(cache.url + '/slow')
  while (pending.length === 0) await new Promise((resolve) => setTimeout(resolve, 5))
  const w1 = send(cache.url + '/slow')
  const w2 = send(cache.url + '/slow')
  await new Promise((resolve) => setTimeout(resolve, 50))
  const over = await send(cache.url + '/slow')
  t.equal(over.status, 503, 'beyond the cap: refused instead of queued')
  t.equal(over.headers['retry-after'], '1')
  cache.clock.advance(1000) // fake time: the waiters' timeout fires
  const [a, b] = await Promise.all([w1, w2])
  t.equal(a.status, 504)
  t.equal(b.status, 504)
  pending.shift()!()
  t.equal((await leader).body, 'late')
  t.equal(origin.count(), 1)
})

t.test('Coalescer validates its options', async (t) => {
  const clock = new FakeClock()
  t.throws(() => new Coalescer({ maxWaiters: 0, timeoutMs: 1, hitForMissMs: 0, maxMarkerBytes: 1024, clock, timers: clock }), /maxWaiters/)
  t.throws(() => new Coalescer({ maxWaiters: 1, timeoutMs: 0, hitForMissMs: 0, maxMarkerBytes: 1024, clock, timers: clock }), /timeoutMs/)
  t.throws(() => new Coalescer({ maxWaiters: 1, timeoutMs: 1, hitForMissMs: 0, maxMarkerBytes: 0, clock, timers: clock }), /maxMarkerBytes/)
})

/**
 * Issue 23, finding 1: a fetch that fails or times out ends the flight for
 * everyone waiting on it. The waiters get the stale copy where one may stand
 * in, or the failure; the origin sees one request per attempt, not one per
 * waiter. The origin below holds each request until the other 49 wait (or
 * 5 s pass), then fails it.
 */
async function failingOrigin (t: Test, fail: 'reset' | 'hang', env: Record<string, string> = {}) {
  let inflight = 0
  let maxInflight = 0
  let healthy = true
  const origin = await startOrigin((req, res) => {
    if (healthy) {
      res.setHeader('cache-control', 'public, max-age=10, stale-if-error=600')
      res.end('stored')
      return
    }
    inflight++
    maxInflight = Math.max(maxInflight, inflight)
    res.on('close', () => { inflight-- })
    const started = Date.now()
    const poll = () => {
      if (cache.app.engine.coalescer.waits - waitsBefore < 49 && Date.now() - started < 5000) { setTimeout(poll, 5); return }
      if (fail === 'reset') res.destroy()
      // 'hang': never answers; the cache's upstream timeout ends the fetch.
    }
    poll()
  })
  const cache = await startCache(origin.url, env)
  let waitsBefore = 0
  t.teardown(async () => { await cache.close(); await origin.close() })
  return {
    origin,
    cache,
    maxInflight: () => maxInflight,
    fail: () => { healthy = false; waitsBefore = cache.app.engine.coalescer.waits }
  }
}

t.test('issue 23: a failing fetch ends the flight for its waiters — one origin request, not one per waiter', async (t) => {
  const { origin, cache, maxInflight, fail } = await failingOrigin(t, 'reset')
  fail()
  const answers = await Promise.all(Array.from({ length: 50 }, () => send(cache.url + '/down')))
  t.equal(origin.count('/down'), 1, 'the origin saw one request for 50 visitors')
  t.equal(maxInflight(), 1)
  t.ok(answers.every((a) => a.status === 502), `every visitor got the failure: ${[...new Set(answers.map((a) => a.status))].join(',')}`)
  t.equal(answers.filter((a) => /collapsed/.test(a.headers['cache-status'] ?? '')).length, 49, 'the waiters got the failure of the fetch they waited on')
})

t.test('issue 23: a timed-out fetch ends the flight for its waiters (upstream timeout shorter than the coalesce timeout)', async (t) => {
  const { origin, cache, maxInflight, fail } = await failingOrigin(t, 'hang', { CACHE_UPSTREAM_TIMEOUT_MS: '1500' })
  fail()
  const answers = await Promise.all(Array.from({ length: 50 }, () => send(cache.url + '/slow')))
  // Visitors that arrive after an attempt failed start the next one: on a
  // slow machine the first may time out before all 50 are queued.
  t.ok(origin.count('/slow') <= 3, `50 visitors cost the origin ${origin.count('/slow')} fetches`)
  t.equal(maxInflight(), 1, 'never two fetches of the key at once')
  t.ok(answers.every((a) => a.status === 504), `every visitor got the timeout: ${[...new Set(answers.map((a) => a.status))].join(',')}`)
})

t.test('issue 23: when the fetch fails, every waiter gets the stale copy stale-if-error allows', async (t) => {
  const { origin, cache, maxInflight, fail } = await failingOrigin(t, 'reset')
  await send(cache.url + '/sie')
  cache.clock.advance(20_000)
  fail()
  const answers = await Promise.all(Array.from({ length: 50 }, () => send(cache.url + '/sie')))
  t.equal(origin.count('/sie'), 2, 'the first fetch and one revalidation for 50 visitors')
  t.equal(maxInflight(), 1)
  t.ok(answers.every((a) => a.status === 200 && a.body === 'stored' && a.headers['x-cache'] === 'STALE'), 'everyone got the stale copy')
})
