/**
 * Issue 24: the purger against local servers implementing each provider's
 * documented purge API (test/helpers/cdn-contract.ts), on a real database
 * queue: batching to the provider's limit, pacing, 429 + Retry-After,
 * partial failures, idempotency (CloudFront's CallerReference), an outage
 * (the queue grows and reports its age, then drains), and the metrics that
 * show lag, queue, count and cost. Rounds are driven one by one
 * (`intakeOnce`, `deliverOnce`), so nothing waits on a poll interval.
 */
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { createTestDatabase, openDatabase, type TestDatabase } from '../helpers/database.js'
import http from 'node:http'
import { cloudflareServer, cloudfrontServer, fastlyServer } from '../helpers/cdn-contract.js'
import { buildApp } from '../../purger/app.js'
import { loadPurgerConfig } from '../../purger/config.js'
import { pathsForKeys } from '../../purger/key-paths.js'
import { databaseSlugs } from '../../purger/adapters/index.js'
import type { DatabaseHandle } from '../../common/db.js'
import { METRICS_TOKEN, scraper } from '../helpers/metrics.js'

const TOKEN = 'contract-token-0123456789'
let database: TestDatabase
let db: DatabaseHandle

t.before(async () => { database = await createTestDatabase(process.env.DATABASE_URL ? 'postgres' : 'embedded') })
t.teardown(() => database.close())
t.beforeEach(async (t) => {
  db ??= openDatabase(t.parent as Test, database)
  await db.pool.query('delete from cdn_purges')
  await db.pool.query('update outbox set cdn_queued_at = now() where cdn_queued_at is null')
})

/** Writes as the backend's publisher leaves them: committed, published to our caches a moment ago. */
async function writes (keysPerWrite: string[][]): Promise<void> {
  for (const keys of keysPerWrite) {
    await db.pool.query(`insert into outbox (keys, created_at, published_at) values ($1, now() - interval '2 seconds', now() - interval '1 second')`, [keys])
  }
}

async function purgerFor (t: Test, env: Record<string, string>): Promise<FastifyInstance> {
  const config = loadPurgerConfig({ LOG_LEVEL: 'silent', METRICS_TOKEN, DATABASE_URL: database.url, PURGER_RETRY_BASE_MS: '50', PURGER_RETRY_MAX_MS: '2000', PURGER_SETTLE_MS: '0', ...env })
  const app = await buildApp({ config, database: db, logger: false, autoStart: false, random: () => 0.5 })
  t.teardown(() => app.close())
  await app.ready()
  return app
}

async function jobs (): Promise<Array<{ status: string, keys: string[], attempts: number, last_error: string | null }>> {
  return (await db.pool.query('select status, keys, attempts, last_error from cdn_purges order by id')).rows
}

/** When the (first) job is due next, as a clock time. */
async function dueAfter (): Promise<number> {
  return (await db.pool.query<{ at: Date }>('select next_attempt_at as at from cdn_purges order by id limit 1')).rows[0].at.getTime()
}

async function metrics (app: FastifyInstance): Promise<string> {
  return (await app.inject({ url: '/-/metrics', headers: scraper })).body
}

const keysOf = (n: number, prefix = 'news') => Array.from({ length: n }, (_, i) => `${prefix}:${i + 1}`)

t.test('Cloudflare: tags batched to the per-request limit, requests paced, writes merged', async (t) => {
  const cf = await cloudflareServer({ zoneId: 'zone1', token: TOKEN, tagsPerRequest: 30 })
  t.teardown(cf.close)
  const app = await purgerFor(t, { CDN_PROVIDER: 'cloudflare', PURGER_CLOUDFLARE_API_URL: `${cf.url}/client/v4`, PURGER_CLOUDFLARE_ZONE_ID: 'zone1', PURGER_CLOUDFLARE_API_TOKEN: TOKEN, PURGER_CLOUDFLARE_REQUESTS_PER_SECOND: '10' })
  // 70 distinct keys over five writes, two of which share a page.
  await writes([keysOf(20), keysOf(40).slice(20), keysOf(70).slice(40), ['news:1', 'home'], ['home']])
  t.equal(await app.purger.intakeOnce(), 5)
  t.equal(await app.purger.deliverOnce('cloudflare'), 1, 'the five writes taken together are one job')
  t.same(cf.purges.map((p) => p.items.length), [30, 30, 11], '71 distinct tags in requests of at most 30')
  t.equal(new Set(cf.purges.flatMap((p) => p.items)).size, 71, 'every tag once')
  // Paced sends start 100 ms apart; arrival times jitter a little on a loaded machine.
  const span = cf.requests[2].at - cf.requests[0].at
  t.ok(span >= 150, `three requests at 10 a second span at least 200 ms of sending (${span} ms between arrivals)`)
  t.same((await jobs()).map((j) => j.status), ['done'])
  const text = await metrics(app)
  t.match(text, /flashcrowd_cdn_purge_lag_seconds_count\{[^}]*cdn="cloudflare"[^}]*\} 1/, 'a lag for the job, from its oldest commit')
  t.match(text, /flashcrowd_cdn_purge_requests_total\{[^}]*cdn="cloudflare"[^}]*outcome="ok"[^}]*\} 3/)
  t.match(text, /flashcrowd_cdn_purge_queue_jobs\{[^}]*cdn="cloudflare"[^}]*\} 0/)
})

