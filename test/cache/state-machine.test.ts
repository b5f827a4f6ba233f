import t from 'tap'
import { startOrigin, startCache, send, closeAgent, page, rawExchange, finalAnswer } from './fixtures.js'

t.teardown(closeAgent)

const until = async (check: () => boolean) => {
  for (let i = 0; i < 400 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 5))
}

async function setup (t: { teardown: (fn: () => Promise<void>) => void }, handler: Parameters<typeof startOrigin>[0], env: Record<string, string> = {}) {
  const origin = await startOrigin(handler)
  // Grace (serving stale while refreshing) is tested in freshness.test.ts; here staleness means a fetch.
  const cache = await startCache(origin.url, { CACHE_GRACE_SECONDS: '0', ...env })
  t.teardown(async () => { await cache.close(); await origin.close() })
  return { origin, cache }
}

t.test('miss then hit: one origin fetch, X-Cache, Cache-Status and Age', async (t) => {
  const { origin, cache } = await setup(t, page({ 'cache-control': 'public, max-age=0, s-maxage=60', 'content-type': 'text/plain' }, (n) => `v${n}`))
  const a = await send(cache.url + '/p')
  t.equal(a.headers['x-cache'], 'MISS')
  t.match(a.headers['cache-status'], /^flashcrowd; fwd=miss; fwd-status=200; stored/)
  t.equal(a.headers.age, '0')
  cache.clock.advance(5000)
  const b = await send(cache.url + '/p')
  t.equal(b.headers['x-cache'], 'HIT')
  t.equal(b.body, 'v1')
  t.equal(b.headers.age, '5', 'Age grows with resident time (RFC 9111 §4.2.3)')
  t.match(b.headers['cache-status'], /^flashcrowd; hit; ttl=55$/)
  t.equal(origin.count('/p'), 1)
  cache.clock.advance(56_000)
  const c = await send(cache.url + '/p')
  t.equal(c.headers['x-cache'], 'MISS', 's-maxage over: fetched again')
  t.equal(c.body, 'v2')
})

t.test('upstream Age is counted into freshness and passed on', async (t) => {
  const { origin, cache } = await setup(t, page({ 'cache-control': 'max-age=60', age: '50' }))
  await send(cache.url + '/a')
  cache.clock.advance(5000)
  const b = await send(cache.url + '/a')
  t.equal(b.headers['x-cache'], 'HIT')
  t.equal(b.headers.age, '55')
  cache.clock.advance(6000)
  await send(cache.url + '/a')
  t.equal(origin.count(), 2, 'stale after 60 - 50 seconds')
})

t.test('max-age, Expires and heuristic freshness', async (t) => {
  const { origin, cache } = await setup(t, (req, res) => {
    if (req.url === '/expires') { res.setHeader('date', new Date(cache.clock.now()).toUTCString()); res.setHeader('expires', new Date(cache.clock.now() + 30_000).toUTCString()) }
    if (req.url === '/heuristic') { res.setHeader('date', new Date(cache.clock.now()).toUTCString()); res.setHeader('last-modified', new Date(cache.clock.now() - 1000_000).toUTCString()) }
    if (req.url === '/heuristic-302') { res.statusCode = 302; res.setHeader('location', '/x'); res.setHeader('last-modified', new Date(cache.clock.now() - 1000_000).toUTCString()) }
    if (req.url === '/nothing') { /* no freshness information at all */ }
    res.end('x')
  })
  for (const p of ['/expires', '/heuristic', '/heuristic-302', '/nothing']) await send(cache.url + p)
  cache.clock.advance(20_000)
  for (const p of ['/expires', '/heuristic', '/heuristic-302', '/nothing']) await send(cache.url + p)
  t.equal(origin.count('/expires'), 1, 'Expires 30 s: still fresh at 20 s')
  t.equal(origin.count('/heuristic'), 1, 'heuristic: 10% of 1000 s since Last-Modified (RFC 9111 §4.2.2)')
  t.equal(origin.count('/heuristic-302'), 2, '302 is not heuristically cacheable')
  t.equal(origin.count('/nothing'), 2, 'no lifetime, no heuristic: not reused')
  cache.clock.advance(15_000)
  await send(cache.url + '/expires')
  t.equal(origin.count('/expires'), 2, 'expired after 30 s')
})

