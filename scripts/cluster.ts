/**
 * `npm run cluster`: the production topology as local processes, against the
 * real local PostgreSQL and Redis: 2 cache nodes, 3 frontends, 2 backends,
 * 2 mailers (sending through SMTP_URL, or into the state folder without it),
 * HAProxy in front when installed (a small TCP balancer otherwise), and a
 * streaming replica for the frontends' reads when the PostgreSQL server
 * binaries are present and the primary allows replication connections
 * (otherwise the primary doubles as the read pool, and it says so).
 *
 * With a `database` section in cluster.json (`postgres`, `patroni`, `etcd`,
 * `write`, `read` ports) it runs its own database instead: two PostgreSQL
 * servers under Patroni over a one-node etcd, HAProxy routing writes to the
 * leader and reads to the replica (scripts/database-cluster.ts); the roles
 * connect through those routers and ride through a failover.
 *
 * Ports come from cluster.json (or CLUSTER_CONFIG). The PIDs of every process
 * are kept in .flashcrowd/cluster/<front port>/pids.json (scripts/pid-record.ts)
 * for fault tests and for `npm run cluster -- stop`, which stops every
 * process recorded there (also after the cluster itself was killed); a new
 * cluster on the same ports first stops what a killed one left running.
 */
import { spawnSync } from 'node:child_process'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import path from 'node:path'
import pg from 'pg'
import { Type } from '@sinclair/typebox'
import { CommonEnv, DatabaseEnv, loadConfigOrExit } from '../common/config.js'
import { prepareDatabase } from '../common/database-url.js'
import { portsInUse } from '../common/free-port.js'
import { STOP_GRACE_MS, Supervisor, adminToken, metricsToken, createLogWriter, ROOT, shutdownLog, waitHealthy } from './supervisor.js'
import { gracefulShutdown } from '../common/shutdown.js'
import { haproxyConfig } from './haproxy-config.js'
import { PidRecorder, isRecordedProcess, processStartedAt, readPidRecord, stopGroups, stopProcess, stopRecorded } from './pid-record.js'
import { clearPostmaster, postmasterPid, prepareStreamingReplica, serverUser } from './streaming-replica.js'
import { MailerEnv } from '../mailer/config.js'
import { clearDatabaseCluster, databasePortNames, databasePortsProblem, databaseUnavailable, databaseUrls, prepareDatabaseCluster, waitWritable, type DatabasePorts } from './database-cluster.js'
import { CdnIdentityEnv, CdnPurgeEnv } from '../common/cdn.js'
import { freePort } from '../common/free-port.js'
import { cdnEnv } from './cdn-env.js'
import { prometheusSkipped, startPrometheus } from './cluster-prometheus.js'

const ClusterEnv = Type.Object({
  LOG_LEVEL: CommonEnv.LOG_LEVEL,
  FLASHCROWD_STATE_DIR: DatabaseEnv.FLASHCROWD_STATE_DIR,
  ADMIN_TOKEN: CommonEnv.ADMIN_TOKEN,
  METRICS_TOKEN: CommonEnv.METRICS_TOKEN,
  DATABASE_URL: Type.String({ pattern: '^postgres(ql)?://', default: 'postgres://postgres@127.0.0.1:5432/flashcrowd', description: 'Primary PostgreSQL (created if missing).' }),
  REDIS_URL: Type.String({ pattern: '^rediss?://', default: 'redis://127.0.0.1:6379', description: 'Redis for the bus, rate limits and the shared render cache.' }),
  REDIS_PREFIX: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9:_.-]{1,64}$', description: 'Namespace of the cluster\'s Redis keys (default: flashcrowd:<database name>, so clusters on different databases never share pages or events).' })),
  CLUSTER_CONFIG: Type.String({ default: 'cluster.json', description: 'Ports of the local cluster.' }),
  CLUSTER_REPLICA: Type.Union([Type.Literal('auto'), Type.Literal('off')], { default: 'auto', description: 'Start a streaming replica for the frontends when possible.' }),
  CLUSTER_REPLICA_DELAY_MS: Type.Integer({ minimum: 0, maximum: 600_000, default: 0, description: 'recovery_min_apply_delay of the cluster\'s replica: rehearse a lagging replica (e.g. 500 or 2000).' }),
  DATABASE_READ_URL: Type.Optional(Type.String({ pattern: '^postgres(ql)?://', description: 'An existing replica for the frontends\' reads; the cluster then starts none.' })),
  SMTP_URL: MailerEnv.properties.SMTP_URL,
  ...CdnIdentityEnv,
  ...CdnPurgeEnv
})

