/**
 * Issue 10, finding 8: a flood of unique URLs does not flush the pages many
 * visitors read (TinyLFU admission, cache/admission.ts). Deterministic
 * against the store (a fixed sketch seed), then end to end through the cache
 * with a real origin.
 */
import t from 'tap'
import { FrequencySketch } from '../../cache/admission.js'
import { MemoryStore, type CachedObject } from '../../cache/store.js'
import { startOrigin, startCache, send, closeAgent } from './fixtures.js'

t.teardown(closeAgent)

function obj (key: string, size: number): CachedObject {
  return {
    key, primary: key, host: 'h', url: key, status: 200, headers: {}, policy: null as never, bodies: { identity: Buffer.alloc(0) },
    compressible: false, etag: undefined, lastModified: undefined, tags: [], responseTime: 0, fetchStarted: 0, fetchSequence: 0, initialAge: 0,
    freshUntil: 0, swrMs: 0, sieMs: 0, graceMs: 0, explicitlyShared: false, mustRevalidate: false, heads: { second: -1 }, size
  }
}

t.test('the frequency sketch: counts, saturates at 15, halves after its sample', async (t) => {
  const sketch = new FrequencySketch({ expectedItems: 64, seed: 7 })
  const a = sketch.hash('/a')
  const b = sketch.hash('/b')
  t.not(a, b)
  t.equal(sketch.frequency(a), 0)
  for (let i = 0; i < 5; i++) sketch.increment(a)
  t.equal(sketch.frequency(a), 5, 'five reads')
  t.equal(sketch.frequency(b), 0, 'an unread key stays at zero')
  for (let i = 0; i < 30; i++) sketch.increment(a)
  t.equal(sketch.frequency(a), 15, '4-bit counters saturate at 15')
  t.equal(sketch.hash('/a'), a, 'the hash is stable for one seed')
  t.not(new FrequencySketch({ expectedItems: 64, seed: 8 }).hash('/a'), a, 'and depends on the seed')
  // Fill the sample with other keys: every count is halved once.
  let n = 0
  for (let i = 0; n < sketch.sampleSize; i++) {
    const before = sketch.frequency(a)
    sketch.increment(sketch.hash(`/other${i}`))
    n++
    if (sketch.frequency(a) < before) break
  }
  t.ok(n <= sketch.sampleSize, `halved after ${n} increments (sample ${sketch.sampleSize})`)
  t.equal(sketch.frequency(a), 7, '15 halved is 7: old popularity ages out')
})

/** One visitor's read: a lookup, and on a miss the fetched object is offered to the store. */
function read (store: MemoryStore, key: string, size: number): boolean {
  if (store.lookup(key) !== undefined) return true
  store.put(obj(key, size))
  return false
}

const HOT = Array.from({ length: 60 }, (_, i) => `/news/article-${i}`)

/** The issue's scenario against a store holding ~100 pages: cold pages, hot pages read by many visitors, then a flood. */
function flood (store: MemoryStore, opts: { floodSize: number, hotReadEvery: number }): number {
  const size = 10 * 1024
  for (let i = 0; i < 120; i++) read(store, `/old/${i}`, size)
  // Many visitors read the hot articles (five reads each, interleaved).
  for (let round = 0; round < 5; round++) for (const k of HOT) read(store, k, size)
  // One client requests unique URLs; visitors keep reading hot articles now and then.
  let h = 0
  for (let i = 0; i < opts.floodSize; i++) {
    read(store, `/news?v=${i}`, size)
    if (opts.hotReadEvery > 0 && i % opts.hotReadEvery === 0) read(store, HOT[h++ % HOT.length], size)
  }
  return HOT.filter((k) => store.get(k) !== undefined).length
}

