import t from 'tap'
import { Redis } from 'ioredis'
import { randomUUID } from 'node:crypto'
import { createRateLimiter } from '../../backend/rate-limit.js'
import { createTestDatabase } from '../helpers/database.js'
import { startBackend } from '../helpers/backend.js'

t.test('fixed window per client with an injected clock', async (t) => {
  let now = 1_000_000
  const limiter = createRateLimiter({ max: 2, windowSeconds: 10, now: () => now })
  t.ok((await limiter.hit('a')).allowed)
  t.ok((await limiter.hit('a')).allowed)
  const third = await limiter.hit('a')
  t.notOk(third.allowed)
  t.equal(third.retryAfterSeconds, 10)
  t.ok((await limiter.hit('b')).allowed, 'another client has its own budget')
  now += 4000
  t.equal((await limiter.hit('a')).retryAfterSeconds, 6)
  now += 6000
  t.ok((await limiter.hit('a')).allowed, 'a new window')
  t.ok((await createRateLimiter({ max: 0, windowSeconds: 1 }).hit('a')).allowed, '0 disables')
})

t.test('shared through Redis; falls back to memory when Redis is away', { skip: !process.env.REDIS_URL && 'REDIS_URL not set' }, async (t) => {
  const redis = new Redis(process.env.REDIS_URL!)
  t.teardown(() => redis.disconnect())
  await redis.ping()
  const client = `test-${randomUUID()}`
  const a = createRateLimiter({ max: 3, windowSeconds: 30, redis })
  const b = createRateLimiter({ max: 3, windowSeconds: 30, redis })
  t.ok((await a.hit(client)).allowed)
  t.ok((await b.hit(client)).allowed)
  t.ok((await a.hit(client)).allowed)
  t.notOk((await b.hit(client)).allowed, 'two backends share one count')
  const dead = new Redis('redis://127.0.0.1:1', { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false })
  dead.on('error', () => {})
  const offline = createRateLimiter({ max: 1, windowSeconds: 30, redis: dead })
  t.ok((await offline.hit(client)).allowed)
  t.notOk((await offline.hit(client)).allowed, 'the local count still limits')
  dead.disconnect()
})

t.test('429 with Retry-After; the client address comes from trusted proxies only', async (t) => {
  const database = await createTestDatabase('embedded')
  t.teardown(database.close)
  const article = { news: 'nope', author: 'a', body: 'b' } // 404s still count: the limit protects the database
  await t.test('trusted frontend forwards distinct visitors', async (t) => {
    const be = await startBackend(t, database.url, { BACKEND_RATE_LIMIT_MAX: '2', BACKEND_RATE_LIMIT_WINDOW_S: '60' })
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
    const be = await startBackend(t, database.url, { BACKEND_RATE_LIMIT_MAX: '2', BACKEND_TRUSTED_PROXIES: 'none' })
    const as = (ip: string) => be.post('/v1/comments', article, { 'x-forwarded-for': ip })
    await as('198.51.100.1')
    await as('198.51.100.2')
    t.equal((await as('198.51.100.3')).status, 429, 'X-Forwarded-For ignored: one client')
  })
})

t.test('a Redis that hangs does not hold writes', { skip: !process.env.REDIS_URL && 'REDIS_URL not set' }, async (t) => {
  const { startTcpProxy } = await import('../helpers/tcp-proxy.js')
  const proxy = await startTcpProxy(Number(new URL(process.env.REDIS_URL!).port || 6379))
  t.teardown(proxy.close)
  const redis = new Redis(`redis://127.0.0.1:${proxy.port}`, { maxRetriesPerRequest: 1, enableOfflineQueue: false, commandTimeout: 100 })
  redis.on('error', () => {})
  t.teardown(() => redis.disconnect())
  await new Promise((resolve) => redis.once('ready', resolve))
  const limiter = createRateLimiter({ max: 1, windowSeconds: 30, redis })
  const client = `frozen-${randomUUID()}`
  t.ok((await limiter.hit(client)).allowed)
  proxy.freeze()
  const started = Date.now()
  const decision = await limiter.hit(client)
  t.ok(Date.now() - started < 2000, 'decided by the command timeout, not by TCP')
  t.ok(decision.allowed, 'the local count takes over (it has not seen this client yet)')
  t.notOk((await limiter.hit(client)).allowed, 'and still limits')
})
