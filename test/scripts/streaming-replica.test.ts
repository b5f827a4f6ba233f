/**
 * The cluster's replica under its supervisor (scripts/streaming-replica.ts
 * clearPostmaster, scripts/supervisor.ts), with a real PostgreSQL server: a
 * postgres left running on the folder by a killed cluster is stopped, not
 * fought with; a SIGKILLed postmaster is restarted once (no loop on
 * "postmaster.pid already exists"); a stale postmaster.pid whose PID now
 * belongs to another process is removed; the supervised PID is the
 * postmaster's own; and a stop leaves the port closed.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { chown, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { freePort } from '../../common/free-port.js'
import { Supervisor } from '../../scripts/supervisor.js'
import { clearPostmaster, postmasterPid, prepareStreamingReplica, processesIn, serverUser, type PreparedReplica } from '../../scripts/streaming-replica.js'
import { processStartedAt } from '../../scripts/pid-record.js'
import { portRefused } from '../helpers/spawn.js'
import { privatePostgresUnavailable, startPrivatePostgres } from '../helpers/private-postgres.js'

const skip = process.env.DATABASE_URL ? false : 'needs DATABASE_URL (a real PostgreSQL server to replicate)'

async function answers (url: string): Promise<boolean> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 })
  try {
    await c.connect()
    return (await c.query<{ r: boolean }>('select pg_is_in_recovery() as r')).rows[0].r === true
  } catch { return false } finally { await c.end().catch(() => {}) }
}

async function until (what: string, check: () => boolean | Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!await check()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

t.test('the replica under the supervisor: orphans, a killed postmaster, a stale lock file, a clean stop', { skip, timeout: 240_000 }, async (t) => {
  const base = await mkdtemp(path.join(tmpdir(), 'fc-replica-'))
  const user = serverUser()
  if (user) await chown(base, user.uid, user.gid)
  t.teardown(() => rm(base, { recursive: true, force: true }))
  const port = await freePort()
  const prepared = await prepareStreamingReplica({ primaryUrl: process.env.DATABASE_URL!, dir: path.join(base, 'data'), port })
  if (typeof prepared === 'string') { t.comment(`skipped: ${prepared}`); t.pass('no replica here'); return }
  const replica: PreparedReplica = prepared
  const url = Object.assign(new URL(replica.url), { pathname: '/postgres' }).toString()
  // Whatever happens, nothing is left running on the folder.
  t.teardown(async () => {
    for (const pid of processesIn(replica.dir)) { try { process.kill(pid, 'SIGKILL') } catch {} }
  })

  // A cluster killed with SIGKILL leaves its replica running: an orphan, not our child any more.
  const orphan = spawn(replica.command[0], replica.command.slice(1), { ...replica.spawnOptions, stdio: 'ignore', detached: true })
  orphan.unref()
  await until('the orphan answers', () => answers(url))
  t.equal(postmasterPid(replica.dir), orphan.pid, 'the orphan holds the folder')

  const logs: string[] = []
  const supervisor = new Supervisor({ log: (name, line) => { logs.push(`${name}: ${line}`) } })
  let stopped = false
  t.teardown(async () => { if (!stopped) await supervisor.stop([]) })
  const spec = {
    name: 'replica', command: replica.command, env: {}, user,
    stopSignal: 'SIGINT' as const,
    beforeStart: async () => { const done = await clearPostmaster(replica.dir); if (done) logs.push(`cluster: ${done}`) }
  }
  await supervisor.start(spec)
  await until('the supervised replica answers', async () => postmasterPid(replica.dir) === supervisor.pid('replica') && await answers(url))
  t.equal(processStartedAt(orphan.pid!), undefined, 'the orphan was stopped')
  t.equal(supervisor.restarts('replica'), 0, 'started once: no restart loop')
  t.match(logs.join('\n'), /stopped the postgres left running/)

  // A fault test's SIGKILL reaches the postmaster itself (no wrapper): the supervisor starts it again, once.
  const killed = supervisor.pid('replica')!
  process.kill(killed, 'SIGKILL')
  await until('a new postmaster answers', async () => {
    const now = postmasterPid(replica.dir)
    return now !== undefined && now !== killed && now === supervisor.pid('replica') && await answers(url)
  })
  t.equal(supervisor.restarts('replica'), 1, `restarted once (${logs.filter((l) => /exited|FATAL|lock file/.test(l)).join(' | ')})`)

  await supervisor.stop([])
  stopped = true
  t.ok(await portRefused(port), 'the stop closed the replica port')
  t.same(processesIn(replica.dir), [], 'no process left on the folder')
  t.equal(postmasterPid(replica.dir), undefined, 'postmaster.pid removed by the server itself')

  // A lock file naming a live process that is not a postgres on this folder (its number was reused).
  await writeFile(path.join(replica.dir, 'postmaster.pid'), `${process.pid}\n${replica.dir}\n`)
  const again = new Supervisor({ log: (name, line) => { logs.push(`${name}: ${line}`) } })
  t.teardown(() => again.stop([]))
  await again.start(spec)
  await until('the replica answers after a stale lock file', async () => postmasterPid(replica.dir) === again.pid('replica') && await answers(url))
  t.equal(again.restarts('replica'), 0, 'started at once')
  t.match(logs.join('\n'), /removed a stale postmaster\.pid/)
  t.not(processStartedAt(process.pid), undefined, 'and the process that held the number was left alone')
  await again.stop([])
  t.ok(await portRefused(port), 'port closed')
})

// A standby holding any of these lower than its primary refuses to start
// ("recovery aborted because of insufficient parameter settings").
t.test('the replica copies the settings a standby may not hold lower than its primary (max_connections = 200)', { skip: privatePostgresUnavailable() ?? false, timeout: 180_000 }, async (t) => {
  const raised = { max_connections: 200, max_worker_processes: 12, max_wal_senders: 14, max_prepared_transactions: 7, max_locks_per_transaction: 96 }
  const primary = await startPrivatePostgres({ settings: Object.fromEntries(Object.entries(raised).map(([k, v]) => [k, String(v)])) })
  t.teardown(primary.remove)
  const base = await mkdtemp(path.join(tmpdir(), 'fc-replica-'))
  const user = serverUser()
  if (user) await chown(base, user.uid, user.gid)
  t.teardown(() => rm(base, { recursive: true, force: true }))
  const port = await freePort()
  const prepared = await prepareStreamingReplica({ primaryUrl: primary.url(), dir: path.join(base, 'data'), port })
  if (typeof prepared === 'string') throw new Error(prepared)
  const child = spawn(prepared.command[0], prepared.command.slice(1), { ...prepared.spawnOptions, stdio: ['ignore', 'ignore', 'pipe'] })
  let out = ''
  child.stderr!.on('data', (d) => { out = (out + d).slice(-5000) })
  t.teardown(async () => {
    for (const pid of processesIn(prepared.dir)) { try { process.kill(pid, 'SIGKILL') } catch {} }
  })
  const url = Object.assign(new URL(prepared.url), { pathname: '/postgres' }).toString()
  await until('the standby answers in recovery', async () => {
    if (child.exitCode !== null) throw new Error(`the standby exited: ${out}`)
    return answers(url)
  })
  const c = new pg.Client({ connectionString: url })
  await c.connect()
  const { rows } = await c.query<{ name: string, setting: string }>('select name, setting from pg_settings where name = any($1::text[])', [Object.keys(raised)])
  await c.end()
  t.same(Object.fromEntries(rows.map((r) => [r.name, Number(r.setting)])), raised, 'the standby runs with the primary\'s values')
  child.kill('SIGINT')
})