interface Ports { front: number, caches: number[], frontends: number[], backends: number[], mailers?: number[], purger?: number, replica: number, haproxyStats: number, prometheus?: number, database?: DatabasePorts }

const config = loadConfigOrExit(ClusterEnv, 'cluster')
const ports = JSON.parse(await readFile(path.resolve(ROOT, config.CLUSTER_CONFIG), 'utf8')) as Ports
if (ports.database !== undefined) {
  const problem = databasePortsProblem(ports.database)
  if (problem) {
    console.error(`cluster: ${config.CLUSTER_CONFIG}: ${problem}`)
    process.exit(2)
  }
}
const database = ports.database
const stateDir = path.resolve(ROOT, config.FLASHCROWD_STATE_DIR, 'cluster', String(ports.front))
await mkdir(stateDir, { recursive: true })
const log = await createLogWriter(Boolean(process.stdout.isTTY))
const say = (msg: string) => log('cluster', msg, 'out')
const started = Date.now()
const haproxy = spawnSync('haproxy', ['-v'], { encoding: 'utf8' }).status === 0
const noPrometheus = prometheusSkipped(ports)
const pidFile = path.join(stateDir, 'pids.json')
const replicaDir = path.join(stateDir, 'replica')
const recorder = new PidRecorder(pidFile)
// Every node cluster.json names, in stop order; the bound of a whole stop follows from it.
const nodes = ['front', ...ports.caches.map((_, i) => `cache${i + 1}`), ...ports.frontends.map((_, i) => `frontend${i + 1}`), ...ports.backends.map((_, i) => `backend${i + 1}`), ...(cdnEnv(config).purger ? ['purger'] : []), 'replica',
  ...(database ? ['database-router', ...database.patroni.map((_, i) => `patroni${i + 1}`), 'etcd'] : [])]
const STOP_BOUND_MS = stopGroups(nodes).length * STOP_GRACE_MS + 5000
/** postgres stops at once on SIGINT (fast shutdown); on SIGTERM it would wait for every client session. */
const signalOf = (name: string): NodeJS.Signals => name === 'replica' ? 'SIGINT' : 'SIGTERM'

/**
 * Stops what the record names: the cluster's supervisor first (it stops its
 * processes in order and removes the record), then whatever recorded process
 * still runs (the supervisor was killed, or did not finish); last, a postgres
 * still running on the replica's folder, which records itself there
 * (postmaster.pid) whether or not pids.json still names it.
 */
async function stopRecordedCluster (): Promise<string[]> {
  const record = await readPidRecord(pidFile)
  const done: string[] = []
  if (record) {
    const { cluster: supervisorPid, ...rest } = record.pids
    if (supervisorPid !== undefined && supervisorPid !== process.pid && isRecordedProcess(supervisorPid, record.writtenAt)) {
      say(`stopping the cluster's supervisor (PID ${supervisorPid})`)
      await stopProcess(supervisorPid, 'SIGTERM', STOP_BOUND_MS)
      done.push('cluster')
    }
    done.push(...await stopRecorded(rest, record.writtenAt, { signalOf, log: say }))
    await recorder.remove()
  }
  const replica = await clearPostmaster(replicaDir)
  if (replica) {
    say(replica)
    if (!done.includes('replica')) done.push('replica')
  }
  // Patroni detaches its postmasters: one still running outlived a Patroni that was killed.
  if (database) {
    for (const what of await clearDatabaseCluster(stateDir, database)) {
      say(what)
      if (!done.includes('postgres')) done.push('postgres')
    }
  }
  return done
}

const USAGE = `usage: npm run cluster [-- stop | --help]
  npm run cluster             builds, then starts the topology cluster.json names (CLUSTER_CONFIG: another file)
                              against DATABASE_URL and REDIS_URL; Ctrl-C stops it
  npm run cluster -- stop     stops every process recorded in .flashcrowd/cluster/<front port>/pids.json
                              (also after the cluster itself was killed)
Ports, counts and the optional database and CDN sections: docs/operating.md.`

if (process.argv[2] === '--help' || process.argv[2] === '-h') {
  console.log(USAGE)
  process.exit(0)
}
if (process.argv[2] === 'stop') {
  const done = await stopRecordedCluster()
  say(done.length > 0 ? `stopped: ${done.join(', ')}` : `nothing recorded running (${path.relative(ROOT, pidFile)})`)
  process.exit(0)
} else if (process.argv[2] !== undefined) {
  console.error(`cluster: unknown command ${JSON.stringify(process.argv[2])}\n${USAGE}`)
  process.exit(2)
}

