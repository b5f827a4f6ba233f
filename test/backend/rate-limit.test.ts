/**
 * Write limits: a per-address bucket (burst, then a steady rate) and a
 * per-(address, content) limit that counts each Idempotency-Key once, with an
 * injected clock; shared through Redis, in memory when Redis is away. Then the
 * backend app itself: a school behind one address against an abuser (issue 11).
 */
import t from 'tap'
import { Redis } from 'ioredis'
import { randomUUID } from 'node:crypto'
import { createRateLimiter, createSameContentLimiter } from '../../backend/rate-limit.js'
import { readCounter, PARTICIPANTS } from '../../common/counters.js'
import { createTestDatabase, eachDatabase, openDatabase } from '../helpers/database.js'
import { startBackend } from '../helpers/backend.js'

// 1,500 writes per database kind: more than the suite's default 120 s per file on a busy machine.
t.setTimeout(300_000)

t.test('per address: a burst at once, then the refill rate', async (t) => {
  let now = 1_000_000
  // 60 a minute = one a second; five at once.
  const limiter = createRateLimiter({ max: 60, windowSeconds: 60, burst: 5, now: () => now })
  for (let i = 0; i < 5; i++) t.ok((await limiter.hit('a')).allowed, `write ${i + 1} of the burst`)
  const sixth = await limiter.hit('a')
  t.notOk(sixth.allowed, 'the sixth at the same moment is refused')
  t.equal(sixth.retryAfterSeconds, 1, 'until one write has refilled')
  t.ok((await limiter.hit('b')).allowed, 'another address has its own bucket')
  now += 1000
  t.ok((await limiter.hit('a')).allowed, 'one second later: one more')
  t.notOk((await limiter.hit('a')).allowed, 'but only one')
  now += 60_000
  for (let i = 0; i < 5; i++) t.ok((await limiter.hit('a')).allowed)
  t.notOk((await limiter.hit('a')).allowed, 'an idle minute refills the bucket to its size, not beyond')
  t.ok((await createRateLimiter({ max: 0, windowSeconds: 1 }).hit('a')).allowed, '0 disables')
  t.throws(() => createRateLimiter({ max: 10, windowSeconds: 60, burst: 0 }), { message: /burst must be a positive integer/ })
})

t.test('per address: the remembered addresses are bounded', async (t) => {
  const now = 5_000_000
  const limiter = createRateLimiter({ max: 1, windowSeconds: 60, burst: 1, now: () => now, maxClients: 100 })
  for (let i = 0; i < 1000; i++) await limiter.hit(`flood-${i}`)
  // The bound holds memory; the first hundred addresses are still remembered (and limited).
  t.notOk((await limiter.hit('flood-0')).allowed)
})

t.test('identical content: each Idempotency-Key counts once per window', async (t) => {
  let now = 60_000 * 1000 // a window boundary
  const limiter = createSameContentLimiter({ max: 3, windowSeconds: 60, now: () => now })
  for (const key of ['k1', 'k2', 'k3']) t.ok((await limiter.hit('school', 'anna', key)).allowed, `${key}: a new submission`)
  t.ok((await limiter.hit('school', 'anna', 'k2')).allowed, 'a replay of a counted key (double click, retry) is free')
  now += 20_000
  const fourth = await limiter.hit('school', 'anna', 'k4')
  t.notOk(fourth.allowed, 'a fourth copy is refused')
  t.equal(fourth.retryAfterSeconds, 40, 'until the window ends')
  t.ok((await limiter.hit('school', 'ben', 'k5')).allowed, 'other content from the same address is not limited')
  t.ok((await limiter.hit('elsewhere', 'anna', 'k6')).allowed, 'the same content from another address is not limited')
  t.notOk((await limiter.hit('school', 'anna', undefined)).allowed, 'a write without a key counts as new')
  now += 40_000
  t.ok((await limiter.hit('school', 'anna', 'k4')).allowed, 'a new window')
  const unkeyed = createSameContentLimiter({ max: 2, windowSeconds: 60, now: () => now })
  t.ok((await unkeyed.hit('x', 'y', undefined)).allowed)
  t.ok((await unkeyed.hit('x', 'y', undefined)).allowed)
  t.notOk((await unkeyed.hit('x', 'y', undefined)).allowed, 'writes without a key each count')
  t.ok((await createSameContentLimiter({ max: 0, windowSeconds: 1 }).hit('a', 'b', undefined)).allowed, '0 disables')
})

