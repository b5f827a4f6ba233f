import t from 'tap'
import http from 'node:http'
import v8 from 'node:v8'
import { startOrigin, send, closeAgent, admin, page, FakeClock, TOKEN } from './fixtures.js'
import { MemoryBus } from '../../common/bus.js'
import { buildApp, type CacheApp } from '../../cache/app.js'
import { loadCacheConfig } from '../../cache/config.js'
import { type ShareChannel } from '../../cache/share.js'
import { serializeObject, deserializeObject, type SharedObject } from '../../cache/object.js'
import type { CachedObject } from '../../cache/store.js'
import { freePort } from '../../common/free-port.js'
import { spawnScript } from '../helpers/spawn.js'
import { waitHealthy } from '../../scripts/supervisor.js'

t.teardown(closeAgent)

/** In-process stand-in for the primary's relay: a share goes to every other channel, asynchronously like IPC. */
function hub () {
  const handlers = new Map<number, (o: SharedObject) => void>()
  let n = 0
  return {
    channel (): ShareChannel {
      const id = ++n
      return {
        // Through v8 (de)serialization, as with `serialization: 'advanced'`.
        send (o) {
          const wire = v8.serialize(o)
          setImmediate(() => { for (const [k, h] of handlers) if (k !== id) h(v8.deserialize(wire) as SharedObject) })
        },
        subscribe (h) { handlers.set(id, h); return () => { handlers.delete(id) } }
      }
    }
  }
}

async function start (origin: string, opts: { bus: MemoryBus, clock: FakeClock, share?: ShareChannel }): Promise<CacheApp> {
  const config = loadCacheConfig({ UPSTREAMS: origin, ADMIN_TOKEN: TOKEN, CACHE_PROBE_INTERVAL_MS: '0', LOG_LEVEL: 'silent' })
  const app = buildApp({ config, bus: opts.bus, clock: opts.clock, timers: opts.clock, defaultMetrics: false, share: opts.share })
  await app.listen(0, '127.0.0.1')
  return app
}

const only = (app: CacheApp, url: string): CachedObject => {
  const found = [...app.engine.store.values()].filter((o) => o.url === url)
  if (found.length !== 1) throw new Error(`expected one object for ${url}, found ${found.length}`)
  return found[0]
}

t.test('serialize → (v8 wire) → deserialize keeps policy answers, bodies, tags and headers', async (t) => {
  const big = 'flashcrowd '.repeat(400)
  const origin = await startOrigin(page({ 'cache-control': 'public, max-age=60, s-maxage=300', 'content-type': 'text/html; charset=utf-8', 'surrogate-key': 'news news:7', etag: '"v1"', vary: 'Accept-Language' }, big))
  const clock = new FakeClock()
  const bus = new MemoryBus()
  const app = await start(origin.url, { bus, clock })
  t.teardown(async () => { await app.close(); await bus.close(); await origin.close() })
  await send(app.url() + '/news/7', { headers: { 'accept-language': 'fr' } })
  const o = only(app, '/news/7')
  t.ok(o.bodies.gzip && o.bodies.br, 'compressible: all three codings stored')
  const s = serializeObject(o)
  t.notOk('heads' in s, 'prepared heads are not sent')
  t.notOk('headsSecond' in s)
  const back = deserializeObject(v8.deserialize(v8.serialize(s)) as SharedObject, app.engine.Policy)
  for (const enc of ['identity', 'gzip', 'br'] as const) {
    t.ok(Buffer.isBuffer(back.bodies[enc]), `${enc} is a Buffer`)
    t.ok(back.bodies[enc]!.equals(o.bodies[enc]!), `${enc} body equal`)
    t.equal(back.bodies[enc]!.buffer.byteLength, back.bodies[enc]!.length, `${enc} owns its memory`)
  }
  t.same(back.tags, ['news', 'news:7'])
  t.same(back.headers, o.headers)
  for (const k of ['key', 'primary', 'host', 'url', 'status', 'etag', 'responseTime', 'fetchStarted', 'freshUntil', 'initialAge', 'size', 'explicitlyShared', 'mustRevalidate'] as const) t.same(back[k], o[k], k)
  t.same(back.heads, o.heads, 'heads rebuilt identically')
  const req = { method: 'GET', url: '/news/7', headers: { host: o.host, 'accept-language': 'fr' } }
  const other = { method: 'GET', url: '/news/7', headers: { host: o.host, 'accept-language': 'de' } }
  for (const at of [0, 30_000, 61_000, 301_000]) {
    clock.advance(at === 0 ? 0 : at - (clock.now() - o.responseTime))
    t.equal(back.policy.timeToLive(), o.policy.timeToLive(), `timeToLive equal at +${at} ms`)
    t.equal(back.policy.satisfiesWithoutRevalidation(req), o.policy.satisfiesWithoutRevalidation(req), `satisfiesWithoutRevalidation equal at +${at} ms`)
    t.equal(back.policy.satisfiesWithoutRevalidation(other), o.policy.satisfiesWithoutRevalidation(other), 'other variant equal')
  }
  t.equal(back.policy.satisfiesWithoutRevalidation(other), false, 'Vary still applies')
})