t.test('no-store, private and Set-Cookie are never stored', async (t) => {
  const { origin, cache } = await setup(t, (req, res) => {
    if (req.url === '/no-store') res.setHeader('cache-control', 'no-store')
    if (req.url === '/private') res.setHeader('cache-control', 'private, max-age=60')
    if (req.url === '/cookie') { res.setHeader('cache-control', 'public, max-age=60'); res.setHeader('set-cookie', ['a=1', 'b=2']) }
    res.end('x')
  })
  for (const p of ['/no-store', '/private', '/cookie']) {
    const a = await send(cache.url + p)
    const b = await send(cache.url + p)
    t.equal(b.headers['x-cache'], 'MISS', p)
    t.equal(origin.count(p), 2, `${p} fetched every time`)
    t.equal(a.status, 200)
  }
  const c = await send(cache.url + '/cookie')
  t.equal(c.headers['set-cookie'], 'a=1, b=2', 'Set-Cookie lines passed on to the client')
  t.equal(cache.app.engine.store.count, 0)
})

t.test('no-cache and must-revalidate: revalidated with the origin, 304 updates stored headers', async (t) => {
  const { origin, cache } = await setup(t, (req, res, n) => {
    if (req.url === '/nc') {
      res.setHeader('cache-control', 'no-cache')
      res.setHeader('etag', '"v1"')
      if (req.headers['if-none-match'] === '"v1"') { res.statusCode = 304; res.setHeader('x-version', `r${n}`); res.end(); return }
      res.setHeader('x-version', `r${n}`)
      res.end('body-nc')
      return
    }
    res.setHeader('cache-control', 'max-age=10, must-revalidate')
    res.setHeader('last-modified', 'Mon, 01 Jan 2024 00:00:00 GMT')
    if (req.headers['if-modified-since'] === 'Mon, 01 Jan 2024 00:00:00 GMT') { res.statusCode = 304; res.setHeader('x-version', `r${n}`); res.end(); return }
    res.setHeader('x-version', `r${n}`)
    res.end('body-mr')
  })
  const a = await send(cache.url + '/nc')
  const b = await send(cache.url + '/nc')
  t.equal(origin.count('/nc'), 2, 'no-cache: every use is validated')
  t.equal(origin.requests[1].headers['if-none-match'], '"v1"', 'validated with the stored ETag')
  t.equal(b.body, 'body-nc', 'body from the store after a 304')
  t.equal(b.headers['x-version'], 'r2', '304 headers replace the stored ones (RFC 9111 §4.3.4)')
  t.equal(a.headers['x-version'], 'r1')
  t.match(b.headers['cache-status'], /fwd=stale; fwd-status=304/)

  await send(cache.url + '/mr')
  cache.clock.advance(5000)
  t.equal((await send(cache.url + '/mr')).headers['x-cache'], 'HIT')
  cache.clock.advance(6000)
  const c = await send(cache.url + '/mr')
  t.equal(origin.count('/mr'), 2)
  t.equal(c.body, 'body-mr')
  t.equal(c.headers['x-version'], origin.count().toString().replace(/^/, 'r'))
  t.equal((await send(cache.url + '/mr')).headers['x-cache'], 'HIT', 'fresh again after revalidation')
})

t.test('Authorization and Cookie requests pass unless the response allows sharing', async (t) => {
  const { origin, cache } = await setup(t, (req, res) => {
    res.setHeader('cache-control', req.url === '/shared' ? 'public, s-maxage=60' : 'max-age=60')
    res.end(`for ${req.headers.authorization ?? req.headers.cookie ?? 'anyone'}`)
  })
  await send(cache.url + '/personal', { headers: { authorization: 'Bearer alice' } })
  const anon = await send(cache.url + '/personal')
  t.equal(anon.body, 'for anyone', 'an authenticated answer is not served to others')
  await send(cache.url + '/personal', { headers: { cookie: 'session=bob' } })
  const bob2 = await send(cache.url + '/personal', { headers: { cookie: 'session=bob' } })
  t.equal(bob2.body, 'for session=bob', 'cookie requests are not answered from an anonymous object')
  t.equal(origin.count('/personal'), 4, 'alice, anonymous (stored), bob twice')

  await send(cache.url + '/shared', { headers: { cookie: 'session=bob' } })
  const shared = await send(cache.url + '/shared', { headers: { authorization: 'Bearer carol' } })
  t.equal(shared.headers['x-cache'], 'HIT', 'public/s-maxage responses are shared (RFC 9111 §3.5)')
  t.equal(origin.count('/shared'), 1)
})

