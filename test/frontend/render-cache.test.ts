import t from 'tap'
import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import { RenderCache, type RenderedPage } from '../../frontend/render-cache.js'

function page (body: string, tags: string[], at: number, ttlMs = 300_000): RenderedPage {
  return { status: 200, contentType: 'text/html', body: Buffer.from(body), etag: `"${body.length}"`, tags, cacheControl: 'public', renderedAt: at, ttlMs }
}

t.test('bounded by bytes, expires by the injected clock, drops by tag', async (t) => {
  let clock = 1000
  const cache = new RenderCache({ maxBytes: 10_000, now: () => clock })
  for (let i = 0; i < 20; i++) cache.set(`/p${i}`, page('x'.repeat(1000), [`news:${i}`], clock), cache.begin())
  t.ok(cache.bytes <= 10_000, `holds ${cache.bytes} bytes`)
  t.ok(cache.size < 20, 'least recently used pages were evicted')
  t.ok(await cache.get('/p19'))
  t.notOk(await cache.get('/p0'))
  t.notOk(cache.set('/huge', page('x'.repeat(20_000), ['a'], clock), cache.begin()), 'a page larger than the cache is not stored')

  t.ok(cache.set('/a', page('a', ['news:1', 'site'], clock, 5000), cache.begin()))
  t.ok(cache.set('/b', page('b', ['news:2', 'site'], clock), cache.begin()))
  clock += 4999
  t.ok(await cache.get('/a'))
  clock += 2
  t.notOk(await cache.get('/a'), 'expired after its ttl')
  t.equal(cache.invalidateKeys(['news:2']), 1)
  t.notOk(await cache.get('/b'))
  cache.set('/c', page('c', ['site'], clock), cache.begin())
  cache.clear()
  t.equal(cache.size, 0)
  t.throws(() => new RenderCache({ maxBytes: -1 }), /maxBytes must be an integer >= 0/)
  const off = new RenderCache({ maxBytes: 0 })
  t.notOk(off.enabled)
  t.notOk(off.set('/x', page('x', [], 0), off.begin()))
})

t.test('a render that raced an invalidation of its keys is not stored', async (t) => {
  const cache = new RenderCache({ maxBytes: 1_000_000 })
  const token = cache.begin()
  cache.invalidateKeys(['news:1'])
  t.notOk(cache.set('/news/a', page('old', ['news:1'], Date.now()), token), 'rendered before the purge arrived: dropped')
  t.ok(cache.set('/news/b', page('ok', ['news:2'], Date.now()), token), 'unrelated keys are fine')
  const t2 = cache.begin()
  cache.ban(/^\/news\/c/)
  t.notOk(cache.set('/news/c', page('x', ['news:3'], Date.now()), t2))
  const t3 = cache.begin()
  cache.clear()
  t.notOk(cache.set('/news/d', page('x', ['news:4'], Date.now()), t3), 'a gap invalidates renders in flight')
  cache.set('/news?page=2', page('x', ['news'], Date.now()), cache.begin())
  t.equal(cache.invalidatePath('/news'), 1, 'a URL purge takes every query variant')
})

t.test('Redis as a shared second level', { skip: process.env.REDIS_URL ? false : 'REDIS_URL not set' }, async (t) => {
  const prefix = `fc:test:${randomBytes(4).toString('hex')}:`
  const redis = new Redis(process.env.REDIS_URL!, { maxRetriesPerRequest: 1 })
  t.teardown(async () => {
    const keys = await redis.keys(`${prefix}*`)
    if (keys.length) await redis.del(...keys)
    redis.disconnect()
  })
  let clock = Date.now()
  const a = new RenderCache({ maxBytes: 1_000_000, redis, prefix, now: () => clock })
  const b = new RenderCache({ maxBytes: 1_000_000, redis, prefix, now: () => clock })
  a.set('/news/x', page('shared body', ['news:9', 'site'], clock), a.begin())
  let got: Awaited<ReturnType<RenderCache['get']>>
  for (let i = 0; i < 50 && !(got = await b.get('/news/x')); i++) await new Promise((resolve) => setTimeout(resolve, 10))
  t.equal(got!.level, 2, 'frontend b hits what frontend a rendered')
  t.equal(got!.page.body.toString(), 'shared body')
  t.same(got!.page.tags, ['news:9', 'site'])
  t.equal((await b.get('/news/x'))!.level, 1, 'then from its own memory')
  // A shared page the reader refuses (its keys wait on a write to replay here) is neither used nor copied.
  const wary = new RenderCache({ maxBytes: 1_000_000, redis, prefix, now: () => clock })
  t.equal(await wary.get('/news/x', () => false), undefined, 'refused shared page: a miss')
  t.equal(wary.getLocal('/news/x'), undefined, 'and not copied into level 1')
  // Another tier on the same Redis (another REDIS_PREFIX) never sees these pages.
  const otherTier = new RenderCache({ maxBytes: 1_000_000, redis, prefix: `${prefix}other-tier:`, now: () => clock })
  t.equal(await otherTier.get('/news/x'), undefined, 'another prefix: a miss')

  // Each frontend applies the bus event: both levels drop it.
  a.invalidateKeys(['news:9'])
  b.invalidateKeys(['news:9'])
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.notOk(await redis.getBuffer(`${prefix}/news/x`), 'gone from Redis')
  t.notOk(await b.get('/news/x'))

  // A late writer (rendered before the purge) cannot bring the old page back to a frontend that saw the purge.
  const c = new RenderCache({ maxBytes: 1_000_000, redis, prefix, now: () => clock })
  const renderedAt = clock
  clock += 10
  b.invalidateKeys(['news:10'])
  c.set('/news/y', page('old', ['news:10'], renderedAt), c.begin())
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.ok(await redis.getBuffer(`${prefix}/news/y`), 'in Redis')
  t.notOk(await b.get('/news/y'), 'but ignored by the frontend that saw the purge after it was rendered')

  // Redis down: misses, never errors.
  const dead = new Redis('redis://127.0.0.1:1', { maxRetriesPerRequest: 0, enableOfflineQueue: false, lazyConnect: true, retryStrategy: () => null })
  dead.on('error', () => {})
  const d = new RenderCache({ maxBytes: 1_000_000, redis: dead, prefix })
  t.equal(await d.get('/news/z'), undefined)
  t.ok(d.set('/news/z', page('z', ['news:11'], Date.now()), d.begin()))
  t.ok(await d.get('/news/z'), 'level 1 still works')
  dead.disconnect()
})
