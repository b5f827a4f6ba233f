/**
 * Issue 24, end to end on one machine: two flashcrowd edge caches
 * (CACHE_EDGE, their own bus) in front of the tier (cache → frontend →
 * backend → database), purged by the purger (CDN_FLASHCROWD_URLS) from the
 * outbox. While a crowd reads the same article pages through the edges, 200
 * comments are posted through the edges: each author sees their comment on
 * the page they are sent to, and each comment shows on the plain page at
 * both edges although the edges may keep pages for 300 s (FRONTEND_CDN_MAX_AGE
 * as with a purger): only the purge can have shown it. The time from commit
 * to both edges is measured and printed (p50/p99; tests do not assert
 * speed on a shared machine — docs/cdn.md has the figures). Then, with the
 * purger stopped, a sign-up's counter (CDN-Cache-Control max-age=5) stays
 * old at the edges no longer than that lifetime: every old answer is a fresh
 * hit at most 5 s old, and the new count shows once it ran out.
 */
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { request } from 'undici'
import { MemoryBus } from '../../common/bus.js'
import { buildApp as buildCache } from '../../cache/app.js'
import { loadCacheConfig } from '../../cache/config.js'
import { buildApp as buildPurger } from '../../purger/app.js'
import { loadPurgerConfig } from '../../purger/config.js'
import { createTestDatabase, openDatabase } from '../helpers/database.js'
import { ADMIN_TOKEN } from '../helpers/backend.js'
import { browserNonce, startBackend, startCacheBefore, startFrontend } from '../frontend/helpers.js'
import { METRICS_TOKEN, scraper } from '../helpers/metrics.js'

t.setTimeout(240_000)
const WRITES = Number(process.env.TWO_TIER_WRITES ?? 200)
const AUTHORS = 4
const READERS = 4
/** The edges' lifetime of pages (FRONTEND_CDN_MAX_AGE) as with a purger: no page expires during the test. */
const CDN_LIFETIME_S = 300
/** The counter's lifetime everywhere (frontend/cache-headers.ts POLICIES.counter). */
const COUNTER_LIFETIME_S = 5

async function get (url: string): Promise<{ status: number, body: string, age: number, cache: string }> {
  const res = await request(url)
  const body = await res.body.text()
  return { status: res.statusCode, body, age: Number(res.headers.age ?? 0), cache: String(res.headers['x-cache'] ?? '') }
}

