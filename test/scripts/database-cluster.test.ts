/**
 * `npm run cluster` with its own database (scripts/database-cluster.ts) under
 * fire: Patroni, etcd and HAProxy for real, the cluster's own roles, visitors
 * posting forms from several addresses and reading cached and uncached pages,
 * while the database leader is broken five times — its postmaster killed
 * three times, the whole node lost once (Patroni and postmaster killed), and
 * one planned switchover — each once the standby is in sync again.
 *
 * Nothing acknowledged is lost or stored twice, every visitor gets the
 * write's answer or a 503 with Retry-After, writes resume within seconds,
 * reads keep being answered, no role process exits, and the old leader
 * rejoins as a synchronous standby every time.
 */
import t from 'tap'
import pg from 'pg'
import { spawnSync } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { getPriority, tmpdir } from 'node:os'
import path from 'node:path'
import { anyMembers, DATABASE_PRIORITY, databaseHaproxyConfig, databaseUnavailable, PATRONI_TIMING } from '../../scripts/database-cluster.js'
import { processStartedAt } from '../../scripts/pid-record.js'
import { processesIn } from '../../scripts/streaming-replica.js'
import { drillDatabaseUrl, startDrill, startVisitors, watchHealth, writeOutage, type Fault } from '../helpers/failover-drill.js'
import { portRefused, spawnScript } from '../helpers/spawn.js'

// Beyond the suite's per-file timeout (TAP_TIMEOUT): it waits on Patroni's timers five times over.
t.setTimeout(290_000)
const skip = databaseUnavailable() ?? false
if (skip) t.comment(`skipped: ${skip} (CI installs patroni, etcd-server and haproxy)`)

/** The faults, in order, and the write outage each may cost (ms). */
const PLAN: Array<{ fault: Fault, limitMs: number }> = [
  { fault: 'postmaster', limitMs: 5000 },
  { fault: 'switchover', limitMs: 3000 },
  { fault: 'postmaster', limitMs: 5000 },
  { fault: 'lost-node', limitMs: 12_000 },
  { fault: 'postmaster', limitMs: 5000 }
]
const ROLES = /^(front|cache|frontend|backend|mailer)\d*$/