// A record left behind: either a cluster runs on these ports now, or one was killed and its processes may still run.
const previous = await readPidRecord(pidFile)
const running = previous?.pids.cluster
if (previous && running !== undefined && isRecordedProcess(running, previous.writtenAt)) {
  console.error(`cluster: a cluster already runs on these ports (PID ${running}); stop it first: npm run cluster -- stop`)
  process.exit(1)
}
const left = await stopRecordedCluster()
if (left.length > 0) say(`stopped what a cluster that did not stop left running: ${left.join(', ')}`)

// Every port the cluster will listen on, refused before anything starts (a role
// that cannot listen would otherwise be restarted until start-up gives up).
const planned: Array<[string, number]> = [
  ['front', ports.front],
  ...ports.caches.map((p, i): [string, number] => [`cache${i + 1}`, p]),
  ...ports.frontends.map((p, i): [string, number] => [`frontend${i + 1}`, p]),
  ...ports.backends.map((p, i): [string, number] => [`backend${i + 1}`, p]),
  ...(haproxy ? [['HAProxy stats', ports.haproxyStats] as [string, number]] : []),
  ...(noPrometheus === undefined ? [['Prometheus', ports.prometheus!] as [string, number]] : []),
  ...(config.CLUSTER_REPLICA === 'auto' && !config.DATABASE_READ_URL && !database ? [['replica', ports.replica] as [string, number]] : []),
  ...(database ? databasePortNames(database) : [])
]
if (database) {
  const missing = databaseUnavailable()
  if (missing) {
    console.error(`cluster: the database section needs Patroni, etcd and HAProxy: ${missing}`)
    process.exit(1)
  }
}
const taken = await portsInUse(planned.map(([, p]) => p))
if (taken.length > 0) {
  const names = planned.filter(([, p]) => taken.includes(p)).map(([n, p]) => `${p} (${n})`)
  console.error(`cluster: port${taken.length > 1 ? 's' : ''} ${names.join(', ')} already in use; stop what listens there or choose other ports in ${config.CLUSTER_CONFIG}`)
  process.exit(1)
}

async function ensureDatabase (url: string): Promise<void> {
  const u = new URL(url)
  const name = u.pathname.slice(1)
  const admin = new pg.Client({ connectionString: Object.assign(new URL(url), { pathname: '/postgres' }).toString() })
  await admin.connect()
  try {
    const exists = await admin.query('select 1 from pg_database where datname = $1', [name])
    if (exists.rowCount === 0) await admin.query(`create database "${name.replace(/"/g, '""')}"`)
  } finally {
    await admin.end()
  }
}

/** The cluster's own streaming replica (scripts/streaming-replica.ts), or the reason there is none. */
async function prepareReplica (primaryUrl: string) {
  if (config.CLUSTER_REPLICA === 'off') return 'CLUSTER_REPLICA=off'
  return prepareStreamingReplica({ primaryUrl, dir: replicaDir, port: ports.replica, applyDelayMs: config.CLUSTER_REPLICA_DELAY_MS })
}

const supervisor = new Supervisor({ log })
/** The replica's PID is the postmaster's own, as it wrote it in its folder (once it has; until then the one spawned). */
function replicaPid (): number | undefined {
  const spawned = supervisor.pid('replica')
  if (spawned === undefined) return undefined
  const written = postmasterPid(replicaDir)
  return written !== undefined && processStartedAt(written) !== undefined ? written : spawned
}
const record = () => recorder.write({ cluster: process.pid, ...supervisor.pids(), replica: replicaPid() })
supervisor.onSpawn = () => { void record() }
await record()

let stopped: Promise<void> | undefined
/** Stops every process of the cluster (once, however many ask). */
function stop (): Promise<void> {
  stopped ??= (async () => {
    say('stopping the cluster')
    // Every node started, in role order: the front door, caches, frontends, backends, the replica.
    await supervisor.stop(stopGroups(supervisor.names()))
    await recorder.remove()
    say('stopped')
  })()
  return stopped
}
gracefulShutdown({ delayMs: STOP_BOUND_MS, log: shutdownLog(log, 'cluster') }, stop)
/** The purger's port once one runs (a CDN is configured; docs/cdn.md). */
let purgerPort: number | undefined

