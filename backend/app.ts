/**
 * The backend: the only role that writes (design §3). A Fastify app built
 * from injected dependencies; `server.ts` only reads config and listens.
 */
import Fastify, { LogController, type FastifyInstance, type FastifyBaseLogger, type FastifyError } from 'fastify'
import underPressure from '@fastify/under-pressure'
import type { Redis } from 'ioredis'
import { Errors, classifyError } from '../common/errors.js'
import { createMetrics, metricsPlugin, registerPoolGauges, registerPrimaryGauges } from '../common/metrics.js'
import { gracefulClose } from '../common/graceful-close.js'
import type { DatabaseHandle } from '../common/db.js'
import { DatabaseHealth, healthStatus } from '../common/database-health.js'
import type { Bus } from '../common/bus.js'
import { trustedProxyList } from '../common/trusted-proxies.js'
import type { BackendConfig } from './config.js'
import { OutboxPublisher } from './outbox.js'
import { limitsPlugin } from './limits.js'
import { writerPlugin } from './write.js'
import { JsonBodyError, parseJsonBody } from './strict-json.js'
import { fieldMessage } from './field-error.js'
import { sweepIdempotencyKeys } from './idempotency.js'
import commentRoutes from './routes/comments.js'
import eventRoutes from './routes/events.js'
import completionRoutes from './routes/completions.js'
import editorRoutes from './routes/editor.js'
import { Counter, Gauge, Histogram } from 'prom-client'
import { RepeatedFailureLog, RepeatedFailureLogs } from '../common/log-aggregate.js'
import { roleLoggerOptions } from '../common/role-logger.js'

export interface BackendDeps {
  config: BackendConfig
  database: DatabaseHandle
  bus: Bus
  redis?: Redis
  /** A pino logger, or `false` for none (tests). Defaults to pino at LOG_LEVEL. */
  logger?: FastifyBaseLogger | false
  /** Wall clock, injectable for tests. */
  now?: () => number
}

