/**
 * `npm start`: the whole tier on one machine. The embedded database (PGlite
 * over the wire; migrated and seeded on first run) and the root of the
 * embedded bus live in this process; backend, frontend, cache and mailer run
 * as separate processes joined by the bus over IPC, talking HTTP and the
 * Postgres wire protocol exactly as in production. Without SMTP_URL the
 * mailer writes each message as an .eml file under the state directory.
 */
import path from 'node:path'
import { Type } from '@sinclair/typebox'
import { CommonEnv, DatabaseEnv, Port, loadConfigOrExit } from '../common/config.js'
import { MemoryBus, RedisStreamBus, type Bus } from '../common/bus.js'
import { ownEmbeddedDatabase, findEmbeddedOwner, type EmbeddedDatabase } from '../common/embedded-db.js'
import { prepareDatabase } from '../common/database-url.js'
import { STOP_GRACE_MS, Supervisor, adminToken, metricsToken, createLogWriter, shutdownLog } from './supervisor.js'
import { gracefulShutdown } from '../common/shutdown.js'
import { freePort, portsInUse } from '../common/free-port.js'
import { MailerEnv } from '../mailer/config.js'
import { CdnIdentityEnv, CdnPurgeEnv } from '../common/cdn.js'
import { cdnEnv } from './cdn-env.js'

export const StartEnv = Type.Object({
  HOST: CommonEnv.HOST,
  LOG_LEVEL: CommonEnv.LOG_LEVEL,
  REDIS_URL: CommonEnv.REDIS_URL,
  REDIS_PREFIX: CommonEnv.REDIS_PREFIX,
  ADMIN_TOKEN: CommonEnv.ADMIN_TOKEN,
  METRICS_TOKEN: CommonEnv.METRICS_TOKEN,
  DATABASE_URL: DatabaseEnv.DATABASE_URL,
  FLASHCROWD_STATE_DIR: DatabaseEnv.FLASHCROWD_STATE_DIR,
  PORT: Port('Public port of the tier (the cache layer).', 8080),
  SMTP_URL: MailerEnv.properties.SMTP_URL,
  CACHE_MAX_BYTES: Type.Optional(Type.Integer({ minimum: 1024 * 1024, description: 'Memory budget of the cache layer in bytes.' })),
  // One machine runs every role on the same cores: one cache worker, so one
  // store (every worker would otherwise fetch and keep its own copy).
  CACHE_WORKERS: Type.Integer({ minimum: 0, maximum: 256, default: 1, description: 'Cache worker processes on the one-machine tier (0: one per core).' }),
  ...CdnIdentityEnv,
  ...CdnPurgeEnv
})

const USAGE = `usage: npm start
  the whole tier on one machine, on PORT (default 8080); Ctrl-C stops it.
  Without DATABASE_URL: an embedded PostgreSQL under .flashcrowd/ (migrated and seeded on first run).
  Settings are environment variables: docs/configuration.md. Other ways to run it: docs/operating.md.`
// Settings are environment variables; an argument is a mistake (or a request for help), never ignored.
if (process.argv.length > 2) {
  const help = ['--help', '-h'].includes(process.argv[2])
  ;(help ? console.log : console.error)(help ? USAGE : `flashcrowd: npm start takes no arguments (got ${JSON.stringify(process.argv.slice(2).join(' '))})\n${USAGE}`)
  process.exit(help ? 0 : 2)
}

const config = loadConfigOrExit(StartEnv, 'flashcrowd')
// Refused before anything starts: otherwise the cache, started last, would find its port taken.
if ((await portsInUse([config.PORT], config.HOST)).length > 0) {
  console.error(`flashcrowd: port ${config.PORT} on ${config.HOST} is already in use; stop what listens there or choose another port with PORT`)
  process.exit(1)
}

const log = await createLogWriter(Boolean(process.stdout.isTTY))
const say = (msg: string) => log('flashcrowd', msg, 'out')
const started = Date.now()

let embedded: EmbeddedDatabase | undefined
let databaseUrl = config.DATABASE_URL
try {
  if (!databaseUrl) {
    const other = await findEmbeddedOwner(config.FLASHCROWD_STATE_DIR)
    if (other) throw new Error(`another flashcrowd process already owns ${config.FLASHCROWD_STATE_DIR}/pgdata (${other}); stop it first`)
    embedded = await ownEmbeddedDatabase(config.FLASHCROWD_STATE_DIR)
    databaseUrl = embedded.url
    say(`embedded database (PGlite) on ${embedded.url}, data in ${config.FLASHCROWD_STATE_DIR}/pgdata`)
  }
  await prepareDatabase(databaseUrl, say)
} catch (err) {
  log('flashcrowd', `start-up failed: ${(err as Error).message}`, 'err')
  await embedded?.close()
  process.exit(1)
}

