/**
 * The CDN purger (design §3): pushes the outbox's invalidations to the CDN in
 * front — flashcrowd edges, Fastly, Cloudflare, CloudFront — off every
 * write's path. A small Fastify app for /-/health and /-/metrics around the
 * loops (worker.ts); `server.ts` only reads config, builds and listens.
 *
 * Metrics: purge lag per CDN (commit → the CDN's acknowledgement), the
 * queue per CDN (jobs, age of the oldest: it grows through an outage and
 * drains after), requests by outcome, keys purged, and CloudFront's
 * invalidation paths and their list-price cost.
 */
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import { Counter, Gauge, Histogram } from 'prom-client'
import { createMetrics, metricsPlugin, oneReadPerScrape, registerPoolGauges } from '../common/metrics.js'
import { gracefulClose } from '../common/graceful-close.js'
import { ping, type DatabaseHandle } from '../common/db.js'
import type { PurgerConfig } from './config.js'
import type { CdnAdapter } from './adapter.js'
import { PurgeQueue, type QueueStats } from './queue.js'
import { Purger } from './worker.js'
import { createAdapters } from './adapters/index.js'
import { roleLoggerOptions } from '../common/role-logger.js'

export interface PurgerDeps {
  config: PurgerConfig
  database: DatabaseHandle
  /** The CDNs to purge; default: those the configuration names (adapters/index.ts). */
  adapters?: CdnAdapter[]
  /** A pino logger, or `false` for none (tests). */
  logger?: FastifyBaseLogger | false
  random?: () => number
  /** false: build without starting the loops (tests drive `app.purger`). Default true. */
  autoStart?: boolean
}

declare module 'fastify' {
  interface FastifyInstance { purger: Purger, purgeQueue: PurgeQueue }
}

