/**
 * Memory check (issue 5): push 60 MB of distinct objects through a cache
 * bounded to 8 MB (CACHE_MAX_BYTES) and report how much the cache process
 * grew. The cache runs as its own process (cache/server.ts, one worker) so the
 * origin and the load generator here do not count against it; RSS is read
 * from /proc. Run by `npm run bench:cache`, or alone with
 * `npx tsx bench/cache-memory.ts`.
 */
import http from 'node:http'
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { AddressInfo } from 'node:net'
import { Agent, request } from 'undici'

const TOTAL = 60 * 1024 * 1024
const OBJECT = 20 * 1024
const LIMIT_MB = 40
const root = fileURLToPath(new URL('..', import.meta.url))

function rssOf (pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) * 1024 : NaN
}

async function main (): Promise<void> {
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
  const cache = spawn(process.execPath, ['--import', 'tsx', `${root}cache/server.ts`], {
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', UPSTREAMS: `http://127.0.0.1:${(origin.address() as AddressInfo).port}`, CACHE_WORKERS: '1', CACHE_MAX_BYTES: String(8 * 1024 * 1024), LOG_LEVEL: 'warn', REDIS_URL: '' },
    stdio: ['ignore', 'inherit', 'inherit']
  })
  const base = `http://127.0.0.1:${port}`
  const agent = new Agent({ connections: 16 })
  const get = async (path: string) => { const r = await request(base + path, { dispatcher: agent }); await r.body.arrayBuffer() }
  try {
    for (let i = 0; ; i++) {
      try { await get('/-/health'); break } catch { if (i > 100) throw new Error('cache did not start'); await new Promise((resolve) => setTimeout(resolve, 200)) }
    }
    // Warm up every code path (and the JIT) before the baseline.
    for (let i = 0; i < 300; i++) await get(`/w/${i}`)
    await new Promise((resolve) => setTimeout(resolve, 500))
    const before = rssOf(cache.pid!)
    const count = Math.ceil(TOTAL / OBJECT)
    let next = 0
    let peak = before
    await Promise.all(Array.from({ length: 16 }, async () => {
      while (next < count) {
        await get(`/o/${next++}`)
        if (next % 256 === 0) peak = Math.max(peak, rssOf(cache.pid!))
      }
    }))
    await new Promise((resolve) => setTimeout(resolve, 500))
    const after = rssOf(cache.pid!)
    peak = Math.max(peak, after)
    const metrics = await (await fetch(base + '/-/metrics')).text()
    const stored = Number(/flashcrowd_cache_bytes_stored\{[^}]*\} (\d+)/.exec(metrics)?.[1])
    const evictions = Number(/flashcrowd_cache_evictions_total\{[^}]*\} (\d+)/.exec(metrics)?.[1])
    const mb = (n: number) => (n / 1048576).toFixed(1)
    console.log(`pushed ${count} distinct objects × ${OBJECT / 1024} KB = ${mb(count * OBJECT)} MB through an 8 MB cache (one worker)`)
    console.log(`store holds ${mb(stored)} MB; evictions ${evictions}`)
    console.log(`cache RSS ${mb(before)} MB → ${mb(after)} MB (peak ${mb(peak)} MB): growth ${mb(after - before)} MB, peak growth ${mb(peak - before)} MB (limit ${LIMIT_MB} MB) ${peak - before < LIMIT_MB * 1048576 ? 'OK' : 'OVER'}`)
  } finally {
    await agent.close()
    if (cache.exitCode === null) {
      cache.kill('SIGTERM')
      await new Promise((resolve) => cache.once('exit', resolve))
    }
    await new Promise<void>((resolve) => { origin.closeAllConnections(); origin.close(() => resolve()) })
  }
}

main().catch((err: Error) => { console.error(err.stack); process.exit(1) })