t.test('receiver: a share predating a purge/ban/tag purge is dropped; otherwise stored and served as a HIT', async (t) => {
  const origin = await startOrigin(page({ 'cache-control': 'public, s-maxage=300', 'surrogate-key': 'news' }, (n, req) => `${req.url} v${n}`))
  const clock = new FakeClock()
  // Separate buses: the purges below reach the receiver only (as if the sibling heard them first).
  const busA = new MemoryBus()
  const busB = new MemoryBus()
  const a = await start(origin.url, { bus: busA, clock })
  let deliver: (o: SharedObject) => void = () => { throw new Error('not subscribed') }
  const b = await start(origin.url, { bus: busB, clock, share: { send () {}, subscribe (h) { deliver = h; return () => {} } } })
  t.teardown(async () => { await a.close(); await b.close(); await busA.close(); await busB.close(); await origin.close() })

  // Both apps must see one Host, as the workers behind one socket do (the host is part of the key).
  const host = { host: 'site.test' }
  const fetchAt = async (path: string): Promise<SharedObject> => {
    await send(a.url() + path, { headers: host })
    return v8.deserialize(v8.serialize(serializeObject(only(a, path)))) as SharedObject
  }

  // A purge of the URL at the receiver, at the object's fetchStarted (same clock tick).
  const s1 = await fetchAt('/p1')
  t.equal((await send(b.url() + '/p1', { method: 'PURGE', headers: admin })).status, 200)
  deliver(s1)
  t.equal(b.engine.metrics.counters.shared.invalidated, 1, 'purged since its fetch started: dropped')
  t.equal(b.engine.store.count, 0)

  // A ban after the fetch started.
  const s2 = await fetchAt('/p2')
  clock.advance(10)
  t.equal((await send(b.url() + '/', { method: 'BAN', headers: { ...admin, 'ban-url': '^/p2$' } })).status, 200)
  deliver(s2)
  t.equal(b.engine.metrics.counters.shared.invalidated, 2, 'banned since its fetch started: dropped')

  // A tag purge.
  const s3 = await fetchAt('/p3')
  clock.advance(10)
  t.equal((await send(b.url() + '/', { method: 'PURGE', headers: { ...admin, 'surrogate-key': 'news' } })).status, 200)
  deliver(s3)
  t.equal(b.engine.metrics.counters.shared.invalidated, 3, 'tag purged since its fetch started: dropped')
  t.equal(b.engine.store.count, 0, 'nothing stored')

  const before = origin.count()
  const miss = await send(b.url() + '/p1', { headers: host })
  t.equal(miss.headers['x-cache'], 'MISS', 'the purged page is fetched again')
  t.equal(origin.count(), before + 1)

  // A purge *before* the fetch started does not block the share.
  clock.advance(10)
  const s4 = await fetchAt('/p4')
  deliver(s4)
  t.equal(b.engine.metrics.counters.shared.stored, 1, 'stored')
  const n = origin.count()
  const hit = await send(b.url() + '/p4', { headers: host })
  t.equal(hit.headers['x-cache'], 'HIT', 'served from the shared copy')
  t.equal(hit.body, only(a, '/p4').bodies.identity.toString())
  t.equal(origin.count(), n, 'no origin request')

  // An older copy never replaces a newer one.
  const older = { ...s4, fetchStarted: s4.fetchStarted - 5, responseTime: s4.responseTime - 5, bodies: { identity: Buffer.from('old') } }
  deliver(older)
  t.equal(b.engine.metrics.counters.shared.older, 1, 'older copy ignored')
  t.equal((await send(b.url() + '/p4', { headers: host })).body, hit.body)
})

