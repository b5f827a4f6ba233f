/**
 * Issue 11, "Done means": read-your-writes and purges against a real
 * streaming replica that applies commits 500 ms, then 2 s, then 5 s behind
 * the primary, in the production shape: a cache node in front of two
 * frontends, the bus and the shared render cache on Redis, writes through a
 * backend, a crowd reading the same pages all along.
 *
 * - Every author sees their comment on the page they are redirected to.
 * - No page that showed a comment to anyone later shows it without.
 * - Every other visitor sees it within 6 s (at 500 ms and 2 s of lag).
 * - Authors never wait for the replica (issue 21): at every lag their landing
 *   page comes at once, from the primary while the replica is behind
 *   (landing p50/p95 per lag are printed).
 *
 * Needs DATABASE_URL and REDIS_URL, and a PostgreSQL that allows replication
 * from 127.0.0.1 (.ci/run sets that up); skipped with the reason otherwise.
 */
import t from 'tap'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import { Agent, request } from 'undici'
import { RedisStreamBus } from '../../common/bus.js'
import { buildApp as buildCache } from '../../cache/app.js'
import { loadCacheConfig } from '../../cache/config.js'
import { createTestDatabase, openDatabase } from '../helpers/database.js'
import { startStreamingReplica } from '../helpers/replica.js'
import { browserNonce, startBackend, startFrontend } from './helpers.js'

const skip = !process.env.DATABASE_URL || !process.env.REDIS_URL
  ? 'needs DATABASE_URL and REDIS_URL (a real PostgreSQL to replicate, Redis for the bus)'
  : false

/** One crowd read: which of this test's comments the page showed, and when. */
interface Read { page: number, started: number, ended: number, shown: Set<string>, how: string }
/** One author's write: when it was acknowledged (303), and what their landing page showed. */
interface Write { page: number, text: string, phase: string, acked: number, landed: boolean, view: string, landing: string, landingMs: number, postMs: number }

const PROBE = /probe-[a-z0-9]+-\d+/g
const VISIBLE_WITHIN_MS = 6000

