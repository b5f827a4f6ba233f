import t from 'tap'
import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import type * as Tap from 'tap'
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

const redisUrl = process.env.REDIS_URL
const needsRedis = { skip: redisUrl ? false : 'REDIS_URL not set' }

/** A private namespace on the real Redis, emptied at teardown. */
function redisFor (t: Tap.Test): { redis: Redis, prefix: string } {
  const prefix = `fc:test:${randomBytes(4).toString('hex')}:`
  const redis = new Redis(redisUrl!, { maxRetriesPerRequest: 1 })
  t.teardown(async () => {
    const keys = await redis.keys(`${prefix}*`)
    if (keys.length) await redis.del(...keys)
    redis.disconnect()
  })
  return { redis, prefix }
}

/**
 * Round trips on the connection the caches share: every command issued before
 * (and every command issued in answer to their replies) has been executed.
 */
async function settle (redis: Redis): Promise<void> {
  for (let i = 0; i < 3; i++) await redis.ping()
}

/** Waits until the fire-and-forget level-2 writes of `cache` have reached Redis (a bounded poll on a condition). */
async function stored (redis: Redis, cache: RenderCache, key: string, t: Tap.Test): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await redis.exists(cache.sharedKey(key))) return
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  t.fail(`${key} never reached Redis`)
}

t.test('Redis as a shared second level', needsRedis, async (t) => {
  const { redis, prefix } = redisFor(t)
  let clock = Date.now()
  const a = new RenderCache({ maxBytes: 1_000_000, redis, prefix, now: () => clock })
  const b = new RenderCache({ maxBytes: 1_000_000, redis, prefix, now: () => clock })
  a.set('/news/x', page('shared body', ['news:9', 'site'], clock), a.begin())
  await stored(redis, a, '/news/x', t)
  const got = await b.get('/news/x')
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

  // A purge is one INCR of the tag's generation: the page is dead for every frontend, the first read drops it.
  a.invalidateKeys(['news:9'])
  const fresh = new RenderCache({ maxBytes: 1_000_000, redis, prefix, now: () => clock })
  t.equal(await fresh.get('/news/x'), undefined, 'a frontend that never saw the event misses too')
  t.equal(await redis.exists(a.sharedKey('/news/x')), 0, 'the dead page was dropped from Redis')
  t.equal(await redis.get(a.generationKey('news:9')), '1')
  b.invalidateKeys(['news:9'])
  t.notOk(await b.get('/news/x'))

  // A late writer (rendered before the purge) cannot bring the old page back to a frontend that saw the purge.
  const c = new RenderCache({ maxBytes: 1_000_000, redis, prefix, now: () => clock })
  const renderedAt = clock
  clock += 10
  b.invalidateKeys(['news:10'])
  c.set('/news/y', page('old', ['news:10'], renderedAt), c.begin())
  await stored(redis, c, '/news/y', t)
  t.notOk(await b.get('/news/y'), 'ignored by the frontend that saw the purge after it was rendered')

  // Redis down: misses, never errors.
  const dead = new Redis('redis://127.0.0.1:1', { maxRetriesPerRequest: 0, enableOfflineQueue: false, lazyConnect: true, retryStrategy: () => null })
  dead.on('error', () => {})
  const d = new RenderCache({ maxBytes: 1_000_000, redis: dead, prefix })
  t.equal(await d.get('/news/z'), undefined)
  t.ok(d.set('/news/z', page('z', ['news:11'], Date.now()), d.begin()))
  t.ok(await d.get('/news/z'), 'level 1 still works')
  d.invalidateKeys(['news:11'])
  dead.disconnect()
})

// Issue 11, finding 6: every rendered key went into `tag:site`, a set that
// every render refreshed and nothing purged; every made-up /news/<x> 404
// stayed in it (and in Redis) for good.
t.test('level 2 holds no set that grows: every key expires, 404s are not shared', needsRedis, async (t) => {
  const { redis, prefix } = redisFor(t)
  const cache = new RenderCache({ maxBytes: 1_000_000, redis, prefix, sharedMaxTtlMs: 120_000 })
  const now = Date.now()
  for (let i = 0; i < 20; i++) cache.set(`/news/a-${i}`, page(`article ${i}`, [`news:${i}`, 'site'], now), cache.begin())
  for (let i = 0; i < 50; i++) cache.set(`/news/made-up-${i}`, { ...page('not found', ['news', 'site'], now, 30_000), status: 404 }, cache.begin())
  cache.set('/certificates/c1', page('certificate', ['certificate:c1', 'site'], now, 86_400_000), cache.begin())
  await stored(redis, cache, '/certificates/c1', t)
  await stored(redis, cache, '/news/a-19', t)
  cache.invalidateKeys(['news:3', 'site'])
  await redis.ping() // after the pipeline above on the same connection
  const keys = await redis.keys(`${prefix}*`)
  t.equal(keys.filter((k) => k.includes('made-up')).length, 0, 'no 404 in Redis')
  t.equal(keys.filter((k) => k.startsWith(`${prefix}page:`)).length, 21, 'one key per shared page')
  t.equal(keys.filter((k) => k.startsWith(`${prefix}gen:`)).length, 2, 'and one counter per purged tag, nothing else')
  for (const k of keys) {
    t.not(await redis.type(k), 'set', `${k} is no set`)
    const ttl = await redis.pttl(k)
    t.ok(ttl > 0 && ttl <= 120_000 + 60_000, `${k} expires (${ttl} ms)`)
  }
  t.ok(await redis.pttl(cache.sharedKey('/certificates/c1')) <= 120_000, 'a page lives in Redis at most sharedMaxTtlMs, whatever its own lifetime')
  t.ok(await redis.pttl(cache.sharedKey('/news/a-1')) <= 300_000)
  t.notOk(await new RenderCache({ maxBytes: 1_000_000, redis, prefix }).get('/news/a-1'), 'purging `site` drops every shared page at once')
})

