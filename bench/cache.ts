/**
 * `npm run bench:cache`: cache hits of a 25 KB and a 1 KB page through our
 * cache (and, for comparison, our cache without its hit front), Varnish and
 * nginx proxy_cache, started side by side on the same
 * origin, measured with wrk in interleaved rounds; medians and ratios are
 * printed with the spread (min–max) so machine noise is visible. Then the
 * memory check (bench/cache-memory.ts).
 *
 * BENCH_BASELINE=<git revision> adds that revision's cache, built in a git
 * worktree of its own, as one more target in the same interleaved rounds:
 * the ratio to it says whether a change cost speed, on a machine whose ratio
 * to Varnish moves from one run to the next.
 *
 * Everything listens on 127.0.0.1; every process started here is stopped by
 * its PID at the end.
 */
import http from 'node:http'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, writeFileSync, rmSync, chmodSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { AddressInfo } from 'node:net'
import { freePort } from '../common/free-port.js'
import { buildDist, ensureTools, wrk } from './tools.js'

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3)
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 100)
const WORKERS = Number(process.env.CACHE_WORKERS ?? 2)
const BASELINE = process.env.BENCH_BASELINE ?? ''
const root = fileURLToPath(new URL('..', import.meta.url))

const children: ChildProcess[] = []
const tmp = mkdtempSync(join(tmpdir(), 'flashcrowd-bench-'))

function page (bytes: number, name: string): Buffer {
  const line = `<p>${name}: the quick brown fox jumps over the lazy dog ${'x'.repeat(40)}</p>\n`
  return Buffer.from(`<!doctype html><title>${name}</title>\n` + line.repeat(Math.ceil(bytes / line.length))).subarray(0, bytes)
}

const PAGES: Record<string, Buffer> = { '/page-25k': page(25 * 1024, '25k'), '/page-1k': page(1024, '1k') }
let originRequests = 0

async function startOrigin (): Promise<number> {
  const server = http.createServer((req, res) => {
    originRequests++
    if (req.url === '/-/health') { res.end('ok'); return }
    const body = PAGES[req.url ?? '']
    if (!body) { res.statusCode = 404; res.end('not found'); return }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'public, max-age=3600', 'content-length': body.length })
    res.end(body)
  })
  server.keepAliveTimeout = 60_000
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  closers.push(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
  return (server.address() as AddressInfo).port
}

const closers: Array<() => Promise<void>> = []

function start (name: string, cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): ChildProcess {
  const child = spawn(cmd, args, { env, stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  child.stderr!.on('data', (d) => { err = (err + String(d)).slice(-2000) })
  child.on('exit', (code) => { if (code && !stopping) console.error(`${name} exited with ${code}: ${err}`) })
  children.push(child)
  return child
}

async function waitFor (url: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      const r = await fetch(url)
      await r.arrayBuffer()
      if (r.status === 200) return
    } catch { /* not up yet */ }
    if (Date.now() > deadline) throw new Error(`${url} did not come up`)
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
}

/**
 * Checks `rev` out beside the tree (git worktree, detached), sharing this
 * tree's node_modules, and builds it; returns its root. Removed by stopAll.
 */
function buildBaseline (rev: string): string {
  const dir = join(tmp, 'baseline')
  const add = spawnSync('git', ['worktree', 'add', '--detach', dir, rev], { cwd: root, stdio: 'inherit' })
  if (add.status !== 0) throw new Error(`BENCH_BASELINE: cannot check out ${rev}`)
  baselineDir = dir
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'), 'dir')
  const build = spawnSync(process.execPath, [join(dir, 'scripts/build.mjs')], { cwd: dir, stdio: 'inherit' })
  if (build.status !== 0) throw new Error(`BENCH_BASELINE: ${rev} does not build`)
  return dir
}
let baselineDir: string | undefined

async function startOurs (originPort: number, env: NodeJS.ProcessEnv = {}, tree = root): Promise<number> {
  const port = await freePort()
  // What production runs (`npm run build`, then node dist/...): tsx's
  // on-the-fly transpile adds per-call helpers a build does not have.
  start('flashcrowd cache', process.execPath, [join(tree, 'dist/cache/server.js')], {
    ...process.env, PORT: String(port), HOST: '127.0.0.1', UPSTREAMS: `http://127.0.0.1:${originPort}`, CACHE_WORKERS: String(WORKERS), LOG_LEVEL: 'warn', REDIS_URL: '', ...env
  })
  return port
}

async function startVarnish (originPort: number): Promise<number> {
  const port = await freePort()
  const dir = join(tmp, 'varnish')
  start('varnishd', 'varnishd', ['-F', '-a', `127.0.0.1:${port}`, '-b', `127.0.0.1:${originPort}`, '-s', 'malloc,256m', '-n', dir, '-j', 'none', '-p', 'thread_pool_min=50'])
  return port
}

async function startNginx (originPort: number): Promise<number> {
  const port = await freePort()
  const dir = join(tmp, 'nginx')
  spawnSync('mkdir', ['-p', join(dir, 'cache'), join(dir, 'tmp')])
  chmodSync(dir, 0o777)
  const conf = `
worker_processes ${WORKERS};
daemon off;
master_process on;
user root;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;
  proxy_cache_path ${dir}/cache keys_zone=bench:10m max_size=256m;
  upstream origin { server 127.0.0.1:${originPort}; keepalive 32; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache bench;
      add_header X-Cache $upstream_cache_status;
    }
  }
}
`
  writeFileSync(join(dir, 'nginx.conf'), conf)
  start('nginx', 'nginx', ['-c', join(dir, 'nginx.conf'), '-p', dir, '-e', join(dir, 'error.log')])
  return port
}

interface Run { rps: number, p99ms: number }

function wrkRun (url: string, seconds: number): Run {
  const r = wrk(url, { threads: 2, connections: CONNECTIONS, seconds })
  if (r.non2xx > 0 || r.socketErrors > 0) console.warn(`  wrk ${url}: non-2xx ${r.non2xx}, socket errors ${r.socketErrors}`)
  return r
}

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); const n = s.length; return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2 }