t.test('shared through Redis; falls back to memory when Redis is away', { skip: !process.env.REDIS_URL && 'REDIS_URL not set' }, async (t) => {
  const redis = new Redis(process.env.REDIS_URL!)
  t.teardown(() => redis.disconnect())
  await redis.ping()
  const prefix = `fc-test-${randomUUID()}`
  t.teardown(async () => {
    const keys = await redis.keys(`${prefix}:*`)
    if (keys.length) await redis.del(...keys)
  })
  let now = 7_200_000
  const client = 'school'
  const a = createRateLimiter({ max: 60, windowSeconds: 60, burst: 3, redis, prefix, now: () => now })
  const b = createRateLimiter({ max: 60, windowSeconds: 60, burst: 3, redis, prefix, now: () => now })
  t.ok((await a.hit(client)).allowed)
  t.ok((await b.hit(client)).allowed)
  t.ok((await a.hit(client)).allowed)
  const refused = await b.hit(client)
  t.notOk(refused.allowed, 'two backends share one bucket')
  t.equal(refused.retryAfterSeconds, 1)
  now += 1000
  t.ok((await b.hit(client)).allowed, 'refilled at the shared rate')
  t.ok(await redis.pttl(`${prefix}:rl:addr:${client}`) > 0, 'the bucket expires in Redis')

  const sa = createSameContentLimiter({ max: 2, windowSeconds: 60, redis, prefix, now: () => now })
  const sb = createSameContentLimiter({ max: 2, windowSeconds: 60, redis, prefix, now: () => now })
  t.ok((await sa.hit(client, 'fp', 'k1')).allowed)
  t.ok((await sb.hit(client, 'fp', 'k2')).allowed)
  t.ok((await sb.hit(client, 'fp', 'k1')).allowed, 'a replay through another backend is free')
  t.notOk((await sa.hit(client, 'fp', 'k3')).allowed, 'two backends share one count of identical writes')

  const dead = new Redis('redis://127.0.0.1:1', { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false })
  dead.on('error', () => {})
  t.teardown(() => dead.disconnect())
  const offline = createRateLimiter({ max: 60, windowSeconds: 60, burst: 1, redis: dead, now: () => now })
  t.ok((await offline.hit(client)).allowed)
  t.notOk((await offline.hit(client)).allowed, 'the local bucket still limits')
  const offlineSame = createSameContentLimiter({ max: 1, windowSeconds: 60, redis: dead, now: () => now })
  t.ok((await offlineSame.hit(client, 'fp', 'k1')).allowed)
  t.notOk((await offlineSame.hit(client, 'fp', 'k2')).allowed, 'the local count of identical writes still limits')
})

t.test('429 with Retry-After; the client address comes from trusted proxies only', async (t) => {
  const database = await createTestDatabase('embedded')
  t.teardown(database.close)
  const article = { news: 'nope', author: 'a', body: 'b' } // 404s still count: the limit protects the database
  await t.test('trusted frontend forwards distinct visitors', async (t) => {
    const be = await startBackend(t, database.url, { BACKEND_RATE_LIMIT_MAX: '2', BACKEND_RATE_LIMIT_BURST: '2', BACKEND_RATE_LIMIT_WINDOW_S: '60' })
    const as = (ip: string) => be.post('/v1/comments', article, { 'x-forwarded-for': ip })
    t.equal((await as('203.0.113.1')).status, 404)
    t.equal((await as('203.0.113.1')).status, 404)
    const limited = await as('203.0.113.1')
    t.equal(limited.status, 429)
    t.equal(limited.json.error, 'rate_limited')
    t.ok(Number(limited.headers.get('retry-after')) >= 1)
    t.equal((await as('203.0.113.2')).status, 404, 'another visitor is not limited')
    const health = await fetch(`${be.url}/-/health`)
    t.equal(health.status, 200, 'reads are not limited')
  })
  await t.test('an untrusted sender cannot pick its address', async (t) => {
    const be = await startBackend(t, database.url, { BACKEND_RATE_LIMIT_MAX: '2', BACKEND_RATE_LIMIT_BURST: '2', BACKEND_TRUSTED_PROXIES: 'none' })
    const as = (ip: string) => be.post('/v1/comments', article, { 'x-forwarded-for': ip })
    await as('198.51.100.1')
    await as('198.51.100.2')
    t.equal((await as('198.51.100.3')).status, 429, 'X-Forwarded-For ignored: one client')
  })
})

/** Runs `fn` over `items` with at most `limit` at a time. */
async function pool<T, R> (items: T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length)
  let next = 0
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++
      out[i] = await fn(items[i], i)
    }
  }))
  return out
}

