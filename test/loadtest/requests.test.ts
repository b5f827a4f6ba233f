import t from 'tap'
import { RequestGenerator, formBodies } from '../../loadtest/requests.js'
import { BUILTIN_SCENARIOS } from '../../loadtest/scenarios.js'
import { createRng } from '../../loadtest/random.js'
import { ZipfSampler } from '../../loadtest/zipf.js'
import { startFakeSite } from './fake-site.js'

const pages = ['/', '/news', '/tutorials', '/events', '/events/new',
  ...Array.from({ length: 20 }, (_, i) => `/news/a${i}`), ...Array.from({ length: 5 }, (_, i) => `/tutorials/t${i}`)]

t.test('browse follows the Zipf ranking of the pages', async t => {
  const g = new RequestGenerator({ scenario: BUILTIN_SCENARIOS.browse, pages, base: 'http://127.0.0.1:9', seed: 11 })
  const n = 30_000
  const counts = new Map<string, number>()
  let gets = 0
  for (let i = 0; i < n; i++) {
    const r = g.next()
    if (r.method === 'GET' && r.meta.method === 'GET' && r.body === undefined) gets++
    counts.set(r.path, (counts.get(r.path) ?? 0) + 1)
  }
  t.equal(gets, n, 'browse only reads')
  const z = new ZipfSampler(pages.length, { s: 1 })
  for (const [rank, path] of [[0, '/'], [1, '/news'], [9, '/news/a4'], [29, '/tutorials/t4']] as const) {
    const expected = z.probability(rank) * n
    t.ok(Math.abs((counts.get(path) ?? 0) - expected) < 5 * Math.sqrt(expected), `${path}: ${counts.get(path)} ≈ ${expected.toFixed(0)}`)
  }
  const sorted = [...counts.entries()].sort((a, b) => b[1] - a[1]).map(([p]) => p)
  t.same(sorted.slice(0, 2), ['/', '/news'], 'home and the news index most often')
  t.same(Array.from({ length: 50 }, () => g.next().path).length, 50)
  const a = new RequestGenerator({ scenario: BUILTIN_SCENARIOS.mixed, pages, base: 'http://127.0.0.1:9', seed: 5, runId: 'r' })
  const b = new RequestGenerator({ scenario: BUILTIN_SCENARIOS.mixed, pages, base: 'http://127.0.0.1:9', seed: 5, runId: 'r' })
  t.same(Array.from({ length: 200 }, () => a.next()), Array.from({ length: 200 }, () => b.next()), 'seeded: same requests, same bodies')
})

t.test('mixed: write share, endpoints, unique same-origin form bodies', async t => {
  const g = new RequestGenerator({ scenario: BUILTIN_SCENARIOS.mixed, pages, base: 'http://127.0.0.1:8080/', seed: 2 })
  const n = 20_000
  const byEndpoint = new Map<string, number>()
  const bodies = new Set<string>()
  let posts = 0
  let wellFormed = 0
  for (let i = 0; i < n; i++) {
    const r = g.next()
    byEndpoint.set(r.meta.endpoint, (byEndpoint.get(r.meta.endpoint) ?? 0) + 1)
    if (r.method === 'POST') {
      posts++
      if (r.headers.origin === 'http://127.0.0.1:8080' && r.headers['content-type'] === 'application/x-www-form-urlencoded') wellFormed++
      bodies.add(r.body!)
    }
  }
  t.equal(wellFormed, posts, 'every post is urlencoded with a same-origin Origin header')
  t.ok(Math.abs(posts / n - 0.1) < 0.01, `10% writes (${(posts / n * 100).toFixed(1)}%)`)
  t.equal(bodies.size, posts, 'every write body is unique')
  const share = (e: string): number => (byEndpoint.get(e) ?? 0) / n
  t.ok(Math.abs(share('POST /news/:slug/comments') - 0.04) < 0.008)
  t.ok(Math.abs(share('POST /events') - 0.03) < 0.008)
  t.ok(Math.abs(share('POST /tutorials/:slug/done') - 0.03) < 0.008)
})

t.test('signup-rush is mostly sign-ups and completions', async t => {
  const g = new RequestGenerator({ scenario: BUILTIN_SCENARIOS['signup-rush'], pages, base: 'http://127.0.0.1:9', seed: 3 })
  let writes = 0
  let form = 0
  for (let i = 0; i < 5000; i++) {
    const r = g.next()
    if (r.method === 'POST') writes++
    if (r.path === '/events/new') form++
  }
  t.ok(writes / 5000 > 0.65 && writes / 5000 < 0.75, `~70% writes (${writes / 50}%)`)
  t.ok(form > 0, 'the sign-up form page is read too')
})