let stopping = false
async function stopAll (): Promise<void> {
  stopping = true
  for (const c of children) {
    if (c.exitCode === null && c.pid !== undefined) {
      try { process.kill(c.pid, 'SIGTERM') } catch { /* already gone */ }
    }
  }
  await Promise.all(children.map((c) => c.exitCode !== null ? undefined : new Promise<void>((resolve) => {
    const t = setTimeout(() => { if (c.pid !== undefined) { try { process.kill(c.pid, 'SIGKILL') } catch { /* gone */ } } resolve() }, 5000)
    c.once('exit', () => { clearTimeout(t); resolve() })
  })))
  for (const close of closers) await close()
  if (baselineDir !== undefined) spawnSync('git', ['worktree', 'remove', '--force', baselineDir], { cwd: root, stdio: 'ignore' })
  rmSync(tmp, { recursive: true, force: true })
}

async function main (): Promise<void> {
  ensureTools({ wrk: 'wrk', varnishd: 'varnish', nginx: 'nginx' })
  buildDist()
  const baseline = BASELINE === '' ? undefined : buildBaseline(BASELINE)
  const originPort = await startOrigin()
  const targets: Record<string, number> = {
    flashcrowd: await startOurs(originPort),
    // The same cache with every request through node's HTTP server: what the hit front (cache/hit-front.ts) is worth.
    'no-front': await startOurs(originPort, { CACHE_HIT_FRONT: 'false' }),
    varnish: await startVarnish(originPort),
    nginx: await startNginx(originPort),
    ...(baseline === undefined ? {} : { baseline: await startOurs(originPort, {}, baseline) })
  }
  for (const [name, port] of Object.entries(targets)) {
    await waitFor(`http://127.0.0.1:${port}/page-1k`)
    // Warm: fill every worker's cache and every keep-alive pool.
    for (const path of Object.keys(PAGES)) wrkRun(`http://127.0.0.1:${port}${path}`, 1)
    const r = await fetch(`http://127.0.0.1:${port}/page-25k`)
    await r.arrayBuffer()
    console.log(`${name} ready on :${port} (${r.headers.get('x-cache') ?? r.headers.get('x-varnish') ?? ''})`)
  }
  const beforeRounds = originRequests
  const results: Record<string, Record<string, Run[]>> = {}
  for (let round = 0; round < ROUNDS; round++) {
    for (const path of Object.keys(PAGES)) {
      // Interleaved, in a rotating order, so drift on the machine hits everyone alike.
      const names = Object.keys(targets)
      const order = names.map((_, i) => names[(i + round) % names.length])
      for (const name of order) {
        const run = wrkRun(`http://127.0.0.1:${targets[name]}${path}`, SECONDS)
        ;((results[path] ??= {})[name] ??= []).push(run)
      }
    }
    console.log(`round ${round + 1}/${ROUNDS} done`)
  }
  console.log(`\norigin requests during the measured rounds: ${originRequests - beforeRounds} (all answers were cache hits when 0)\n`)
  console.log(`wrk -t2 -c${CONNECTIONS}, ${ROUNDS} rounds × ${SECONDS} s, cache workers ${WORKERS}, nginx worker_processes ${WORKERS}`)
  for (const path of Object.keys(PAGES)) {
    console.log(`\n${path}`)
    console.log('target       median rps   min–max rps           p99 (median)')
    const med: Record<string, number> = {}
    for (const [name, runs] of Object.entries(results[path])) {
      const rps = runs.map((r) => r.rps)
      med[name] = median(rps)
      console.log(`${name.padEnd(12)} ${med[name].toFixed(0).padStart(10)}   ${Math.min(...rps).toFixed(0).padStart(8)}–${Math.max(...rps).toFixed(0).padEnd(10)}   ${median(runs.map((r) => r.p99ms)).toFixed(2)} ms`)
    }
    const ours = results[path].flashcrowd.map((r) => r.rps)
    const ratio = (ref: string) => {
      const refs = results[path][ref].map((r) => r.rps)
      // Per-round ratios give the noise band of the comparison itself.
      const per = ours.map((v, i) => v / refs[i])
      return `${(med.flashcrowd / med[ref]).toFixed(2)}× (per-round ${Math.min(...per).toFixed(2)}–${Math.max(...per).toFixed(2)})`
    }
    console.log(`ratio flashcrowd / varnish: ${ratio('varnish')}`)
    console.log(`ratio flashcrowd / nginx:   ${ratio('nginx')}`)
    console.log(`ratio flashcrowd / no-front: ${ratio('no-front')}`)
    if (baseline !== undefined) console.log(`ratio flashcrowd / baseline (${BASELINE}): ${ratio('baseline')}`)
  }
  await stopAll()
  if (process.env.BENCH_SKIP_MEMORY !== '1') {
    console.log('\nmemory check (bench/cache-memory.ts)')
    spawnSync(process.execPath, ['--import', 'tsx', join(root, 'bench/cache-memory.ts')], { stdio: 'inherit' })
  }
}

process.on('SIGINT', () => { void stopAll().then(() => process.exit(130)) })
main().catch(async (err: Error) => {
  console.error(err.stack ?? err.message)
  await stopAll()
  process.exit(1)
})
