/**
 * The frontend as a Fastify app: stateless render servers for the pages
 * visitors read during a campaign spike (design §1, §3).
 *
 * `buildApp(deps)` creates the instance (trust-proxy settings must be known at
 * construction) and registers `frontendApp`, the app as a plugin. Everything
 * with a lifecycle (read pool, bus, backend client, Redis) is passed in, so
 * tests and server.ts decide what is real.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyServerOptions } from 'fastify'
import fp from 'fastify-plugin'
import type { Redis } from 'ioredis'
import { Counter, Gauge, Histogram } from 'prom-client'
import { classifyError } from '../common/errors.js'
import { createMetrics, metricsPlugin, registerPoolGauges, registerReplicaLagGauge, type Metrics } from '../common/metrics.js'
import { ping, type DatabaseHandle } from '../common/db.js'
import type { Bus } from '../common/bus.js'
import { BusPosition } from '../common/bus-position.js'
import { SurrogateKeys } from '../common/surrogate-keys.js'
import { list } from '../common/config.js'
import { cdnTagField, trustedProxies, type FrontendConfig } from './config.js'
import { compileTrust } from '../common/trusted-proxies.js'
import { createContentRepository } from './repositories.js'
import { RenderCache } from './render-cache.js'
import { ReadYourWrites, databaseReplayProbe, type ReplayProbe } from './read-your-writes.js'
import { createPageServer, sendPrivateHtml } from './page-render.js'
import { PrimaryReads } from './primary-reads.js'
import { assetsPlugin, buildAssets, type BuiltAssets } from './assets.js'
import { securityPlugin } from './security.js'
import type { BackendClient } from './backend-client.js'
import { POLICIES, cacheControl, NO_STORE } from './cache-headers.js'
import { errorPage, notFoundPage } from './views/errors.js'
import './decorations.js'
import homeRoutes from './routes/home.js'
import tutorialRoutes from './routes/tutorials.js'
import newsRoutes from './routes/news.js'
import eventRoutes from './routes/events.js'
import certificateRoutes from './routes/certificates.js'
import sitemapRoutes from './routes/sitemap.js'
import healthRoutes from './routes/health.js'
import { formBodyPlugin } from './form-body.js'
import { gracefulClose } from '../common/graceful-close.js'
import { RepeatedFailureLogs } from '../common/log-aggregate.js'

export interface FrontendDeps {
  config: FrontendConfig
  /** The read pool; must be opened with `readOnly: true` (design §2.1). */
  db: DatabaseHandle
  /**
   * The primary, opened `readOnly: true` with a small pool, for authors whose
   * write the read pool has not replayed in time (primary-reads.ts). Omitted
   * when the read pool is the primary.
   */
  primary?: DatabaseHandle
  bus: Bus
  backend: BackendClient
  /** Shared level-2 render cache; omitted → in-process only. */
  redis?: Redis
  now?: () => number
  /** A pino logger, or false for none; default: pino at LOG_LEVEL. */
  logger?: FastifyBaseLogger | boolean
  /** Where the read pool is in the primary's WAL; defaults to asking the read pool (through `probeDb` when given). */
  replayProbe?: ReplayProbe
  /**
   * A one-connection read-only handle on the read pool's server, for replay
   * probes only: while a crowd's renders keep every pooled connection busy,
   * the probe that would make their pages cacheable again must not queue
   * behind them.
   */
  probeDb?: DatabaseHandle
  /** Prebuilt assets (tests build once for many apps). */
  assets?: BuiltAssets
  metrics?: Metrics
}

/** Form bodies are small; anything bigger is not one of our forms (413). */
const FORM_BODY_LIMIT = 16 * 1024