t.test('two apps wired through a relay: only stored objects are shared', async (t) => {
  const origin = await startOrigin((req, res, n) => {
    if (req.url === '/private') res.setHeader('cache-control', 'private, no-store')
    else res.setHeader('cache-control', 'public, s-maxage=300')
    res.end(`${req.url} v${n}`)
  })
  const clock = new FakeClock()
  const bus = new MemoryBus()
  const h = hub()
  const a = await start(origin.url, { bus, clock, share: h.channel() })
  const b = await start(origin.url, { bus, clock, share: h.channel() })
  t.teardown(async () => { await a.close(); await b.close(); await bus.close(); await origin.close() })
  const host = { host: 'site.test' }
  await send(a.url() + '/private', { headers: host })
  await send(a.url() + '/page', { headers: { ...host, 'cache-control': 'no-store' } })
  await send(a.url() + '/shared', { headers: host })
  await new Promise((resolve) => setImmediate(resolve))
  t.same(b.engine.metrics.counters.shared, { stored: 1, invalidated: 0, older: 0 }, 'only the stored page went over')
  t.same(a.engine.metrics.counters.shared, { stored: 0, invalidated: 0, older: 0 }, 'not echoed back to the sender')
  const n = origin.count()
  t.equal((await send(b.url() + '/shared', { headers: host })).headers['x-cache'], 'HIT')
  t.equal(origin.count(), n)
  const metrics = await send(b.url() + '/-/metrics')
  t.match(metrics.body, /flashcrowd_cache_shared_objects_received_total\{outcome="stored"[^}]*\} 1/)
})

function getNew (url: string): Promise<{ status: number, xcache: string | undefined, body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d) => { body += d })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, xcache: res.headers['x-cache'] as string | undefined, body }))
      res.on('error', reject)
    })
    req.setTimeout(5000, () => req.destroy(new Error('timeout')))
    req.on('error', reject)
  })
}

t.test('cluster mode (CACHE_WORKERS=2): a page fetched by one worker is a HIT on the other', { timeout: 60_000 }, async (t) => {
  const origin = await startOrigin(page({ 'cache-control': 'public, s-maxage=300' }, 'shared page'))
  const port = await freePort()
  const run = spawnScript('cache/server.ts', { CACHE_WORKERS: '2', PORT: String(port), HOST: '127.0.0.1', UPSTREAMS: origin.url, LOG_LEVEL: 'info', ADMIN_TOKEN: TOKEN })
  t.teardown(async () => {
    if (run.child.exitCode === null && run.child.pid !== undefined) {
      process.kill(run.child.pid, 'SIGTERM')
      await Promise.race([run.exited, new Promise((resolve) => setTimeout(resolve, 15_000))])
    }
    await origin.close()
  })
  const base = `http://127.0.0.1:${port}`
  t.ok(await waitHealthy(base + '/-/health', 30_000), 'cache up')
  // Both workers listening (each logs it once), so the round-robin scheduler alternates connections between them.
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline && (run.output().match(/"cache listening"/g) ?? []).length < 2) await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal((run.output().match(/"cache listening"/g) ?? []).length, 2, 'two workers listening')
  const first = await getNew(base + '/page')
  t.equal(first.status, 200)
  t.equal(first.xcache, 'MISS')
  while (origin.count('/page') < 1) await new Promise((resolve) => setTimeout(resolve, 10))
  t.equal(origin.count('/page'), 1)
  // The share may still be in flight: poll the workers' metrics (new connections alternate) until the sibling has it.
  let received = false
  for (let tries = 0; tries < 100 && !received; tries++) {
    const m = await getNew(base + '/-/metrics')
    received = /flashcrowd_cache_shared_objects_received_total\{outcome="stored"[^}]*\} 1/.test(m.body)
    if (!received) await new Promise((resolve) => setTimeout(resolve, 20))
  }
  t.ok(received, 'the sibling worker stored the shared page')
  for (let i = 0; i < 20; i++) {
    const r = await getNew(base + '/page')
    t.equal(r.xcache, 'HIT', `request ${i} on a new connection is a HIT`)
    t.equal(r.body, 'shared page')
  }
  t.equal(origin.count('/page'), 1, 'the origin saw the page once')
  if (t.passing() === false) t.comment(run.output())
})
