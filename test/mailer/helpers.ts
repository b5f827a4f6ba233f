/**
 * A real SMTP server (the `smtp-server` package, in this process, on port 0)
 * that records every message it accepts, and a mailer app built against it,
 * with a clock the test moves.
 */
import { randomUUID } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server'
import type { Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../mailer/app.js'
import { loadMailerConfig } from '../../mailer/config.js'
import { METRICS_TOKEN } from '../helpers/metrics.js'
import { smtpTransport, type MailTransport } from '../../mailer/transport.js'
import { createDatabase, type DatabaseHandle } from '../../common/db.js'

export interface Received {
  messageId: string
  raw: string
  from: string
  to: string[]
  /** The test clock (or Date.now) when the server took the message. */
  at: number
}

export interface DataDecision {
  /** An SMTP code to answer DATA with instead of 250 (e.g. 451, 554). */
  code?: number
  message?: string
}

export interface TestSmtp {
  port: number
  url: string
  /** Messages accepted (answered 250), in order. */
  accepted: Received[]
  /** Every DATA the server read, accepted or not. */
  attempts: Received[]
  /** Decides each DATA's answer; the default accepts everything. May wait (e.g. to kill the sender first). */
  decide: (message: Received, session: SMTPServerSession) => DataDecision | undefined | Promise<DataDecision | undefined>
  /** Accepted messages by Message-ID: how often each arrived. */
  byMessageId: () => Map<string, number>
  close: () => Promise<void>
}

const smtpError = (code: number, message: string) => Object.assign(new Error(message), { responseCode: code })

export function headerOf (raw: string, name: string): string | undefined {
  const head = raw.split(/\r?\n\r?\n/, 1)[0].replace(/\r?\n[ \t]+/g, ' ')
  return new RegExp(`^${name}:[ \\t]*(.*)$`, 'im').exec(head)?.[1].trim()
}

export async function startSmtp (t: Test, options: { clock?: () => number, server?: Partial<SMTPServerOptions> } = {}): Promise<TestSmtp> {
  const clock = options.clock ?? Date.now
  const smtp: TestSmtp = {
    port: 0,
    url: '',
    accepted: [],
    attempts: [],
    decide: () => undefined,
    byMessageId () {
      const counts = new Map<string, number>()
      for (const m of smtp.accepted) counts.set(m.messageId, (counts.get(m.messageId) ?? 0) + 1)
      return counts
    },
    close: async () => {}
  }
  const server = new SMTPServer({
    logger: false,
    authOptional: true,
    // Plain SMTP on loopback unless a test asks for TLS: the client would otherwise upgrade with STARTTLS to a self-signed certificate.
    disabledCommands: ['STARTTLS'],
    // A client still connected at teardown does not hold the test for smtp-server's default 30 s.
    closeTimeout: 500,
    ...options.server,
    onData (stream, session, callback) {
      const chunks: Buffer[] = []
      stream.on('data', (c: Buffer) => chunks.push(c))
      stream.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8')
        const received: Received = {
          messageId: headerOf(raw, 'Message-ID') ?? '(none)',
          raw,
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
          at: clock()
        }
        smtp.attempts.push(received)
        Promise.resolve(smtp.decide(received, session)).then((decision) => {
          if (decision?.code) return callback(smtpError(decision.code, decision.message ?? `refused with ${decision.code}`))
          smtp.accepted.push(received)
          callback()
        }, (err: Error) => callback(err))
      })
    }
  })
  server.on('error', () => { /* a client reset mid-session is part of the tests */ })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  smtp.port = (server.server.address() as AddressInfo).port
  smtp.url = `smtp://127.0.0.1:${smtp.port}`
  let closed = false
  smtp.close = () => closed ? Promise.resolve() : new Promise<void>((resolve) => { closed = true; server.close(() => resolve()) })
  t.teardown(() => smtp.close())
  return smtp
}

/**
 * A clock the test moves; `sleep` moves it instead of waiting. It starts a
 * minute ahead of the database's clock, so rows queued now are already due.
 */
export function testClock (start = Date.now() + 60_000) {
  const clock = {
    now: start,
    read: () => clock.now,
    advance (ms: number) { clock.now += ms },
    sleep: async (ms: number) => { clock.now += ms }
  }
  return clock
}

export interface TestMailer {
  app: FastifyInstance
  database: DatabaseHandle
  transport: MailTransport
}

/** A mailer app against `databaseUrl` and `smtpUrl`; the loop is not started unless `autoStart`. */
export async function startMailer (t: Test, databaseUrl: string, smtpUrl: string, env: Record<string, string> = {}, options: { now?: () => number, sleep?: (ms: number) => Promise<void>, random?: () => number, autoStart?: boolean } = {}): Promise<TestMailer> {
  const config = loadMailerConfig({
    LOG_LEVEL: 'silent',
    METRICS_TOKEN,
    MAILER_RATE_PER_SECOND: '0',
    MAILER_RATE_PER_DAY: '0',
    MAILER_SITE_URL: 'https://hoc.example',
    MAILER_FROM: 'Hour of Code <hello@hoc.example>',
    MAILER_REPLY_TO: 'help@hoc.example',
    MAILER_SMTP_TIMEOUT_MS: '10000',
    DATABASE_CONNECT_TIMEOUT_MS: '10000',
    SMTP_URL: smtpUrl,
    ...env
  })
  const database = createDatabase({ url: databaseUrl, max: 4, connectTimeoutMs: config.DATABASE_CONNECT_TIMEOUT_MS })
  const transport = smtpTransport({
    url: smtpUrl,
    rejectUnauthorized: config.MAILER_SMTP_TLS_REJECT_UNAUTHORIZED,
    requireTLS: config.MAILER_SMTP_REQUIRE_TLS,
    poolSize: config.MAILER_SMTP_POOL_SIZE,
    timeoutMs: config.MAILER_SMTP_TIMEOUT_MS
  })
  const app = await buildApp({ config, database, transport, logger: process.env.MAILER_TEST_LOG ? undefined : false, autoStart: options.autoStart ?? false, now: options.now, sleep: options.sleep, random: options.random })
  await app.ready()
  t.teardown(async () => { await app.close(); await database.close() })
  return { app, database, transport }
}

/** Queues `n` event confirmations as the backend's write does; returns their Message-IDs. */
export async function queueEvents (database: DatabaseHandle, n: number, fields: Partial<Record<string, unknown>> = {}): Promise<string[]> {
  const ids = Array.from({ length: n }, () => `<${randomUUID()}@test.flashcrowd>`)
  const payloads = ids.map((_, i) => JSON.stringify({
    eventId: String(i + 1), organizer: `Organizer ${i}`, school: `School ${i}`, country: 'DE', city: 'Berlin',
    expectedParticipants: 20 + i, eventDate: '2026-12-08', ...fields
  }))
  await database.pool.query(
    `insert into mail_messages (message_id, kind, recipient, payload)
     select id, 'event-confirmation', 'organizer' || ord || '@school.example', p::jsonb
     from unnest($1::text[], $2::text[]) with ordinality as u(id, p, ord)`, [ids, payloads])
  return ids
}

export async function statuses (database: DatabaseHandle): Promise<Record<string, number>> {
  const { rows } = await database.pool.query<{ status: string, n: string }>('select status, count(*) as n from mail_messages group by status')
  return Object.fromEntries(rows.map((r) => [r.status, Number(r.n)]))
}

/** Polls until `check` holds (or `ms` passed). */
export async function until (check: () => boolean | Promise<boolean>, ms = 30_000): Promise<boolean> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (await check()) return true
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  return check()
}
