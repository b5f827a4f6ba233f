/**
 * The frontend as a Fastify app: stateless render servers for the pages
 * visitors read during a campaign spike (design §1, §3).
 *
 * `buildApp(deps)` creates the instance (trust-proxy settings must be known at
 * construction) and registers `frontendApp`, the app as a plugin. Everything
 * with a lifecycle (read pool, bus, backend client, Redis) is passed in, so
 * tests and server.ts decide what is real.
 */
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyServerOptions } from 'fastify'
import fp from 'fastify-plugin'
import type { Redis } from 'ioredis'
import { Counter, Gauge, Histogram } from 'prom-client'
import { classifyError } from '../common/errors.js'
import { createMetrics, metricsPlugin, registerPoolGauges, type Metrics } from '../common/metrics.js'
import { ping, type DatabaseHandle } from '../common/db.js'
import type { Bus } from '../common/bus.js'
import { list } from '../common/config.js'
import { trustedProxies, type FrontendConfig } from './config.js'
import { createContentRepository } from './repositories.js'
import { RenderCache } from './render-cache.js'
import { ReadYourWrites, databaseReplayProbe, type ReplayProbe } from './read-your-writes.js'
import { createPageServer, sendPrivateHtml } from './page-render.js'
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

export interface FrontendDeps {
  config: FrontendConfig
  /** The read pool; must be opened with `readOnly: true` (design §2.1). */
  db: DatabaseHandle
  bus: Bus
  backend: BackendClient
  /** Shared level-2 render cache; omitted → in-process only. */
  redis?: Redis
  now?: () => number
  /** A pino logger, or false for none; default: pino at LOG_LEVEL. */
  logger?: FastifyBaseLogger | boolean
  /** Where the read pool is in the primary's WAL; defaults to asking the read pool. */
  replayProbe?: ReplayProbe
  /** Prebuilt assets (tests build once for many apps). */
  assets?: BuiltAssets
  metrics?: Metrics
}

/** Form bodies are small; anything bigger is not one of our forms (413). */
const FORM_BODY_LIMIT = 16 * 1024

export const frontendApp = fp(async function frontendApp (app: FastifyInstance, deps: FrontendDeps & { assets: BuiltAssets }) {
  if (!deps.db.readOnly) throw new Error('the frontend must be given a read-only database handle (createDatabase({ readOnly: true }))')
  const now = deps.now ?? Date.now
  const metrics = deps.metrics ?? createMetrics({ role: 'frontend' })
  registerPoolGauges(metrics, 'read', deps.db.pool)
  const renders = new Histogram({ name: 'flashcrowd_frontend_render_seconds', help: 'Page render time (database and template)', labelNames: ['kind'] as const, buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1], registers: [metrics.registry] })
  const hits = new Counter({ name: 'flashcrowd_frontend_render_cache_hits_total', help: 'Render cache hits by level', labelNames: ['level'] as const, registers: [metrics.registry] })
  const invalidations = new Counter({ name: 'flashcrowd_frontend_invalidations_total', help: 'Bus events applied to the render cache', labelNames: ['kind'] as const, registers: [metrics.registry] })

  const renderCache = new RenderCache({
    maxBytes: deps.config.FRONTEND_RENDER_CACHE_BYTES,
    redis: deps.config.FRONTEND_SHARED_RENDER_CACHE ? deps.redis : undefined,
    // Pages of another tier sharing this Redis are not ours to serve.
    prefix: `${deps.config.REDIS_PREFIX}:render:v1:`,
    now,
    onError: (err) => app.log.warn({ err }, 'shared render cache unavailable')
  })
  new Gauge({
    name: 'flashcrowd_frontend_render_cache_bytes', help: 'Bytes held by the in-process render cache', registers: [metrics.registry],
    collect () { this.set(renderCache.bytes) }
  })
  const ryw = new ReadYourWrites({
    probe: deps.replayProbe ?? databaseReplayProbe(deps.db.db),
    maxWaitMs: deps.config.FRONTEND_RYW_WAIT_MS,
    now,
    onProbeError: (err) => app.log.warn({ err }, 'replay position probe failed')
  })
  const pages = createPageServer({
    cache: renderCache,
    ryw,
    now,
    onRender: (_key, ms, outcome) => renders.observe({ kind: outcome }, ms / 1000),
    onHit: (level) => hits.inc({ level: String(level) }),
    log: (msg, extra) => app.log.warn(extra ?? {}, msg)
  })

  app.decorate('repos', createContentRepository(deps.db.db))
  app.decorate('pages', pages)
  app.decorate('backend', deps.backend)
  app.decorate('renderCache', renderCache)
  app.decorate('ryw', ryw)
  app.decorate('settings', { allowedOrigins: list(deps.config.FRONTEND_PUBLIC_ORIGINS).map((o) => new URL(o).origin), now })

  await app.register(gracefulClose)
  await app.register(metricsPlugin, { metrics })
  await app.register(securityPlugin)
  await app.register(formBodyPlugin, { bodyLimit: FORM_BODY_LIMIT })
  await app.register(assetsPlugin, { assets: deps.assets })

  // The same invalidation events as the cache layer (design §2.3).
  const unsubscribe = deps.bus.subscribe((message) => {
    const event = message.event
    invalidations.inc({ kind: event.kind })
    if (event.kind === 'keys') {
      // Note the LSN first: a render starting right now must already know the keys are pending.
      ryw.noteWrite(event.keys, event.lsn)
      renderCache.invalidateKeys(event.keys)
    } else if (event.kind === 'url') {
      renderCache.invalidatePath(event.path)
    } else {
      let re: RegExp
      try { re = new RegExp(event.pattern) } catch { app.log.warn({ pattern: event.pattern }, 'ignoring a ban with an invalid pattern'); return }
      renderCache.ban(re)
    }
    pages.forgetInflight()
  }, {
    onGap: (since) => {
      app.log.warn({ since }, 'invalidation bus gap: dropping the whole render cache')
      renderCache.clear()
      pages.forgetInflight()
    }
  })
  app.addHook('onClose', async () => { unsubscribe(); await ryw.idle() })

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
    reply.header('surrogate-key', 'site')
    return reply.send(notFoundBody)
  })

  // One error handler: logs everything, shows messages only below 500 (common/errors.ts).
  app.setErrorHandler(async (err, request, reply) => {
    const failure = classifyError(err)
    if (failure.status >= 500) request.log.error({ err }, 'request failed')
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
  await app.register(healthRoutes, { db: deps.db })

}, { name: 'flashcrowd-frontend', fastify: '5.x' })

export async function buildApp (deps: FrontendDeps): Promise<FastifyInstance> {
  const options: FastifyServerOptions = {
    // X-Forwarded-For / -Host / -Proto only from the cache layer and load balancers we know (design §2.10).
    trustProxy: trustedProxies(deps.config).length > 0 ? trustedProxies(deps.config) : false,
    bodyLimit: FORM_BODY_LIMIT,
    return503OnClosing: true,
    requestTimeout: 30_000,
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 200 }
  }
  const app: FastifyInstance = typeof deps.logger === 'object'
    ? Fastify({ ...options, loggerInstance: deps.logger }) as unknown as FastifyInstance
    : Fastify({ ...options, logger: deps.logger === false ? false : { level: deps.config.LOG_LEVEL } })
  const assets = deps.assets ?? await buildAssets()
  await app.register(frontendApp, { ...deps, assets })
  return app
}