declare module 'fastify' {
  interface FastifyInstance { outbox: OutboxPublisher }
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

export async function buildApp (deps: BackendDeps): Promise<FastifyInstance> {
  const { config, database, bus } = deps
  const now = deps.now ?? Date.now
  const trusted = trustedProxyList(config.BACKEND_TRUSTED_PROXIES)
  const app = Fastify({
    ...roleLoggerOptions(deps.logger, config.LOG_LEVEL),
    // No "incoming request"/"request completed" pair per write: at a sign-up
    // rush that is two log lines per write, for what the request metrics
    // already count. Failures are still logged by the error handler.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.BACKEND_BODY_LIMIT,
    // The client address used for rate limits comes from X-Forwarded-For only when a trusted frontend sent it.
    trustProxy: trusted.length ? trusted : false,
    // Slow clients must not hold connections: the whole request within 30 s.
    requestTimeout: 30_000,
    connectionTimeout: 60_000,
    keepAliveTimeout: 65_000,
    forceCloseConnections: 'idle',
    return503OnClosing: true,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, allErrors: false } }
  })

  const metrics = createMetrics({ role: 'backend' })
  registerPoolGauges(metrics, 'database', database.pool)
  registerPrimaryGauges(metrics, database.pool)
  const published = new Counter({ name: 'flashcrowd_outbox_published_total', help: 'Outbox rows published to the bus', registers: [metrics.registry] })
  const publishErrors = new Counter({ name: 'flashcrowd_outbox_publish_errors_total', help: 'Failed outbox publish attempts (retried)', registers: [metrics.registry] })

  // While the bus is down every commit wakes the publisher and fails again; while the database is
  // down every request is a 503: one line per interval with a count, not one (with a stack) each.
  const busFailures = new RepeatedFailureLog({ what: 'outbox publish failing (events stay in the outbox and are retried)', log: app.log })
  const unavailable = new RepeatedFailureLogs({ log: app.log, level: 'error' })
  const publisher = new OutboxPublisher({
    database,
    bus,
    pollMs: config.BACKEND_OUTBOX_POLL_MS,
    onPublished: (n) => published.inc(n),
    onError: (err) => { publishErrors.inc(); busFailures.failed(err) }
  })
  app.decorate('outbox', publisher)
  new Gauge({
    name: 'flashcrowd_outbox_backlog',
    help: 'Committed invalidation events not yet published',
    registers: [metrics.registry],
    async collect () { this.set(await publisher.backlog().catch(() => -1)) }
  })
  new Gauge({
    name: 'flashcrowd_outbox_oldest_unpublished_seconds',
    help: 'Age of the oldest committed invalidation event not yet published (0 when none waits): commit → invalidation lag',
    registers: [metrics.registry],
    async collect () { this.set(await publisher.oldestUnpublishedSeconds().catch(() => -1)) }
  })

  // JSON only (everything else is 415, as documented: fastify's default
  // text/plain parser would let a string through to a 400 from validation).
  // The body must be valid UTF-8 (invariant 8), one meaning per key and free
  // of prototype poisoning and of characters no text may hold (strict-json.ts).
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    const charset = /charset\s*=\s*"?([^";\s]+)/i.exec(request.headers['content-type'] ?? '')?.[1]
    if (charset && !/^utf-?8$/i.test(charset)) return done(new Errors.UNSUPPORTED_MEDIA_TYPE(`charset ${charset}`))
    let text: string
    try { text = utf8.decode(body as Buffer) } catch { return done(new Errors.INVALID_UTF8()) }
    if (text.trim() === '') return done(new Errors.BAD_REQUEST('request body is empty: send a JSON object'))
    try {
      done(null, parseJsonBody(text))
    } catch (err) {
      if (!(err instanceof JsonBodyError)) return done(err as Error)
      if (err.field === undefined) return done(new Errors.BAD_REQUEST(err.message))
      done(fieldMessage(err.field, err.message))
    }
  })

  app.setErrorHandler((error: FastifyError & { field?: string, retryAfter?: number }, request, reply) => {
    let field = error.field
    let message = error.message
    if (error.validation?.length) {
      // Name the field: "author must NOT have more than 80 characters".
      const v = error.validation[0]
      const params = v.params as Record<string, unknown>
      field = (params.missingProperty ?? params.additionalProperty ?? v.instancePath.split('/').filter(Boolean).join('.')) as string | undefined
      if (params.additionalProperty) message = `${field} is not a known field`
      else if (params.missingProperty) message = `${field} is required`
      else message = `${field || error.validationContext} ${v.message ?? 'is invalid'}`
    }
    const failure = classifyError({ ...error, message, statusCode: error.statusCode, code: error.code, validation: error.validation }, config.BACKEND_RETRY_AFTER_S)
    if (failure.status === 503) unavailable.failed(`requests failing with 503: ${failure.message}`, error, { reqId: request.id, method: request.method, url: request.url })
    else if (failure.status >= 500) request.log.error({ err: error }, 'request failed')
    else request.log.info({ err: { code: error.code, message } }, 'request rejected')
    if (failure.retryAfter !== undefined) reply.header('retry-after', String(failure.retryAfter))
    reply.header('cache-control', 'no-store')
    reply.code(failure.status).send({ error: failure.code, message: failure.message, ...(field && failure.status < 500 ? { field } : {}) })
  })

  app.setNotFoundHandler((request, reply) => {
    reply.code(404).send({ error: 'not_found', message: `no route ${request.method} ${request.url.split('?')[0]}` })
  })

  if (config.BACKEND_MAX_EVENT_LOOP_DELAY_MS > 0) {
    // Shed load before latency explodes: a 503 with Retry-After is an answer a client can act on.
    await app.register(underPressure, {
      maxEventLoopDelay: config.BACKEND_MAX_EVENT_LOOP_DELAY_MS,
      retryAfter: config.BACKEND_RETRY_AFTER_S,
      exposeStatusRoute: false,
      pressureHandler: (_request, reply) => {
        reply.header('retry-after', String(config.BACKEND_RETRY_AFTER_S)).code(503)
          .send({ error: 'unavailable', message: 'the backend is overloaded; retry shortly' })
      }
    })
  }

  await app.register(gracefulClose)
  await app.register(metricsPlugin, { metrics, token: config.METRICS_TOKEN })

  // Per-address bucket and identical-content limit (limits.ts); routes name what makes two writes the same.
  await app.register(limitsPlugin, { config, redis: deps.redis, now })

  // Failing over is reported, not fatal: writes meanwhile are held and retried (write.ts).
  const databaseHealth = new DatabaseHealth({ database, failoverMs: config.DATABASE_FAILOVER_MS, writable: true, now })
  app.get('/-/health', { logLevel: 'warn' }, async (_request, reply) => {
    const report = await databaseHealth.check()
    const { code, status } = healthStatus(report)
    reply.header('cache-control', 'no-store')
    if (code !== 200) reply.code(code).header('retry-after', String(config.BACKEND_RETRY_AFTER_S))
    return { status, database: report.state, ...(report.since ? { databaseSince: report.since } : {}), bus: bus.name }
  })

  const batchSizes = new Histogram({ name: 'flashcrowd_write_batch_size', help: 'Writes committed together in one transaction (group commit)', buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512], registers: [metrics.registry] })
  const batchSplits = new Counter({ name: 'flashcrowd_write_batch_splits_total', help: 'Batches split in halves to find the one write that failed them', registers: [metrics.registry] })
  const writeRetries = new Counter({ name: 'flashcrowd_write_failover_retries_total', help: 'Writes run again after their batch met a failover (connection lost, refused or read-only)', registers: [metrics.registry] })
  await app.register(writerPlugin, {
    database,
    publisher,
    idempotencyTtlSeconds: config.BACKEND_IDEMPOTENCY_TTL_S,
    mailDomain: config.BACKEND_MAIL_DOMAIN,
    batchMax: config.BACKEND_WRITE_BATCH_MAX,
    batchWaitMs: config.BACKEND_WRITE_BATCH_WAIT_MS,
    concurrency: config.BACKEND_WRITE_CONCURRENCY,
    retryMs: config.BACKEND_DB_RETRY_MS,
    onBatch: (size) => batchSizes.observe(size),
    onRetry: () => writeRetries.inc(),
    onSplit: () => batchSplits.inc()
  })
  await app.register(commentRoutes)
  await app.register(eventRoutes, { now })
  await app.register(completionRoutes)
  await app.register(editorRoutes, { adminToken: config.ADMIN_TOKEN })

  let sweeper: NodeJS.Timeout | undefined
  app.addHook('onReady', async () => {
    publisher.start()
    sweeper = setInterval(() => {
      sweepIdempotencyKeys(database.db).catch((err) => app.log.warn({ err }, 'idempotency sweep failed'))
    }, 60_000)
    sweeper.unref()
  })
  app.addHook('preClose', async () => { clearInterval(sweeper) })
  // After in-flight requests finished (Fastify closes the server first):
  // publish what they committed before the pools go away.
  app.addHook('onClose', async () => {
    await app.writer.drain()
    await app.writer.close()
    await publisher.stop(config.BACKEND_SHUTDOWN_TIMEOUT_MS)
    // The counts not yet logged, so an outage's last seconds are not lost with the process.
    busFailures.flush()
    unavailable.flush()
  })
  return app
}
