/**
 * Pages render from seeded data, with the caching contract: Cache-Control,
 * strong ETag and 304, Surrogate-Key per page, escaping, the render cache
 * dropping pages on bus events, security headers, assets.
 */
import t from 'tap'
import { createTestDatabase, eachDatabase, openDatabase } from '../helpers/database.js'
import { startFrontend } from './helpers.js'
import { readCounter, PARTICIPANTS } from '../../common/counters.js'
import { scraper } from '../helpers/metrics.js'

const PAGE_CC = 'public, max-age=0, s-maxage=300, stale-while-revalidate=60, stale-if-error=86400'

eachDatabase(t, 'every page renders from seeded data with cache headers and tags', async (t, database) => {
  const rw = openDatabase(t, database)
  const { app } = await startFrontend(t, database.url)
  const tutorial = await rw.db.selectFrom('tutorials').select(['id', 'slug', 'title', 'level']).orderBy('published_at', 'desc').orderBy('id', 'desc').executeTakeFirstOrThrow()
  const article = await rw.db.selectFrom('news').select(['id', 'slug', 'title']).orderBy('published_at', 'desc').orderBy('id', 'desc').executeTakeFirstOrThrow()
  const cert = await rw.db.selectFrom('completions').select(['id', 'name', 'tutorial_id']).executeTakeFirstOrThrow()
  const event = await rw.db.selectFrom('events').select(['country', 'school']).orderBy('created_at', 'desc').executeTakeFirstOrThrow()
  const participants = await readCounter(rw.db, PARTICIPANTS)

  const cases: Array<{ url: string, contains: string[], tags: string[], cc?: string, type?: RegExp }> = [
    { url: '/', contains: ['Featured tutorials', tutorial.title, 'participants so far', participants.toLocaleString('en')], tags: ['home', 'site'] },
    { url: '/tutorials', contains: [tutorial.title, 'Show tutorials'], tags: ['tutorials', 'site'] },
    { url: `/tutorials?level=${tutorial.level}`, contains: [tutorial.title], tags: ['tutorials', 'site'] },
    { url: `/tutorials/${tutorial.slug}`, contains: [tutorial.title, 'Get my certificate', `action="/tutorials/${tutorial.slug}/done"`], tags: [`tutorial:${tutorial.id}`, 'site'] },
    { url: '/news', contains: [article.title], tags: ['news', 'site'] },
    { url: `/news/${article.slug}`, contains: [article.title, 'Post comment', 'Comments'], tags: [`news:${article.id}`, 'site'] },
    { url: '/events', contains: ['Events around the world', 'Expected participants'], tags: ['events', 'site'] },
    { url: `/events?country=${event.country}`, contains: [event.school], tags: ['events', 'site'] },
    { url: '/events/new', contains: ['Register your event', 'name="expectedParticipants"', 'name="eventDate"'], tags: ['site'] },
    { url: `/certificates/${cert.id}`, contains: [cert.name, 'Certificate of completion'], tags: [`certificate:${cert.id}`, `tutorial:${cert.tutorial_id}`, 'site'], cc: 'public, max-age=0, s-maxage=86400, stale-while-revalidate=3600, stale-if-error=604800' },
    { url: '/sitemap.xml', contains: ['<urlset', `/news/${article.slug}</loc>`, `/tutorials/${tutorial.slug}</loc>`], tags: ['sitemap', 'site'], cc: 'public, max-age=0, s-maxage=3600, stale-while-revalidate=600, stale-if-error=86400', type: /^application\/xml/ },
    { url: '/counter.json', contains: [`"participants":${participants}`], tags: ['counter'], cc: 'public, max-age=5, s-maxage=5, stale-while-revalidate=10, stale-if-error=3600', type: /^application\/json/ }
  ]
  for (const c of cases) {
    const res = await app.inject({ url: c.url })
    t.equal(res.statusCode, 200, `${c.url} 200`)
    for (const s of c.contains) t.ok(res.body.includes(s), `${c.url} shows ${s}`)
    t.equal(res.headers['cache-control'], c.cc ?? PAGE_CC, `${c.url} cache-control`)
    t.same(String(res.headers['surrogate-key']).split(' ').sort(), [...c.tags].sort(), `${c.url} surrogate keys`)
    t.match(res.headers.etag, /^"[A-Za-z0-9_-]{27}"$/, `${c.url} strong etag`)
    t.match(res.headers['content-type'], c.type ?? /^text\/html; charset=utf-8/)
    t.notOk(res.headers['set-cookie'], `${c.url} sets no cookie`)
    t.notOk(res.headers.vary, `${c.url} does not vary`)
    // Conditional request: 304 with the same validator and cache headers, no body.
    const again = await app.inject({ url: c.url, headers: { 'if-none-match': `"nope", ${res.headers.etag}` } })
    t.equal(again.statusCode, 304, `${c.url} 304`)
    t.equal(again.body, '')
    t.equal(again.headers.etag, res.headers.etag)
    t.equal(again.headers['cache-control'], res.headers['cache-control'])
    t.equal(again.headers['surrogate-key'], res.headers['surrogate-key'])
    t.equal(again.headers['x-render-cache'], 'hit', `${c.url} second request from the render cache`)
    // A cookie changes nothing: pages never depend on it.
    const withCookie = await app.inject({ url: c.url, headers: { cookie: 'session=abc' } })
    t.equal(withCookie.headers.etag, res.headers.etag, `${c.url} ignores cookies`)
  }
  const head = await app.inject({ method: 'HEAD', url: '/news' })
  t.equal(head.statusCode, 200)
  t.equal(head.body, '')
  t.ok(head.headers.etag)

  // Pagination, filters, 404s and bad parameters.
  const page2 = await app.inject({ url: '/news?page=2' })
  t.equal(page2.statusCode, 200)
  t.match(page2.body, /aria-current="page">2</)
  const newsTotal = Number((await rw.db.selectFrom('news').select(rw.db.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()).n)
  const beyond = await app.inject({ url: `/news?page=${Math.ceil(newsTotal / 10) + 1}` })
  t.equal(beyond.statusCode, 404)
  t.match(beyond.headers['cache-control'], /s-maxage=30/)

  const filtered = await app.inject({ url: '/tutorials?level=beginner&age=8&length=60' })
  t.equal(filtered.statusCode, 200)
  const expected = await rw.db.selectFrom('tutorials').select('title').where('level', '=', 'beginner').where('min_age', '<=', 8).where('max_age', '>=', 8).where('minutes', '<=', 60).execute()
  for (const r of expected.slice(0, 12)) t.ok(filtered.body.includes(r.title.replace(/&/g, '&amp;')), `filtered list shows ${r.title}`)
  const others = await rw.db.selectFrom('tutorials').select('title').where('level', '!=', 'beginner').execute()
  for (const r of others) t.notOk(filtered.body.includes(`>${r.title}</a>`), `filtered list hides ${r.title}`)
  t.match(filtered.body, /<option value="beginner" selected>/)

  // Comments newest first, paginated.
  const busy = await rw.db.selectFrom('comments').select(['news_id', rw.db.fn.countAll<string>().as('n')]).groupBy('news_id').orderBy('n', 'desc').executeTakeFirstOrThrow()
  const art = await rw.db.selectFrom('news').select('slug').where('id', '=', busy.news_id).executeTakeFirstOrThrow()
  const newest = await rw.db.selectFrom('comments').select(['id']).where('news_id', '=', busy.news_id).orderBy('created_at', 'desc').orderBy('id', 'desc').limit(2).execute()
  const articleRes = await app.inject({ url: `/news/${art.slug}` })
  const first = articleRes.body.indexOf(`id="comment-${newest[0].id}"`)
  t.ok(first > 0, 'newest comment shown')
  if (newest[1]) t.ok(articleRes.body.indexOf(`id="comment-${newest[1].id}"`) > first, 'newest first')

  for (const url of ['/news/no-such-article', '/tutorials/no-such-tutorial', '/certificates/nope', '/nothing-here']) {
    const res = await app.inject({ url })
    t.equal(res.statusCode, 404, `${url} 404`)
    t.match(res.body, /We couldn’t find that/)
    t.match(res.headers['cache-control'], /^public, max-age=0, s-maxage=30/)
    t.match(res.headers['content-security-policy'], /default-src 'self'/, 'styled 404 with the same headers')
  }
  for (const url of ['/news?page=abc', '/news?page=0', '/tutorials?level=expert', '/tutorials?age=3', '/events?country=ZZ', '/news?page=1&page=2']) {
    const res = await app.inject({ url })
    t.equal(res.statusCode, 400, `${url} 400`)
    t.equal(res.headers['cache-control'], 'private, no-store')
    t.match(res.body, /That didn’t work/)
  }
})

eachDatabase(t, 'user text is escaped; the render cache drops pages on invalidation events', async (t, database) => {
  const rw = openDatabase(t, database)
  const fe = await startFrontend(t, database.url)
  const { app } = fe
  const article = await rw.db.selectFrom('news').select(['id', 'slug']).orderBy('published_at', 'desc').executeTakeFirstOrThrow()
  const payload = '<script>alert("x")</script><img src=x onerror=alert(1)>'
  await rw.db.insertInto('comments').values({ news_id: article.id, author: `"><svg onload=alert(2)>`, body: payload }).execute()
  await rw.db.insertInto('events').values({ organizer: 'o', email: 'o@x.org', school: '<b>School</b>&<i>', country: 'US', city: `'; alert(3); '`, expected_participants: 5, event_date: '2026-12-08' }).execute()
  const res = await app.inject({ url: `/news/${article.slug}` })
  t.equal(res.statusCode, 200)
  t.notOk(res.body.includes('<script>alert'), 'no live script element')
  t.notOk(res.body.includes('<img src=x'), 'no live img element')
  t.notOk(res.body.includes('<svg onload'), 'no live svg element')
  t.ok(res.body.includes('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;'), 'the payload is shown as text')
  t.ok(res.body.includes('&quot;&gt;&lt;svg onload=alert(2)&gt;'), 'author escaped')
  const events = await app.inject({ url: '/events?country=US' })
  t.ok(events.body.includes('&lt;b&gt;School&lt;/b&gt;&amp;&lt;i&gt;'))
  t.ok(events.body.includes('&#39;; alert(3); &#39;'))
  t.notOk(events.body.includes('o@x.org'), 'organizer emails are never shown')
  // No inline script or handler anywhere: the CSP forbids them and the pages need none.
  for (const url of ['/', `/news/${article.slug}`, '/events/new', '/tutorials']) {
    const page = await app.inject({ url })
    t.notMatch(page.body, /<script(?![^>]*\ssrc=)[^>]*>/, `${url}: no inline script`)
    t.notMatch(page.body, /<[^>]*\son[a-z]+=/i, `${url}: no inline event handler`)
    t.notMatch(page.body, /<[^>]*\sstyle=/i, `${url}: no inline style`)
  }

  // The render cache drops a page on an invalidation event.
  const bus = fe.bus
  const other = await rw.db.selectFrom('news').select(['id', 'slug']).where('id', '!=', article.id).executeTakeFirstOrThrow()
  const url = `/news/${article.slug}`
  t.equal((await app.inject({ url })).headers['x-render-cache'], 'hit', 'rendered above, now from the render cache')
  t.equal((await app.inject({ url: `/news/${other.slug}` })).headers['x-render-cache'], 'miss')
  // A write behind the frontend's back: the cached page does not show it yet...
  await rw.db.insertInto('comments').values({ news_id: article.id, author: 'Cache Tester', body: 'appears after the purge' }).execute()
  t.notOk((await app.inject({ url })).body.includes('appears after the purge'), 'render cache still serves the old page')
  // ...until the backend's key event arrives.
  await bus.publish({ kind: 'keys', keys: [`news:${article.id}`] })
  const fresh = await app.inject({ url })
  t.equal(fresh.headers['x-render-cache'], 'miss')
  t.ok(fresh.body.includes('appears after the purge'))
  t.equal((await app.inject({ url: `/news/${other.slug}` })).headers['x-render-cache'], 'hit', 'other pages stay cached')
  // URL purges and bans too.
  await bus.publish({ kind: 'url', path: `/news/${other.slug}` })
  t.equal((await app.inject({ url: `/news/${other.slug}` })).headers['x-render-cache'], 'miss')
  await app.inject({ url: '/news' })
  await app.inject({ url: '/news?page=2' })
  await bus.publish({ kind: 'ban', pattern: '^/news\\?' })
  t.equal((await app.inject({ url: '/news?page=2' })).headers['x-render-cache'], 'miss')
  t.equal((await app.inject({ url: '/news' })).headers['x-render-cache'], 'hit')
})

t.test('security headers, assets, health and metrics', async (t) => {
  const database = await createTestDatabase('embedded')
  t.teardown(database.close)
  const { app } = await startFrontend(t, database.url)
  const home = await app.inject({ url: '/' })
  const csp = String(home.headers['content-security-policy'])
  t.match(csp, /default-src 'self'/)
  t.match(csp, /script-src 'self'(;|$)/)
  t.match(csp, /style-src 'self'(;|$)/)
  t.match(csp, /frame-ancestors 'none'/)
  t.match(csp, /form-action 'self'/)
  t.equal(home.headers['x-content-type-options'], 'nosniff')
  t.ok(home.headers['referrer-policy'])
  const css = /href="(\/assets\/site\.[A-Za-z0-9]{12}\.css)"/.exec(home.body)?.[1]
  const js = /src="(\/assets\/counter\.[A-Za-z0-9]{12}\.js)"/.exec(home.body)?.[1]
  t.ok(css && js, 'content-hashed asset names')
  const plain = await app.inject({ url: css! })
  t.equal(plain.statusCode, 200)
  t.equal(plain.headers['cache-control'], 'public, max-age=31536000, immutable')
  t.match(plain.headers['content-type'], /^text\/css/)
  const br = await app.inject({ url: css!, headers: { 'accept-encoding': 'br, gzip' } })
  t.equal(br.headers['content-encoding'], 'br', 'precompressed brotli')
  t.ok(br.rawPayload.length < plain.rawPayload.length / 2)
  t.equal(br.headers['cache-control'], 'public, max-age=31536000, immutable')
  const gz = await app.inject({ url: css!, headers: { 'accept-encoding': 'gzip' } })
  t.equal(gz.headers['content-encoding'], 'gzip')
  t.equal((await app.inject({ url: '/assets/site.css' })).statusCode, 404, 'only fingerprinted names')
  t.equal((await app.inject({ url: '/assets/site.aaaaaaaaaaaa.css' })).statusCode, 404)

  const health = await app.inject({ url: '/-/health' })
  t.equal(health.statusCode, 200)
  t.equal(health.json().status, 'ok')
  const metrics = await app.inject({ url: '/-/metrics', headers: scraper })
  t.equal(metrics.statusCode, 200)
  t.match(metrics.body, /flashcrowd_frontend_render_seconds_bucket/)
  t.match(metrics.body, /flashcrowd_http_requests_total\{[^}]*route="\/"/)
  t.match(metrics.body, /^flashcrowd_database_replica_lag_seconds\{role="frontend"\} 0$/m, 'issue 25: a read pool on the primary trails nothing')
})

t.test('health is 503 when the read pool does not answer', async (t) => {
  const { app } = await startFrontend(t, 'postgres://postgres@127.0.0.1:1/none', { env: { DATABASE_CONNECT_TIMEOUT_MS: '300' } })
  const res = await app.inject({ url: '/-/health' })
  t.equal(res.statusCode, 503)
  const page = await app.inject({ url: '/news' })
  t.equal(page.statusCode, 503, 'pages answer 503 when the database is down')
  t.ok(page.headers['retry-after'])
  t.equal(page.headers['cache-control'], 'private, no-store')
  t.match(page.body, /We’ll be right back/)
  t.notMatch(page.body, /ECONNREFUSED|at .*\.ts/, 'no internals')
})
