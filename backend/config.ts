/** The backend's configuration: one schema, read from the environment. */
import { Type, type Static } from '@sinclair/typebox'
import { CommonEnv, DatabaseEnv, Port, loadConfig } from '../common/config.js'
import { TrustedProxies } from '../common/trusted-proxies.js'

export const BackendEnv = Type.Object({
  ...CommonEnv,
  ...DatabaseEnv,
  PORT: Port('Port the backend listens on.', 3001),
  BACKEND_BODY_LIMIT: Type.Integer({ minimum: 1024, maximum: 100 * 1024 * 1024, default: 1024 * 1024, description: 'Largest accepted request body in bytes (413 above).' }),
  BACKEND_IDEMPOTENCY_TTL_S: Type.Integer({ minimum: 60, maximum: 30 * 86400, default: 86400, description: 'How long an Idempotency-Key is remembered, in seconds.' }),
  BACKEND_RATE_LIMIT_MAX: Type.Integer({ minimum: 0, maximum: 10_000_000, default: 1200, description: 'Writes one visitor address may keep making per window, however different (the bucket\'s refill rate; 0 disables this limit, e.g. for load tests from one machine).' }),
  BACKEND_RATE_LIMIT_BURST: Type.Integer({ minimum: 1, maximum: 10_000_000, default: 600, description: 'Writes one visitor address may make at once (the bucket\'s size): a whole school pressing "done" at the same moment.' }),
  BACKEND_RATE_LIMIT_SAME_MAX: Type.Integer({ minimum: 0, maximum: 10_000_000, default: 50, description: 'Identical writes (same content, each under its own Idempotency-Key; replays are free) one visitor address may make per window (0 disables).' }),
  BACKEND_RATE_LIMIT_WINDOW_S: Type.Integer({ minimum: 1, maximum: 3600, default: 60, description: 'Window of the write limits in seconds.' }),
  BACKEND_TRUSTED_PROXIES: TrustedProxies('Addresses or CIDRs (comma-separated) whose X-Forwarded-For is believed: the frontends, which send the visitor they resolved. `none`: trust nobody.', '127.0.0.1,::1'),
  BACKEND_DB_RETRY_MS: Type.Integer({ minimum: 0, maximum: 300_000, default: 6000, description: 'How long a write whose database connection died, was refused or turned read-only (a failover) is run again, on fresh connections and by its idempotency key, before the client gets 503 + Retry-After. A few seconds above the failover time of the database (Patroni as npm run cluster sets it up: 2-4.5 s after a crashed postmaster, ~8.5 s after a lost node), and with a connection timeout below FRONTEND_BACKEND_TIMEOUT_MS, which stays below the cache\'s CACHE_UPSTREAM_TIMEOUT_MS, so every visitor gets an answer of ours.' }),
  BACKEND_RETRY_AFTER_S: Type.Integer({ minimum: 1, maximum: 3600, default: 5, description: 'Retry-After sent with 503 answers.' }),
  BACKEND_WRITE_BATCH_MAX: Type.Integer({ minimum: 1, maximum: 1000, default: 256, description: 'Most writes committed together in one transaction (group commit).' }),
  BACKEND_WRITE_BATCH_WAIT_MS: Type.Integer({ minimum: 0, maximum: 50, default: 0, description: 'Longest a write waits for others to share its transaction while a transaction slot is free (0: until the end of the event-loop turn).' }),
  BACKEND_WRITE_CONCURRENCY: Type.Integer({ minimum: 1, maximum: 64, default: 2, description: 'Write transactions in flight at once, each on its own connection (beside the DATABASE_POOL_MAX pool); writes arriving meanwhile gather into the next one.' }),
  BACKEND_MAIL_DOMAIN: Type.String({ pattern: '^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$', maxLength: 200, default: 'flashcrowd.localhost', description: 'Domain of the Message-ID each queued e-mail gets when its write commits (use the domain of MAILER_FROM).' }),
  BACKEND_OUTBOX_POLL_MS: Type.Integer({ minimum: 10, maximum: 60_000, default: 500, description: 'How often the outbox publisher looks for unpublished events (it is also woken after each commit, at most every 20 ms).' }),
  BACKEND_MAX_EVENT_LOOP_DELAY_MS: Type.Integer({ minimum: 0, maximum: 60_000, default: 1000, description: 'Event-loop delay above which the backend sheds load with 503 (0 disables).' }),
  BACKEND_SHUTDOWN_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 120_000, default: 10_000, description: 'How long a graceful shutdown waits for in-flight writes and the outbox.' })
})

export type BackendConfig = Static<typeof BackendEnv>

export function loadBackendConfig (env: NodeJS.ProcessEnv = process.env): BackendConfig {
  return loadConfig(BackendEnv, env)
}
