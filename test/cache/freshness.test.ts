import t from 'tap'
import { startOrigin, startCache, send, closeAgent, FakeClock } from './fixtures.js'
import { evaluateResponse, policyClassFor, effectiveHeaders, requestForbidsStored } from '../../cache/freshness.js'

t.teardown(closeAgent)

const until = async (check: () => boolean) => {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 5))
}

t.test('evaluateResponse: lifetimes, stale windows, storability', async (t) => {
  const clock = new FakeClock()
  const P = policyClassFor(clock)
  const now = clock.now()
  const req = { method: 'GET', url: '/', headers: { host: 'a' } }
  const ev = (headers: Record<string, string>, status = 200, credentialed = false, reqHeaders = req.headers) =>
    evaluateResponse(P, { ...req, headers: reqHeaders }, { status, headers }, now, now, { graceSeconds: 10, defaultTtlSeconds: 0 }, credentialed)

  const frontend = ev({ 'cache-control': 'public, max-age=0, s-maxage=30, stale-while-revalidate=20, stale-if-error=300' })
  t.equal(frontend.freshUntil - now, 30_000, 's-maxage wins over max-age in a shared cache (RFC 9111 §5.2.2.10)')
  t.equal(frontend.swrMs, 20_000)
  t.equal(frontend.sieMs, 300_000)
  t.equal(frontend.graceMs, 0, 's-maxage implies proxy-revalidate: no grace of our own')
  t.equal(ev({ 'cache-control': 'max-age=5' }).graceMs, 10_000, 'grace where nothing forbids stale')
  t.equal(ev({ 'cache-control': 'max-age=5, must-revalidate, stale-if-error=60' }).sieMs, 0, 'must-revalidate forbids any stale use')
  t.equal(ev({ 'cache-control': 'no-cache, max-age=60' }).freshUntil, now, 'no-cache: stored but always validated')
  t.notOk(ev({ 'cache-control': 'max-age=60' }, 200, true).storable, 'credentials without explicit sharing')
  t.ok(ev({ 'cache-control': 'max-age=60, public' }, 200, true).storable)
  t.notOk(ev({ 'cache-control': 'max-age=60', 'set-cookie': 'a=1' }).storable)
  t.notOk(ev({ 'cache-control': 'public, max-age=60', vary: 'accept, *' }).storable)
  t.notOk(ev({ 'cache-control': 'max-age=60' }, 200, false, { host: 'a', 'cache-control': 'no-store' } as never).storable, 'request no-store')
  t.notOk(ev({ 'cache-control': 'max-age=60' }, 500).storable, '5xx is not understood as cacheable')
  t.equal(ev({ 'cache-control': 'max-age=60', age: '100' }).freshUntil, now, 'already older than its lifetime')
  t.same(effectiveHeaders({ 'cache-control': 'no-store', 'surrogate-control': 'max-age=30+60', expires: '0' }), { 'cache-control': 'max-age=30, stale-while-revalidate=60', 'surrogate-control': 'max-age=30+60' })
  t.ok(requestForbidsStored('max-stale, no-cache', undefined, 0, 10))
  t.ok(requestForbidsStored(undefined, 'no-cache', 0, 10), 'Pragma: no-cache (RFC 9111 §5.4)')
  t.ok(requestForbidsStored('min-fresh=20', undefined, 0, 10))
  t.notOk(requestForbidsStored('max-age=20', undefined, 10, 10))
})