t.test('issue 10: the store keeps ≥ 95 % of the hot set through a flood of unique URLs', async (t) => {
  const maxBytes = 1024 * 1024
  for (const hotReadEvery of [0, 50]) {
    const store = new MemoryStore({ maxBytes, sketchSeed: 1 })
    const survivors = flood(store, { floodSize: 5000, hotReadEvery })
    t.ok(survivors >= 57, `${survivors}/60 hot articles survive 5,000 unique URLs (hot reads during the flood: ${hotReadEvery ? `1 per ${hotReadEvery}` : 'none'})`)
    t.ok(store.bytes <= maxBytes, 'within the byte budget')
  }
  // The same traffic through a plain LRU loses the hot set: the scenario is the issue's.
  const lru = new MemoryStore({ maxBytes, admission: false })
  t.ok(flood(lru, { floodSize: 5000, hotReadEvery: 50 }) < 10, 'a plain LRU keeps almost none of them')
})

t.test('admission still lets in what becomes popular, and never blocks an empty store', async (t) => {
  const store = new MemoryStore({ maxBytes: 1024 * 1024, sketchSeed: 2 })
  const size = 10 * 1024
  // Room left: everything is stored on its first read.
  let stored = 0
  for (let i = 0; i < 50; i++) if (store.put(obj(`/fill/${i}`, size))) stored++
  t.equal(stored, 50, 'with room left, every newcomer is stored')
  for (let i = 50; i < 200; i++) read(store, `/fill/${i}`, size)
  const full = store.count
  // A new page read by several visitors gets in over pages read once.
  let reads = 0
  while (!read(store, '/news/breaking', size)) {
    reads++
    if (reads > 5) break
  }
  t.ok(reads <= 3, `admitted after ${reads} reads`)
  t.ok(store.get('/news/breaking') !== undefined)
  t.equal(store.count, full, 'by pushing out a page read less often')
  // A replacement of a stored key (a refresh, a revalidation) is never refused.
  t.equal(store.put(obj('/news/breaking', size)), true)
})

t.test('issue 10: end to end, a client requesting thousands of unique ?v=n URLs does not flush the hot articles', async (t) => {
  const origin = await startOrigin((req, res) => {
    res.setHeader('cache-control', 'public, max-age=600')
    res.setHeader('content-type', 'application/octet-stream')
    res.end(Buffer.alloc(12 * 1024, req.url!.length))
  })
  // ~140 such objects fit in a 2 MiB cache.
  const cache = await startCache(origin.url, { CACHE_MAX_BYTES: String(2 * 1024 * 1024) })
  t.teardown(async () => { await cache.close(); await origin.close() })
  const get = async (path: string) => { const a = await send(cache.url + path); if (a.status !== 200) throw new Error(`${path}: ${a.status}`); return a }
  const parallel = async (paths: string[], width: number) => {
    for (let i = 0; i < paths.length; i += width) await Promise.all(paths.slice(i, i + width).map(get))
  }

  // The store is full of pages read once…
  await parallel(Array.from({ length: 200 }, (_, i) => `/archive/${i}`), 10)
  // …when visitors read the hot articles, several times each: they get in over those.
  for (let round = 0; round < 4; round++) await parallel(HOT, 10)
  const hotFetches = HOT.reduce((n, p) => n + origin.count(p), 0)
  t.ok(hotFetches <= 2 * HOT.length, `the hot set is stored (${hotFetches} origin fetches for ${HOT.length} pages)`)

  // The flood: 3,000 unique URLs; now and then a visitor reads a hot article.
  const flood: string[] = []
  for (let i = 0; i < 3000; i++) {
    flood.push(`/news?v=${i}`)
    if (i % 50 === 0) flood.push(HOT[(i / 50) % HOT.length])
  }
  await parallel(flood, 16)
  const { evictions, notAdmitted } = cache.app.engine.metrics.counters
  t.ok(notAdmitted > 2500, `the flood was kept out (${notAdmitted} not admitted, ${evictions} evicted)`)

  // After the flood: each hot article is still a hit.
  const before = HOT.map((p) => origin.count(p))
  const answers = []
  for (const p of HOT) answers.push(await get(p))
  const hits = answers.filter((a) => a.headers['x-cache'] === 'HIT').length
  t.ok(hits >= 57, `${hits}/60 hot articles survived the flood as hits`)
  t.equal(HOT.filter((p, i) => origin.count(p) > before[i]).length, 60 - hits, 'each miss was one origin fetch, and only misses fetched')
  t.ok(cache.app.engine.store.bytes <= 2 * 1024 * 1024)
})