export async function buildApp (deps: PurgerDeps): Promise<FastifyInstance> {
  const { config, database } = deps
  const app = Fastify({
    ...roleLoggerOptions(deps.logger, config.LOG_LEVEL),
    requestTimeout: 10_000,
    forceCloseConnections: 'idle',
    return503OnClosing: true
  })
  const adapters = deps.adapters ?? createAdapters(config, database)
  const cdns = adapters.map((a) => a.cdn)
  const queue = new PurgeQueue(database.pool, { settleMs: config.PURGER_SETTLE_MS })

  const metrics = createMetrics({ role: 'purger' })
  registerPoolGauges(metrics, 'database', database.pool)
  const r = [metrics.registry]
  const lag = new Histogram({ name: 'flashcrowd_cdn_purge_lag_seconds', help: 'From a write\'s commit to the CDN\'s acknowledgement of its purge, per CDN', labelNames: ['cdn'] as const, buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800], registers: r })
  const requests = new Counter({ name: 'flashcrowd_cdn_purge_requests_total', help: 'Purge requests to each CDN, by outcome (ok, rate-limited: 429, failed)', labelNames: ['cdn', 'outcome'] as const, registers: r })
  const keysPurged = new Counter({ name: 'flashcrowd_cdn_purged_keys_total', help: 'Surrogate keys acknowledged by each CDN (after merging the writes of a round)', labelNames: ['cdn'] as const, registers: r })
  const retries = new Counter({ name: 'flashcrowd_cdn_purge_retries_total', help: 'Jobs put back after a failed or refused purge', labelNames: ['cdn'] as const, registers: r })
  const paths = new Counter({ name: 'flashcrowd_cdn_invalidation_paths_total', help: 'CloudFront invalidation paths created (billed beyond the monthly free paths; a wildcard is one path)', labelNames: ['cdn'] as const, registers: r })
  const cost = new Counter({ name: 'flashcrowd_cdn_invalidation_cost_dollars_total', help: 'CloudFront invalidation paths at PURGER_CLOUDFRONT_PRICE_PER_PATH (an upper bound: the monthly free paths are not subtracted)', labelNames: ['cdn'] as const, registers: r })
  const errors = new Counter({ name: 'flashcrowd_cdn_purger_errors_total', help: 'Database errors of the purger\'s loops (retried)', registers: r })
  /** One query per scrape for both gauges. */
  const readStats = oneReadPerScrape(() => queue.stats(cdns))
  /** A per-CDN gauge of the queue, read from the shared stats query when scraped. */
  const queueGauge = (name: string, help: string, pick: (s: QueueStats) => number) => new Gauge({
    name,
    help,
    labelNames: ['cdn'] as const,
    registers: r,
    async collect () { const s = await readStats().catch(() => ({} as Record<string, QueueStats>)); for (const [cdn, v] of Object.entries(s)) this.set({ cdn }, pick(v)) }
  })
  queueGauge('flashcrowd_cdn_purge_queue_jobs', 'Purges not yet acknowledged, per CDN (intake: published outbox rows no purger has taken yet)', (s) => s.pending)
  queueGauge('flashcrowd_cdn_purge_queue_age_seconds', 'Age of the oldest purge not yet acknowledged, per CDN (from its write\'s commit; 0 when none): grows while a CDN is down', (s) => s.oldestAgeSeconds)
  new Gauge({
    name: 'flashcrowd_cdn_unreachable_seconds',
    help: 'How long every request to a CDN has failed (0 while it answers)',
    labelNames: ['cdn'] as const,
    registers: r,
    collect () {
      const status = purger.status()
      for (const cdn of cdns) { const since = status[cdn]?.unreachableSince; this.set({ cdn }, since === undefined ? 0 : Math.max(0, (Date.now() - Date.parse(since)) / 1000)) }
    }
  })

  const purger = new Purger({
    queue,
    adapters,
    pollMs: config.PURGER_POLL_MS,
    batchMax: config.PURGER_BATCH_MAX,
    leaseMs: config.PURGER_LEASE_MS,
    retryBaseMs: config.PURGER_RETRY_BASE_MS,
    retryMaxMs: config.PURGER_RETRY_MAX_MS,
    retainDoneMs: config.PURGER_RETAIN_DONE_S * 1000,
    ...(deps.random ? { random: deps.random } : {}),
    events: {
      request: (cdn, outcome, ack) => {
        requests.inc({ cdn, outcome })
        if (ack?.paths !== undefined) { paths.inc({ cdn }, ack.paths); cost.inc({ cdn }, ack.paths * config.PURGER_CLOUDFRONT_PRICE_PER_PATH) }
      },
      done: (cdn, lags, keys) => { for (const s of lags) lag.observe({ cdn }, s); keysPurged.inc({ cdn }, keys) },
      retry: (cdn, jobs, delayMs, error) => {
        retries.inc({ cdn }, jobs)
        app.log.warn({ cdn, jobs, retryInMs: delayMs, error }, 'purge not acknowledged; will retry')
      },
      error: (err, what) => {
        errors.inc()
        app.log.warn({ err }, `purger: ${what} failed; will retry`)
      }
    }
  })
  app.decorate('purger', purger)
  app.decorate('purgeQueue', queue)

  await app.register(gracefulClose)
  await app.register(metricsPlugin, { metrics, token: config.METRICS_TOKEN })

  // Ready means "can read the outbox". A CDN that is away is reported, not fatal: the queue keeps its purges.
  app.get('/-/health', { logLevel: 'warn' }, async (_request, reply) => {
    const ok = await ping(database, 1000)
    reply.header('cache-control', 'no-store')
    if (!ok) reply.code(503).header('retry-after', '5')
    const queues = ok ? await queue.stats(cdns).catch(() => undefined) : undefined
    return { status: ok ? 'ok' : 'unavailable', role: 'purger', database: ok ? 'up' : 'down', cdns: purger.status(), ...(queues ? { queues } : {}) }
  })

  app.addHook('onReady', async () => {
    if (deps.autoStart !== false) purger.start()
  })
  app.addHook('onClose', async () => {
    await purger.stop(config.PURGER_SHUTDOWN_TIMEOUT_MS)
    for (const a of adapters) await a.close?.()
  })
  return app
}