t.test('stale-while-revalidate: stale delivered, exactly one background refresh', async (t) => {
  let release: (() => void) | undefined
  const origin = await startOrigin((req, res, n) => {
    res.setHeader('cache-control', 'public, max-age=0, s-maxage=10, stale-while-revalidate=30')
    if (n === 2) { release = () => res.end('v2'); return } // the refresh hangs until the test lets it go
    res.end(`v${n}`)
  })
  const cache = await startCache(origin.url)
  t.teardown(async () => { await cache.close(); await origin.close() })
  await send(cache.url + '/s')
  cache.clock.advance(15_000)
  const answers = await Promise.all(Array.from({ length: 20 }, () => send(cache.url + '/s')))
  t.ok(answers.every((a) => a.headers['x-cache'] === 'STALE' && a.body === 'v1'), 'all served stale at once')
  t.match(answers[0].headers['cache-status'], /hit; ttl=-5; detail=stale-while-revalidate/)
  await until(() => release !== undefined)
  t.equal(origin.count(), 2, 'one background refresh for twenty stale hits')
  release!()
  await until(() => cache.app.engine.coalescer.inFlight === 0)
  const fresh = await send(cache.url + '/s')
  t.equal(fresh.headers['x-cache'], 'HIT')
  t.equal(fresh.body, 'v2')
  cache.clock.advance(50_000)
  const expired = await send(cache.url + '/s')
  t.equal(expired.headers['x-cache'], 'MISS', 'beyond the window: fetched in the foreground')
})

t.test('grace: a max-age object is served stale for CACHE_GRACE_SECONDS while refreshing', async (t) => {
  const origin = await startOrigin((req, res, n) => { res.setHeader('cache-control', 'max-age=5'); res.end(`v${n}`) })
  const cache = await startCache(origin.url, { CACHE_GRACE_SECONDS: '20' })
  t.teardown(async () => { await cache.close(); await origin.close() })
  await send(cache.url + '/g')
  cache.clock.advance(15_000)
  const a = await send(cache.url + '/g')
  t.equal(a.headers['x-cache'], 'STALE')
  t.match(a.headers['cache-status'], /detail=grace/)
  t.equal(a.body, 'v1')
  await until(() => origin.count() === 2 && cache.app.engine.coalescer.inFlight === 0)
  t.equal((await send(cache.url + '/g')).body, 'v2')
  cache.clock.advance(30_000)
  t.equal((await send(cache.url + '/g')).headers['x-cache'], 'MISS')
})

t.test('stale-if-error: 5xx, timeouts and unreachable upstreams serve the stale object', async (t) => {
  let mode: 'ok' | '500' | 'hang' = 'ok'
  const origin = await startOrigin((req, res, n) => {
    if (mode === 'hang') return // never answers: the upstream timeout fires
    if (mode === '500') { res.statusCode = 500; res.end('boom'); return }
    // max-age: with s-maxage the disconnected case below would not apply (issue 23; RFC 9111 §5.2.2.10).
    res.setHeader('cache-control', 'public, max-age=10, stale-if-error=60')
    res.end(`v${n}`)
  })
  const cache = await startCache(origin.url, { CACHE_UPSTREAM_TIMEOUT_MS: '200', CACHE_EJECT_AFTER_ERRORS: '100' })
  t.teardown(async () => { await cache.close(); await origin.close() })
  await send(cache.url + '/e')
  cache.clock.advance(20_000)
  mode = '500'
  const a = await send(cache.url + '/e')
  t.equal(a.status, 200)
  t.equal(a.body, 'v1')
  t.equal(a.headers['x-cache'], 'STALE')
  t.match(a.headers['cache-status'], /fwd=stale; fwd-status=500; ttl=-10; detail=stale-if-error/)
  mode = 'hang'
  const b = await send(cache.url + '/e')
  t.equal(b.body, 'v1', 'timeout → stale')
  await origin.close()
  const c = await send(cache.url + '/e')
  t.equal(c.body, 'v1', 'unreachable → stale')
  t.equal(c.headers['x-cache'], 'STALE')
  cache.clock.advance(60_000)
  const d = await send(cache.url + '/e')
  t.equal(d.status, 200, 'beyond stale-if-error but no upstream answers at all: still served (RFC 9111 §4.2.4 disconnected)')
  t.match(d.headers['cache-status'], /detail=disconnected/)
  cache.clock.advance(130_000)
  const e = await send(cache.url + '/e')
  t.equal(e.status, 502, 'beyond what the cache keeps: the error shows')
  t.equal(e.headers['x-cache'], 'MISS')
  t.equal((await send(cache.url + '/nothing-stored')).status, 502)
})

