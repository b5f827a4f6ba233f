/**
 * What a role's `/-/health` says about its database, honest without being
 * fatal through a failover (design §2.6, issue 21):
 * - `up`: it answers (and, for a writer, accepts writes: not a standby);
 * - `failing-over`: it stopped answering (or turned read-only) less than
 *   DATABASE_FAILOVER_MS after it last answered. The role stays in its load
 *   balancer (200): a failover manager is promoting a standby, pages keep
 *   coming from the caches and writes are being retried (BACKEND_DB_RETRY_MS);
 *   taking every frontend or backend out at once would turn a few seconds of
 *   held writes into refused connections for the whole tier;
 * - `down`: it never answered, or has not for longer than that: 503.
 */
import { ping, type DatabaseHandle } from './db.js'

export type DatabaseState = 'up' | 'failing-over' | 'down'

export interface DatabaseHealthOptions {
  database: DatabaseHandle
  /** How long after its last answer a silent database counts as failing over rather than down. */
  failoverMs: number
  /** A writer's database must also accept writes (neither a standby nor read-only). */
  writable?: boolean
  timeoutMs?: number
  now?: () => number
}

export interface DatabaseHealthReport {
  state: DatabaseState
  /** Since when it has not answered (failing over or down after having been up). */
  since?: string
}

export class DatabaseHealth {
  readonly #o: DatabaseHealthOptions
  #lastUp: number | undefined
  #downSince: number | undefined

  constructor (options: DatabaseHealthOptions) {
    if (!Number.isInteger(options.failoverMs) || options.failoverMs < 0) throw new RangeError(`DatabaseHealth: failoverMs must be an integer >= 0, got ${options.failoverMs}`)
    this.#o = options
  }

  async check (): Promise<DatabaseHealthReport> {
    const now = this.#o.now ?? Date.now
    const ok = await this.#probe()
    const at = now()
    if (ok) {
      this.#lastUp = at
      this.#downSince = undefined
      return { state: 'up' }
    }
    this.#downSince ??= at
    const since = this.#lastUp === undefined ? undefined : new Date(this.#downSince).toISOString()
    const state: DatabaseState = this.#lastUp !== undefined && at - this.#lastUp <= this.#o.failoverMs ? 'failing-over' : 'down'
    return since ? { state, since } : { state }
  }

  #probe (): Promise<boolean> {
    return ping(this.#o.database, this.#o.timeoutMs ?? 1000, { primary: this.#o.writable })
  }
}

/** The status code and body fields of a health answer for `report`: 503 only when the database is down. */
export function healthStatus (report: DatabaseHealthReport): { code: number, status: 'ok' | 'degraded' | 'unavailable' } {
  if (report.state === 'up') return { code: 200, status: 'ok' }
  if (report.state === 'failing-over') return { code: 200, status: 'degraded' }
  return { code: 503, status: 'unavailable' }
}