eachDatabase(t, 'issue 11: a school of 500 behind one address gets 500 certificates; 1,000 identical comments from one client are stopped', async (t, database) => {
  // Fake time: every request of the school at one instant (the worst case), the abuser's spread over one minute.
  let now = Math.ceil(Date.now() / 60_000) * 60_000
  // Default limits: what a production backend does.
  const be = await startBackend(t, database.url, { BACKEND_RATE_LIMIT_MAX: '', BACKEND_RATE_LIMIT_BURST: '', BACKEND_RATE_LIMIT_SAME_MAX: '', BACKEND_MAX_EVENT_LOOP_DELAY_MS: '0' }, { now: () => now })
  const rw = openDatabase(t, database)
  const tutorial = await rw.db.selectFrom('tutorials').select(['id', 'slug']).executeTakeFirstOrThrow()
  const article = await rw.db.selectFrom('news').select(['id', 'slug']).executeTakeFirstOrThrow()
  const before = await readCounter(rw.db, PARTICIPANTS)

  const school = '198.51.100.7'
  const pupils = Array.from({ length: 500 }, (_, i) => ({ tutorial: tutorial.slug, name: `Pupil ${i + 1}`, country: 'DE' }))
  // Thirty of them are called Anna: thirty certificates, not one.
  for (let i = 0; i < 30; i++) pupils[i].name = 'Anna'
  const answers = await pool(pupils, 20, (body, i) => be.post('/v1/completions', body, { 'x-forwarded-for': school, 'idempotency-key': `school-${i}` }))
  const statuses = new Map<number, number>()
  for (const a of answers) statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1)
  t.same(Object.fromEntries(statuses), { 201: 500 }, 'all 500 pupils got a certificate, none a 429')
  t.equal(new Set(answers.map((a) => a.json.certificateUrl)).size, 500, '500 distinct certificates')
  const annas = await rw.db.selectFrom('completions').select((eb) => eb.fn.countAll<string>().as('n')).where('tutorial_id', '=', tutorial.id).where('name', '=', 'Anna').executeTakeFirstOrThrow()
  t.equal(Number(annas.n), 30, 'thirty Annas')
  t.equal(await readCounter(rw.db, PARTICIPANTS), before + 500, 'the counter moved by 500')

  // One client, one text, a thousand times in a minute, each under a new key.
  const abuser = '203.0.113.66'
  const spam = { news: article.slug, author: 'Bot', body: 'Buy cheap followers at example.com!!!' }
  const spamAnswers = await pool(Array.from({ length: 1000 }, (_, i) => i), 10, async (i) => {
    if (i > 0) now += 60 // 1,000 in 60 seconds, all in one window
    const res = await be.post('/v1/comments', { ...spam, author: `Bot ${i % 7}` }, { 'x-forwarded-for': abuser, 'idempotency-key': `spam-${i}` })
    return { status: res.status, retryAfter: res.headers.get('retry-after') }
  })
  const accepted = spamAnswers.filter((a) => a.status === 201).length
  const refused = spamAnswers.filter((a) => a.status === 429)
  t.equal(accepted, 50, 'the identical-content limit let 50 through (BACKEND_RATE_LIMIT_SAME_MAX)')
  t.equal(refused.length, 950, 'and refused the other 950')
  t.ok(refused.every((a) => Number(a.retryAfter) >= 1 && Number(a.retryAfter) <= 60), 'every refusal carries Retry-After')
  const stored = await rw.db.selectFrom('comments').select((eb) => eb.fn.countAll<string>().as('n')).where('news_id', '=', article.id).where('body', '=', spam.body).executeTakeFirstOrThrow()
  t.equal(Number(stored.n), 50, 'nothing refused was written')

  // The limit is about the copies, not the address: the same client may still say something else,
  // and another visitor may post the same words.
  t.equal((await be.post('/v1/comments', { news: article.slug, author: 'Bot', body: 'A different comment' }, { 'x-forwarded-for': abuser, 'idempotency-key': 'other-text' })).status, 201)
  t.equal((await be.post('/v1/comments', spam, { 'x-forwarded-for': '203.0.113.67', 'idempotency-key': 'other-visitor' })).status, 201)
  // Case and spacing do not make a copy new.
  const disguised = await be.post('/v1/comments', { ...spam, body: '  BUY cheap   followers at example.com!!! ' }, { 'x-forwarded-for': abuser, 'idempotency-key': 'disguised' })
  t.equal(disguised.status, 429)
  t.equal(disguised.json.error, 'rate_limited')
})

t.test('a Redis that hangs does not hold writes', { skip: !process.env.REDIS_URL && 'REDIS_URL not set' }, async (t) => {
  const { startTcpProxy } = await import('../helpers/tcp-proxy.js')
  const proxy = await startTcpProxy(Number(new URL(process.env.REDIS_URL!).port || 6379))
  t.teardown(proxy.close)
  const redis = new Redis(`redis://127.0.0.1:${proxy.port}`, { maxRetriesPerRequest: 1, enableOfflineQueue: false, commandTimeout: 100 })
  redis.on('error', () => {})
  t.teardown(() => redis.disconnect())
  await new Promise((resolve) => redis.once('ready', resolve))
  const limiter = createRateLimiter({ max: 1, windowSeconds: 30, redis, prefix: `fc-test-${randomUUID()}` })
  const client = `frozen-${randomUUID()}`
  t.ok((await limiter.hit(client)).allowed)
  proxy.freeze()
  const started = Date.now()
  const decision = await limiter.hit(client)
  t.ok(Date.now() - started < 2000, 'decided by the command timeout, not by TCP')
  t.ok(decision.allowed, 'the local count takes over (it has not seen this client yet)')
  t.notOk((await limiter.hit(client)).allowed, 'and still limits')
})