t.test('issue 10: at the defaults nothing is served stale without the origin\'s or the client\'s word (RFC 9111 §4.2.4)', async (t) => {
  let version = 1
  const origin = await startOrigin((req, res) => {
    if (req.url === '/max-age') res.setHeader('cache-control', 'max-age=5')
    if (req.url === '/zero') res.setHeader('cache-control', 'max-age=0')
    if (req.url === '/expired') res.setHeader('expires', 'Thu, 01 Jan 1970 00:00:00 GMT')
    if (req.url === '/aged') { res.setHeader('cache-control', 'max-age=60'); res.setHeader('age', '7200') }
    if (req.url === '/swr') res.setHeader('cache-control', 'max-age=5, stale-while-revalidate=60')
    if (req.url === '/updated') {
      res.setHeader('cache-control', 'max-age=5')
      res.setHeader('etag', '"e"')
      res.setHeader('x-version', String(version))
      if (req.headers['if-none-match'] === '"e"') { res.statusCode = 304; res.end(); return }
    }
    res.end(`${req.url} #${origin.count(req.url)}`)
  })
  const cache = await startCache(origin.url) // the defaults: no CACHE_GRACE_SECONDS
  t.teardown(async () => { await cache.close(); await origin.close() })
  for (const p of ['/max-age', '/zero', '/expired', '/aged', '/swr', '/updated']) await send(cache.url + p)
  cache.clock.advance(6000)
  version = 2
  const maxAge = await send(cache.url + '/max-age')
  t.equal(maxAge.headers['x-cache'], 'MISS', 'expired max-age: revalidated in the foreground, not served stale')
  t.equal(maxAge.body, '/max-age #2')
  for (const p of ['/zero', '/expired', '/aged']) {
    const a = await send(cache.url + p)
    t.equal(a.body, `${p} #2`, `${p}: never served stale`)
    t.not(a.headers['x-cache'], 'STALE')
  }
  const updated = await send(cache.url + '/updated')
  t.equal(updated.headers['x-version'], '2', 'the header update a 304 carries is what the client sees (§4.3.4)')
  t.equal(updated.body, '/updated #1', 'with the stored body')
  const swr = await send(cache.url + '/swr')
  t.equal(swr.headers['x-cache'], 'STALE', 'what the origin granted still works')
  t.match(swr.headers['cache-status'], /detail=stale-while-revalidate/)
  t.equal(swr.body, '/swr #1')
  await until(() => origin.count('/swr') === 2 && cache.app.engine.coalescer.inFlight === 0)
  t.equal(origin.count('/swr'), 2, 'one background refresh')
})

t.test('issue 10: the client\'s max-stale allows stale; a disconnected origin allows stale (RFC 9111 §4.2.4)', async (t) => {
  const origin = await startOrigin((req, res) => {
    res.setHeader('cache-control', req.url === '/must' ? 'max-age=5, must-revalidate' : 'max-age=5')
    res.end(`${req.url} #${origin.count(req.url)}`)
  })
  const cache = await startCache(origin.url)
  t.teardown(async () => { await cache.close(); await origin.close() })
  await send(cache.url + '/m')
  await send(cache.url + '/must')
  cache.clock.advance(10_000)
  const limited = await send(cache.url + '/m', { headers: { 'cache-control': 'max-stale=2' } })
  t.equal(limited.headers['x-cache'], 'MISS', 'max-stale=2 does not cover 5 s of staleness')
  t.equal(limited.body, '/m #2')
  cache.clock.advance(10_000)
  const any = await send(cache.url + '/m', { headers: { 'cache-control': 'max-stale' } })
  t.equal(any.headers['x-cache'], 'STALE', 'max-stale without a value: any staleness')
  t.match(any.headers['cache-status'], /detail=max-stale/)
  await until(() => cache.app.engine.coalescer.inFlight === 0)
  cache.clock.advance(10_000)
  await origin.close()
  const down = await send(cache.url + '/m')
  t.equal(down.status, 200, 'no upstream answers: the stored page is served')
  t.equal(down.headers['x-cache'], 'STALE')
  t.match(down.headers['cache-status'], /detail=disconnected/)
  const must = await send(cache.url + '/must')
  t.equal(must.status, 502, 'must-revalidate: never stale, even disconnected (§5.2.2.2)')
})