t.test('edges purged by the purger: writes visible at the edge within 1 s; without the purger, never past the CDN lifetime', async (t) => {
  const database = await createTestDatabase(process.env.DATABASE_URL ? 'postgres' : 'embedded')
  t.teardown(database.close)
  const bus = new MemoryBus()
  const backend = await startBackend(t, database.url, bus, { BACKEND_RATE_LIMIT_MAX: '0', BACKEND_RATE_LIMIT_SAME_MAX: '0', BACKEND_MAX_EVENT_LOOP_DELAY_MS: '0' })
  const { app: frontend } = await startFrontend(t, database.url, { backendUrls: [backend.url], bus, env: { FRONTEND_CDN_MAX_AGE: String(CDN_LIFETIME_S) } })
  await frontend.listen({ host: '127.0.0.1', port: 0 })
  const quiet = { LOG_LEVEL: 'silent', CACHE_PROBE_INTERVAL_MS: '0', CACHE_WORKERS: '1', ADMIN_TOKEN }
  // The tier's cache believes the edges' X-Forwarded-For (CDN_PROVIDER=flashcrowd) and hands them its tags.
  const tier = await startCacheBefore(t, frontend, bus, { ADMIN_TOKEN, CDN_PROVIDER: 'flashcrowd', CDN_TRUSTED_RANGES: '127.0.0.1' })
  // The edges: their own bus (a CDN does not hear ours); only the purger reaches them.
  const edgeBus = new MemoryBus()
  const edges = [0, 1].map(() => buildCache({ config: loadCacheConfig({ ...quiet, UPSTREAMS: tier.url(), CACHE_EDGE: 'true' }), bus: edgeBus, defaultMetrics: false }))
  for (const e of edges) { await e.listen(0, '127.0.0.1'); t.teardown(() => e.close()) }
  const edgeUrls = edges.map((e) => e.url())
  const purger = await buildPurger({
    config: loadPurgerConfig({ LOG_LEVEL: 'silent', METRICS_TOKEN, DATABASE_URL: database.url, CDN_FLASHCROWD_URLS: edgeUrls.join(','), ADMIN_TOKEN, PURGER_POLL_MS: '25', PURGER_SETTLE_MS: '50' }),
    database: openDatabase(t, database),
    logger: false
  })
  await purger.ready()
  let purgerClosed = false
  t.teardown(async () => { if (!purgerClosed) await purger.close() })

  const rw = openDatabase(t, database)
  const articles = (await rw.db.selectFrom('news').select('slug').orderBy('id').limit(4).execute()).map((a) => a.slug)
  // Every page in both edges before the doors open.
  for (const base of edgeUrls) for (const slug of articles) t.equal((await get(`${base}/news/${slug}`)).status, 200)

  let reading = true
  const crowd = { answers: 0, hits: 0, errors: 0 }
  const readers = Array.from({ length: READERS }, async (_, r) => {
    for (let i = r; reading; i++) {
      try {
        const a = await get(`${edgeUrls[i % 2]}/news/${articles[i % articles.length]}`)
        crowd.answers++
        if (a.cache === 'HIT') crowd.hits++
        if (a.status !== 200) crowd.errors++
      } catch { crowd.errors++ }
      // A crowd of browsers, not a load generator: the whole tier shares this test's one event loop.
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
  })

  /** Posts one comment through an edge; returns its text and when the commit was acknowledged (the 303). */
  async function comment (n: number, edge: string, slug: string) {
    const text = `edge-comment-${n}-${randomBytes(4).toString('hex')}`
    const res = await request(`${edge}/news/${slug}/comments`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: edge },
      body: new URLSearchParams({ author: `Author ${n}`, body: text, form_nonce: browserNonce() }).toString()
    })
    await res.body.text()
    return { text, acknowledged: performance.now(), status: res.statusCode, location: new URL(String(res.headers.location ?? '/'), edge).href }
  }

  /** Whether the author sees their comment on the page the 303 sends them to. */
  async function ownView (w: { text: string, location: string }): Promise<boolean> {
    return (await get(w.location)).body.includes(w.text)
  }

  /** Polls the plain page at both edges until both show `text`; ms from the acknowledgement, or undefined after 15 s. */
  async function visibleAtEdges (slug: string, w: { text: string, acknowledged: number }, onOld?: (a: { age: number, cache: string }) => void): Promise<number | undefined> {
    const seen = [false, false]
    while (performance.now() - w.acknowledged < 15_000) {
      for (let e = 0; e < 2; e++) {
        if (seen[e]) continue
        const a = await get(`${edgeUrls[e]}/news/${slug}`)
        seen[e] = a.body.includes(w.text)
        if (!seen[e]) onOld?.(a)
      }
      if (seen[0] && seen[1]) return performance.now() - w.acknowledged
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    return undefined
  }

  const latencies: number[] = []
  const problems: string[] = []
  let next = 0
  await Promise.all(Array.from({ length: AUTHORS }, async () => {
    while (next < WRITES) {
      const n = next++
      const slug = articles[n % articles.length]
      const w = await comment(n, edgeUrls[n % 2], slug)
      if (w.status !== 303) { problems.push(`write ${n}: ${w.status}`); continue }
      // The author follows the redirect while the crowd's page is watched at both edges.
      const [own, visible] = await Promise.all([ownView(w), visibleAtEdges(slug, w)])
      if (!own) problems.push(`write ${n}: the author did not see it at ${w.location}`)
      if (visible === undefined) {
        problems.push(`write ${n}: not visible at the edges after 15 s`)
      }
      else latencies.push(visible)
    }
  }))
  reading = false
  await Promise.all(readers)

  latencies.sort((a, b) => a - b)
  const p = (q: number) => latencies[Math.min(latencies.length - 1, Math.ceil(q * latencies.length) - 1)]
  t.comment(`commit → visible at both edges over ${latencies.length} writes: p50 ${p(0.5).toFixed(0)} ms, p99 ${p(0.99).toFixed(0)} ms, max ${p(1).toFixed(0)} ms; crowd ${crowd.answers} reads, ${crowd.hits} edge hits, ${crowd.errors} errors`)
  t.same(problems, [], 'every write acknowledged (303), shown to its author, and seen at both edges')
  t.equal(latencies.length, WRITES)
  t.equal(crowd.errors, 0, 'the crowd got every page')
  t.ok(crowd.hits > 0, 'and the edges answered it from their store')
  const metrics = (await purger.inject({ url: '/-/metrics', headers: scraper })).body
  t.comment(metrics.split('\n').filter((l) => /purge_lag_seconds_(sum|count)/.test(l)).join(' · '))
  t.match(metrics, /flashcrowd_cdn_purge_lag_seconds_count\{[^}]*cdn="flashcrowd"[^}]*\} [1-9]/, 'the purger reports its lag to the edges')

  await t.test('a sign-up: the counter at the edges moves with the purger, and without it stays old at most its lifetime', async (t) => {
    const count = async (edge: string) => { const a = await get(`${edge}/counter.json`); return { ...a, n: (JSON.parse(a.body) as { participants: number }).participants } }
    async function signUp (n: number): Promise<number> {
      const edge = edgeUrls[0]
      const res = await request(`${edge}/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', origin: edge },
        body: new URLSearchParams({ organizer: `Organizer ${n}`, email: `o${n}@school.example`, school: 'Edge School', country: 'DE', city: 'Berlin', expectedParticipants: '7', eventDate: '2027-01-15', form_nonce: browserNonce() }).toString()
      })
      await res.body.text()
      t.equal(res.statusCode, 303, 'signed up')
      return performance.now()
    }
    /** Polls the counter at both edges until it reached `target`; the ms it took and the old answers seen. */
    async function counterAt (target: number, since: number) {
      const old: Array<{ age: number, cache: string }> = []
      const seen = [false, false]
      while (!(seen[0] && seen[1]) && performance.now() - since < 15_000) {
        for (let e = 0; e < 2; e++) {
          if (seen[e]) continue
          const c = await count(edgeUrls[e])
          if (c.n >= target) seen[e] = true
          else old.push(c)
        }
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
      return { ms: seen[0] && seen[1] ? performance.now() - since : undefined, old }
    }
    for (const e of edgeUrls) await count(e)
    const before = (await count(edgeUrls[1])).n
    const purged = await counterAt(before + 7, await signUp(1))
    t.ok(purged.ms !== undefined, `with the purger: the new count at both edges after ${purged.ms?.toFixed(0)} ms`)

    await purger.close()
    purgerClosed = true
    // A fresh copy at each edge, then the sign-up.
    for (const e of edgeUrls) await count(e)
    const stale = await counterAt(before + 14, await signUp(2))
    t.comment(`without the purger: the new count at both edges after ${stale.ms?.toFixed(0)} ms; ${stale.old.length} old answers, ages ${[...new Set(stale.old.map((o) => o.age))].join(',')} s`)
    t.ok(stale.ms !== undefined, 'the new count shows at both edges once the lifetime ran out')
    t.ok(stale.old.length > 0, 'until then the edges kept the old count (nothing purged them)')
    t.ok(stale.old.every((o) => o.cache === 'HIT' && o.age <= COUNTER_LIFETIME_S), `every old answer was a fresh hit at most ${COUNTER_LIFETIME_S} s old: never served past its CDN-Cache-Control lifetime`)
  })
})