t.test('Vary: variants keyed by normalized values; Vary: * never stored', async (t) => {
  const { origin, cache } = await setup(t, (req, res) => {
    res.setHeader('cache-control', 'max-age=60')
    res.setHeader('vary', req.url === '/star' ? '*' : 'Accept-Language')
    res.end(`lang=${req.headers['accept-language'] ?? ''}`)
  })
  t.equal((await send(cache.url + '/v', { headers: { 'accept-language': 'fr, en' } })).body, 'lang=fr, en')
  t.equal((await send(cache.url + '/v', { headers: { 'accept-language': 'de' } })).body, 'lang=de')
  const fr = await send(cache.url + '/v', { headers: { 'accept-language': 'fr,en' } })
  t.equal(fr.headers['x-cache'], 'HIT', 'whitespace-normalized value selects the stored variant')
  t.equal(fr.body, 'lang=fr, en')
  t.equal(origin.count('/v'), 2)
  await send(cache.url + '/star')
  await send(cache.url + '/star')
  t.equal(origin.count('/star'), 2)
})

t.test('targeted fields (RFC 9213): Flashcrowd-Cache-Control and Surrogate-Control are for us, CDN-Cache-Control passes untouched', async (t) => {
  const { origin, cache } = await setup(t, (req, res) => {
    if (req.url === '/own') { res.setHeader('cache-control', 'no-store'); res.setHeader('flashcrowd-cache-control', 'max-age=60') }
    if (req.url === '/surrogate') { res.setHeader('cache-control', 'max-age=0'); res.setHeader('surrogate-control', 'max-age=60') }
    if (req.url === '/own-nostore') { res.setHeader('cache-control', 'max-age=60'); res.setHeader('flashcrowd-cache-control', 'no-store') }
    if (req.url === '/cdn') { res.setHeader('cache-control', 'no-store'); res.setHeader('cdn-cache-control', 'max-age=60') }
    if (req.url === '/cdn-nostore') { res.setHeader('cache-control', 'public, s-maxage=60'); res.setHeader('cdn-cache-control', 'no-store') }
    res.end('x')
  })
  for (const p of ['/own', '/surrogate', '/own-nostore', '/cdn', '/cdn-nostore']) { await send(cache.url + p); await send(cache.url + p) }
  t.equal(origin.count('/own'), 1)
  t.equal(origin.count('/surrogate'), 1)
  t.equal(origin.count('/own-nostore'), 2)
  t.equal(origin.count('/cdn'), 2, 'CDN-Cache-Control is not aimed at the tier: Cache-Control no-store rules')
  t.equal(origin.count('/cdn-nostore'), 1, 'nor is its no-store')
  const cdn = await send(cache.url + '/cdn-nostore')
  t.equal(cdn.headers['cdn-cache-control'], 'no-store', 'CDN-Cache-Control is passed on untouched, for the CDN in front')
  const r = await send(cache.url + '/surrogate')
  t.equal(r.headers['surrogate-control'], undefined, 'Surrogate-Control is for us, not passed on')
  t.equal(r.headers['cache-control'], 'max-age=0', 'Cache-Control is passed on for browsers')
})

t.test('an edge node (CACHE_EDGE) obeys CDN-Cache-Control; Surrogate-Key is delivered for a CDN that purges by it', async (t) => {
  const { origin, cache } = await setup(t, (req, res) => {
    res.setHeader('cache-control', 'public, max-age=0, s-maxage=300')
    res.setHeader('surrogate-key', 'news:1 site')
    if (req.url === '/short') res.setHeader('cdn-cache-control', 'max-age=2')
    res.end('x')
  }, { CACHE_EDGE: 'true' })
  await send(cache.url + '/short')
  t.equal((await send(cache.url + '/short')).headers['x-cache'], 'HIT')
  cache.clock.advance(2500)
  t.equal((await send(cache.url + '/short')).headers['x-cache'], 'MISS', 'the edge keeps the page its CDN-Cache-Control lifetime, not s-maxage')
  t.equal(origin.count('/short'), 2)
  t.equal((await send(cache.url + '/short')).headers['surrogate-key'], undefined, 'tags are internal by default')

  const tier = await setup(t, (_req, res) => { res.setHeader('cache-control', 'public, s-maxage=60'); res.setHeader('surrogate-key', 'news:1 site'); res.end('y') }, { CDN_PROVIDER: 'flashcrowd', CDN_TRUSTED_RANGES: '127.0.0.9' })
  await send(tier.cache.url + '/p')
  const hit = await send(tier.cache.url + '/p')
  t.equal(hit.headers['x-cache'], 'HIT')
  t.equal(hit.headers['surrogate-key'], 'news:1 site', 'behind a flashcrowd edge the tier hands its tags on')
})