t.test('issue 23: a response with s-maxage is never served stale without revalidation, unless a stale-* directive allows it (RFC 9111 §5.2.2.10)', async (t) => {
  const origin = await startOrigin((req, res, n) => {
    res.setHeader('cache-control', req.url === '/s' ? 'public, s-maxage=2' : req.url === '/sie' ? 'public, s-maxage=2, stale-if-error=60' : 'public, max-age=2')
    res.end(`v${n}`)
  })
  const cache = await startCache(origin.url, { CACHE_EJECT_AFTER_ERRORS: '100' })
  t.teardown(async () => { await cache.close(); await origin.close() })
  for (const path of ['/s', '/sie', '/m']) await send(cache.url + path)
  cache.clock.advance(3000)
  // A client that accepts any staleness: s-maxage implies proxy-revalidate, so the cache asks the origin anyway.
  const before = origin.count('/s')
  const reload = await send(cache.url + '/s', { headers: { 'cache-control': 'max-stale' } })
  t.equal(reload.headers['x-cache'], 'MISS', 'max-stale does not make an s-maxage response usable stale')
  t.equal(origin.count('/s'), before + 1)
  cache.clock.advance(3000)
  // No upstream answers at all (RFC 9111 §4.2.4 disconnected).
  await origin.close()
  const s = await send(cache.url + '/s')
  t.equal(s.status, 502, 's-maxage: the failure, not the stale copy')
  const sie = await send(cache.url + '/sie')
  t.equal(sie.headers['x-cache'], 'STALE', 's-maxage with stale-if-error: the origin allowed it')
  const m = await send(cache.url + '/m')
  t.equal(m.headers['x-cache'], 'STALE', 'without s-maxage a disconnected cache may serve stale')
})

t.test('issue 23: Age is read as RFC 9111 §5.1 says: the first member of a list, or of several lines', async (t) => {
  const ages: Record<string, string | string[]> = { '/suffix': '7200, 0', '/twoline': ['7200', '0'], '/prefix': '0, 7200', '/bad': 'abc, 0' }
  const origin = await startOrigin((req, res, n) => {
    res.setHeader('cache-control', 'max-age=3600')
    res.setHeader('age', ages[req.url!])
    res.end(`v${n}`)
  })
  const cache = await startCache(origin.url)
  t.teardown(async () => { await cache.close(); await origin.close() })
  const expected: Record<string, string> = { '/suffix': 'MISS', '/twoline': 'MISS', '/prefix': 'HIT', '/bad': 'HIT' }
  for (const path in ages) {
    await send(cache.url + path)
    const again = await send(cache.url + path)
    t.equal(again.headers['x-cache'], expected[path], `${path} (Age: ${JSON.stringify(ages[path])}): ${expected[path] === 'MISS' ? 'already older than its max-age' : 'fresh'}`)
  }
  t.same(effectiveHeaders({ age: '7200, 0' }).age, '7200')
  t.same(effectiveHeaders({ age: ' 12 ' }).age, '12')
  t.equal(effectiveHeaders({ age: 'abc, 0' }).age, undefined, 'an invalid first member: the field is ignored')
})
