/**
 * `npm run bench:writes`: comments/s and p99 through the backend's HTTP API
 * (wrk, C like pgbench's own client, so neither side's client takes more of
 * the machine's cores than the other), beside pgbench's single-row-insert
 * TPS into the same table of the same database, as a ratio. Uses
 * DATABASE_URL (default: the local PostgreSQL); creates and drops a scratch
 * database.
 *
 * Options: --duration s (default 10), --connections n (default 50),
 * --replication: the price of synchronous replication instead — a private
 * primary with a streaming standby (started here, as the postgres user), the
 * same runs with synchronous_standby_names empty (the standby streams, the
 * commit does not wait) and '*' (every commit waits for the standby's flush,
 * as under Patroni's synchronous_mode), side by side.
 */
import { spawn, spawnSync } from 'node:child_process'
import { writeFile, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import pg from 'pg'
import { freePort } from '../common/free-port.js'
import { scratchDatabase } from './scratch-db.js'
import { buildDist, ensureTools, wrk, type WrkRun } from './tools.js'

const { values } = parseArgs({ options: { duration: { type: 'string', default: '10' }, connections: { type: 'string', default: '50' }, replication: { type: 'boolean', default: false } } })
const duration = Number(values.duration)
const connections = Number(values.connections)

function pgbench (url: string, script: string, clients: number, seconds: number): number {
  const u = new URL(url)
  const res = spawnSync('pgbench', ['-n', '-f', script, '-c', String(clients), '-j', '2', '-T', String(seconds), '-h', u.hostname, '-p', u.port || '5432', '-U', u.username || 'postgres', u.pathname.slice(1)], { encoding: 'utf8' })
  const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(res.stdout)?.[1]
  if (!tps) throw new Error(`pgbench failed: ${res.stderr || res.stdout}`)
  return Number(tps)
}

interface Measured { tps: number, plain: WrkRun, keyed: WrkRun, stored: number, poolSize: number }

/** pgbench's insert, then the backend's POST /v1/comments without and with keys, on a scratch database of DATABASE_URL's server. */
async function measure (): Promise<Measured> {
  const scratch = await scratchDatabase('writes', { tutorials: 20, news: 50, comments: 100, events: 10, completions: 10 })
  const url = scratch.url
  const dir = await mkdtemp(path.join(tmpdir(), 'fc-bench-'))
  let backend: ReturnType<typeof spawn> | undefined
  try {
    const article = (await scratch.query<{ id: number, slug: string }>('select id, slug from news order by id limit 1')).rows[0]

    // The reference: the same row, inserted by pgbench with as many clients as the backend's pool.
    const poolSize = 20
    const script = path.join(dir, 'insert.sql')
    await writeFile(script, `insert into comments (news_id, author, body) values (${article.id}, 'pgbench', 'a comment from the benchmark');\n`)
    const tps = pgbench(url, script, poolSize, duration)

    const port = await freePort()
    buildDist()
    backend = spawn(process.execPath, ['dist/backend/server.js'], {
      env: { ...process.env, PORT: String(port), DATABASE_URL: url, DATABASE_POOL_MAX: String(poolSize), LOG_LEVEL: 'error', BACKEND_RATE_LIMIT_MAX: '0', BACKEND_RATE_LIMIT_SAME_MAX: '0', BACKEND_MAX_EVENT_LOOP_DELAY_MS: '0', REDIS_URL: '' },
      stdio: ['ignore', 'inherit', 'inherit']
    })
    const base = `http://127.0.0.1:${port}`
    for (let i = 0; i < 200; i++) {
      try { if ((await fetch(`${base}/-/health`)).ok) break } catch { /* starting */ }
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    const body = JSON.stringify({ news: article.slug, author: 'wrk', body: 'a comment from the benchmark' })
    // One script for both runs: a key per request when asked (thread id and a
    // counter, so no two requests of the run share one), none otherwise.
    const lua = path.join(dir, 'comments.lua')
    await writeFile(lua, `
  wrk.method = "POST"
  wrk.body = ${JSON.stringify(body)}
  wrk.headers["Content-Type"] = "application/json"
  local threads = 0
  function setup (thread)
    threads = threads + 1
    thread:set("tid", threads)
  end
  function init (args)
    keyed = args[1] == "keyed"
    prefix = (args[2] or "run") .. "-" .. tostring(tid) .. "-"
    n = 0
  end
  function request ()
    if not keyed then return wrk.format() end
    n = n + 1
    return wrk.format(nil, nil, { ["Content-Type"] = "application/json", ["Idempotency-Key"] = prefix .. n })
  end
  `)
    const keyPrefix = `bench-${process.pid}-${Date.now()}`
    const run = (mode: 'plain' | 'keyed'): WrkRun =>
      wrk(`${base}/v1/comments`, { threads: 2, connections, seconds: duration, script: lua, scriptArgs: [mode, keyPrefix] })
    run('plain') // warm-up
    const plain = run('plain')
    const keyed = run('keyed')
    // The keyed run really was keyed: a stored key per answered request (a few
    // more when wrk stopped with requests in flight that still committed).
    const stored = Number((await scratch.query('select count(*) as n from idempotency_keys where key like $1', [`${keyPrefix}-%`])).rows[0].n)
    if (stored < keyed.requests) throw new Error(`keyed run: ${keyed.requests} answers but only ${stored} keys stored`)
    return { tps, plain, keyed, stored, poolSize }
  } finally {
    backend?.kill('SIGTERM')
    if (backend && backend.exitCode === null) await new Promise((resolve) => backend!.once('exit', resolve))
    await rm(dir, { recursive: true, force: true })
    await scratch.drop()
  }
}

const line = (label: string, r: WrkRun) =>
  `${label.padEnd(34)} ${r.rps.toFixed(0).padStart(7)} /s   p99 ${r.p99ms.toFixed(1).padStart(5)} ms   non-2xx ${r.non2xx}   socket errors ${r.socketErrors}`

ensureTools({ wrk: 'wrk' })
if (!values.replication) {
  const adminUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
  const { tps, plain, keyed, stored, poolSize } = await measure()
  console.log(`\nwrites: wrk -t2 -c${connections}, ${duration} s each, backend pool ${poolSize}, PostgreSQL at ${new URL(adminUrl).host}`)
  console.log(`${'pgbench single-row insert'.padEnd(34)} ${tps.toFixed(0).padStart(7)} tps (${poolSize} clients)`)
  console.log(line('POST /v1/comments', plain))
  console.log(line('POST /v1/comments + Idempotency-Key', keyed))
  console.log(`keys stored by the keyed run: ${stored} for ${keyed.requests} answered requests`)
  console.log(`ratio to pgbench: ${(plain.rps / tps).toFixed(2)}× plain, ${(keyed.rps / tps).toFixed(2)}× with keys (targets: ≥ 1.0× plain; ≥ 0.75× and p99 ≤ 20 ms with keys)`)
} else {
  const { privatePostgresUnavailable, startPrivatePostgres, startPrivateStandby } = await import('../test/helpers/private-postgres.js')
  const why = privatePostgresUnavailable()
  if (why) { console.error(`bench:writes --replication: ${why}`); process.exit(1) }
  // Durable as production: fsync and synchronous_commit on; room for wrk's pool and pgbench.
  const primary = await startPrivatePostgres({ settings: { max_connections: '200', shared_buffers: '128MB' } })
  const standby = await startPrivateStandby(primary)
  try {
    process.env.DATABASE_URL = primary.url('postgres')
    const admin = new pg.Client({ connectionString: primary.url('postgres') })
    await admin.connect()
    const results: Array<[string, Measured]> = []
    for (const [label, names] of [['asynchronous (standby streams)', ''], ['synchronous (commit waits for it)', '*']] as const) {
      await admin.query(`alter system set synchronous_standby_names = '${names}'`)
      await admin.query('select pg_reload_conf()')
      await new Promise((resolve) => setTimeout(resolve, 500))
      const sync = (await admin.query<{ n: number }>("select count(*)::int as n from pg_stat_replication where sync_state in ('sync', 'quorum')")).rows[0].n
      if ((sync > 0) !== (names !== '')) throw new Error(`${label}: pg_stat_replication shows ${sync} synchronous standbys`)
      results.push([label, await measure()])
    }
    await admin.end()
    console.log(`\nthe price of synchronous replication: wrk -t2 -c${connections}, ${duration} s each, a private primary with one streaming standby on this machine`)
    for (const [label, r] of results) {
      console.log(`${label}:`)
      console.log(`  ${'pgbench single-row insert'.padEnd(34)} ${r.tps.toFixed(0).padStart(7)} tps (${r.poolSize} clients)`)
      console.log(`  ${line('POST /v1/comments + Idempotency-Key', r.keyed)}`)
    }
    const [[, off], [, on]] = results
    console.log(`synchronous / asynchronous: pgbench ${(on.tps / off.tps).toFixed(2)}×, POST /v1/comments ${(on.keyed.rps / off.keyed.rps).toFixed(2)}× (p99 ${off.keyed.p99ms.toFixed(1)} → ${on.keyed.p99ms.toFixed(1)} ms)`)
  } finally {
    await standby.remove()
    await primary.remove()
  }
}