t.test('Cloudflare: a 429 with Retry-After holds the rest until then; what went through is not sent again', async (t) => {
  const cf = await cloudflareServer({ zoneId: 'zone1', token: TOKEN, tagsPerRequest: 30, perSecond: 1 })
  t.teardown(cf.close)
  const app = await purgerFor(t, { CDN_PROVIDER: 'cloudflare', PURGER_CLOUDFLARE_API_URL: `${cf.url}/client/v4`, PURGER_CLOUDFLARE_ZONE_ID: 'zone1', PURGER_CLOUDFLARE_API_TOKEN: TOKEN, PURGER_CLOUDFLARE_REQUESTS_PER_SECOND: '0' })
  await writes([keysOf(45)])
  await app.purger.intakeOnce()
  await app.purger.deliverOnce('cloudflare')
  t.same(cf.requests.map((r) => r.status), [200, 429], 'the second request met the rate limit')
  const [job] = await jobs()
  t.equal(job.status, 'queued')
  t.same(job.keys, keysOf(45).slice(30), 'only the 15 keys not yet acknowledged are left (partial success kept)')
  t.match(job.last_error, /429/)
  const refused = cf.requests[1].at
  t.ok(await dueAfter() - refused >= 950, 'the job is due no sooner than Retry-After says')
  await new Promise((resolve) => setTimeout(resolve, 1100))
  t.equal(await app.purger.deliverOnce('cloudflare'), 1)
  t.ok(cf.requests[2].at - refused >= 1000, 'retried after the second Retry-After named')
  t.same(cf.purges.map((p) => p.items.length), [30, 15])
  t.equal((await jobs())[0].status, 'done')
  t.match(await metrics(app), /flashcrowd_cdn_purge_requests_total\{[^}]*outcome="rate-limited"[^}]*\} 1/)
})

t.test('Fastly: surrogate keys in one soft purge; refused credentials keep the purge queued with back-off', async (t) => {
  const fastly = await fastlyServer({ serviceId: 'svc1', token: TOKEN })
  t.teardown(fastly.close)
  const env = { CDN_PROVIDER: 'fastly', PURGER_FASTLY_API_URL: fastly.url, PURGER_FASTLY_SERVICE_ID: 'svc1', PURGER_FASTLY_REQUESTS_PER_SECOND: '0', PURGER_RETRY_BASE_MS: '400' }
  const wrong = await purgerFor(t, { ...env, PURGER_FASTLY_API_TOKEN: 'wrong-token-0123456789' })
  await writes([['news:7', 'news', 'home'], keysOf(300, 'tutorial')])
  await wrong.purger.intakeOnce()
  await wrong.purger.deliverOnce('fastly')
  t.same(fastly.requests.map((r) => r.status), [401])
  t.same((await jobs()).map((j) => [j.status, j.attempts]), [['queued', 1]], 'kept, to be tried again')
  t.ok(await dueAfter() - fastly.requests[0].at >= 250, 'due again after the back-off (400 ms, half of it random: 300 ms here)')

  const right = await purgerFor(t, { ...env, PURGER_FASTLY_API_TOKEN: TOKEN })
  // The back-off of a first failure: 400 ms, half of it random (here 300 ms).
  await new Promise((resolve) => setTimeout(resolve, 400))
  t.equal(await right.purger.deliverOnce('fastly'), 1)
  t.same(fastly.purges.map((p) => p.items.length), [256, 47], '303 keys in requests of at most 256')
  t.ok(fastly.purges.every((p) => p.soft), 'Fastly-Soft-Purge: 1')
  t.same((await jobs()).map((j) => j.status), ['done'])
})