t.test('an answer fetched before a purge that arrived meanwhile goes to its requester as no-store: no cache in front keeps it', async (t) => {
  let release: (() => void) | undefined
  const { cache } = await setup(t, (_req, res) => {
    res.setHeader('cache-control', 'public, s-maxage=300')
    res.setHeader('cdn-cache-control', 'max-age=300')
    res.setHeader('surrogate-key', 'news:1')
    release = () => res.end('old')
  }, { ADMIN_TOKEN: 'test-admin-token-0123456789' })
  const pending = send(cache.url + '/news/1')
  await until(() => release !== undefined)
  const purged = await send(cache.url + '/', { method: 'PURGE', headers: { authorization: 'Bearer test-admin-token-0123456789', 'surrogate-key': 'news:1' } })
  t.equal(purged.status, 200)
  release!()
  const answer = await pending
  t.equal(answer.body, 'old', 'the requester asked before the purge: it gets what was fetched')
  t.equal(answer.headers['cache-control'], 'no-store', 'but no cache may keep it')
  t.equal(answer.headers['cdn-cache-control'], undefined, 'nor may a targeted field say otherwise (RFC 9213 §2.1)')
})

t.test('HEAD is answered from a GET object; a HEAD miss stores it for GET', async (t) => {
  const { origin, cache } = await setup(t, page({ 'cache-control': 'max-age=60', 'content-type': 'text/plain' }, 'twelve bytes'))
  const h = await send(cache.url + '/h', { method: 'HEAD' })
  t.equal(h.status, 200)
  t.equal(h.body, '')
  t.equal(h.headers['content-length'], '12')
  t.equal(origin.requests[0].method, 'GET', 'a HEAD miss is fetched with GET')
  const g = await send(cache.url + '/h')
  t.equal(g.headers['x-cache'], 'HIT')
  t.equal(g.body, 'twelve bytes')
  const h2 = await send(cache.url + '/h', { method: 'HEAD' })
  t.equal(h2.headers['x-cache'], 'HIT')
  t.equal(origin.count(), 1)
})

t.test('conditional requests from clients are answered from the cache with 304', async (t) => {
  const { origin, cache } = await setup(t, page({ 'cache-control': 'max-age=60', etag: '"abc"', 'last-modified': 'Mon, 01 Jan 2024 00:00:00 GMT' }))
  const first = await send(cache.url + '/c', { headers: { 'if-none-match': '"abc"' } })
  t.equal(first.status, 304, 'even on a miss: the full body was fetched and stored, the client gets 304')
  t.notOk(origin.requests[0].headers['if-none-match'], 'client validators are not forwarded on a cacheable miss')
  t.equal((await send(cache.url + '/c', { headers: { 'if-none-match': 'W/"abc", "zzz"' } })).status, 304, 'weak comparison')
  t.equal((await send(cache.url + '/c', { headers: { 'if-modified-since': 'Tue, 02 Jan 2024 00:00:00 GMT' } })).status, 304)
  const full = await send(cache.url + '/c', { headers: { 'if-none-match': '"other"' } })
  t.equal(full.status, 200)
  t.equal(full.body, 'hello')
  const nm = await send(cache.url + '/c', { headers: { 'if-none-match': '"abc"' } })
  t.equal(nm.headers.etag, '"abc"')
  t.equal(nm.headers['x-cache'], 'HIT')
  t.equal(origin.count(), 1)
})

t.test('an unsafe method invalidates the URL, Location and Content-Location (RFC 9111 §4.4)', async (t) => {
  const { origin, cache } = await setup(t, (req, res, n) => {
    if (req.method === 'POST') {
      res.statusCode = 303
      res.setHeader('location', '/after')
      res.end()
      return
    }
    res.setHeader('cache-control', 'max-age=600')
    res.end(`${req.url} v${n}`)
  })
  await send(cache.url + '/form')
  await send(cache.url + '/after')
  const post = await send(cache.url + '/form', { method: 'POST', body: 'a=1', headers: { 'content-type': 'application/x-www-form-urlencoded' } })
  t.equal(post.status, 303)
  t.equal(post.headers['x-cache'], 'PASS')
  t.equal(origin.requests[2].method, 'POST')
  t.equal((await send(cache.url + '/form')).headers['x-cache'], 'MISS')
  t.equal((await send(cache.url + '/after')).headers['x-cache'], 'MISS')
  t.equal(origin.count(), 5)
})

t.test('request Cache-Control: no-cache and max-age=0 go to the origin', async (t) => {
  const { origin, cache } = await setup(t, page({ 'cache-control': 'max-age=60', etag: '"e"' }))
  await send(cache.url + '/r')
  cache.clock.advance(2000)
  await send(cache.url + '/r', { headers: { 'cache-control': 'no-cache' } })
  cache.clock.advance(1000)
  await send(cache.url + '/r', { headers: { 'cache-control': 'max-age=0' } })
  t.equal(origin.count(), 3)
  t.equal((await send(cache.url + '/r', { headers: { 'cache-control': 'max-age=100' } })).headers['x-cache'], 'HIT')
})

