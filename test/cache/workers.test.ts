/**
 * A cache node with several workers (cache/server.ts, CACHE_WORKERS > 1), run
 * as `npm run cache` runs it: one shared store, one origin fetch per key,
 * invalidations seen by every worker at once. Each request goes on a new
 * connection, so the primary's round-robin spreads them over the workers.
 */
import t from 'tap'
import type { Test } from 'tap'
import http from 'node:http'
import net from 'node:net'
import { execFileSync } from 'node:child_process'
import { startOrigin, TOKEN } from './fixtures.js'
import { freePort } from '../../common/free-port.js'
import { spawnScript, type Spawned } from '../helpers/spawn.js'
import { waitHealthy } from '../../scripts/supervisor.js'
import { METRICS_TOKEN, scraper } from '../helpers/metrics.js'

interface Got { status: number, xcache: string | undefined, body: string }

function getNew (url: string, method = 'GET', headers: Record<string, string> = {}): Promise<Got> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { agent: false, method, headers }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d) => { body += d })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, xcache: res.headers['x-cache'] as string | undefined, body }))
      res.on('error', reject)
    })
    req.setTimeout(20_000, () => req.destroy(new Error('timeout')))
    req.on('error', reject)
    req.end()
  })
}

async function startNode (t: Tap, upstream: string, workers: number, env: Record<string, string> = {}): Promise<{ base: string, run: Spawned }> {
  const port = await freePort()
  const run = spawnScript('cache/server.ts', { CACHE_WORKERS: String(workers), PORT: String(port), HOST: '127.0.0.1', UPSTREAMS: upstream, LOG_LEVEL: 'info', ADMIN_TOKEN: TOKEN, METRICS_TOKEN, CACHE_PROBE_INTERVAL_MS: '0', ...env })
  t.teardown(async () => {
    if (run.child.exitCode === null && run.child.pid !== undefined) {
      process.kill(run.child.pid, 'SIGTERM')
      await Promise.race([run.exited, new Promise((resolve) => setTimeout(resolve, 15_000))])
    }
  })
  const base = `http://127.0.0.1:${port}`
  t.ok(await waitHealthy(base + '/-/health', 60_000), 'cache node up')
  // Every worker listening (each logs it once), so connections alternate between them.
  const deadline = Date.now() + 60_000
  while (Date.now() < deadline && (run.output().match(/"cache listening"/g) ?? []).length < workers) await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal((run.output().match(/"cache listening"/g) ?? []).length, workers, `${workers} workers listening`)
  return { base, run }
}

type Tap = Test

t.test('several workers: one origin fetch per key, hits everywhere, invalidations seen by every worker', { timeout: 180_000 }, async (t) => {
  let version = 1
  // Slow enough that the whole burst arrives while the first fetch is in flight.
  const origin = await startOrigin((req, res) => {
    setTimeout(() => {
      res.setHeader('cache-control', 'public, max-age=300')
      res.setHeader('surrogate-key', 'news article:' + (req.url ?? '').slice(1))
      res.end(`v${version} of ${req.url}`)
    }, 300)
  })
  t.teardown(() => origin.close())
  const { base, run } = await startNode(t, origin.url, 2)

  const burst = await Promise.all(Array.from({ length: 200 }, () => getNew(base + '/page')))
  t.equal(burst.filter((r) => r.status === 200 && r.body === 'v1 of /page').length, 200, '200 answers, all the page')
  t.equal(origin.count('/page'), 1, '200 concurrent cold requests over 2 workers: one origin fetch')

  const later = await Promise.all(Array.from({ length: 40 }, () => getNew(base + '/page')))
  t.equal(later.filter((r) => r.xcache === 'HIT').length, 40, 'every worker hits the one stored copy')
  t.equal(origin.count('/page'), 1)

  // A PURGE answered by one worker: nothing served afterwards on any worker is the old page.
  version = 2
  const purged = await getNew(base + '/page', 'PURGE', { authorization: `Bearer ${TOKEN}` })
  t.equal(purged.status, 200, 'purge answered')
  const after = await Promise.all(Array.from({ length: 40 }, () => getNew(base + '/page')))
  t.equal(after.filter((r) => r.body === 'v2 of /page').length, 40, 'no worker serves the purged page')
  t.equal(origin.count('/page'), 2, 'refetched once for the node')

  // A tag purge, and the unsafe-method invalidation (RFC 9111 §4.4) one worker applies.
  await Promise.all(Array.from({ length: 10 }, () => getNew(base + '/other')))
  t.equal(origin.count('/other'), 1)
  version = 3
  t.equal((await getNew(base + '/', 'PURGE', { authorization: `Bearer ${TOKEN}`, 'surrogate-key': 'article:other' })).status, 200)
  const tagged = await Promise.all(Array.from({ length: 20 }, () => getNew(base + '/other')))
  t.equal(tagged.filter((r) => r.body === 'v3 of /other').length, 20, 'tag purge seen by every worker')
  version = 4
  await getNew(base + '/page', 'POST')
  const posted = await Promise.all(Array.from({ length: 20 }, () => getNew(base + '/page')))
  t.equal(posted.filter((r) => r.body === 'v4 of /page').length, 20, 'a POST through one worker invalidates the page for all')
  if (t.passing() === false) t.comment(run.output())
})

