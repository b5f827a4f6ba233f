/** The mailer's configuration: one schema, read from the environment. */
import { Type, type Static } from '@sinclair/typebox'
import { CommonEnv, DatabaseEnv, Port, loadConfig } from '../common/config.js'

/** An RFC 5322 mailbox on one line: `address@domain` or `Name <address@domain>`. */
const MAILBOX = '^(?:[^\\u0000-\\u001F\\u007F<>]*<[^\\s@<>]+@[^\\s@<>]+\\.[^\\s@<>]+>|[^\\s@<>]+@[^\\s@<>]+\\.[^\\s@<>]+)$'

export const MailerEnv = Type.Object({
  HOST: CommonEnv.HOST,
  LOG_LEVEL: CommonEnv.LOG_LEVEL,
  METRICS_TOKEN: CommonEnv.METRICS_TOKEN,
  ...DatabaseEnv,
  PORT: Port('Port of the mailer\'s /-/health and /-/metrics.', 3002),
  SMTP_URL: Type.Optional(Type.String({
    pattern: '^smtps?://[^\\s/]+(:\\d+)?/?$',
    description: 'SMTP server the mailer sends through: smtp://user:pass@host:587 (STARTTLS when offered) or smtps://user:pass@host:465 (TLS from the first byte); user and password URL-encoded. Unset: messages are written as .eml files to <FLASHCROWD_STATE_DIR>/mail/.'
  })),
  MAILER_SMTP_TLS_REJECT_UNAUTHORIZED: Type.Boolean({ default: true, description: 'Refuse an SMTP server whose TLS certificate does not verify (false only for a test relay with a self-signed certificate).' }),
  MAILER_SMTP_REQUIRE_TLS: Type.Boolean({ default: false, description: 'With smtp://: refuse to send unless the server upgrades the connection with STARTTLS.' }),
  MAILER_SMTP_POOL_SIZE: Type.Integer({ minimum: 1, maximum: 50, default: 3, description: 'SMTP connections one mailer keeps open (messages in flight at once).' }),
  MAILER_SMTP_TIMEOUT_MS: Type.Integer({ minimum: 1000, maximum: 300_000, default: 30_000, description: 'Longest wait for the SMTP server to connect, greet or answer; then the attempt counts as a temporary failure.' }),
  MAILER_FROM: Type.String({ pattern: MAILBOX, maxLength: 320, default: 'Hour of Code <no-reply@flashcrowd.localhost>', description: 'Sender of every message (From): `address` or `Name <address>`.' }),
  MAILER_REPLY_TO: Type.Optional(Type.String({ pattern: MAILBOX, maxLength: 320, description: 'Where replies go (Reply-To). Unset: no Reply-To header.' })),
  MAILER_SITE_URL: Type.String({ pattern: '^https?://[^\\s]+[^/\\s]$', default: 'http://127.0.0.1:8080', description: 'Public address of the site, for the links in messages (the certificate page), without a trailing slash.' }),
  MAILER_RATE_PER_SECOND: Type.Number({ minimum: 0, maximum: 10_000, default: 14, description: 'Most messages sent per second by all mailers together (the provider\'s quota; SES sandbox: 1). 0: no limit.' }),
  MAILER_RATE_PER_DAY: Type.Integer({ minimum: 0, maximum: 100_000_000, default: 50_000, description: 'Most messages sent in any 24 hours by all mailers together (the provider\'s daily quota; SES sandbox: 200). 0: no limit.' }),
  MAILER_BATCH_MAX: Type.Integer({ minimum: 1, maximum: 1000, default: 50, description: 'Most messages one claim takes (also bounded by the rate limit: one second of sends).' }),
  MAILER_POLL_MS: Type.Integer({ minimum: 10, maximum: 60_000, default: 1000, description: 'How often an idle mailer looks for due messages.' }),
  MAILER_LEASE_MS: Type.Integer({ minimum: 1000, maximum: 3_600_000, default: 120_000, description: 'How long a claim holds its messages; a mailer that died mid-send loses them to another mailer after this. Keep well above MAILER_SMTP_TIMEOUT_MS.' }),
  MAILER_RETRY_BASE_MS: Type.Integer({ minimum: 10, maximum: 3_600_000, default: 30_000, description: 'First wait after a temporary failure (SMTP 4xx, server unreachable); doubled per attempt, with jitter.' }),
  MAILER_RETRY_MAX_MS: Type.Integer({ minimum: 10, maximum: 86_400_000, default: 3_600_000, description: 'Longest wait between two attempts of one message.' }),
  MAILER_GIVE_UP_AFTER_S: Type.Integer({ minimum: 0, maximum: 30 * 86_400, default: 3 * 86_400, description: 'A message still failing temporarily this long after its write is marked failed (0: retry forever).' }),
  MAILER_RETAIN_SENT_S: Type.Integer({ minimum: 0, maximum: 365 * 86_400, default: 14 * 86_400, description: 'Sent messages are deleted from the queue after this long (0: kept).' }),
  MAILER_NICE: Type.Integer({ minimum: 0, maximum: 19, default: 10, description: 'Scheduling niceness the mailer gives itself (0: as the other roles; 19: lowest). E-mail is off the request path: on a machine it shares with frontends and backends, it takes the CPU they leave, so a sign-up rush keeps its latency while the messages go out right behind it.' }),
  MAILER_SHUTDOWN_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 120_000, default: 10_000, description: 'How long a graceful shutdown waits for sends in flight.' })
})

export type MailerConfig = Static<typeof MailerEnv>

export function loadMailerConfig (env: NodeJS.ProcessEnv = process.env): MailerConfig {
  return loadConfig(MailerEnv, env)
}