// Issue 11, finding 6: a purge read a tag's members, then deleted them; a page
// stored in between lost its membership and outlived every later purge.
t.test('a purge cannot miss a page stored while it runs (generations, not member sets)', needsRedis, async (t) => {
  const { redis, prefix } = redisFor(t)
  for (let round = 0; round < 20; round++) {
    const tag = `news:${round}`
    const key = `/news/r${round}`
    // Frontend a rendered the old page before the write; b applies the write's event first.
    const a = new RenderCache({ maxBytes: 1_000_000, redis, prefix })
    const b = new RenderCache({ maxBytes: 1_000_000, redis, prefix })
    const token = a.begin()
    if (round % 2 === 0) {
      b.invalidateKeys([tag]) // the purge is on the wire…
      a.set(key, page('old', [tag], Date.now()), token) // …when a stores its old render
    } else {
      a.set(key, page('old', [tag], Date.now()), token)
      await settle(redis)
      b.invalidateKeys([tag])
    }
    await settle(redis) // b's purge is over…
    a.invalidateKeys([tag]) // …when a applies the same event
    await settle(redis)
    const reader = new RenderCache({ maxBytes: 1_000_000, redis, prefix })
    t.equal(await reader.get(key), undefined, `round ${round}: the old page is gone for everyone`)
  }
})

// Issue 11, finding 7 (frontend side): a URL event became a regex ban over
// this frontend's memory only; now it is an exact purge of the path's own tag,
// in both levels.
t.test('a URL purge drops that path and its query variants, in both levels', needsRedis, async (t) => {
  const { redis, prefix } = redisFor(t)
  const a = new RenderCache({ maxBytes: 1_000_000, redis, prefix })
  for (const key of ['/news', '/news?page=2', '/news/abc', '/newsletter']) a.set(key, page(key, ['news'], Date.now()), a.begin())
  await stored(redis, a, '/newsletter', t)
  t.equal(a.invalidatePath('/news'), 2, 'the path and its query variant')
  t.ok(a.getLocal('/news/abc') && a.getLocal('/newsletter'), 'other paths stay')
  await redis.ping()
  const other = new RenderCache({ maxBytes: 1_000_000, redis, prefix })
  t.equal(await other.get('/news?page=2'), undefined, 'gone from the shared level too')
  t.equal(await other.get('/news'), undefined)
  t.ok(await other.get('/news/abc'), 'other shared paths stay')
})

t.test('a level-2 page is judged by bus position, not by clocks', needsRedis, async (t) => {
  const { redis, prefix } = redisFor(t)
  let position = '100-0'
  // The writer's clock is far ahead: by time, its old page would look newer than the purge.
  const writer = new RenderCache({ maxBytes: 1_000_000, redis, prefix, busPosition: () => '99-0', now: () => Date.now() + 3_600_000 })
  const reader = new RenderCache({ maxBytes: 1_000_000, redis, prefix, busPosition: () => position })
  reader.invalidateKeys(['news:1'], '100-0') // the reader applied event 100-0
  writer.set('/news/one', page('before 100-0', ['news:1'], Date.now() + 3_600_000), writer.begin()) // the writer had not
  await stored(redis, writer, '/news/one', t)
  t.equal(await reader.get('/news/one'), undefined, 'rendered at 99-0: older than the purge this frontend applied')
  const caughtUp = new RenderCache({ maxBytes: 1_000_000, redis, prefix, busPosition: () => '100-0' })
  caughtUp.set('/news/two', page('after 100-0', ['news:1'], Date.now() - 60_000), caughtUp.begin())
  await stored(redis, caughtUp, '/news/two', t)
  t.ok(await reader.get('/news/two'), 'rendered at 100-0: the same event was applied first, whatever its clock says')
  position = '101-0'
  reader.clear() // a bus gap after 101-0
  const later = new RenderCache({ maxBytes: 1_000_000, redis, prefix, busPosition: () => '101-0' })
  later.set('/news/three', page('at the gap', ['news:3'], Date.now()), later.begin())
  await stored(redis, later, '/news/three', t)
  t.equal(await reader.get('/news/three'), undefined, 'a page rendered at the position of a gap may miss what it hid')
})
