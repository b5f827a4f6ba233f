/**
 * `npm run cluster`: the production topology as local processes, against the
 * real local PostgreSQL and Redis: 2 cache nodes, 3 frontends, 2 backends,
 * 2 mailers (sending through SMTP_URL, or into the state folder without it),
 * HAProxy in front when installed (a small TCP balancer otherwise), and a
 * streaming replica for the frontends' reads when the PostgreSQL server
 * binaries are present and the primary allows replication connections
 * (otherwise the primary doubles as the read pool, and it says so).
 *
 * Ports come from cluster.json (or CLUSTER_CONFIG). The PIDs of every process
 * are kept in .flashcrowd/cluster/pids.json for fault tests.
 */
import { spawnSync } from 'node:child_process'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import pg from 'pg'
import { Type } from '@sinclair/typebox'
import { CommonEnv, DatabaseEnv, loadConfigOrExit } from '../common/config.js'
import { prepareDatabase } from '../common/database-url.js'
import { Supervisor, adminToken, createLogWriter, ROOT, waitHealthy } from './supervisor.js'
import { haproxyConfig } from './haproxy-config.js'
import { prepareStreamingReplica, serverUser } from './streaming-replica.js'
import { MailerEnv } from '../mailer/config.js'

const ClusterEnv = Type.Object({
  LOG_LEVEL: CommonEnv.LOG_LEVEL,
  FLASHCROWD_STATE_DIR: DatabaseEnv.FLASHCROWD_STATE_DIR,
  ADMIN_TOKEN: CommonEnv.ADMIN_TOKEN,
  DATABASE_URL: Type.String({ pattern: '^postgres(ql)?://', default: 'postgres://postgres@127.0.0.1:5432/flashcrowd', description: 'Primary PostgreSQL (created if missing).' }),
  REDIS_URL: Type.String({ pattern: '^rediss?://', default: 'redis://127.0.0.1:6379', description: 'Redis for the bus, rate limits and the shared render cache.' }),
  REDIS_PREFIX: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9:_.-]{1,64}$', description: 'Namespace of the cluster\'s Redis keys (default: flashcrowd:<database name>, so clusters on different databases never share pages or events).' })),
  CLUSTER_CONFIG: Type.String({ default: 'cluster.json', description: 'Ports of the local cluster.' }),
  CLUSTER_REPLICA: Type.Union([Type.Literal('auto'), Type.Literal('off')], { default: 'auto', description: 'Start a streaming replica for the frontends when possible.' }),
  CLUSTER_REPLICA_DELAY_MS: Type.Integer({ minimum: 0, maximum: 600_000, default: 0, description: 'recovery_min_apply_delay of the cluster\'s replica: rehearse a lagging replica (e.g. 500 or 2000).' }),
  DATABASE_READ_URL: Type.Optional(Type.String({ pattern: '^postgres(ql)?://', description: 'An existing replica for the frontends\' reads; the cluster then starts none.' })),
  SMTP_URL: MailerEnv.properties.SMTP_URL
})

interface Ports { front: number, caches: number[], frontends: number[], backends: number[], mailers?: number[], replica: number, haproxyStats: number }

const config = loadConfigOrExit(ClusterEnv, 'cluster')
const ports = JSON.parse(await readFile(path.resolve(ROOT, config.CLUSTER_CONFIG), 'utf8')) as Ports
const stateDir = path.resolve(ROOT, config.FLASHCROWD_STATE_DIR, 'cluster', String(ports.front))
await mkdir(stateDir, { recursive: true })
const log = await createLogWriter(Boolean(process.stdout.isTTY))
const say = (msg: string) => log('cluster', msg, 'out')
const started = Date.now()

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
  return prepareStreamingReplica({ primaryUrl, dir: path.join(stateDir, 'replica'), port: ports.replica, applyDelayMs: config.CLUSTER_REPLICA_DELAY_MS })
}

await ensureDatabase(config.DATABASE_URL)
await prepareDatabase(config.DATABASE_URL, say)
const token = await adminToken(config.ADMIN_TOKEN, path.resolve(ROOT, config.FLASHCROWD_STATE_DIR))
const supervisor = new Supervisor({ log })
const pidFile = path.join(stateDir, 'pids.json')
supervisor.onSpawn = () => { void writeFile(pidFile, JSON.stringify(supervisor.pids(), null, 2)) }

let stopping = false
async function stop (signal: string): Promise<void> {
  if (stopping) return
  stopping = true
  say(`${signal}: stopping the cluster`)
  await supervisor.stop(['front', 'cache1', 'cache2', 'frontend1', 'frontend2', 'frontend3', 'backend1', 'backend2', ...(ports.mailers ?? []).map((_, i) => `mailer${i + 1}`), 'replica'])
  await rm(pidFile, { force: true })
  say('stopped')
  process.exit(0)
}
process.once('SIGINT', () => { void stop('SIGINT') })
process.once('SIGTERM', () => { void stop('SIGTERM') })

