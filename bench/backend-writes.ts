/**
 * `npm run bench:writes`: comments/s and p99 through the backend's HTTP API
 * (autocannon), beside pgbench's single-row-insert TPS into the same table of
 * the same database, as a ratio. Uses DATABASE_URL (default: the local
 * PostgreSQL); creates and drops a scratch database.
 *
 * Options: --duration s (default 10), --connections n (default 50)
 */
import { spawn, spawnSync } from 'node:child_process'
import { writeFile, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import pg from 'pg'
import autocannon from 'autocannon'
import { createDatabase } from '../common/db.js'
import { migrateToLatest } from '../migrations/migrator.js'
import { seed } from '../common/seed.js'
import { freePort } from '../common/free-port.js'

const { values } = parseArgs({ options: { duration: { type: 'string', default: '10' }, connections: { type: 'string', default: '50' } } })
const duration = Number(values.duration)
const connections = Number(values.connections)
const adminUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const name = `fc_bench_${process.pid}`


async function admin (query: string): Promise<void> {
  const c = new pg.Client({ connectionString: adminUrl })
  await c.connect()
  try { await c.query(query) } finally { await c.end() }
}

function pgbench (url: string, script: string, clients: number, seconds: number): number {
  const u = new URL(url)
  const res = spawnSync('pgbench', ['-n', '-f', script, '-c', String(clients), '-j', '2', '-T', String(seconds), '-h', u.hostname, '-p', u.port || '5432', '-U', u.username || 'postgres', u.pathname.slice(1)], { encoding: 'utf8' })
  const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(res.stdout)?.[1]
  if (!tps) throw new Error(`pgbench failed: ${res.stderr || res.stdout}`)
  return Number(tps)
}

await admin(`create database ${name}`)
const url = Object.assign(new URL(adminUrl), { pathname: `/${name}` }).toString()
const dir = await mkdtemp(path.join(tmpdir(), 'fc-bench-'))
let backend: ReturnType<typeof spawn> | undefined
try {
  const handle = createDatabase({ url, max: 2, statementTimeoutMs: 600_000 })
  await migrateToLatest(handle.db)
  await seed(handle.db, { sizes: { tutorials: 20, news: 50, comments: 100, events: 10, completions: 10 } })
  const article = await handle.db.selectFrom('news').select(['id', 'slug']).orderBy('id').executeTakeFirstOrThrow()
  await handle.close()

  // The reference: the same row, inserted by pgbench with as many clients as the backend's pool.
  const poolSize = 20
  const script = path.join(dir, 'insert.sql')
  await writeFile(script, `insert into comments (news_id, author, body) values (${article.id}, 'pgbench', 'a comment from the benchmark');\n`)
  const tps = pgbench(url, script, poolSize, duration)

  const port = await freePort()
  backend = spawn(process.execPath, ['--import', 'tsx', 'backend/server.ts'], {
    env: { ...process.env, PORT: String(port), DATABASE_URL: url, DATABASE_POOL_MAX: String(poolSize), LOG_LEVEL: 'error', BACKEND_RATE_LIMIT_MAX: '0', BACKEND_RATE_LIMIT_SAME_MAX: '0', BACKEND_MAX_EVENT_LOOP_DELAY_MS: '0', REDIS_URL: '' },
    stdio: ['ignore', 'inherit', 'inherit']
  })
  const base = `http://127.0.0.1:${port}`
  for (let i = 0; i < 200; i++) {
    try { if ((await fetch(`${base}/-/health`)).ok) break } catch { /* starting */ }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  const body = JSON.stringify({ news: article.slug, author: 'autocannon', body: 'a comment from the benchmark' })
  const run = (withKeys: boolean) => autocannon({
    url: `${base}/v1/comments`,
    method: 'POST',
    connections,
    duration,
    headers: { 'content-type': 'application/json' },
    body,
    requests: withKeys ? [{ setupRequest: (req: any) => ({ ...req, headers: { ...req.headers, 'idempotency-key': `bench-${Math.random().toString(36).slice(2)}-${Date.now()}` } }) }] : undefined
  })
  await run(false) // warm-up
  const plain = await run(false)
  const keyed = await run(true)
  const line = (label: string, r: autocannon.Result) =>
    `${label.padEnd(34)} ${r.requests.average.toFixed(0).padStart(7)} /s   p99 ${String(r.latency.p99).padStart(4)} ms   non-2xx ${r.non2xx}   errors ${r.errors}`
  console.log(`\nwrites: ${connections} connections, ${duration} s each, backend pool ${poolSize}, PostgreSQL at ${new URL(adminUrl).host}`)
  console.log(`${'pgbench single-row insert'.padEnd(34)} ${tps.toFixed(0).padStart(7)} tps (${poolSize} clients)`)
  console.log(line('POST /v1/comments', plain))
  console.log(line('POST /v1/comments + Idempotency-Key', keyed))
  console.log(`ratio to pgbench: ${(plain.requests.average / tps).toFixed(2)}× plain, ${(keyed.requests.average / tps).toFixed(2)}× with keys (targets: ≥ 1.0× plain; ≥ 0.75× and p99 ≤ 20 ms with keys)`)
} finally {
  backend?.kill('SIGTERM')
  if (backend && backend.exitCode === null) await new Promise((resolve) => backend!.once('exit', resolve))
  await rm(dir, { recursive: true, force: true })
  await admin(`drop database if exists ${name} with (force)`)
}
