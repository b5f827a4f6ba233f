/**
 * `npm run bench:loadtest`: how much load the load tester makes, against
 * what the machine can make. One static page served by nginx (started here
 * on a free loopback port), hit in interleaved rounds by
 *   1. wrk (C, the reference): `wrk -t W -c C`,
 *   2. bare autocannon with its own `workers: W` and C connections,
 *   3. our loadtest: a one-URL scenario, `--workers W --connections C`,
 * for W = 1 and 2. Prints medians with the spread (min–max) and the ratios
 * ours/wrk (target ≥ 0.5×, aim 0.8×) and ours/bare (the scenario logic
 * may cost at most 10 %).
 *
 * BENCH_ROUNDS (3), BENCH_SECONDS (5), BENCH_CONNECTIONS (100),
 * BENCH_WORKERS ("1,2") change the run. nginx is stopped by its PID at the end.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import autocannon from 'autocannon'
import { freePort } from '../common/free-port.js'
import { runLoadTest } from '../loadtest/run.js'
import { validateScenario } from '../loadtest/scenarios.js'
import { ensureTools, wrk } from './tools.js'

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5)
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 100)
const WORKERS = (process.env.BENCH_WORKERS ?? '1,2').split(',').map(Number)

const tmp = mkdtempSync(join(tmpdir(), 'flashcrowd-bench-loadtest-'))
let nginx: ChildProcess | undefined

async function startNginx (port: number): Promise<string> {
  const www = join(tmp, 'www')
  spawnSync('mkdir', ['-p', www, join(tmp, 'logs')])
  // nginx's workers run as an unprivileged user: they must be able to read the page
  chmodSync(tmp, 0o755)
  const line = '<p>Hour of Code: the quick brown fox jumps over the lazy dog, again and again.</p>\n'
  writeFileSync(join(www, 'index.html'), `<!doctype html><title>static</title>\n${line.repeat(25)}`)
  // the loadtest reads the sitemap first; it lists the one page
  writeFileSync(join(www, 'sitemap.xml'), '<?xml version="1.0"?>\n<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>http://bench.invalid/</loc></url></urlset>\n')
  const conf = `daemon off;
worker_processes auto;
pid ${tmp}/nginx.pid;
error_log ${tmp}/logs/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${tmp}/logs; proxy_temp_path ${tmp}/logs; fastcgi_temp_path ${tmp}/logs; uwsgi_temp_path ${tmp}/logs; scgi_temp_path ${tmp}/logs;
  keepalive_requests 10000000;
  keepalive_timeout 60s;
  server { listen 127.0.0.1:${port}; root ${www}; }
}
`
  writeFileSync(join(tmp, 'nginx.conf'), conf)
  nginx = spawn('nginx', ['-c', join(tmp, 'nginx.conf'), '-p', tmp, '-e', join(tmp, 'logs', 'error.log')], { stdio: ['ignore', 'ignore', 'inherit'] })
  nginx.once('exit', (code) => { if (code) console.error(`nginx exited with ${code}: see ${tmp}/logs/error.log`) })
  const url = `http://127.0.0.1:${port}/`
  const deadline = Date.now() + 20_000
  for (;;) {
    try {
      const r = await fetch(url)
      await r.arrayBuffer()
      if (r.ok) return url
      throw new Error(`nginx answered ${r.status}`)
    } catch (err) {
      if ((err as Error).message.startsWith('nginx answered')) throw err
      // not up yet
    }
    if (Date.now() > deadline) throw new Error('nginx did not start')
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

function stopNginx (): Promise<void> {
  const child = nginx
  if (!child || child.exitCode !== null || child.pid === undefined) return Promise.resolve()
  return new Promise(resolve => {
    const kill = setTimeout(() => { try { process.kill(child.pid!, 'SIGKILL') } catch { /* gone */ } resolve() }, 5000)
    child.once('exit', () => { clearTimeout(kill); resolve() })
    // TERM to the master: it stops its workers
    try { process.kill(child.pid!, 'SIGTERM') } catch { clearTimeout(kill); resolve() }
  })
}