t.test('POST bodies are forwarded once, complete; Surrogate-Key is not shown to clients', async (t) => {
  const { origin, cache } = await setup(t, (req, res) => {
    let body = ''
    req.on('data', (c) => { body += c })
    req.on('end', () => { res.setHeader('surrogate-key', 'home news'); res.end(`got ${body}`) })
  })
  const r = await send(cache.url + '/submit', { method: 'POST', body: 'x'.repeat(1000) })
  t.equal(r.body, `got ${'x'.repeat(1000)}`)
  t.equal(r.headers['surrogate-key'], undefined)
  t.equal(origin.requests[0].headers['content-length'], '1000')
  const big = await send(cache.url + '/submit', { method: 'POST', body: 'x'.repeat(2 * 1024 * 1024) })
  t.equal(big.status, 413)
  t.equal(origin.count(), 1, 'the oversized body never reached the origin')
})

t.test('issue: an absolute-form target is keyed and forwarded with its own authority, never the client\'s Host (RFC 9112 §3.2.2)', async (t) => {
  const { origin, cache } = await setup(t, (req, res) => {
    res.setHeader('cache-control', 'public, s-maxage=3600')
    res.end(`<loc>http://${req.headers.host}/</loc>`)
  })
  const attack = finalAnswer(await rawExchange(cache.url, 'GET http://victim.example/sitemap.xml HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n'))
  t.equal(attack.status, 200)
  t.equal(origin.requests[0].headers.host, 'victim.example', 'the origin rendered for the host the key names')
  t.equal(attack.body, '<loc>http://victim.example/</loc>')
  const victim = finalAnswer(await rawExchange(cache.url, 'GET /sitemap.xml HTTP/1.1\r\nHost: victim.example\r\nConnection: close\r\n\r\n'))
  t.match(victim.head, /x-cache: HIT/i, 'same key')
  t.equal(victim.body, '<loc>http://victim.example/</loc>', 'nothing rendered for evil.example is served to victim.example')
  // Host case and origin-form: the key's (lower-case) host is what goes upstream.
  await rawExchange(cache.url, 'GET /other HTTP/1.1\r\nHost: Victim.Example\r\nConnection: close\r\n\r\n')
  t.equal(origin.requests[1].headers.host, 'victim.example')
  t.equal(origin.count(), 2)
})

t.test('issue: request no-store answers that requester only; the stored object, coalescing and stale-if-error are untouched', async (t) => {
  let down = false
  const { origin, cache } = await setup(t, (req, res) => {
    setTimeout(() => {
      res.setHeader('cache-control', 'public, max-age=0, s-maxage=300, stale-if-error=600')
      res.setHeader('etag', '"home"')
      if (req.url === '/304' && req.headers['if-none-match'] === '"home"') { res.statusCode = 304; res.end(); return }
      if (down) { res.statusCode = 503; res.end('down'); return }
      res.end(`${req.url} v${origin.count(req.url)}`)
    }, 20)
  })
  for (const path of ['/', '/304']) {
    await send(cache.url + path)
    const before = [...cache.app.engine.store.values()].find((o) => o.url === path)!
    const fetchesBefore = origin.count(path)
    const own = await send(cache.url + path, { headers: { 'cache-control': 'no-cache, no-store' } })
    t.equal(own.status, 200, `${path}: the no-store request got its own answer`)
    t.match(own.headers['cache-status'], /fwd=(miss|stale)/)
    t.equal(origin.count(path), fetchesBefore + 1, `${path}: it went to the origin (no-cache)`)
    t.equal([...cache.app.engine.store.values()].find((o) => o.url === path), before, `${path}: the stored object is the same one, unchanged`)
    t.notOk(cache.app.engine.coalescer.isUncacheable(before.key), `${path}: no hit-for-miss marker`)
    const crowd = await Promise.all(Array.from({ length: 50 }, () => send(cache.url + path)))
    t.ok(crowd.every((a) => a.headers['x-cache'] === 'HIT'), `${path}: the crowd is served from the store`)
    t.equal(origin.count(path), fetchesBefore + 1, `${path}: 50 requests, no origin fetch`)
  }

  // stale-if-error survives a no-store request while the origin is failing.
  await send(cache.url + '/down')
  down = true
  cache.clock.advance(301_000)
  const own = await send(cache.url + '/down', { headers: { 'cache-control': 'no-store' } })
  t.equal(own.status, 200, 'origin 503: the stored page answers (stale-if-error)')
  t.equal(own.headers['x-cache'], 'STALE')
  const next = await send(cache.url + '/down')
  t.equal(next.headers['x-cache'], 'STALE', 'still there for everyone else')
  t.equal(next.body, '/down v1')
})

