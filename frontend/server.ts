/**
 * The frontend's process: reads the configuration, builds the app, listens,
 * and closes gracefully (in-flight requests finish) on SIGINT/SIGTERM
 * (common/shutdown.ts).
 */
import { Redis } from 'ioredis'
import { loadConfigOrExit } from '../common/config.js'
import { gracefulShutdown } from '../common/shutdown.js'
import { createDatabase } from '../common/db.js'
import { resolveDatabaseUrl } from '../common/database-url.js'
import { createBus } from '../common/bus.js'
import { backendUrls, FrontendEnv, primaryReadUrl } from './config.js'
import { createBackendClient } from './backend-client.js'
import { buildApp } from './app.js'

async function main () {
  const config = loadConfigOrExit(FrontendEnv, 'frontend')
  const database = await resolveDatabaseUrl(config.DATABASE_READ_URL ?? config.DATABASE_URL, (msg) => console.error(`frontend: ${msg}`), config.FLASHCROWD_STATE_DIR, { joinOnly: true })
  const db = createDatabase({
    url: database.url,
    readOnly: true,
    max: config.DATABASE_POOL_MAX,
    statementTimeoutMs: config.DATABASE_STATEMENT_TIMEOUT_MS,
    connectTimeoutMs: config.DATABASE_CONNECT_TIMEOUT_MS,
    applicationName: 'flashcrowd-frontend'
  })
  // Replay probes get a connection of their own (app.ts FrontendDeps.probeDb).
  const probeDb = createDatabase({
    url: database.url,
    readOnly: true,
    max: 1,
    statementTimeoutMs: config.DATABASE_STATEMENT_TIMEOUT_MS,
    connectTimeoutMs: config.DATABASE_CONNECT_TIMEOUT_MS,
    applicationName: 'flashcrowd-frontend-probe'
  })
  // The primary, read-only and small, for authors the replica keeps waiting (primary-reads.ts).
  const primaryUrl = primaryReadUrl(config)
  const primary = primaryUrl
    ? createDatabase({
      url: primaryUrl,
      readOnly: true,
      max: config.FRONTEND_PRIMARY_POOL_MAX,
      statementTimeoutMs: config.DATABASE_STATEMENT_TIMEOUT_MS,
      connectTimeoutMs: config.DATABASE_CONNECT_TIMEOUT_MS,
      applicationName: 'flashcrowd-frontend-primary'
    })
    : undefined
  const bus = createBus({ redisUrl: config.REDIS_URL, prefix: config.REDIS_PREFIX })
  const backend = createBackendClient({ urls: backendUrls(config), timeoutMs: config.FRONTEND_BACKEND_TIMEOUT_MS, dnsRefreshMs: config.FRONTEND_DNS_REFRESH_MS })
  const redis = config.REDIS_URL && config.FRONTEND_SHARED_RENDER_CACHE
    ? new Redis(config.REDIS_URL, { maxRetriesPerRequest: 1, enableOfflineQueue: false, commandTimeout: 200 })
    : undefined
  redis?.on('error', () => { /* reconnects by itself; the render cache falls back to rendering */ })

  const app = await buildApp({ config, db, probeDb, primary, bus, backend, redis })
  // In-flight requests finish, then the pools, the bus and Redis close; bounded so a stuck
  // keep-alive client cannot hold the process.
  gracefulShutdown({ delayMs: 10_000, log: app.log }, async () => {
    await app.close()
    await Promise.allSettled([backend.close(), bus.close(), db.close(), probeDb.close(), primary?.close()])
    redis?.disconnect()
    await database.close()
  })

  await app.listen({ host: config.HOST, port: config.PORT })
}

main().catch((err: Error) => {
  console.error(`frontend: failed to start: ${err.message}`)
  process.exit(1)
})