export const frontendApp = fp(async function frontendApp (app: FastifyInstance, deps: FrontendDeps & { assets: BuiltAssets }) {
  if (!deps.db.readOnly) throw new Error('the frontend must be given a read-only database handle (createDatabase({ readOnly: true }))')
  if (deps.primary && !deps.primary.readOnly) throw new Error('the frontend\'s primary handle must be read-only too (createDatabase({ readOnly: true }))')
  const now = deps.now ?? Date.now
  const metrics = deps.metrics ?? createMetrics({ role: 'frontend' })
  registerPoolGauges(metrics, 'read', deps.db.pool)
  registerReplicaLagGauge(metrics, deps.db.pool)
  if (deps.primary) registerPoolGauges(metrics, 'primary', deps.primary.pool)
  const renders = new Histogram({ name: 'flashcrowd_frontend_render_seconds', help: 'Page render time (database and template)', labelNames: ['kind'] as const, buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1], registers: [metrics.registry] })
  const hits = new Counter({ name: 'flashcrowd_frontend_render_cache_hits_total', help: 'Render cache hits by level', labelNames: ['level'] as const, registers: [metrics.registry] })
  const invalidations = new Counter({ name: 'flashcrowd_frontend_invalidations_total', help: 'Bus events applied to the render cache', labelNames: ['kind'] as const, registers: [metrics.registry] })
  const authorViews = new Counter({ name: 'flashcrowd_frontend_author_views_total', help: 'Authors\' own views after a write, by where they were read (replayed: the read pool; primary: the replica lagged; timeout: neither in time)', labelNames: ['view'] as const, registers: [metrics.registry] })
  const behindBus = new Counter({ name: 'flashcrowd_frontend_behind_bus_total', help: 'Cache refetches that named a bus event this frontend had not applied within FRONTEND_BUS_WAIT_MS (answered no-store)', registers: [metrics.registry] })

  // This frontend's place on the invalidation bus (cache refetches name theirs).
  const busPosition = new BusPosition()
  // While Redis or the database is down every request fails the same way: one line per
  // interval with a count, not one (with a stack) each.
  const repeated = new RepeatedFailureLogs({ log: app.log })
  const unavailable = new RepeatedFailureLogs({ log: app.log, level: 'error' })
  const renderCache = new RenderCache({
    maxBytes: deps.config.FRONTEND_RENDER_CACHE_BYTES,
    redis: deps.config.FRONTEND_SHARED_RENDER_CACHE ? deps.redis : undefined,
    // Pages of another tier sharing this Redis are not ours to serve.
    prefix: `${deps.config.REDIS_PREFIX}:render:v2:`,
    busPosition: () => busPosition.current,
    now,
    onError: (err) => repeated.failed('shared render cache unavailable (rendering instead)', err)
  })
  new Gauge({
    name: 'flashcrowd_frontend_render_cache_bytes', help: 'Bytes held by the in-process render cache', registers: [metrics.registry],
    collect () { this.set(renderCache.bytes) }
  })
  const primary = deps.primary
    ? new PrimaryReads({
      db: deps.primary,
      maxConcurrent: deps.config.FRONTEND_PRIMARY_POOL_MAX || 1,
      maxQueue: deps.config.FRONTEND_PRIMARY_QUEUE_MAX,
      queueTimeoutMs: deps.config.DATABASE_CONNECT_TIMEOUT_MS
    })
    : undefined
  const ryw = new ReadYourWrites({
    probe: deps.replayProbe ?? databaseReplayProbe((deps.probeDb ?? deps.db).db),
    maxWaitMs: deps.config.FRONTEND_RYW_WAIT_MS,
    // A key event without a commit position still marks its keys, up to where the primary is now.
    currentCommit: primary ? () => primary.currentLsn() : undefined,
    now,
    onProbeError: (err) => repeated.failed('replay position probe failing', err)
  })
  const repos = createContentRepository(deps.db.db)
  // The same list as trustProxy: only what comes straight from our own proxies may name a bus position.
  const trusted = compileTrust(deps.config.FRONTEND_TRUSTED_PROXIES)
  let behindLogged = 0
  const pages = createPageServer({
    cache: renderCache,
    ryw,
    repos,
    primary,
    bus: busPosition,
    busWaitMs: deps.config.FRONTEND_BUS_WAIT_MS,
    cdnMaxAge: deps.config.FRONTEND_CDN_MAX_AGE,
    cdnTagField: cdnTagField(deps.config),
    trustedPeer: (request) => trusted(request.socket.remoteAddress ?? '', 0),
    now,
    onRender: (_key, ms, outcome) => renders.observe({ kind: outcome }, ms / 1000),
    onHit: (level) => hits.inc({ level: String(level) }),
    onAuthorView: (view) => authorViews.inc({ view }),
    onBehindBus: (wanted, have) => {
      behindBus.inc()
      // Once a minute is enough to say the bus is late (or not shared with the cache layer).
      if (now() - behindLogged > 60_000) { behindLogged = now(); app.log.warn({ wanted, have }, 'a cache node has applied invalidations this frontend has not received: answering no-store') }
    },
    log: (msg, extra) => app.log.warn(extra ?? {}, msg)
  })

  app.decorate('repos', repos)
  app.decorate('pages', pages)
  app.decorate('backend', deps.backend)
  app.decorate('renderCache', renderCache)
  app.decorate('ryw', ryw)
  app.decorate('settings', { allowedOrigins: list(deps.config.FRONTEND_PUBLIC_ORIGINS).map((o) => new URL(o).origin), now })

  await app.register(gracefulClose)
  await app.register(metricsPlugin, { metrics, token: deps.config.METRICS_TOKEN })
  await app.register(securityPlugin)
  await app.register(formBodyPlugin, { bodyLimit: FORM_BODY_LIMIT })
  await app.register(assetsPlugin, { assets: deps.assets })

  // The same invalidation events as the cache layer (design §2.3). Writes
  // reach us as surrogate keys from the backend's outbox, the one source of
  // write invalidations; URL events come only from an operator's PURGE of a
  // URL at a cache node (cache nodes apply RFC 9111 §4.4 locally and no
  // longer publish it) and drop that path's pages through its internal tag.
  const unsubscribe = deps.bus.subscribe((message) => {
    const event = message.event
    invalidations.inc({ kind: event.kind })
    if (event.kind === 'keys') {
      // Note the LSN first: a render starting right now must already know the keys are pending.
      ryw.noteWrite(event.keys, event.lsn)
      renderCache.invalidateKeys(event.keys, message.id)
    } else if (event.kind === 'url') {
      renderCache.invalidatePath(event.path, message.id)
    } else {
      let re: RegExp | undefined
      try { re = new RegExp(event.pattern) } catch { app.log.warn({ pattern: event.pattern }, 'ignoring a ban with an invalid pattern') }
      if (re) renderCache.ban(re, message.id)
    }
    pages.forgetInflight()
    // Last: a refetch waiting for this event is released only once its effects are in place.
    busPosition.advance(message.id)
  }, {
    onGap: (since) => {
      app.log.warn({ since }, 'invalidation bus gap: dropping the whole render cache')
      renderCache.clear()
      pages.forgetInflight()
    },
    onStart: (position) => { busPosition.advance(position) }
  })
  app.addHook('onClose', async () => { unsubscribe(); busPosition.close(); await ryw.close(); repeated.flush(); unavailable.flush() })

  // Nothing personal is ever in a cacheable answer: pages never read cookies and never set them.
  app.addHook('onSend', async (_request, reply, payload) => {
    if (reply.hasHeader('set-cookie')) reply.removeHeader('set-cookie')
    return payload
  })

  // The generic 404 needs no database: rendered once.
  const notFoundBody = notFoundPage(deps.assets).value
  app.setNotFoundHandler(async (request, reply) => {
    reply.code(404).header('content-type', 'text/html; charset=utf-8')
    reply.header('cache-control', request.method === 'GET' || request.method === 'HEAD' ? cacheControl(POLICIES.notFound) : NO_STORE)
    reply.header('surrogate-key', SurrogateKeys.site)
    return reply.send(notFoundBody)
  })

  // One error handler: logs everything, shows messages only below 500 (common/errors.ts).
  app.setErrorHandler(async (err, request, reply) => {
    const failure = classifyError(err)
    if (failure.status === 503) unavailable.failed(`requests failing with 503: ${failure.message}`, err, { reqId: request.id, method: request.method, url: request.url })
    else if (failure.status >= 500) request.log.error({ err }, 'request failed')
    else request.log.info({ err: { message: (err as Error).message, code: (err as { code?: string }).code } }, 'request refused')
    if (failure.retryAfter) reply.header('retry-after', String(failure.retryAfter))
    if (failure.status === 404) return sendPrivateHtml(reply, 404, notFoundPage(deps.assets))
    const message = failure.status >= 500
      ? (failure.status === 503 ? 'The site is very busy or being updated. Nothing you sent was lost — please try again shortly.' : 'Sorry — that is our fault, not yours. Please try again.')
      : failure.message
    if (request.url.startsWith('/-/') || request.url.startsWith('/counter.json')) {
      reply.code(failure.status).header('cache-control', NO_STORE)
      return reply.send({ error: failure.code, message })
    }
    return sendPrivateHtml(reply, failure.status, errorPage(deps.assets, failure.status, message, failure.retryAfter))
  })

  // Routes after the handlers: Fastify binds a route's error handler when the route is added.
  await app.register(homeRoutes)
  await app.register(tutorialRoutes)
  await app.register(newsRoutes)
  await app.register(eventRoutes)
  await app.register(certificateRoutes)
  await app.register(sitemapRoutes)
  await app.register(healthRoutes, { db: deps.db, failoverMs: deps.config.DATABASE_FAILOVER_MS, now })

}, { name: 'flashcrowd-frontend', fastify: '5.x' })

export async function buildApp (deps: FrontendDeps): Promise<FastifyInstance> {
  const options: FastifyServerOptions = {
    // X-Forwarded-For / -Host / -Proto only from the cache layer and load balancers we know (design §2.10).
    trustProxy: trustedProxies(deps.config).length > 0 ? trustedProxies(deps.config) : false,
    bodyLimit: FORM_BODY_LIMIT,
    return503OnClosing: true,
    requestTimeout: 30_000,
    // No "incoming request"/"request completed" pair per page: in a flash
    // crowd that is two log lines per visitor request, for what the request
    // metrics already count. Failures are logged by the error handler.
    logController: new LogController({ disableRequestLogging: true }),
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 200 }
  }
  const app: FastifyInstance = typeof deps.logger === 'object'
    ? Fastify({ ...options, loggerInstance: deps.logger }) as unknown as FastifyInstance
    : Fastify({ ...options, logger: deps.logger === false ? false : { level: deps.config.LOG_LEVEL } })
  const assets = deps.assets ?? await buildAssets()
  await app.register(frontendApp, { ...deps, assets })
  return app
}