t.test('CloudFront: keys become paths; a retry after a lost answer creates no second invalidation; paths and cost are counted', async (t) => {
  const cfr = await cloudfrontServer({ distributionId: 'E123', accessKeyId: 'AKIDTEST', secretAccessKey: 'secret/test+key' })
  t.teardown(cfr.close)
  const app = await purgerFor(t, { CDN_PROVIDER: 'cloudfront', PURGER_CLOUDFRONT_API_URL: cfr.url, PURGER_CLOUDFRONT_DISTRIBUTION_ID: 'E123', PURGER_AWS_ACCESS_KEY_ID: 'AKIDTEST', PURGER_AWS_SECRET_ACCESS_KEY: 'secret/test+key', PURGER_CLOUDFRONT_REQUESTS_PER_SECOND: '0' })
  const article = (await db.pool.query<{ id: string, slug: string }>('select id, slug from news order by id limit 1')).rows[0]
  await writes([[`news:${article.id}`], ['counter']])
  await app.purger.intakeOnce()
  cfr.script.push({ status: 0, lostAnswer: true })
  await app.purger.deliverOnce('cloudfront')
  t.equal(cfr.invalidations.size, 1, 'CloudFront made the invalidation; the purger never heard')
  t.equal((await jobs())[0].status, 'queued', 'so the job stays queued')
  await new Promise((resolve) => setTimeout(resolve, 100))
  await app.purger.deliverOnce('cloudfront')
  t.equal(cfr.invalidations.size, 1, 'the retry carried the same CallerReference: no second invalidation (and no second bill)')
  t.same((await jobs()).map((j) => j.status), ['done'])
  t.same([...cfr.invalidations.values()][0].sort(), [`/news/${article.slug}`, `/news/${article.slug}?*`, '/counter.json', '/'].sort(), 'the article (with its comment pages) and the counter')
  const text = await metrics(app)
  t.match(text, /flashcrowd_cdn_invalidation_paths_total\{[^}]*cdn="cloudfront"[^}]*\} 4/, 'paths counted (the lost answer\'s are not)')
  t.match(text, /flashcrowd_cdn_invalidation_cost_dollars_total\{[^}]*cdn="cloudfront"[^}]*\} 0.02/, 'and their list price')

  t.same(await pathsForKeys(['tutorial:999999'], databaseSlugs(db)), ['/*'], 'a row that is gone: everything, never less')
  t.same(await pathsForKeys(['site', 'news'], databaseSlugs(db)), ['/*'])
  t.same(await pathsForKeys(['certificate:abc', 'sitemap'], databaseSlugs(db)), ['/certificates/abc', '/sitemap.xml'])
})

t.test('a CDN outage: the queue grows and reports its age, then drains when the CDN is back', async (t) => {
  const cf = await cloudflareServer({ zoneId: 'zone1', token: TOKEN, tagsPerRequest: 30 })
  t.teardown(cf.close)
  const app = await purgerFor(t, { CDN_PROVIDER: 'cloudflare', PURGER_CLOUDFLARE_API_URL: `${cf.url}/client/v4`, PURGER_CLOUDFLARE_ZONE_ID: 'zone1', PURGER_CLOUDFLARE_API_TOKEN: TOKEN, PURGER_CLOUDFLARE_REQUESTS_PER_SECOND: '0', PURGER_RETRY_MAX_MS: '100' })
  cf.down = true
  for (let round = 1; round <= 3; round++) {
    await writes([[`news:${round}`]])
    await app.purger.intakeOnce()
    await new Promise((resolve) => setTimeout(resolve, 120))
    await app.purger.deliverOnce('cloudflare')
    const stats = await app.purgeQueue.stats(['cloudflare'])
    t.equal(stats.cloudflare.pending, round, `outage round ${round}: ${round} purges queued`)
    t.ok(stats.cloudflare.oldestAgeSeconds >= 2, 'the oldest one\'s age counts from its commit')
  }
  const health = (await app.inject({ url: '/-/health' })).json()
  t.equal(health.status, 'ok', 'the purger stays up: restarting it would not bring the CDN back')
  t.ok(health.cdns.cloudflare.unreachableSince, 'health says since when the CDN is unreachable')
  t.equal(health.queues.cloudflare.pending, 3)
  t.match(await metrics(app), /flashcrowd_cdn_purge_queue_age_seconds\{[^}]*cdn="cloudflare"[^}]*\} [2-9]/)
  t.match(await metrics(app), /flashcrowd_cdn_unreachable_seconds\{[^}]*cdn="cloudflare"[^}]*\} [0-9.]*[1-9]/)

  cf.down = false
  await new Promise((resolve) => setTimeout(resolve, 120))
  t.equal(await app.purger.deliverOnce('cloudflare'), 3, 'drained in one round')
  t.same(cf.purges.map((p) => p.items.sort()), [['news:1', 'news:2', 'news:3']], 'merged into one request')
  const after = await app.purgeQueue.stats(['cloudflare'])
  t.same(after.cloudflare, { pending: 0, oldestAgeSeconds: 0 })
  t.same((await app.inject({ url: '/-/health' })).json().cdns.cloudflare, {}, 'reachable again')
})