/** The primary: the cluster's own leader through HAProxy, or DATABASE_URL. */
const primaryUrl = database ? databaseUrls(database).write : config.DATABASE_URL
const redisPrefix = config.REDIS_PREFIX ?? `flashcrowd:${new URL(primaryUrl).pathname.slice(1).replace(/[^A-Za-z0-9_.-]/g, '_')}`
try {
  if (database) {
    for (const spec of await prepareDatabaseCluster(stateDir, database, say)) await supervisor.start(spec)
    await waitWritable(primaryUrl, 180_000)
    say(`Patroni leads PostgreSQL on ports ${database.postgres.join(', ')} (etcd on ${database.etcd}); writes through ${database.write}, reads through ${database.read}`)
    if (process.env.DATABASE_URL || process.env.DATABASE_READ_URL) say('DATABASE_URL and DATABASE_READ_URL are not used: the database section runs its own')
  }
  await ensureDatabase(primaryUrl)
  await prepareDatabase(primaryUrl, say)
  const token = await adminToken(config.ADMIN_TOKEN, path.resolve(ROOT, config.FLASHCROWD_STATE_DIR))
  const scrapeToken = await metricsToken(config.METRICS_TOKEN, path.resolve(ROOT, config.FLASHCROWD_STATE_DIR))
  const common = { LOG_LEVEL: config.LOG_LEVEL, REDIS_URL: config.REDIS_URL, REDIS_PREFIX: redisPrefix, ADMIN_TOKEN: token, METRICS_TOKEN: scrapeToken, HOST: '127.0.0.1' }
  let readUrl = primaryUrl
  const replica = database ? 'the database section has its own' : config.DATABASE_READ_URL ? 'DATABASE_READ_URL names one' : await prepareReplica(config.DATABASE_URL)
  if (database) {
    readUrl = databaseUrls(database).read
  } else if (config.DATABASE_READ_URL) {
    readUrl = config.DATABASE_READ_URL
    say('the frontends read from the replica at DATABASE_READ_URL')
  } else if (typeof replica === 'string') {
    say(`no streaming replica: ${replica}; the frontends read from the primary`)
  } else {
    await supervisor.start({
      name: 'replica', command: replica.command, env: {}, user: serverUser(),
      // Fast shutdown: SIGTERM (smart) would wait for every client session to end.
      stopSignal: 'SIGINT',
      // Before every (re)start: a killed server's postmaster.pid, its orphaned children, or a server a killed cluster left running.
      beforeStart: async () => { const done = await clearPostmaster(replica.dir); if (done) say(done) }
    })
    readUrl = replica.url
    let ready = false
    for (let i = 0; i < 100 && !ready; i++) {
      const c = new pg.Client({ connectionString: readUrl })
      ready = await c.connect().then(() => c.query('select pg_is_in_recovery() as r')).then((r) => r.rows[0].r === true).catch(() => false)
      await c.end().catch(() => {})
      if (!ready) await new Promise((resolve) => setTimeout(resolve, 200))
    }
    if (!ready) throw new Error('the replica did not come up')
    const written = postmasterPid(replica.dir)
    if (written !== supervisor.pid('replica')) say(`warning: the replica's postmaster.pid names PID ${written}, not the process started (${supervisor.pid('replica')}); the record keeps the postmaster's`)
    await record()
    say(`streaming replica on port ${ports.replica}${config.CLUSTER_REPLICA_DELAY_MS ? ` (applying ${config.CLUSTER_REPLICA_DELAY_MS} ms behind)` : ''}: the frontends read from it`)
  }

  const backendUrls = ports.backends.map((p) => `http://127.0.0.1:${p}`)
  await Promise.all(ports.backends.map((p, i) => supervisor.start({
    name: `backend${i + 1}`, script: 'backend/server.ts', healthUrl: `http://127.0.0.1:${p}/-/health`,
    env: { ...common, PORT: String(p), DATABASE_URL: primaryUrl }
  })))
  // Two mailers share the queue (claims skip each other's rows) and one quota (the mail_rate row).
  await Promise.all((ports.mailers ?? []).map((p, i) => supervisor.start({
    name: `mailer${i + 1}`, script: 'mailer/server.ts', healthUrl: `http://127.0.0.1:${p}/-/health`,
    env: {
      LOG_LEVEL: config.LOG_LEVEL, HOST: '127.0.0.1', PORT: String(p), DATABASE_URL: primaryUrl, METRICS_TOKEN: scrapeToken,
      FLASHCROWD_STATE_DIR: stateDir, MAILER_SITE_URL: `http://127.0.0.1:${ports.front}`,
      ...(config.SMTP_URL ? { SMTP_URL: config.SMTP_URL } : {})
    }
  })))
  // A CDN in front (docs/cdn.md): one purger pushes the outbox's purges to it.
  const cdn = cdnEnv(config)
  if (cdn.purger) {
    purgerPort = ports.purger ?? await freePort()
    await supervisor.start({
      name: 'purger', script: 'purger/server.ts', healthUrl: `http://127.0.0.1:${purgerPort}/-/health`,
      env: { LOG_LEVEL: config.LOG_LEVEL, HOST: '127.0.0.1', PORT: String(purgerPort), DATABASE_URL: primaryUrl, ADMIN_TOKEN: token, METRICS_TOKEN: scrapeToken, FLASHCROWD_STATE_DIR: stateDir, ...cdn.purger }
    })
  }
  if (cdn.summary) say(`CDN: ${cdn.summary}`)
  if (ports.mailers?.length) say(config.SMTP_URL ? `mailers send through ${new URL(config.SMTP_URL).host}` : `no SMTP_URL: the mailers keep messages as .eml files in ${path.join(stateDir, 'mail')}`)
  const frontendUrls = ports.frontends.map((p) => `http://127.0.0.1:${p}`)
  // HAProxy appends the visitor's address and the caches believe it (design §2.10); the TCP
  // balancer cannot, so without HAProxy the caches trust nobody and every visitor is 127.0.0.1.
  await Promise.all(ports.frontends.map((p, i) => supervisor.start({
    name: `frontend${i + 1}`, script: 'frontend/server.ts', healthUrl: `http://127.0.0.1:${p}/-/health`,
    env: { ...common, PORT: String(p), DATABASE_URL: primaryUrl, DATABASE_READ_URL: readUrl, BACKEND_URL: backendUrls.join(','), ...cdn.frontend }
  })))
  await Promise.all(ports.caches.map((p, i) => supervisor.start({
    name: `cache${i + 1}`, script: 'cache/server.ts', healthUrl: `http://127.0.0.1:${p}/-/health`,
    env: { ...common, PORT: String(p), UPSTREAMS: frontendUrls.join(','), CACHE_WORKERS: '1', CACHE_TRUSTED_PROXIES: haproxy ? '127.0.0.1' : 'none', ...cdn.cache }
  })))

  if (haproxy) {
    const cfg = path.join(stateDir, 'haproxy.cfg')
    await writeFile(cfg, haproxyConfig(ports))
    await supervisor.start({ name: 'front', command: ['haproxy', '-f', cfg, '-db'], env: {} })
    say(`HAProxy in front (stats on http://127.0.0.1:${ports.haproxyStats}/)`)
  } else {
    await supervisor.start({
      name: 'front', script: 'scripts/tcp-balancer.ts',
      env: { BALANCER_HOST: '127.0.0.1', BALANCER_PORT: String(ports.front), BALANCER_TARGETS: ports.caches.map((p) => `127.0.0.1:${p}`).join(',') }
    })
    say('HAProxy is not installed (apt-get install haproxy): a TCP balancer is in front instead')
  }
  if (!await waitHealthy(`http://127.0.0.1:${ports.front}/-/health`, 30_000)) throw new Error('the front door did not answer')
  // Watching it live (deploy/monitoring): the roles' metrics and the campaign's alerts.
  // The purger is scraped only when it runs (a port in cluster.json alone starts none).
  if (noPrometheus === undefined) say(`Prometheus on ${await startPrometheus({ supervisor, ports: { ...ports, purger: purgerPort, prometheus: ports.prometheus! }, stateDir, root: ROOT, token: scrapeToken })} (rules: deploy/monitoring/rules.yml)`)
  else say(`${noPrometheus}: no scraper runs; the roles' /-/metrics take Authorization: Bearer <METRICS_TOKEN>`)
} catch (err) {
  log('cluster', `start-up failed: ${(err as Error).message}`, 'err')
  await stop()
  process.exit(1)
}

await record()
say(`cluster is up in ${((Date.now() - started) / 1000).toFixed(1)} s: http://127.0.0.1:${ports.front} (PIDs in ${path.relative(ROOT, pidFile)})`)
console.log(`FLASHCROWD_URL=http://127.0.0.1:${ports.front}`)
