/**
 * The backend's process: reads config, builds the app, listens, and closes
 * gracefully on SIGTERM/SIGINT (common/shutdown.ts: stop accepting → finish
 * in-flight writes → drain the outbox → close pools and the bus).
 */
import { Redis } from 'ioredis'
import { BackendEnv } from './config.js'
import { buildApp } from './app.js'
import { createDatabase } from '../common/db.js'
import { createBus } from '../common/bus.js'
import { resolveDatabaseUrl } from '../common/database-url.js'
import { loadConfigOrExit } from '../common/config.js'
import { gracefulShutdown, listenOrExit } from '../common/shutdown.js'

const config = loadConfigOrExit(BackendEnv, 'backend')

const target = await resolveDatabaseUrl(config.DATABASE_URL, (msg) => console.error(`backend: ${msg}`), config.FLASHCROWD_STATE_DIR)
const database = createDatabase({
  url: target.url,
  max: config.DATABASE_POOL_MAX,
  statementTimeoutMs: config.DATABASE_STATEMENT_TIMEOUT_MS,
  connectTimeoutMs: config.DATABASE_CONNECT_TIMEOUT_MS,
  applicationName: 'flashcrowd-backend'
})
const bus = createBus({ redisUrl: config.REDIS_URL, prefix: config.REDIS_PREFIX })
// A Redis that stops answering must not stall writes: the limiter falls back to its local count after 100 ms.
const redis = config.REDIS_URL ? new Redis(config.REDIS_URL, { maxRetriesPerRequest: 1, enableOfflineQueue: false, commandTimeout: 100 }) : undefined
redis?.on('error', () => { /* rate limits fall back to memory while Redis is away */ })

const app = await buildApp({ config, database, bus, redis })

// Stop accepting, finish in-flight writes, drain the outbox, close pools and the bus; bounded
// a little beyond the app's own shutdown timeout so a stuck step cannot keep a pod terminating.
gracefulShutdown({ delayMs: config.BACKEND_SHUTDOWN_TIMEOUT_MS + 5000, log: app.log }, async () => {
  await app.close()
  await bus.close()
  redis?.disconnect()
  await database.close()
  await target.close()
})

await listenOrExit(app, { host: config.HOST, port: config.PORT })