t.test('issue: a cold miss with request no-store neither stores nor marks the key; later requests coalesce', async (t) => {
  const { origin, cache } = await setup(t, (_req, res) => {
    setTimeout(() => { res.setHeader('cache-control', 'public, s-maxage=300'); res.end('cold') }, 30)
  })
  const own = await send(cache.url + '/cold', { headers: { 'cache-control': 'no-store' } })
  t.equal(own.body, 'cold')
  t.match(own.headers['cache-status'], /detail=no-store-request/)
  t.equal(cache.app.engine.store.count, 0, 'not stored')
  const crowd = await Promise.all(Array.from({ length: 20 }, () => send(cache.url + '/cold')))
  t.ok(crowd.every((a) => a.body === 'cold'))
  t.equal(origin.count(), 2, 'one fetch for the no-store request, one for the whole crowd')
  t.equal(cache.app.engine.store.count, 1)

  // A no-store request arriving while someone else leads waits on that fetch instead of starting its own.
  cache.app.engine.store.clear()
  const leader = send(cache.url + '/cold')
  const key = new URL(cache.url).host + '/cold'
  while (!cache.app.engine.coalescer.busy(key)) await new Promise((resolve) => setTimeout(resolve, 2))
  const waiter = await send(cache.url + '/cold', { headers: { 'cache-control': 'no-store' } })
  await leader
  t.equal(waiter.body, 'cold')
  t.equal(origin.count(), 3, 'the no-store request waited on the fetch under way')
})

t.test('issue: after a 304 the old stored Age is not counted again (RFC 9111 §4.3.4, §4.2.3)', async (t) => {
  const { origin, cache } = await setup(t, (req, res) => {
    res.setHeader('cache-control', 'max-age=60')
    res.setHeader('etag', '"a"')
    if (req.headers['if-none-match'] === '"a"') { res.statusCode = 304; res.end(); return }
    res.setHeader('age', '50')
    res.end('aged')
  })
  await send(cache.url + '/aged')
  cache.clock.advance(11_000)
  const revalidated = await send(cache.url + '/aged')
  t.match(revalidated.headers['cache-status'], /fwd=stale; fwd-status=304; stored/)
  t.equal(revalidated.headers.age, '0', 'just validated; the 304 carried no Age')
  t.equal(origin.count(), 2)
  cache.clock.advance(20_000)
  const hit = await send(cache.url + '/aged')
  t.equal(hit.headers['x-cache'], 'HIT', 'fresh for max-age=60 from the validation, not 60 - 50 again')
  t.equal(hit.headers.age, '20')
  t.equal(origin.count(), 2)
})

t.test('issue: a no-store request in the stale-while-revalidate window still lets the background refresh store', async (t) => {
  const { origin, cache } = await setup(t, page({ 'cache-control': 'public, s-maxage=10, stale-while-revalidate=60' }, (n) => `v${n}`))
  await send(cache.url + '/swr')
  cache.clock.advance(11_000)
  const stale = await send(cache.url + '/swr', { headers: { 'cache-control': 'no-store' } })
  t.equal(stale.headers['x-cache'], 'STALE')
  t.equal(stale.body, 'v1')
  while (cache.app.engine.coalescer.inFlight > 0) await new Promise((resolve) => setTimeout(resolve, 2))
  const next = await send(cache.url + '/swr')
  t.equal(next.headers['x-cache'], 'HIT', 'the refresh was the cache\'s own fetch and was stored')
  t.equal(next.body, 'v2')
  t.equal(origin.count(), 2)
})

