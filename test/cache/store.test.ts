import t from 'tap'
import { MemoryStore, type CachedObject } from '../../cache/store.js'
import { startOrigin, startCache, send, closeAgent } from './fixtures.js'

t.teardown(closeAgent)

function obj (key: string, size: number, tags: string[] = [], url = key): CachedObject {
  return {
    key, primary: key, host: 'h', url, status: 200, headers: {}, policy: null as never, bodies: { identity: Buffer.alloc(0) },
    compressible: false, etag: undefined, lastModified: undefined, tags, responseTime: 0, fetchStarted: 0, fetchSequence: 0, initialAge: 0,
    freshUntil: 0, swrMs: 0, sieMs: 0, graceMs: 0, explicitlyShared: false, mustRevalidate: false, heads: { second: -1 }, size
  }
}

t.test('byte-bounded LRU with indexes kept in step', async (t) => {
  const evicted: string[] = []
  // The LRU and its indexes alone (admission is tested in admission.test.ts).
  const store = new MemoryStore({ maxBytes: 1000, onEvict: (o) => evicted.push(o.key), admission: false })
  store.put(obj('/a', 400, ['x']))
  store.put(obj('/b', 400, ['x', 'y']))
  store.get('/a') // /a is now the most recently used
  store.put(obj('/c', 400, ['y']))
  t.same(evicted, ['/b'], 'least recently used goes first')
  t.equal(store.bytes, 800)
  t.same(store.keysForTag('x'), ['/a'], 'evicted objects leave the tag index')
  t.same(store.keysForTag('y'), ['/c'])
  t.same(store.keysForUrl('/b'), [])
  store.put(obj('/huge', 5000))
  t.equal(store.get('/huge'), undefined, 'larger than the whole store: not kept')
  t.same(store.keysForUrl('/huge'), [])
  store.delete('/a')
  t.same(store.keysForTag('x'), [])
  store.put(obj('/c', 100, ['z']))
  t.same(store.keysForTag('y'), [], 'replacing an object moves its tags')
  t.same(store.keysForTag('z'), ['/c'])
  t.equal(store.bytes, 100)
})

t.test('through the app: bounded by CACHE_MAX_BYTES, large objects streamed and not stored', async (t) => {
  const big = 'b'.repeat(300 * 1024)
  const origin = await startOrigin((req, res) => {
    res.setHeader('cache-control', 'public, max-age=600')
    res.setHeader('content-type', 'application/octet-stream')
    if (req.url === '/big') { res.end(big); return }
    if (req.url === '/big-chunked') { res.write(big.slice(0, 100_000)); setTimeout(() => res.end(big.slice(100_000)), 20); return }
    res.end('s'.repeat(100 * 1024))
  })
  const cache = await startCache(origin.url, { CACHE_MAX_BYTES: String(1024 * 1024), CACHE_MAX_OBJECT_BYTES: String(200 * 1024) })
  t.teardown(async () => { await cache.close(); await origin.close() })
  for (let i = 0; i < 30; i++) await send(cache.url + `/o${i}`)
  const store = cache.app.engine.store
  t.ok(store.bytes <= 1024 * 1024, `store holds ${store.bytes} bytes`)
  // Past the budget, each newcomer either evicts an LRU victim or is not admitted (TinyLFU: a tie keeps what is stored).
  const { evictions, notAdmitted } = cache.app.engine.metrics.counters
  t.ok(evictions + notAdmitted >= 20, `${evictions} evicted, ${notAdmitted} not admitted`)
  const a = await send(cache.url + '/big')
  t.equal(a.raw.length, big.length, 'the whole body streamed through')
  t.match(a.headers['cache-status'], /detail=too-big/)
  const b = await send(cache.url + '/big-chunked')
  t.equal(b.raw.length, big.length, 'unknown length: buffered up to the limit, then streamed')
  await send(cache.url + '/big')
  t.equal(origin.count('/big'), 2, 'never stored')
  t.equal(origin.count('/big-chunked'), 1)
})

t.test('issue: long URLs and junk request headers stay within CACHE_MAX_BYTES (objects and hit-for-miss markers)', async (t) => {
  const max = 8 * 1024 * 1024
  const origin = await startOrigin((req, res) => {
    if (req.url!.startsWith('/nostore')) res.setHeader('cache-control', 'no-store')
    else { res.setHeader('cache-control', 'public, s-maxage=300'); res.setHeader('vary', 'Accept-Language') }
    res.end('x')
  })
  const cache = await startCache(origin.url, { CACHE_MAX_BYTES: String(max) })
  t.teardown(async () => { await cache.close(); await origin.close() })
  const pad = 'p'.repeat(7000)
  const junk = 'j'.repeat(7000)
  const flood = async (prefix: string, n: number) => {
    for (let i = 0; i < n; i += 32) {
      await Promise.all(Array.from({ length: 32 }, (_, k) => send(cache.url + `${prefix}/${pad}?i=${i + k}`, { headers: { 'x-junk': junk + (i + k), 'accept-language': 'en' } })))
    }
  }
  await flood('', 640)
  const { store, coalescer } = cache.app.engine
  // What each object really keeps alive, measured independently of its `size`:
  // bodies, stored fields, the key strings, and everything the policy object holds.
  let retained = 0
  let undercounted = 0
  let junkKept = 0
  for (const o of store.values()) {
    let mine = o.key.length + o.primary.length + o.url.length + o.host.length
    for (const b of [o.bodies.identity, o.bodies.gzip, o.bodies.br]) mine += b?.length ?? 0
    for (const k in o.headers) mine += k.length + o.headers[k].length
    // The policy's URL and (usually) response fields are the object's own strings, counted above.
    const p = o.policy.toObject() as unknown as Record<string, unknown>
    const policyJson = JSON.stringify({ ...p, u: p.u === o.url ? undefined : p.u, resh: p.resh === o.headers ? undefined : p.resh })
    mine += policyJson.length
    if (policyJson.includes('jjjj')) junkKept++
    if (o.size < mine) undercounted++
    retained += mine
  }
  t.equal(junkKept, 0, 'the policy keeps no request field it does not use')
  t.equal(undercounted, 0, 'every object\'s size covers what it keeps')
  t.ok(store.count < 640, `evicted down to ${store.count} objects`)
  t.ok(retained <= max, `objects retain ${retained} bytes, within ${max}`)

  await flood('/nostore', 640)
  t.ok(coalescer.markerCount > 0, 'uncacheable answers left hit-for-miss markers')
  t.ok(coalescer.markerCount < 640, `markers evicted by bytes (${coalescer.markerCount} kept)`)
  let markerKeys = 0
  const host = new URL(cache.url).host
  for (let i = 0; i < 640; i++) if (coalescer.isUncacheable(`${host}/nostore/${pad}?i=${i}`)) markerKeys += host.length + pad.length + 20
  t.ok(store.bytes + coalescer.markerBytes <= max, `store ${store.bytes} + markers ${coalescer.markerBytes} within CACHE_MAX_BYTES`)
  t.ok(markerKeys <= coalescer.markerBytes, 'the marker budget counts the key bytes')
})
