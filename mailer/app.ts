/**
 * The mailer: sends the e-mail that writes queued (mail_messages) off the
 * request path (design §3). A small Fastify app for /-/health and /-/metrics
 * around the sender loop (sender.ts); `server.ts` only reads config, builds
 * and listens.
 */
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import { Counter, Gauge } from 'prom-client'
import { createMetrics, metricsPlugin, registerPoolGauges } from '../common/metrics.js'
import { gracefulClose } from '../common/graceful-close.js'
import type { DatabaseHandle } from '../common/db.js'
import { DatabaseHealth, healthStatus } from '../common/database-health.js'
import type { MailerConfig } from './config.js'
import { Sender } from './sender.js'
import type { MailTransport } from './transport.js'
import { roleLoggerOptions } from '../common/role-logger.js'

export interface MailerDeps {
  config: MailerConfig
  database: DatabaseHandle
  transport: MailTransport
  /** A pino logger, or `false` for none (tests). Defaults to pino at LOG_LEVEL. */
  logger?: FastifyBaseLogger | false
  /** Clock, randomness and waiting, injectable for tests. */
  now?: () => number
  random?: () => number
  sleep?: (ms: number) => Promise<void>
  /** false: build without starting the loop (tests drive `app.sender.runOnce()`). Default true. */
  autoStart?: boolean
}

declare module 'fastify' {
  interface FastifyInstance { sender: Sender }
}