function wrkRps (url: string, workers: number): number {
  return wrk(url, { threads: workers, connections: CONNECTIONS, seconds: SECONDS }).rps
}

async function bare (url: string, workers: number): Promise<number> {
  const opts: autocannon.Options = { url, connections: CONNECTIONS, duration: SECONDS }
  // autocannon's own thread mode; with one worker it runs in this thread, as it usually does
  if (workers > 1) opts.workers = workers
  const r = await autocannon(opts)
  return r.requests.total / r.duration
}

const scenario = validateScenario({
  name: 'one-url',
  stages: [{ name: 'steady', duration: '100%', to: '100%' }],
  mix: [{ action: 'page', path: '/', weight: 1 }]
}, 'one-url')

async function ours (url: string, workers: number): Promise<number> {
  const { summary } = await runLoadTest({
    scenario, url, duration: SECONDS, model: 'closed', target: CONNECTIONS, pool: CONNECTIONS, step: 1,
    seed: 1, timeout: 10, thresholds: [], progress: null, workers
  })
  if (summary.totals.errors > 0) throw new Error(`our loadtest saw ${summary.totals.errors} errors`)
  return summary.totals.rps
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
const k = (x: number): string => Math.round(x).toLocaleString('en-US')

async function main (): Promise<void> {
  ensureTools({ wrk: 'wrk', nginx: 'nginx' })
  const url = await startNginx(await freePort())
  console.log(`bench:loadtest: ${url} (nginx, static page) · ${CONNECTIONS} connections · ${SECONDS} s × ${ROUNDS} rounds, interleaved · load average before ${loadavg().map(x => x.toFixed(1)).join(' ')}`)
  const res = new Map<string, number[]>()
  const put = (key: string, v: number): void => { res.set(key, [...(res.get(key) ?? []), v]) }
  for (let round = 1; round <= ROUNDS; round++) {
    for (const w of WORKERS) {
      // the order rotates so no tool always runs on a machine warmed (or tired) by another
      const tools: Array<[string, () => Promise<number> | number]> = [['wrk', () => wrkRps(url, w)], ['autocannon', () => bare(url, w)], ['loadtest', () => ours(url, w)]]
      for (let i = 0; i < tools.length; i++) {
        const [name, run] = tools[(i + round) % tools.length]
        const v = await run()
        put(`${name}/${w}`, v)
        console.log(`  round ${round} · workers ${w} · ${name.padEnd(10)} ${k(v).padStart(8)} req/s`)
      }
    }
  }
  console.log(`\nload average after ${loadavg().map(x => x.toFixed(1)).join(' ')} (the machine is shared: figures are noisy)\n`)
  console.log('workers  wrk req/s (min–max)       autocannon req/s (min–max)  loadtest req/s (min–max)   loadtest/wrk  loadtest/autocannon')
  for (const w of WORKERS) {
    const [a, b, c] = ['wrk', 'autocannon', 'loadtest'].map(n => res.get(`${n}/${w}`) ?? [])
    const cell = (xs: number[]): string => `${k(median(xs))} (${k(Math.min(...xs))}–${k(Math.max(...xs))})`.padEnd(27)
    console.log(`${String(w).padEnd(9)}${cell(a)}${cell(b)}${cell(c)}${(median(c) / median(a)).toFixed(2).padStart(6)}×      ${(median(c) / median(b)).toFixed(2).padStart(6)}×`)
  }
  console.log('\ntargets: loadtest ≥ 0.5× wrk (aim 0.8×); loadtest ≥ 0.9× bare autocannon with the same workers')
}

main()
  .catch((err: unknown) => { console.error(err); process.exitCode = 1 })
  .finally(async () => {
    await stopNginx()
    rmSync(tmp, { recursive: true, force: true })
  })