t.test('form bodies use the contract field names and valid values', async t => {
  const rng = createRng(1)
  const ev = formBodies.signup(7, 'run1', rng, new Date('2026-03-01T12:00:00Z'))
  t.same(Object.keys(ev).sort(), ['city', 'country', 'email', 'eventDate', 'expectedParticipants', 'organizer', 'school'])
  t.match(ev.country, /^[A-Z]{2}$/)
  t.match(ev.email, /^loadtest\+run1-7@example\.org$/)
  t.match(ev.expectedParticipants, /^\d+$/)
  t.match(ev.eventDate, /^2026-0[3-6]-\d\d$/)
  t.ok(ev.eventDate > '2026-03-01', 'the event is in the future')
  t.same(Object.keys(formBodies.comment(1, 'r', rng)).sort(), ['author', 'body'])
  t.same(Object.keys(formBodies.completion(1, 'r', rng)).sort(), ['country', 'email', 'name'])
  t.match(formBodies.completion(3, 'run1', rng).email, /^loadtest\+run1-c3@example\.org$/, 'each completion its own address, so each write is one message')
})

t.test('generated writes are accepted by a site that validates like the frontend', async t => {
  const site = await startFakeSite()
  t.teardown(() => site.close())
  const g = new RequestGenerator({ scenario: { zipf: 1, mix: [{ action: 'comment', weight: 1 }, { action: 'signup', weight: 1 }, { action: 'completion', weight: 1 }] }, pages: ['/', '/news/article-1', '/tutorials/tutorial-2'], base: site.url, seed: 9 })
  for (let i = 0; i < 30; i++) {
    const r = g.next()
    const res = await fetch(site.url + r.path, { method: r.method, headers: r.headers, body: r.body, redirect: 'manual' })
    t.equal(res.status, 303, `${r.meta.endpoint} → 303`)
    await res.arrayBuffer()
  }
  t.same(site.rejected, [])
  t.equal(new Set(site.bodies).size, 30)
})

t.test('a mix that needs articles or tutorials says so when the sitemap has none', async t => {
  t.throws(() => new RequestGenerator({ scenario: BUILTIN_SCENARIOS.mixed, pages: ['/', '/tutorials/t'], base: 'http://x', seed: 1 }), /no \/news\/:slug article/)
  t.throws(() => new RequestGenerator({ scenario: BUILTIN_SCENARIOS.mixed, pages: ['/', '/news/n'], base: 'http://x', seed: 1 }), /no \/tutorials\/:slug page/)
  t.throws(() => new RequestGenerator({ scenario: BUILTIN_SCENARIOS.browse, pages: [], base: 'http://x', seed: 1 }), /no pages/)
})

t.test('the bytes on the wire follow the same seeded sequence as next(); a page read is one Buffer reused', async t => {
  const opts = { scenario: BUILTIN_SCENARIOS.mixed, pages, base: 'http://127.0.0.1:8080/app/', seed: 4, runId: 'r' }
  const a = new RequestGenerator(opts)
  const b = new RequestGenerator(opts)
  const seen = new Map<string, Buffer>()
  let reused = 0
  for (let i = 0; i < 500; i++) {
    const r = a.next()
    const w = b.nextWire()
    const text = w.buffer.toString('utf8')
    const [head, body] = text.split('\r\n\r\n')
    const lines = head.split('\r\n')
    t.equal(lines[0], `${r.method} ${r.path} HTTP/1.1`, `request ${i}: ${r.method} ${r.path}`)
    t.same(w.meta, r.meta)
    t.equal(lines[1], 'Host: 127.0.0.1:8080')
    if (r.body === undefined) {
      t.equal(body, '')
      if (seen.get(r.path) === w.buffer) reused++
      seen.set(r.path, w.buffer)
    } else {
      t.equal(body, r.body, 'the same body')
      t.ok(lines.includes(`Content-Length: ${Buffer.byteLength(r.body)}`))
    }
  }
  t.ok(reused > 350, `page reads reuse their request bytes (${reused} of 500)`)
})

t.test('a fixed request (autocannon\'s one URL): the same bytes every time, its headers replacing the defaults', async t => {
  const scenario = {
    ...BUILTIN_SCENARIOS.browse,
    mix: [{ action: 'request' as const, method: 'put', path: '/api/items?x=1', headers: { Host: 'example.org', 'X-A': '1' }, body: 'hé', weight: 1 }]
  }
  const g = new RequestGenerator({ scenario, pages: ['/api/items?x=1'], base: 'http://127.0.0.1:9/', seed: 1 })
  const w = g.nextWire()
  t.equal(w.buffer.toString('utf8'), 'PUT /api/items?x=1 HTTP/1.1\r\nConnection: keep-alive\r\nHost: example.org\r\nX-A: 1\r\nContent-Length: 3\r\n\r\nhé', 'one Host (the one given), the body\'s length in bytes')
  t.equal(g.nextWire(), w, 'built once')
  t.same(w.meta, { method: 'PUT', endpoint: 'PUT /api/*', read: false })
  const r = g.next()
  t.same([r.method, r.path, r.body], ['PUT', '/api/items?x=1', 'hé'])
  const get = new RequestGenerator({ scenario: { ...scenario, mix: [{ action: 'request' as const, method: 'GET', path: '/', headers: { 'content-length': '0' }, weight: 1 }] }, pages: ['/'], base: 'http://127.0.0.1:9/', seed: 1 })
  t.equal(get.nextWire().buffer.toString(), 'GET / HTTP/1.1\r\nHost: 127.0.0.1:9\r\nConnection: keep-alive\r\ncontent-length: 0\r\n\r\n', 'no body: no Content-Length of ours')
})
