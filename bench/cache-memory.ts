/**
 * Memory check: push 60 MB of distinct objects through a cache node bounded to
 * 8 MB (CACHE_MAX_BYTES, the node as a whole) and report how much the node
 * grew, at 1, 2 and 4 workers (CACHE_MEMORY_WORKERS, default "1,2,4"). The
 * node runs as its own processes (cache/server.ts) so the origin and the load
 * generator here do not count against it. Its memory is read from /proc for
 * the primary and every worker: RSS summed, and PSS summed (the pages of the
 * shared store that several workers map are counted once — the node's real
 * footprint). Run by `npm run bench:cache`, or alone with
 * `npx tsx bench/cache-memory.ts`.
 */
import http from 'node:http'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { AddressInfo } from 'node:net'
import { Agent, request } from 'undici'

const TOTAL = 60 * 1024 * 1024
const OBJECT = 20 * 1024
const LIMIT_MB = 40
const root = fileURLToPath(new URL('..', import.meta.url))

/** The node's processes: the one started here and its children (the workers). */
function tree (pid: number): number[] {
  let children: number[] = []
  try { children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number) } catch { /* gone */ }
  return [pid, ...children.flatMap(tree)]
}

function field (pid: number, file: string, name: string): number {
  try {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/${file}`, 'utf8'))
    return m ? Number(m[1]) * 1024 : 0
  } catch { return 0 }
}

interface Footprint { rss: number, pss: number }
function footprint (pid: number): Footprint {
  let rss = 0
  let pss = 0
  for (const p of tree(pid)) { rss += field(p, 'status', 'VmRSS'); pss += field(p, 'smaps_rollup', 'Pss') }
  return { rss, pss }
}

const WORKERS = (process.env.CACHE_MEMORY_WORKERS ?? '1,2,4').split(',').map(Number)

async function run (workers: number): Promise<boolean> {
  // Distinct, barely compressible bodies so the store holds real bytes.
  let seed = 1
  const body = (n: number) => {
    const b = Buffer.allocUnsafe(OBJECT)
    for (let i = 0; i < OBJECT; i += 4) { seed = (seed * 1103515245 + 12345 + n) >>> 0; b.writeUInt32LE(seed, i) }
    return b
  }
  const origin = http.createServer((req, res) => {
    if (req.url === '/-/health') { res.end('ok'); return }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'cache-control': 'public, s-maxage=3600' })
    res.end(body(Number(req.url!.slice(3))))
  })
  await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve))
  const port = await new Promise<number>((resolve) => { const s = http.createServer().listen(0, '127.0.0.1', () => { const p = (s.address() as AddressInfo).port; s.close(() => resolve(p)) }) })
  const SCRAPE_TOKEN = randomBytes(18).toString('base64url')
  const cache = spawn(process.execPath, ['--import', 'tsx', `${root}cache/server.ts`], {
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', UPSTREAMS: `http://127.0.0.1:${(origin.address() as AddressInfo).port}`, CACHE_WORKERS: String(workers), CACHE_MAX_BYTES: String(8 * 1024 * 1024), LOG_LEVEL: 'warn', REDIS_URL: '', METRICS_TOKEN: SCRAPE_TOKEN },
    stdio: ['ignore', 'inherit', 'inherit']
  })
  const base = `http://127.0.0.1:${port}`
  const agent = new Agent({ connections: 16 })
  const get = async (path: string) => { const r = await request(base + path, { dispatcher: agent }); await r.body.arrayBuffer() }
  try {
    for (let i = 0; ; i++) {
      try { await get('/-/health'); break } catch { if (i > 300) throw new Error('cache did not start'); await new Promise((resolve) => setTimeout(resolve, 200)) }
    }
    // Warm up every code path (and the JIT) of every worker before the baseline.
    await Promise.all(Array.from({ length: 16 }, async (_, c) => { for (let i = c; i < 600; i += 16) await get(`/w/${i}`) }))
    await new Promise((resolve) => setTimeout(resolve, 500))
    const before = footprint(cache.pid!)
    const count = Math.ceil(TOTAL / OBJECT)
    let next = 0
    let peak = before
    await Promise.all(Array.from({ length: 16 }, async () => {
      while (next < count) {
        await get(`/o/${next++}`)
        if (next % 256 === 0) { const f = footprint(cache.pid!); peak = { rss: Math.max(peak.rss, f.rss), pss: Math.max(peak.pss, f.pss) } }
      }
    }))
    await new Promise((resolve) => setTimeout(resolve, 500))
    const after = footprint(cache.pid!)
    peak = { rss: Math.max(peak.rss, after.rss), pss: Math.max(peak.pss, after.pss) }
    const metrics = await (await fetch(base + '/-/metrics', { headers: { authorization: `Bearer ${SCRAPE_TOKEN}` } })).text()
    const stored = Number(/flashcrowd_cache_bytes_stored\{[^}]*\} (\d+)/.exec(metrics)?.[1])
    const evictions = Number(/flashcrowd_cache_evictions_total\{[^}]*\} (\d+)/.exec(metrics)?.[1])
    const mb = (n: number) => (n / 1048576).toFixed(1)
    const ok = peak.pss - before.pss < LIMIT_MB * 1048576
    console.log(`${workers} worker${workers > 1 ? 's' : ''}: pushed ${count} distinct objects × ${OBJECT / 1024} KB = ${mb(count * OBJECT)} MB through an 8 MB node; store holds ${mb(stored)} MB; evictions ${evictions}`)
    console.log(`  node PSS ${mb(before.pss)} MB → ${mb(after.pss)} MB (peak ${mb(peak.pss)} MB): growth ${mb(after.pss - before.pss)} MB, peak growth ${mb(peak.pss - before.pss)} MB (limit ${LIMIT_MB} MB) ${ok ? 'OK' : 'OVER'}`)
    console.log(`  node RSS summed over its processes (shared pages once per process) ${mb(before.rss)} MB → ${mb(after.rss)} MB: growth ${mb(after.rss - before.rss)} MB, peak growth ${mb(peak.rss - before.rss)} MB`)
    return ok
  } finally {
    await agent.close()
    if (cache.exitCode === null) {
      cache.kill('SIGTERM')
      await new Promise((resolve) => cache.once('exit', resolve))
    }
    await new Promise<void>((resolve) => { origin.closeAllConnections(); origin.close(() => resolve()) })
  }
}

async function main (): Promise<void> {
  let ok = true
  for (const w of WORKERS) ok = await run(w) && ok
  if (!ok) process.exitCode = 1
}

main().catch((err: Error) => { console.error(err.stack); process.exit(1) })