const redisPrefix = config.REDIS_PREFIX ?? `flashcrowd:${new URL(config.DATABASE_URL).pathname.slice(1).replace(/[^A-Za-z0-9_.-]/g, '_')}`
const common = { LOG_LEVEL: config.LOG_LEVEL, REDIS_URL: config.REDIS_URL, REDIS_PREFIX: redisPrefix, ADMIN_TOKEN: token, HOST: '127.0.0.1' }
try {
  let readUrl = config.DATABASE_URL
  const replica = config.DATABASE_READ_URL ? 'DATABASE_READ_URL names one' : await prepareReplica(config.DATABASE_URL)
  if (config.DATABASE_READ_URL) {
    readUrl = config.DATABASE_READ_URL
    say('the frontends read from the replica at DATABASE_READ_URL')
  } else if (typeof replica === 'string') {
    say(`no streaming replica: ${replica}; the frontends read from the primary`)
  } else {
    await supervisor.start({ name: 'replica', command: replica.command, env: {}, user: serverUser() })
    readUrl = replica.url
    let ready = false
    for (let i = 0; i < 100 && !ready; i++) {
      const c = new pg.Client({ connectionString: readUrl })
      ready = await c.connect().then(() => c.query('select pg_is_in_recovery() as r')).then((r) => r.rows[0].r === true).catch(() => false)
      await c.end().catch(() => {})
      if (!ready) await new Promise((resolve) => setTimeout(resolve, 200))
    }
    if (!ready) throw new Error('the replica did not come up')
    say(`streaming replica on port ${ports.replica}${config.CLUSTER_REPLICA_DELAY_MS ? ` (applying ${config.CLUSTER_REPLICA_DELAY_MS} ms behind)` : ''}: the frontends read from it`)
  }

  const backendUrls = ports.backends.map((p) => `http://127.0.0.1:${p}`)
  await Promise.all(ports.backends.map((p, i) => supervisor.start({
    name: `backend${i + 1}`, script: 'backend/server.ts', healthUrl: `http://127.0.0.1:${p}/-/health`,
    env: { ...common, PORT: String(p), DATABASE_URL: config.DATABASE_URL }
  })))
  // Two mailers share the queue (claims skip each other's rows) and one quota (the mail_rate row).
  await Promise.all((ports.mailers ?? []).map((p, i) => supervisor.start({
    name: `mailer${i + 1}`, script: 'mailer/server.ts', healthUrl: `http://127.0.0.1:${p}/-/health`,
    env: {
      LOG_LEVEL: config.LOG_LEVEL, HOST: '127.0.0.1', PORT: String(p), DATABASE_URL: config.DATABASE_URL,
      FLASHCROWD_STATE_DIR: stateDir, MAILER_SITE_URL: `http://127.0.0.1:${ports.front}`,
      ...(config.SMTP_URL ? { SMTP_URL: config.SMTP_URL } : {})
    }
  })))
  if (ports.mailers?.length) say(config.SMTP_URL ? `mailers send through ${new URL(config.SMTP_URL).host}` : `no SMTP_URL: the mailers keep messages as .eml files in ${path.join(stateDir, 'mail')}`)
  const frontendUrls = ports.frontends.map((p) => `http://127.0.0.1:${p}`)
  // HAProxy appends the visitor's address and the caches believe it (design §2.10); the TCP
  // balancer cannot, so without HAProxy the caches trust nobody and every visitor is 127.0.0.1.
  const haproxy = spawnSync('haproxy', ['-v'], { encoding: 'utf8' }).status === 0
  await Promise.all(ports.frontends.map((p, i) => supervisor.start({
    name: `frontend${i + 1}`, script: 'frontend/server.ts', healthUrl: `http://127.0.0.1:${p}/-/health`,
    env: { ...common, PORT: String(p), DATABASE_URL: config.DATABASE_URL, DATABASE_READ_URL: readUrl, BACKEND_URL: backendUrls.join(',') }
  })))
  await Promise.all(ports.caches.map((p, i) => supervisor.start({
    name: `cache${i + 1}`, script: 'cache/server.ts', healthUrl: `http://127.0.0.1:${p}/-/health`,
    env: { ...common, PORT: String(p), UPSTREAMS: frontendUrls.join(','), CACHE_WORKERS: '1', CACHE_TRUSTED_PROXIES: haproxy ? '127.0.0.1' : 'none' }
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
} catch (err) {
  say(`start-up failed: ${(err as Error).message}`)
  await stop('start-up failure')
}

await writeFile(pidFile, JSON.stringify(supervisor.pids(), null, 2))
say(`cluster is up in ${((Date.now() - started) / 1000).toFixed(1)} s: http://127.0.0.1:${ports.front} (PIDs in ${path.relative(ROOT, pidFile)})`)
console.log(`FLASHCROWD_URL=http://127.0.0.1:${ports.front}`)