const bus: Bus = config.REDIS_URL ? new RedisStreamBus({ url: config.REDIS_URL, prefix: config.REDIS_PREFIX }) : new MemoryBus()
const supervisor = new Supervisor({ log, bus: config.REDIS_URL ? undefined : bus })
const token = await adminToken(config.ADMIN_TOKEN, config.FLASHCROWD_STATE_DIR)
const scrapeToken = await metricsToken(config.METRICS_TOKEN, config.FLASHCROWD_STATE_DIR)
const [backendPort, frontendPort, mailerPort, purgerPort] = [await freePort(), await freePort(), await freePort(), await freePort()]
// A CDN in front (docs/cdn.md): what each role needs of it, and whether a purger runs.
const cdn = cdnEnv(config)
const common = { LOG_LEVEL: config.LOG_LEVEL, REDIS_URL: config.REDIS_URL ?? '', ADMIN_TOKEN: token, METRICS_TOKEN: scrapeToken, HOST: '127.0.0.1' }
const backendUrl = `http://127.0.0.1:${backendPort}`
const frontendUrl = `http://127.0.0.1:${frontendPort}`
const publicUrl = `http://${config.HOST.includes(':') ? `[${config.HOST}]` : config.HOST}:${config.PORT}`

// The front door closes first; then the backend, so in-flight writes finish and its outbox drains;
// the mailer last, so the messages of those writes may still go out.
const STOP_ORDER = ['cache', 'frontend', 'backend', 'mailer', 'purger']
let stopped: Promise<void> | undefined
/** Stops every role, the bus and the database (once, however many ask). */
function stop (): Promise<void> {
  stopped ??= (async () => {
    say('stopping (cache → frontend → backend → mailer → purger, then the database)')
    await supervisor.stop(STOP_ORDER)
    await bus.close()
    await embedded?.close()
    say('stopped')
  })()
  return stopped
}
// Ctrl-C, SIGTERM or an uncaught error: every role gets its own grace period, then the database closes.
gracefulShutdown({ delayMs: STOP_ORDER.length * STOP_GRACE_MS + 5000, log: shutdownLog(log, 'flashcrowd') }, stop)

try {
  await supervisor.start({ name: 'backend', script: 'backend/server.ts', env: { ...common, PORT: String(backendPort), DATABASE_URL: databaseUrl }, healthUrl: `${backendUrl}/-/health` })
  await supervisor.start({ name: 'frontend', script: 'frontend/server.ts', env: { ...common, PORT: String(frontendPort), DATABASE_URL: databaseUrl, DATABASE_READ_URL: databaseUrl, BACKEND_URL: backendUrl, ...cdn.frontend }, healthUrl: `${frontendUrl}/-/health` })
  // Messages go through SMTP_URL, or into the state folder (nothing outside needed).
  await supervisor.start({
    name: 'mailer',
    script: 'mailer/server.ts',
    env: {
      LOG_LEVEL: config.LOG_LEVEL, HOST: '127.0.0.1', PORT: String(mailerPort), DATABASE_URL: databaseUrl, METRICS_TOKEN: scrapeToken,
      FLASHCROWD_STATE_DIR: config.FLASHCROWD_STATE_DIR, MAILER_SITE_URL: publicUrl,
      ...(config.SMTP_URL ? { SMTP_URL: config.SMTP_URL } : {})
    },
    healthUrl: `http://127.0.0.1:${mailerPort}/-/health`
  })
  if (cdn.purger) {
    await supervisor.start({
      name: 'purger',
      script: 'purger/server.ts',
      env: { LOG_LEVEL: config.LOG_LEVEL, HOST: '127.0.0.1', PORT: String(purgerPort), DATABASE_URL: databaseUrl, ADMIN_TOKEN: token, FLASHCROWD_STATE_DIR: config.FLASHCROWD_STATE_DIR, ...cdn.purger },
      healthUrl: `http://127.0.0.1:${purgerPort}/-/health`
    })
  }
  await supervisor.start({
    name: 'cache',
    script: 'cache/server.ts',
    env: {
      ...common,
      HOST: config.HOST,
      PORT: String(config.PORT),
      UPSTREAMS: frontendUrl,
      CACHE_WORKERS: String(config.CACHE_WORKERS),
      ...cdn.cache,
      ...(config.CACHE_MAX_BYTES ? { CACHE_MAX_BYTES: String(config.CACHE_MAX_BYTES) } : {})
    },
    healthUrl: `http://127.0.0.1:${config.PORT}/-/health`
  })
} catch (err) {
  log('flashcrowd', `start-up failed: ${(err as Error).message}`, 'err')
  await stop()
  process.exit(1)
}

say(`flashcrowd is up in ${((Date.now() - started) / 1000).toFixed(1)} s: ${publicUrl}`)
say(config.SMTP_URL
  ? `  e-mail: sent through ${new URL(config.SMTP_URL).host} by the mailer (metrics on http://127.0.0.1:${mailerPort}/-/metrics)`
  : `  e-mail: no SMTP_URL, so messages are kept as .eml files in ${path.resolve(config.FLASHCROWD_STATE_DIR, 'mail')} (open them with any mail program)`)
if (cdn.summary) say(`  CDN: ${cdn.summary}${cdn.purger ? ` (purger metrics on http://127.0.0.1:${purgerPort}/-/metrics)` : ''}`)
say(`  frontend ${frontendUrl} · backend ${backendUrl} · admin token in ${config.ADMIN_TOKEN ? 'ADMIN_TOKEN' : `${config.FLASHCROWD_STATE_DIR}/admin-token`}, metrics token in ${config.METRICS_TOKEN ? 'METRICS_TOKEN' : `${config.FLASHCROWD_STATE_DIR}/metrics-token`} · Ctrl-C stops everything`)
// Machine-readable line for scripts and tests.
console.log(`FLASHCROWD_URL=${publicUrl}`)
