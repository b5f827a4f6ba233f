/**
 * `npm run cluster` under fire: reads and writes through the front door while
 * one frontend and one backend are killed. No read of a cached page may fail
 * and no acknowledged write may be lost; the supervisor restarts both.
 */
import t from 'tap'
import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import net from 'node:net'
import pg from 'pg'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { spawnScript, waitForLine, portRefused } from '../helpers/spawn.js'
import { processStartedAt } from '../../scripts/pid-record.js'
import { freePorts } from '../../common/free-port.js'
import { createTestDatabase } from '../helpers/database.js'
import { prometheusSkipped } from '../../scripts/cluster-prometheus.js'


const skip = !process.env.DATABASE_URL || !process.env.REDIS_URL ? 'the cluster needs DATABASE_URL and REDIS_URL' : false

t.test('kill a frontend and a backend mid-traffic', { skip, timeout: 240_000 }, async (t) => {
  const database = await createTestDatabase('postgres')
  t.teardown(database.close)
  const dir = await mkdtemp(path.join(tmpdir(), 'fc-cluster-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  // Three cache nodes, more than the default cluster.json: the stop must reach every one.
  const [front, c1, c2, c3, f1, f2, f3, b1, b2, replica, stats, prom] = await freePorts(12)
  const configFile = path.join(dir, 'cluster.json')
  await writeFile(configFile, JSON.stringify({ front, caches: [c1, c2, c3], frontends: [f1, f2, f3], backends: [b1, b2], replica, haproxyStats: stats, prometheus: prom }))
  const run = spawnScript('scripts/cluster.ts', {
    CLUSTER_CONFIG: configFile, FLASHCROWD_STATE_DIR: dir, DATABASE_URL: database.url, REDIS_URL: process.env.REDIS_URL,
    LOG_LEVEL: 'warn', CLUSTER_REPLICA: 'off', ADMIN_TOKEN: 'cluster-test-admin-token',
    // Every visitor of this test is 127.0.0.1: the per-client write limit would be the only thing measured.
    BACKEND_RATE_LIMIT_MAX: '0'
  })
  let stopped = false
  t.teardown(async () => { if (!stopped) { run.child.kill('SIGTERM'); await run.exited } })
  const base = await waitForLine(run, /FLASHCROWD_URL=(\S+)/, 120_000)
  t.ok(base, `the cluster came up (output: ${run.output().slice(-3000)})`)
  if (!base) return
  const pidFile = path.join(dir, 'cluster', String(front), 'pids.json')
  const pids = JSON.parse(await readFile(pidFile, 'utf8')) as Record<string, number>

  // Warm a handful of pages on both cache nodes.
  const newsHtml = await (await fetch(`${base}/news`)).text()
  const slugs = [...newsHtml.matchAll(/href="\/news\/([a-z0-9-]+)"/g)].map((m) => m[1]).slice(0, 5)
  t.ok(slugs.length >= 3)
  const pages = ['/', '/news', '/tutorials', ...slugs.map((s) => `/news/${s}`)]
  for (let i = 0; i < 4; i++) for (const p of pages) await (await fetch(base + p)).arrayBuffer()

  const readFailures: string[] = []
  let reads = 0
  const acknowledged: string[] = []
  const writeStatuses = new Map<string, number>()
  let writeAttempts = 0
  const until = Date.now() + 8000
  const reader = async () => {
    while (Date.now() < until) {
      const p = pages[reads++ % pages.length]
      try {
        const res = await fetch(base + p)
        await res.arrayBuffer()
        if (res.status !== 200) readFailures.push(`${p} → ${res.status}`)
      } catch (err) { readFailures.push(`${p} → ${(err as Error).message}`) }
    }
  }
  const writer = async (w: number) => {
    while (Date.now() < until) {
      const text = `cluster write ${w}-${writeAttempts++}-${Date.now()}`
      try {
        const res = await fetch(`${base}/news/${slugs[0]}/comments`, {
          method: 'POST', redirect: 'manual',
          headers: { 'content-type': 'application/x-www-form-urlencoded', origin: base },
          body: new URLSearchParams({ author: 'Cluster', body: text, form_nonce: randomBytes(16).toString('hex') }).toString()
        })
        await res.arrayBuffer()
        writeStatuses.set(String(res.status), (writeStatuses.get(String(res.status)) ?? 0) + 1)
        if (res.status === 303) acknowledged.push(text)
      } catch (err) {
        // Not acknowledged: may or may not have happened; both are fine.
        writeStatuses.set((err as Error).message, (writeStatuses.get((err as Error).message) ?? 0) + 1)
      }
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }
  const killer = async () => {
    await new Promise((resolve) => setTimeout(resolve, 2000))
    process.kill(pids.frontend1, 'SIGKILL')
    process.kill(pids.backend1, 'SIGKILL')
  }
  await Promise.all([reader(), reader(), reader(), writer(1), writer(2), killer()])

  t.ok(reads > 100, `${reads} reads`)
  t.same(readFailures, [], 'no failed read of a cached page')
  t.comment(`write answers: ${JSON.stringify(Object.fromEntries(writeStatuses))}`)
  t.ok(acknowledged.length > writeAttempts / 2, `${acknowledged.length} of ${writeAttempts} writes acknowledged`)
  const client = new pg.Client({ connectionString: database.url })
  await client.connect()
  const stored = new Set((await client.query<{ body: string }>("select body from comments where author = 'Cluster'")).rows.map((r) => r.body))
  await client.end()
  t.same(acknowledged.filter((text) => !stored.has(text)), [], 'every acknowledged write is stored')

  // The supervisor brought both back.
  let restarted = false
  for (let i = 0; i < 100 && !restarted; i++) {
    const now = JSON.parse(await readFile(pidFile, 'utf8')) as Record<string, number>
    restarted = now.frontend1 !== pids.frontend1 && now.backend1 !== pids.backend1
    if (!restarted) await new Promise((resolve) => setTimeout(resolve, 200))
  }
  t.ok(restarted, 'frontend1 and backend1 were restarted')

  // Issue 25: a visitor gets no metrics through the front door; Prometheus (when installed) scrapes every role with the cluster's token.
  const visitor = await fetch(`${base}/-/metrics`)
  t.equal(visitor.status, 401, 'a visitor\'s GET /-/metrics through the front door is refused')
  t.notMatch(await visitor.text(), /flashcrowd_/)
  const noPrometheus = prometheusSkipped({ caches: [], frontends: [], backends: [], prometheus: prom })
  if (noPrometheus) t.comment(`${noPrometheus}: its scrape is not checked`)
  else {
    let health: string[] = []
    for (let i = 0; i < 150; i++) {
      const targets = await fetch(`http://127.0.0.1:${prom}/api/v1/targets`).then((r) => r.json() as Promise<{ data: { activeTargets: Array<{ health: string, labels: { job: string } }> } }>).catch(() => undefined)
      health = (targets?.data.activeTargets ?? []).map((x) => `${x.labels.job} ${x.health}`)
      if (health.length === 8 && health.every((h) => h.endsWith(' up'))) break
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    t.same(health.filter((h) => !h.endsWith(' up')), [], `Prometheus scrapes the 8 roles with the metrics token: ${health.join(', ')}`)
    t.equal(health.length, 8)
  }

  const last = JSON.parse(await readFile(pidFile, 'utf8')) as Record<string, number>
  t.ok(last.cache3, 'the third cache node is recorded')
  if (!noPrometheus) t.ok(last.prometheus, 'Prometheus is recorded')
  run.child.kill('SIGTERM')
  t.equal(await run.exited, 0)
  stopped = true
  const running = Object.entries(last).filter(([, pid]) => processStartedAt(pid) !== undefined).map(([name]) => name)
  t.same(running, [], 'every recorded process stopped')
  t.notOk(existsSync(pidFile), 'the record is removed')
  for (const port of [front, c1, c2, c3, f1, f2, f3, b1, b2, prom]) t.ok(await portRefused(port), `port ${port} released`)
})

t.test('a cluster whose ports are taken exits non-zero before starting anything, naming them', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'fc-cluster-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const blocker = net.createServer()
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => blocker.close(() => resolve())))
  const taken = (blocker.address() as net.AddressInfo).port
  const [front, c1, f1, replica, stats] = await freePorts(5)
  const configFile = path.join(dir, 'cluster.json')
  await writeFile(configFile, JSON.stringify({ front, caches: [c1], frontends: [f1], backends: [taken], replica, haproxyStats: stats }))
  // No database is needed: the ports are checked first (an unreachable one proves nothing was tried).
  const run = spawnScript('scripts/cluster.ts', { CLUSTER_CONFIG: configFile, FLASHCROWD_STATE_DIR: dir, DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none', LOG_LEVEL: 'warn' })
  t.teardown(() => { run.child.kill('SIGKILL') })
  t.equal(await run.exited, 1, 'exit code 1')
  t.match(run.output(), new RegExp(`port ${taken} \\(backend1\\) already in use`))
})

t.test('a cluster whose database cannot be reached exits non-zero, saying why', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'fc-cluster-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const [front, c1, f1, b1, replica, stats, nothing] = await freePorts(7)
  const configFile = path.join(dir, 'cluster.json')
  await writeFile(configFile, JSON.stringify({ front, caches: [c1], frontends: [f1], backends: [b1], replica, haproxyStats: stats }))
  const run = spawnScript('scripts/cluster.ts', { CLUSTER_CONFIG: configFile, FLASHCROWD_STATE_DIR: dir, DATABASE_URL: `postgres://postgres@127.0.0.1:${nothing}/none`, LOG_LEVEL: 'warn' })
  t.teardown(() => { run.child.kill('SIGKILL') })
  t.equal(await run.exited, 1, 'exit code 1')
  t.match(run.output(), /start-up failed: .*ECONNREFUSED/)
})

t.test('--help prints the usage and starts nothing; an unknown command is refused with it', async (t) => {
  const help = spawnScript('scripts/cluster.ts', { LOG_LEVEL: 'warn' }, ['--help'])
  t.teardown(() => { help.child.kill('SIGKILL') })
  t.equal(await help.exited, 0)
  t.match(help.output(), /usage: npm run cluster \[-- stop \| --help\]/)
  t.match(help.output(), /npm run cluster -- stop/)
  const wrong = spawnScript('scripts/cluster.ts', { LOG_LEVEL: 'warn' }, ['stpo'])
  t.teardown(() => { wrong.child.kill('SIGKILL') })
  t.equal(await wrong.exited, 2)
  t.match(wrong.output(), /unknown command "stpo"\nusage: npm run cluster/)
})