t.test('issue 10: an answer caused by the request never evicts, replaces or marks a stored page', async (t) => {
  const { origin, cache } = await setup(t, (req, res) => {
    if (req.headers['x-huge'] !== undefined) {
      // What an origin answers to a head it will not take (431), labelled uncacheable.
      res.statusCode = 431; res.setHeader('cache-control', 'no-store'); res.end('too large'); return
    }
    if (req.headers['x-bad'] !== undefined) {
      // An error page the origin labels cacheable: storing it would serve it to everyone.
      res.statusCode = 400; res.setHeader('cache-control', 'public, max-age=600'); res.end('bad request'); return
    }
    res.setHeader('cache-control', 'public, max-age=0, s-maxage=300, stale-if-error=86400')
    res.end(`page #${origin.count(req.url)}`)
  })
  await send(cache.url + '/p')
  const stored = [...cache.app.engine.store.values()].find((o) => o.url === '/p')!
  const huge = await send(cache.url + '/p', { headers: { 'cache-control': 'no-cache', 'x-huge': 'x'.repeat(100) } })
  t.equal(huge.status, 431, 'the requester gets the origin\'s answer')
  const bad = await send(cache.url + '/p', { headers: { 'cache-control': 'no-cache', 'x-bad': '1' } })
  t.equal(bad.status, 400)
  t.equal([...cache.app.engine.store.values()].find((o) => o.url === '/p'), stored, 'the stored page is the same object')
  t.notOk(cache.app.engine.coalescer.isUncacheable(stored.key), 'no hit-for-miss marker')
  const crowd = await Promise.all(Array.from({ length: 30 }, () => send(cache.url + '/p')))
  t.ok(crowd.every((a) => a.status === 200 && a.body === 'page #1' && a.headers['x-cache'] === 'HIT'), 'everyone else still gets the page')
  // A cold key: a cacheable-looking 400 is not stored either.
  const cold = await send(cache.url + '/q', { headers: { 'x-bad': '1' } })
  t.equal(cold.status, 400)
  t.match(cold.headers['cache-status'], /detail=client-error/)
  const next = await send(cache.url + '/q')
  t.equal(next.status, 200, 'the next visitor gets the page, not the stored error')
})

t.test('issue 10: a reload storm costs one origin fetch at a time, and each answer was validated after its request', async (t) => {
  let inflight = 0
  let maxInflight = 0
  let release: (() => void) | undefined
  let gate = false
  const { origin, cache } = await setup(t, (req, res) => {
    inflight++
    maxInflight = Math.max(maxInflight, inflight)
    const answer = () => {
      inflight--
      res.setHeader('cache-control', 'public, max-age=0, s-maxage=300')
      res.setHeader('etag', '"v"')
      res.end(`v${origin.count(req.url)}`)
    }
    if (gate) { release = answer; return }
    // Held until the rest of a storm waits (or 5 s): however slow the
    // machine, the storm arrives while the first revalidation is under way.
    const started = Date.now()
    const poll = () => {
      if (cache.app.engine.coalescer.waits < waitTarget && Date.now() - started < 5000) { setTimeout(poll, 5); return }
      answer()
    }
    poll()
  })
  let waitTarget = 0
  await send(cache.url + '/r')
  // A second old: a request max-age=0 no longer accepts it (age 0 would still be acceptable, §5.2.1.1).
  cache.clock.advance(1000)
  const reloads: Array<Record<string, string>> = [{ 'cache-control': 'max-age=0' }, { 'cache-control': 'no-cache' }, { pragma: 'no-cache' }]
  for (const reload of reloads) {
    const before = origin.count('/r')
    waitTarget = cache.app.engine.coalescer.waits + 199
    const storm = await Promise.all(Array.from({ length: 200 }, () => send(cache.url + '/r', { headers: reload })))
    t.ok(storm.every((a) => a.status === 200), `${JSON.stringify(reload)}: all answered`)
    const fetches = origin.count('/r') - before
    // One fetch for the first arrival and one for everyone who came while it ran.
    t.ok(fetches >= 1 && fetches <= 2, `${JSON.stringify(reload)}: 200 reloads → ${fetches} origin fetches`)
    cache.clock.advance(1000)
    t.equal(maxInflight, 1, 'never more than one fetch of the key at a time')
  }
  // Exactly: a reload that arrives while a revalidation is under way waits for the next one.
  gate = true
  const first = send(cache.url + '/r', { headers: { 'cache-control': 'no-cache' } })
  await until(() => release !== undefined)
  const startedBefore = origin.count('/r')
  const waitsBefore = cache.app.engine.coalescer.waits
  const later = Array.from({ length: 20 }, () => send(cache.url + '/r', { headers: { 'cache-control': 'no-cache' } }))
  await until(() => cache.app.engine.coalescer.waits === waitsBefore + 20)
  const r1 = release!
  release = undefined
  r1()
  const a = await first
  t.equal(a.body, `v${startedBefore}`, 'the first reload gets the fetch it started')
  await until(() => release !== undefined)
  t.equal(origin.count('/r'), startedBefore + 1, 'one more fetch for everyone who arrived during the first')
  release!()
  const rest = await Promise.all(later)
  t.ok(rest.every((r) => r.body === `v${startedBefore + 1}`), 'each later reload got the answer validated after it arrived')
})