t.test('authors see their writes and purges are never undone, at 500 ms, 2 s and 5 s of replica lag', { skip, timeout: 240_000 }, async (t) => {
  const replica = await startStreamingReplica(t, { applyDelayMs: 500 })
  if (typeof replica === 'string') { t.plan(0, `skipped: no streaming replica here (${replica})`); return }

  // 24 articles: each gets at most 9 of this test's comments, so every one stays on its first page (20 newest).
  const database = await createTestDatabase('postgres', { seed: { tutorials: 2, news: 24, comments: 24, events: 0, completions: 0 } })
  t.teardown(database.close)
  const slugs = (await openDatabase(t, database).db.selectFrom('news').select('slug').orderBy('id').execute()).map((r) => r.slug)
  await replica.caughtUp()

  const prefix = `fc-lag-${randomBytes(4).toString('hex')}`
  const redisUrl = process.env.REDIS_URL!
  const cleanup = new Redis(redisUrl)
  t.teardown(async () => {
    const keys = await cleanup.keys(`${prefix}*`)
    if (keys.length) await cleanup.del(...keys)
    cleanup.disconnect()
  })
  const bus = () => {
    const b = new RedisStreamBus({ url: redisUrl, prefix, blockMs: 500 })
    t.teardown(() => b.close())
    return b
  }

  // Every role shares this process's event loop: the backend must not read the
  // test's own load as overload and shed writes (BACKEND_MAX_EVENT_LOOP_DELAY_MS).
  const backend = await startBackend(t, database.url, bus(), { REDIS_PREFIX: prefix, BACKEND_MAX_EVENT_LOOP_DELAY_MS: '0' })
  const frontendUrls: string[] = []
  for (let i = 0; i < 2; i++) {
    const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1, enableOfflineQueue: false, commandTimeout: 500 })
    redis.on('error', () => {})
    await once(redis, 'ready')
    t.teardown(() => { redis.disconnect() })
    const fe = await startFrontend(t, database.url, {
      readUrl: replica.urlFor(database.url),
      backendUrls: [backend.url],
      bus: bus(),
      redis,
      env: { REDIS_PREFIX: prefix, FRONTEND_RYW_WAIT_MS: '2000', FRONTEND_BACKEND_TIMEOUT_MS: '10000' }
    })
    await fe.app.listen({ host: '127.0.0.1', port: 0 })
    frontendUrls.push(`http://127.0.0.1:${(fe.app.server.address() as AddressInfo).port}`)
  }
  const cacheBus = bus()
  const cache = buildCache({ config: loadCacheConfig({ UPSTREAMS: frontendUrls.join(','), CACHE_PROBE_INTERVAL_MS: '0', LOG_LEVEL: 'silent', REDIS_PREFIX: prefix }), bus: cacheBus, defaultMetrics: false })
  await cache.listen(0, '127.0.0.1')
  t.teardown(() => cache.close())
  const base = cache.url()

  const agent = new Agent({ connections: 64, keepAliveTimeout: 5000 })
  t.teardown(() => agent.close())
  const get = async (path: string) => {
    const res = await request(base + path, { dispatcher: agent, headersTimeout: 20_000, bodyTimeout: 20_000 })
    return { status: res.statusCode, headers: res.headers, body: await res.body.text() }
  }

  // Warm every page through the node: from here on the crowd mostly hits the cache.
  for (const slug of slugs) await get(`/news/${slug}`)

  // The crowd: readers going round the pages until told to stop.
  const reads: Read[] = []
  let crowdRunning = true
  const reader = async (offset: number) => {
    for (let n = offset; crowdRunning; n++) {
      const page = n % slugs.length
      const started = Date.now()
      const res = await get(`/news/${slugs[page]}`)
      if (res.status !== 200) continue
      const read: Read = { page, started, ended: Date.now(), shown: new Set(res.body.match(PROBE) ?? []), how: `${String(res.headers['x-cache'])}/${String(res.headers['x-render-cache'])}/${String(res.headers['cache-control']).slice(0, 8)}/age=${String(res.headers.age)}` }
      reads.push(read)
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
  }
  const crowd = Array.from({ length: 6 }, (_, i) => reader(i * 4))

  // The authors: each posts one comment through the node and follows the 303.
  const writes: Write[] = []
  let next = 0
  let written = 0
  const author = async (phase: string, count: number) => {
    for (;;) {
      const n = next++
      if (n >= count) return
      const page = written++ % slugs.length
      const text = `probe-${phase}-${n}`
      const sent = Date.now()
      const posted = await request(`${base}/news/${slugs[page]}/comments`, {
        method: 'POST',
        dispatcher: agent,
        headers: { 'content-type': 'application/x-www-form-urlencoded', origin: base },
        // Each author's own form instance (form-nonce.js fills this in a browser).
        body: new URLSearchParams({ author: `Author ${n}`, body: text, form_nonce: browserNonce() }).toString()
      })
      const answer = await posted.body.text()
      const location = posted.headers.location
      if (posted.statusCode !== 303 || typeof location !== 'string') { t.fail(`${text}: the post was answered ${posted.statusCode} (${String(posted.headers['cache-status'])}): ${answer.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').slice(0, 300)}`); continue }
      const write: Write = { page, text, phase, acked: Date.now(), landed: false, view: '', landing: '', landingMs: 0, postMs: Date.now() - sent }
      writes.push(write)
      const landing = await get(location.split('#')[0])
      write.landingMs = Date.now() - write.acked
      write.landed = landing.status === 200 && landing.body.includes(text)
      write.view = String(landing.headers['x-read-your-writes'])
      write.landing = `${landing.status} ${String(landing.headers['x-cache'])} ${String(landing.headers['cache-status'])}`
    }
  }
  const runAuthors = async (phase: string, count: number, concurrency: number) => {
    next = 0
    const started = Date.now()
    await Promise.all(Array.from({ length: concurrency }, () => author(phase, count)))
    t.comment(`${phase}: ${count} authors in ${Date.now() - started} ms`)
  }
  /**
   * The crowd keeps reading until 6 s after the phase's last write was
   * acknowledged, so that "seen within 6 s" is checked by reads made after
   * that mark (authors no longer wait for the replica, so nothing else keeps
   * the crowd reading that long).
   */
  const settle = async (phase: string) => {
    const last = Math.max(...writes.filter((w) => w.phase === phase).map((w) => w.acked))
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, last + VISIBLE_WITHIN_MS + 500 - Date.now())))
  }

  await runAuthors('lag500ms', 60, 20)
  await replica.setApplyDelay(2000)
  await runAuthors('lag2s', 60, 20)
  await settle('lag500ms')
  await settle('lag2s')
  await replica.setApplyDelay(5000)
  await runAuthors('lag5s', 60, 20)
  crowdRunning = false
  await Promise.all(crowd)

  // Every author saw their comment where they landed.
  const missed = writes.filter((w) => !w.landed)
  t.equal(writes.length, 180, 'every post was acknowledged')
  t.same(missed.map((w) => `${w.text} (${w.view}; ${w.landing})`), [], 'every author sees their write on the page they land on')
  const views = (phase: string) => writes.filter((w) => w.phase === phase).reduce<Record<string, number>>((acc, w) => { acc[w.view] = (acc[w.view] ?? 0) + 1; return acc }, {})
  t.comment(`author views: 500 ms ${JSON.stringify(views('lag500ms'))}, 2 s ${JSON.stringify(views('lag2s'))}, 5 s ${JSON.stringify(views('lag5s'))}`)
  t.same(Object.keys(views('lag5s')), ['primary'], 'at 5 s of lag the authors\' pages came from the primary')

  // Authors never wait for the replica (issue 21): the landing page after the 303 is read from
  // the primary at once when the replica is behind. Timings are reported, not asserted to the
  // millisecond (a shared machine); what is asserted is that nobody waited out the lag.
  const percentiles = (values: number[]) => {
    const ms = [...values].sort((a, b) => a - b)
    return { p50: ms[Math.floor(ms.length * 0.5)], p95: ms[Math.min(ms.length - 1, Math.floor(ms.length * 0.95))], max: ms.at(-1)! }
  }
  for (const [phase, lag] of [['lag500ms', 500], ['lag2s', 2000], ['lag5s', 5000]] as const) {
    const l = percentiles(writes.filter((w) => w.phase === phase).map((w) => w.landingMs))
    // The post itself (cache → frontend → backend → commit → 303), same run: what this machine gives now.
    const p = percentiles(writes.filter((w) => w.phase === phase).map((w) => w.postMs))
    t.comment(`landing after a post at ${lag} ms of lag: p50 ${l.p50} ms, p95 ${l.p95} ms, max ${l.max} ms (the post itself: p50 ${p.p50} ms, p95 ${p.p95} ms)`)
    // Waiting for the replica would put most landings at the lag (the old p50 was 2.0 s at 2 s and 5 s).
    if (lag >= 2000) t.ok(l.p50 < lag * 0.75, `at ${lag} ms of lag the authors did not wait for the replica (landing p50 ${l.p50} ms)`)
  }
  t.same(writes.filter((w) => w.view === 'timeout').map((w) => w.text), [], 'no author waited out FRONTEND_RYW_WAIT_MS')

  // No page that showed a comment later lost it.
  const regressions: string[] = []
  const byPage = new Map<number, Read[]>()
  for (const r of reads) byPage.set(r.page, [...(byPage.get(r.page) ?? []), r])
  for (const [page, list] of byPage) {
    const firstSeen = new Map<string, number>()
    for (const r of [...list].sort((a, b) => a.ended - b.ended)) for (const text of r.shown) if (!firstSeen.has(text)) firstSeen.set(text, r.ended)
    for (const r of list) {
      for (const [text, seen] of firstSeen) {
        if (r.started > seen && !r.shown.has(text)) regressions.push(`/news/${slugs[page]} lost ${text} ${r.started - seen} ms after it was shown`)
      }
    }
  }
  t.same(regressions.slice(0, 10), [], `no page that showed a write later loses it (${reads.length} crowd reads)`)

  // Everybody else sees each comment within 6 s (at 500 ms and 2 s of lag):
  // every crowd read that started 6 s or more after the author's 303 shows it.
  const late: string[] = []
  const delays: number[] = []
  let checkedAt6s = 0
  const lagged = writes.filter((x) => x.phase !== 'lag5s')
  for (const w of lagged) {
    const after = reads.filter((r) => r.page === w.page && r.started >= w.acked)
    const first = after.filter((r) => r.shown.has(w.text)).sort((a, b) => a.started - b.started)[0]
    if (first) delays.push(first.ended - w.acked)
    else late.push(`${w.text}: never seen by the crowd`)
    if (after.some((r) => r.started >= w.acked + VISIBLE_WITHIN_MS)) checkedAt6s++
    for (const r of after) {
      if (r.started >= w.acked + VISIBLE_WITHIN_MS && !r.shown.has(w.text)) late.push(`${w.text}: missing from a read ${r.started - w.acked} ms after its 303 (${r.how})`)
    }
  }
  delays.sort((a, b) => a - b)
  // (How soon the crowd first saw it also depends on how often each page was read.)
  t.comment(`crowd first saw a comment after its 303: median ${delays[Math.floor(delays.length / 2)]} ms, max ${delays.at(-1)} ms`)
  t.ok(checkedAt6s >= lagged.length / 2, `the crowd read ${checkedAt6s} of ${lagged.length} pages again 6 s or more after their write`)
  t.same(late.slice(0, 10), [], 'every other visitor sees each write within 6 s')
})