export async function buildApp (deps: MailerDeps): Promise<FastifyInstance> {
  const { config, database, transport } = deps
  const app = Fastify({
    ...roleLoggerOptions(deps.logger, config.LOG_LEVEL),
    requestTimeout: 10_000,
    forceCloseConnections: 'idle',
    return503OnClosing: true
  })

  const metrics = createMetrics({ role: 'mailer' })
  registerPoolGauges(metrics, 'database', database.pool)
  const sent = new Counter({ name: 'flashcrowd_mail_sent_total', help: 'Messages the mail server accepted', labelNames: ['kind'] as const, registers: [metrics.registry] })
  const failed = new Counter({ name: 'flashcrowd_mail_failed_total', help: 'Messages failed for good (SMTP 5xx, or still failing after MAILER_GIVE_UP_AFTER_S)', labelNames: ['kind'] as const, registers: [metrics.registry] })
  const retried = new Counter({ name: 'flashcrowd_mail_retries_total', help: 'Attempts that failed temporarily (SMTP 4xx, server unreachable) and were rescheduled', labelNames: ['kind'] as const, registers: [metrics.registry] })
  const reclaimed = new Counter({ name: 'flashcrowd_mail_reclaimed_total', help: 'Messages resent after a lease ran out (a mailer died or stalled mid-send): the receiver may see them twice, with one Message-ID', registers: [metrics.registry] })
  const lost = new Counter({ name: 'flashcrowd_mail_lease_lost_total', help: 'Sends whose lease ended before they were recorded (raise MAILER_LEASE_MS)', registers: [metrics.registry] })
  const errors = new Counter({ name: 'flashcrowd_mail_errors_total', help: 'Database errors of the mailer loop (retried)', registers: [metrics.registry] })
  new Gauge({
    name: 'flashcrowd_mail_queue',
    help: 'Messages by status (sent ones only until they are cleaned up)',
    labelNames: ['status'] as const,
    registers: [metrics.registry],
    async collect () {
      const { rows } = await database.pool.query<{ status: string, n: string }>(
        `select status, count(*) as n from mail_messages where status <> 'sent' group by status`).catch(() => ({ rows: [] }))
      for (const status of ['queued', 'sending', 'failed']) this.set({ status }, Number(rows.find((r) => r.status === status)?.n ?? 0))
    }
  })
  new Gauge({
    name: 'flashcrowd_mail_oldest_queued_seconds',
    help: 'Age of the oldest message not yet sent (queued or sending; 0 when none waits, -1 while the database does not answer): how far the mail trails its writes',
    registers: [metrics.registry],
    async collect () {
      const r = await database.pool.query<{ age: number | null }>(
        `select extract(epoch from now() - min(created_at))::float8 as age from mail_messages where status in ('queued', 'sending')`).catch(() => undefined)
      this.set(r === undefined ? -1 : Math.max(0, r.rows[0]?.age ?? 0))
    }
  })
  const now = deps.now ?? Date.now
  const sender = new Sender({
    pool: database.pool,
    transport,
    links: { siteUrl: config.MAILER_SITE_URL },
    from: config.MAILER_FROM,
    replyTo: config.MAILER_REPLY_TO,
    limits: { perSecond: config.MAILER_RATE_PER_SECOND, perDay: config.MAILER_RATE_PER_DAY },
    batchMax: config.MAILER_BATCH_MAX,
    concurrency: transport.kind === 'smtp' ? config.MAILER_SMTP_POOL_SIZE : 1,
    leaseMs: config.MAILER_LEASE_MS,
    pollMs: config.MAILER_POLL_MS,
    retryBaseMs: config.MAILER_RETRY_BASE_MS,
    retryMaxMs: config.MAILER_RETRY_MAX_MS,
    giveUpAfterMs: config.MAILER_GIVE_UP_AFTER_S * 1000,
    retainSentMs: config.MAILER_RETAIN_SENT_S * 1000,
    now,
    ...(deps.random ? { random: deps.random } : {}),
    ...(deps.sleep ? { sleep: deps.sleep } : {}),
    events: {
      sent: (m) => sent.inc({ kind: m.kind }),
      retry: (m, error, delayMs) => {
        retried.inc({ kind: m.kind })
        app.log.warn({ messageId: m.messageId, attempts: m.attempts, error, retryInMs: delayMs }, 'mail deferred; will retry')
      },
      failed: (m, error) => {
        failed.inc({ kind: m.kind })
        app.log.error({ messageId: m.messageId, attempts: m.attempts, error }, 'mail failed for good')
      },
      reclaimed: (n) => {
        reclaimed.inc(n)
        app.log.warn({ count: n }, 'resending messages whose lease ran out (same Message-ID)')
      },
      lost: (m) => {
        lost.inc()
        app.log.warn({ messageId: m.messageId }, 'a send finished after its lease; another mailer owns the message now')
      },
      error: (err, what) => {
        errors.inc()
        app.log.warn({ err }, `mailer: ${what} failed; will retry`)
      }
    }
  })
  app.decorate('sender', sender)
  new Gauge({
    name: 'flashcrowd_mail_server_unreachable_seconds',
    help: 'How long every attempt has failed to reach the mail server (0 while it answers)',
    registers: [metrics.registry],
    collect () { const since = sender.unreachableSince; this.set(since === undefined ? 0 : Math.max(0, (now() - since) / 1000)) }
  })

  await app.register(gracefulClose)
  await app.register(metricsPlugin, { metrics, token: config.METRICS_TOKEN })

  // Ready means "can take messages from the queue". An SMTP server that is
  // away is reported but keeps the mailer up: it retries, and restarting it would not help.
  // A failover is reported, not fatal: the loop resumes by itself once the new primary answers.
  const databaseHealth = new DatabaseHealth({ database, failoverMs: config.DATABASE_FAILOVER_MS, writable: true, now })
  app.get('/-/health', { logLevel: 'warn' }, async (_request, reply) => {
    const report = await databaseHealth.check()
    const { code, status } = healthStatus(report)
    reply.header('cache-control', 'no-store')
    if (code !== 200) reply.code(code).header('retry-after', '5')
    const since = sender.unreachableSince
    return {
      status,
      role: 'mailer',
      database: report.state,
      ...(report.since ? { databaseSince: report.since } : {}),
      transport: transport.kind,
      smtp: since === undefined ? 'ok' : 'unreachable',
      ...(since !== undefined ? { unreachableSince: new Date(since).toISOString(), lastError: sender.lastError } : {})
    }
  })

  app.addHook('onReady', async () => {
    if (deps.autoStart !== false) sender.start()
  })
  app.addHook('onClose', async () => {
    await sender.stop(config.MAILER_SHUTDOWN_TIMEOUT_MS)
    await transport.close()
  })
  return app
}