t.test('the database leader dies, is lost and is switched over under visitors', { skip, timeout: 260_000 }, async (t) => {
  const began = Date.now()
  const drill = await startDrill()
  t.teardown(drill.remove)
  t.comment(`the cluster came up in ${((Date.now() - began) / 1000).toFixed(1)} s`)
  const rolePids = Object.fromEntries(Object.entries(await drill.pids()).filter(([name]) => ROLES.test(name)))
  t.ok(Object.keys(rolePids).length >= 6, `the roles are recorded: ${Object.keys(rolePids).join(', ')}`)
  await drill.whole(120_000)
  if (process.getuid?.() === 0) {
    const pids = await drill.pids()
    t.same(['etcd', 'patroni1', 'patroni2'].map((name) => getPriority(pids[name])), [DATABASE_PRIORITY, DATABASE_PRIORITY, DATABASE_PRIORITY], 'etcd and Patroni run ahead of the roles (nice)')
  }

  const author = `Failover ${Date.now()}`
  // Six visitors posting, three reading: enough to see every gap, light enough that Patroni keeps its pace on 2 loaded cores.
  const load = await startVisitors(drill.base, { writers: 6, author })
  const health = watchHealth(drill.roles)
  const results: Array<{ fault: Fault, leader: string, at: number, settledAt: number, limitMs: number }> = []
  try {
    for (const { fault, limitMs } of PLAN) {
      // Each fault once the standby is in sync again and writes flow.
      await drill.whole(90_000)
      const flowing = load.acked.length
      const deadline = Date.now() + 30_000
      while (load.acked.length < flowing + 8 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
      const { at, leader } = await drill.fault(fault)
      // Whole again: a new leader, and the old one back as a synchronous standby.
      const now = await drill.whole((PATRONI_TIMING.ttl * 3 + 60) * 1000, leader)
      t.pass(`${fault}: the leader moved from ${leader} to ${now}, and ${leader} rejoined as a synchronous standby`)
      results.push({ fault, leader, at, settledAt: Date.now(), limitMs })
      t.comment(`${fault}: whole again after ${((Date.now() - at) / 1000).toFixed(1)} s`)
    }
    // One promotion per fault and no other: under load, no leader lost its key on its own (Patroni's ttl/retry_timeout too tight).
    const timeline = (await anyMembers(drill.ports))?.find((m) => m.role === 'leader')?.timeline
    t.equal(timeline, 1 + PLAN.length, `the leader is on timeline ${1 + PLAN.length}: ${PLAN.length} promotions, none spurious`)
    // A last stretch of traffic after the last fault.
    await new Promise((resolve) => setTimeout(resolve, 1000))
  } finally {
    await load.stop()
    await health.stop()
  }

  const ackTimes = load.acked.map((a) => a.ackAt)
  for (const r of results) {
    const outage = writeOutage(ackTimes, r.at, r.settledAt)
    t.ok(outage <= r.limitMs, `${r.fault} (${r.leader}): writes stopped for ${(outage / 1000).toFixed(2)} s (at most ${r.limitMs / 1000} s)`)
  }
  t.comment(`writes: ${load.acked.length} acknowledged, ${load.retried} answers 503 + Retry-After (the visitor sent the same form again)`)
  t.same(load.badWrites, [], 'every visitor got the write\'s answer or a 503 with Retry-After')

  const client = new pg.Client({ connectionString: drillDatabaseUrl(drill) })
  await client.connect()
  const { rows } = await client.query<{ body: string, n: number }>('select body, count(*)::int as n from comments where author = $1 group by body', [author])
  await client.end()
  const stored = new Map(rows.map((r) => [r.body, r.n]))
  t.same(load.acked.filter((a) => !stored.has(a.text)).map((a) => a.text), [], `0 of ${load.acked.length} acknowledged writes lost`)
  t.same(rows.filter((r) => r.n > 1).map((r) => r.body), [], 'no write stored twice')

  t.same(load.cached.failed, [], `0 failed cached reads (${load.cached.ok} answered)`)
  const uncached = load.uncached.ok + load.uncached.failed.length
  t.ok(uncached > 50 && load.uncached.ok / uncached >= 0.99, `${load.uncached.ok} of ${uncached} uncached reads answered (at least 99 %): ${load.uncached.failed.slice(0, 5).join('; ')}`)

  // A failing-over database must not take the roles out of their load balancers (HAProxy, the caches' director).
  t.comment(`roles' /-/health answers: ${JSON.stringify(health.seen)}`)
  const out = Object.entries(health.seen).filter(([, answers]) => Object.keys(answers).some((a) => !a.startsWith('200'))).map(([name, answers]) => `${name} ${JSON.stringify(answers)}`)
  t.same(out, [], 'every role\'s /-/health answered 200 (ready or degraded) throughout')

  const after = await drill.pids()
  const changed = Object.entries(rolePids).filter(([name, pid]) => after[name] !== pid || processStartedAt(pid) === undefined).map(([name]) => name)
  t.same(changed, [], 'no role process exited or was restarted')

  const stopping = Date.now()
  t.equal(await drill.stop(), 0, 'the cluster stopped cleanly')
  t.comment(`stopped in ${((Date.now() - stopping) / 1000).toFixed(1)} s`)
  t.same(drill.layout.dataDirs.flatMap((dir) => processesIn(dir)), [], 'no postgres left running on the data folders')
  for (const port of [...drill.ports.postgres, ...drill.ports.patroni, drill.ports.etcd, drill.ports.write, drill.ports.read]) {
    t.ok(await portRefused(port), `port ${port} released`)
  }
})

t.test('HAProxy accepts the database routers\' configuration', { skip: spawnSync('haproxy', ['-v']).error ? 'haproxy is not installed' : false }, async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'fc-dbrouter-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'haproxy.cfg')
  const text = databaseHaproxyConfig({ postgres: [15501, 15502], patroni: [18008, 18009], etcd: 12379, write: 15000, read: 15001 })
  await writeFile(file, text)
  const check = spawnSync('haproxy', ['-c', '-f', file], { encoding: 'utf8' })
  t.equal(check.status, 0, check.stdout + check.stderr)
  t.match(text, /option httpchk OPTIONS \/primary/, 'writes go to the server whose Patroni says it leads')
  t.match(text, /option httpchk OPTIONS \/replica/, 'reads to the replicas')
  t.match(text, /timeout connect 250ms/)
  t.match(text, /inter 500ms fastinter 100ms downinter 100ms fall 2/)
})

t.test('a database section that is not whole stops the cluster before anything starts, saying why', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'fc-cluster-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const configFile = path.join(dir, 'cluster.json')
  await writeFile(configFile, JSON.stringify({ front: 1, caches: [2], frontends: [3], backends: [4], replica: 5, haproxyStats: 6, database: { postgres: [7, 8], patroni: [9], etcd: 10, write: 11, read: 12 } }))
  const run = spawnScript('scripts/cluster.ts', { CLUSTER_CONFIG: configFile, FLASHCROWD_STATE_DIR: dir, LOG_LEVEL: 'warn' })
  t.teardown(() => { run.child.kill('SIGKILL') })
  t.equal(await run.exited, 2, 'exit code 2')
  t.match(run.output(), /database\.patroni must list one port per database\.postgres port/)
})