t.test('four workers: exact coalescing and a node-wide byte budget', { timeout: 180_000 }, async (t) => {
  const body = 'x'.repeat(20 * 1024)
  const origin = await startOrigin((req, res) => {
    setTimeout(() => {
      res.setHeader('cache-control', 'public, max-age=300')
      res.end(body)
    }, 100)
  })
  t.teardown(() => origin.close())
  const { base, run } = await startNode(t, origin.url, 4, { CACHE_MAX_BYTES: String(2 * 1024 * 1024) })
  const burst = await Promise.all(Array.from({ length: 100 }, () => getNew(base + '/hot')))
  t.equal(burst.filter((r) => r.status === 200 && r.body.length === body.length).length, 100)
  t.equal(origin.count('/hot'), 1, '100 concurrent cold requests over 4 workers: one origin fetch')
  // 4 MB of distinct pages into a 2 MB node: the store stays within the budget for all workers together.
  for (let i = 0; i < 200; i += 20) await Promise.all(Array.from({ length: 20 }, (_, j) => getNew(`${base}/p${i + j}`)))
  let bytes = 0
  for (let i = 0; i < 8; i++) {
    const m = await getNew(base + '/-/metrics', 'GET', scraper)
    const v = /^flashcrowd_cache_bytes_stored(?:\{[^}]*\})? (\d+)/m.exec(m.body)
    if (v) bytes = Math.max(bytes, Number(v[1]))
  }
  t.ok(bytes > 1024 * 1024 && bytes <= 2 * 1024 * 1024, `store bytes ${bytes} within the node's 2 MB (every worker reports the same store)`)
  if (t.passing() === false) t.comment(run.output())
})

t.test('a node whose workers cannot start exits non-zero instead of restarting them forever', { timeout: 90_000 }, async (t) => {
  const blocker = net.createServer()
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => blocker.close(() => resolve())))
  const port = (blocker.address() as net.AddressInfo).port
  const run = spawnScript('cache/server.ts', { CACHE_WORKERS: '2', PORT: String(port), HOST: '127.0.0.1', UPSTREAMS: 'http://127.0.0.1:9', LOG_LEVEL: 'info', CACHE_PROBE_INTERVAL_MS: '0' })
  t.teardown(() => { if (run.child.exitCode === null) run.child.kill('SIGKILL') })
  const code = await Promise.race([run.exited, new Promise((resolve) => setTimeout(() => resolve('still running'), 60_000))])
  t.not(code, 'still running', 'the node stopped')
  t.not(code, 0, `exit code ${String(code)}`)
  t.match(run.output(), /failed to start/)
})

t.test('Ctrl-C twice on a node with workers: the answers in flight still finish, then the node exits 0', { timeout: 120_000 }, async (t) => {
  // An uncacheable page the origin takes 1.5 s to answer: in flight on each worker when the signal comes.
  const origin = await startOrigin((req, res) => {
    setTimeout(() => { res.writeHead(200, { 'cache-control': 'no-store', 'content-type': 'text/plain' }); res.end(`slow ${req.url}`) }, 1500)
  })
  t.teardown(origin.close)
  const { base, run } = await startNode(t, origin.url, 2)
  const pid = run.child.pid!
  // The primary's node children (tsx also runs an esbuild service beside them).
  const workers = execFileSync('ps', ['-o', 'pid=,comm=', '--ppid', String(pid)], { encoding: 'utf8' }).split('\n')
    .map((line) => line.trim().split(/\s+/)).filter(([, comm]) => comm === 'node').map(([p]) => Number(p))
  t.equal(workers.length, 2, 'two worker processes')
  const answers = Promise.all([1, 2, 3, 4].map((i) => getNew(`${base}/slow-${i}`)))
  while (origin.count() < 4) await new Promise((resolve) => setTimeout(resolve, 20))
  // What a terminal does on Ctrl-C: SIGINT to every process of the group at once; then a second Ctrl-C.
  for (const p of [pid, ...workers]) process.kill(p, 'SIGINT')
  await new Promise((resolve) => setTimeout(resolve, 200))
  for (const p of [pid, ...workers]) { try { process.kill(p, 'SIGINT') } catch { /* already gone */ } }
  const got = await answers
  t.same(got.map((g) => [g.status, g.body]), [1, 2, 3, 4].map((i) => [200, `slow /slow-${i}`]), 'every answer in flight was delivered whole')
  t.equal(await Promise.race([run.exited, new Promise((resolve) => setTimeout(() => resolve('running'), 15_000))]), 0, 'the node exited 0')
  const alive = (p: number): boolean => { try { process.kill(p, 0); return true } catch { return false } }
  const deadline = Date.now() + 15_000
  while (Date.now() < deadline && workers.some(alive)) await new Promise((resolve) => setTimeout(resolve, 50))
  t.same(workers.filter(alive), [], 'no worker left running')
})