t.test('issue 10: a 304 without validators updates the stored response (RFC 9111 §4.3.4)', async (t) => {
  let version = 1
  const { origin, cache } = await setup(t, (req, res) => {
    res.setHeader('cache-control', 'public, max-age=10')
    res.setHeader('x-version', String(version))
    if (req.headers['if-none-match'] === '"a"') { res.statusCode = 304; res.end(); return } // no ETag, no Last-Modified
    res.setHeader('etag', '"a"')
    res.end('body')
  })
  await send(cache.url + '/v')
  cache.clock.advance(11_000)
  version = 2
  const a = await send(cache.url + '/v')
  t.equal(a.status, 200)
  t.equal(a.body, 'body')
  t.equal(a.headers['x-version'], '2', 'the 304\'s fields were applied')
  t.equal(a.headers.etag, '"a"', 'the stored validator stays')
  t.match(a.headers['cache-status'], /fwd-status=304/)
  t.equal(origin.count('/v'), 2, 'no second, unconditional fetch')
  const b = await send(cache.url + '/v')
  t.equal(b.headers['x-cache'], 'HIT', 'fresh again')
})

t.test('issue 10: an origin 5xx is passed on when no stale copy may stand in', async (t) => {
  let down = false
  const { cache } = await setup(t, (req, res) => {
    if (down) { res.statusCode = 503; res.setHeader('retry-after', '30'); res.setHeader('content-type', 'text/plain'); res.end('maintenance until noon'); return }
    res.setHeader('cache-control', req.url === '/sie' ? 'public, s-maxage=10, stale-if-error=60' : 'public, s-maxage=10')
    res.end('ok')
  })
  await send(cache.url + '/plain')
  await send(cache.url + '/sie')
  cache.clock.advance(20_000)
  down = true
  const a = await send(cache.url + '/plain')
  t.equal(a.status, 503)
  t.equal(a.body, 'maintenance until noon', 'the origin\'s own answer, not a synthetic 502')
  t.equal(a.headers['retry-after'], '30')
  t.match(a.headers['cache-status'], /fwd-status=503/)
  const b = await send(cache.url + '/sie')
  t.equal(b.status, 200, 'stale-if-error still stands in')
  t.equal(b.headers['x-cache'], 'STALE')
})

t.test('issue 10: 103 Early Hints reach the client and are never stored', async (t) => {
  const { origin, cache } = await setup(t, (_req, res) => {
    res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' })
    setTimeout(() => { res.setHeader('cache-control', 'public, s-maxage=60'); res.end('page') }, 10)
  })
  const raw = await rawExchange(cache.url, 'GET /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  t.match(raw, /^HTTP\/1\.1 103 Early Hints\r\n[Ll]ink: <\/style\.css>; rel=preload; as=style\r\n/, 'the 103 came first')
  const final = finalAnswer(raw)
  t.equal(final.status, 200)
  t.equal(final.body, 'page')
  const again = await rawExchange(cache.url, 'GET /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  t.match(again, /^HTTP\/1\.1 200 /, 'a hit carries no interim response')
  t.match(again, /x-cache: HIT/i)
  t.equal(origin.count('/h'), 1)
  const old = await rawExchange(cache.url, 'GET /h2 HTTP/1.0\r\nHost: x\r\n\r\n')
  t.match(old, /^HTTP\/1\.1 200 /, 'no 1xx to an HTTP/1.0 client (RFC 9110 §15.2)')
})

t.test('issue 23: a fragment in the target is neither keyed nor forwarded; an absolute-form target with an empty host is a 400', async (t) => {
  const { origin, cache } = await setup(t, page({ 'cache-control': 'public, max-age=60' }, (n, req) => `v${n} ${req.url}`))
  for (const front of [true, false]) {
    const other = front ? cache : (await setup(t, page({ 'cache-control': 'public, max-age=60' }, (n, req) => `v${n} ${req.url}`), { CACHE_HIT_FRONT: 'false' })).cache
    const a = finalAnswer(await rawExchange(other.url, 'GET /x#f HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n'))
    t.equal(a.body, 'v1 /x', `front=${front}: the origin was asked for /x`)
    const b = finalAnswer(await rawExchange(other.url, 'GET /x HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n'))
    t.match(b.head, /x-cache: HIT/i, `front=${front}: /x#f and /x are one key`)
    const c = finalAnswer(await rawExchange(other.url, 'GET /x#other HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n'))
    t.match(c.head, /x-cache: HIT/i, `front=${front}: whatever the fragment`)
    const empty = finalAnswer(await rawExchange(other.url, 'GET http:///m/x HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n'))
    t.equal(empty.status, 400, `front=${front}: http:///m/x names no host`)
  }
  t.same(origin.requests.map((r) => r.url), ['/x'])
})
