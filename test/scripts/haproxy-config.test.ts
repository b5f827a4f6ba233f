/**
 * Issue 11, finding 2: the visitor's address survives HAProxy → cache →
 * frontend → backend. HAProxy runs the cluster's own configuration
 * (scripts/haproxy-config.ts); the cache, frontend and backend are the real
 * apps with their trust lists as the cluster sets them. Visitors are
 * 127.0.0.2 and 127.0.0.3 (the client socket's local address), the tier's
 * hops 127.0.0.1; the backend allows 3 writes per address, so a write limit
 * that counted the load balancer instead of the visitor would show at once.
 */
import t from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import { MemoryBus } from '../../common/bus.js'
import { freePorts } from '../../common/free-port.js'
import { buildApp as buildCache } from '../../cache/app.js'
import { loadCacheConfig } from '../../cache/config.js'
import { haproxyConfig } from '../../scripts/haproxy-config.js'
import { waitHealthy } from '../../scripts/supervisor.js'
import { createTestDatabase, openDatabase } from '../helpers/database.js'
import { startBackend } from '../helpers/backend.js'
import { requestFrom } from '../helpers/source-address.js'
import { startFrontend } from '../frontend/helpers.js'

const haproxyMissing = spawnSync('haproxy', ['-v']).status === 0 ? false : 'haproxy is not installed (apt-get install -y haproxy)'

/** Each request the backend received, with the address it derived (X-Forwarded-For through its trusted proxies). */
function addressLog (): { onRequest: (req: FastifyRequest) => void, seen: Array<{ method: string, url: string, ip: string }> } {
  const seen: Array<{ method: string, url: string, ip: string }> = []
  return { onRequest: (req) => { seen.push({ method: req.method, url: req.url, ip: req.ip }) }, seen }
}

t.test('the visitor\'s address reaches the backend through HAProxy → cache → frontend; a client cannot forge it', { skip: haproxyMissing, timeout: 180_000 }, async (t) => {
  const database = await createTestDatabase(process.env.DATABASE_URL ? 'postgres' : 'embedded')
  t.teardown(database.close)
  const rw = openDatabase(t, database)
  const article = await rw.db.selectFrom('news').select(['id', 'slug']).executeTakeFirstOrThrow()
  const bus = new MemoryBus()

  const log = addressLog()
  const backend = await startBackend(t, database.url, { BACKEND_RATE_LIMIT_MAX: '3', BACKEND_RATE_LIMIT_BURST: '3', BACKEND_RATE_LIMIT_WINDOW_S: '3600', BACKEND_RATE_LIMIT_SAME_MAX: '' }, { bus, onRequest: log.onRequest })
  // The frontend trusts the hops in front of it (its default: loopback 127.0.0.1 and ::1 only).
  const { app: frontend } = await startFrontend(t, database.url, { backendUrls: [backend.url], bus })
  await frontend.listen({ host: '127.0.0.1', port: 0 })
  const [front, stats] = await freePorts(2)
  // The cache believes HAProxy only, as `npm run cluster` configures it.
  const cache = buildCache({
    config: loadCacheConfig({ UPSTREAMS: `http://127.0.0.1:${(frontend.server.address() as { port: number }).port}`, CACHE_TRUSTED_PROXIES: '127.0.0.1', LOG_LEVEL: 'silent', CACHE_PROBE_INTERVAL_MS: '0' }),
    bus,
    defaultMetrics: false
  })
  const cachePort = (await cache.listen(0, '127.0.0.1')).port
  t.teardown(() => cache.close())

  const dir = await mkdtemp(path.join(tmpdir(), 'fc-haproxy-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const cfg = path.join(dir, 'haproxy.cfg')
  await writeFile(cfg, haproxyConfig({ front, caches: [cachePort], haproxyStats: stats }))
  const check = spawnSync('haproxy', ['-c', '-f', cfg], { encoding: 'utf8' })
  t.equal(check.status, 0, `the generated configuration is valid (${check.stderr.trim()})`)
  const haproxy = spawn('haproxy', ['-f', cfg, '-db'], { stdio: ['ignore', 'ignore', 'pipe'] })
  let haproxyErr = ''
  haproxy.stderr.on('data', (d) => { haproxyErr += d })
  t.teardown(async () => { if (haproxy.exitCode === null) { haproxy.kill('SIGTERM'); await once(haproxy, 'exit') } })
  const base = `http://127.0.0.1:${front}`
  t.ok(await waitHealthy(`${base}/-/health`, 20_000), `HAProxy passes requests to the cache (${haproxyErr.slice(-500)})`)

  let n = 0
  const comment = (source: string, headers: Record<string, string> = {}, via = base) => requestFrom(source, `${via}/news/${article.slug}/comments`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: via, ...headers },
    body: new URLSearchParams({ author: `Visitor ${source}`, body: `Comment ${++n} from ${source}`, form_nonce: randomBytes(16).toString('hex') }).toString()
  })

  // 127.0.0.2 uses up its three writes.
  for (let i = 0; i < 3; i++) t.equal((await comment('127.0.0.2')).status, 303, `127.0.0.2: comment ${i + 1} accepted`)
  const fourth = await comment('127.0.0.2')
  t.equal(fourth.status, 429, '127.0.0.2: the fourth is over its limit')
  t.ok(Number(fourth.headers['retry-after']) >= 1, 'with Retry-After')
  // The issue: 127.0.0.3 got 0 of 3 because every visitor was the load balancer.
  for (let i = 0; i < 3; i++) t.equal((await comment('127.0.0.3')).status, 303, `127.0.0.3: comment ${i + 1} accepted, whatever 127.0.0.2 did`)

  // Forgery. Through HAProxy: whatever the client claims is dropped at the edge.
  t.equal((await comment('127.0.0.2', { 'x-forwarded-for': '198.51.100.1' })).status, 429, 'X-Forwarded-For from a client through HAProxy is not believed')
  t.equal((await comment('127.0.0.2', { forwarded: 'for=198.51.100.2' })).status, 429, 'nor Forwarded')
  // Straight to the cache, past HAProxy: the cache trusts HAProxy's address only.
  const cacheBase = `http://127.0.0.1:${cachePort}`
  t.equal((await comment('127.0.0.2', { 'x-forwarded-for': '198.51.100.3' }, cacheBase)).status, 429, 'X-Forwarded-For sent to the cache directly is not believed')
  t.equal((await comment('127.0.0.2', { 'x-forwarded-for': '127.0.0.1' }, cacheBase)).status, 429, 'not even claiming to be a trusted hop')

  // What the backend saw: the two visitors, never a hop, never a forged address.
  const writes = log.seen.filter((r) => r.method === 'POST' && r.url === '/v1/comments')
  t.equal(writes.length, 11, 'every post reached the backend')
  t.same([...new Set(writes.map((r) => r.ip))].sort(), ['127.0.0.2', '127.0.0.3'], 'and the backend saw the visitors\' own addresses')
  t.same(writes.map((r) => r.ip), ['127.0.0.2', '127.0.0.2', '127.0.0.2', '127.0.0.2', '127.0.0.3', '127.0.0.3', '127.0.0.3', '127.0.0.2', '127.0.0.2', '127.0.0.2', '127.0.0.2'])
  const stored = await rw.db.selectFrom('comments').select('author').where('news_id', '=', article.id).where('author', 'like', 'Visitor %').execute()
  t.equal(stored.filter((c) => c.author === 'Visitor 127.0.0.2').length, 3)
  t.equal(stored.filter((c) => c.author === 'Visitor 127.0.0.3').length, 3)
})