t.test('flashcrowd edges: one edge failing keeps the batch queued; all edges purge it again (idempotent)', async (t) => {
  const seen: Array<{ edge: number, keys: string, auth: string | undefined }> = []
  const servers = [0, 1].map((edge) => http.createServer((req, res) => {
    seen.push({ edge, keys: String(req.headers['surrogate-key']), auth: req.headers.authorization })
    const fail = edge === 1 && seen.filter((s) => s.edge === 1).length === 1
    res.writeHead(fail ? 503 : 200, { 'content-type': 'application/json' }).end('{}')
    req.resume()
  }))
  for (const s of servers) await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { for (const s of servers) { s.closeAllConnections(); s.close() } })
  const urls = servers.map((s) => `http://127.0.0.1:${(s.address() as { port: number }).port}`)
  const app = await purgerFor(t, { CDN_FLASHCROWD_URLS: urls.join(','), ADMIN_TOKEN: TOKEN })
  await writes([['news:5', 'home']])
  await app.purger.intakeOnce()
  await app.purger.deliverOnce('flashcrowd')
  t.equal((await jobs())[0].status, 'queued', 'edge 2 answered 503')
  await new Promise((resolve) => setTimeout(resolve, 100))
  await app.purger.deliverOnce('flashcrowd')
  t.equal((await jobs())[0].status, 'done')
  t.same(seen.map((s) => s.edge).sort(), [0, 0, 1, 1], 'both edges were sent the batch again')
  t.ok(seen.every((s) => s.keys === 'news:5 home' && s.auth === `Bearer ${TOKEN}`), 'PURGE with Surrogate-Key and the admin token')
})

t.test('a claim committed unseen (the connection died with it in flight, as in a failover) is given back at the next claim, not after its lease', async (t) => {
  const fastly = await fastlyServer({ serviceId: 'svc1', token: TOKEN })
  t.teardown(fastly.close)
  const app = await purgerFor(t, { CDN_PROVIDER: 'fastly', PURGER_FASTLY_API_URL: fastly.url, PURGER_FASTLY_SERVICE_ID: 'svc1', PURGER_FASTLY_API_TOKEN: TOKEN, PURGER_FASTLY_REQUESTS_PER_SECOND: '0', PURGER_LEASE_MS: '600000' })
  await writes([['news:7', 'home']])
  await app.purger.intakeOnce()
  // The claim reaches the database; its answer never reaches the purger.
  const pool = db.pool as unknown as { query: (...args: unknown[]) => Promise<unknown> }
  const query = pool.query
  pool.query = async (...args: unknown[]) => {
    const result = await query.apply(db.pool, args)
    if (typeof args[0] === 'string' && args[0].includes("set status = 'sending'")) {
      pool.query = query
      throw new Error('Connection terminated unexpectedly')
    }
    return result
  }
  t.teardown(() => { pool.query = query })
  await t.rejects(app.purger.deliverOnce('fastly'), /Connection terminated/)
  t.same((await jobs()).map((j) => j.status), ['sending'], 'the claim did commit: its job is leased for 10 minutes')
  t.equal(await app.purger.deliverOnce('fastly'), 1, 'the next round gives it back and purges it')
  t.same(fastly.purges.map((p) => p.items), [['news:7', 'home']])
  t.same((await jobs()).map((j) => j.status), ['done'])
})

t.test('configuration: each CDN needs its credentials; nothing to purge is an error', async (t) => {
  const base = { DATABASE_URL: 'postgres://x@127.0.0.1/x' }
  t.throws(() => loadPurgerConfig(base), { message: /nothing to purge/ })
  t.throws(() => loadPurgerConfig({ ...base, CDN_PROVIDER: 'cloudflare' }), { message: /PURGER_CLOUDFLARE_ZONE_ID: required/ })
  t.throws(() => loadPurgerConfig({ ...base, CDN_FLASHCROWD_URLS: 'http://127.0.0.1:1' }), { message: /ADMIN_TOKEN: required/ })
  t.throws(() => loadPurgerConfig({ ...base, CDN_PROVIDER: 'flashcrowd', ADMIN_TOKEN: TOKEN }), { message: /CDN_FLASHCROWD_URLS: required/ })
  try { loadPurgerConfig({ ...base, CDN_PROVIDER: 'flashcrowd', ADMIN_TOKEN: TOKEN }) } catch (err) {
    t.notMatch((err as Error).message, /nothing to purge/, 'a named CDN without its edges is told what it lacks, not that nothing was named')
  }
  t.ok(loadPurgerConfig({ ...base, CDN_PROVIDER: 'cloudfront', PURGER_CLOUDFRONT_DISTRIBUTION_ID: 'E1', PURGER_AWS_ACCESS_KEY_ID: 'a', PURGER_AWS_SECRET_ACCESS_KEY: 'b' }))
})
