/**
 * Read-your-writes over a read pool that may lag (design §2.4).
 *
 * Two halves:
 * 1. The author. The backend answers every write with `X-Commit-LSN`; the
 *    frontend's 303 carries it as `?rev=<lsn>`. A request with `rev` waits
 *    (bounded) until the read pool has replayed that position, bypasses the
 *    render cache and is answered `private, no-store`, so it is never stored
 *    by a shared cache and cannot be used to replace what the crowd sees.
 * 2. Everybody else. A key event from the bus carries the commit's LSN. Until
 *    the read pool has replayed it, a page tagged with one of its keys may
 *    still show the old data: such a page is neither kept in the render cache
 *    nor given shared-cache lifetime, so the purge is not undone by
 *    re-caching a page rendered from the lagging replica.
 *
 * The replay position comes from a probe: when the read pool is the primary
 * (`pg_is_in_recovery()` is false) every committed write is visible and there
 * is nothing to wait for; on a replica, `pg_last_wal_replay_lsn()`.
 */
import { sql, type Kysely } from 'kysely'
import type { Database } from '../common/db-types.js'

/** `Infinity`-like marker: the read pool is the primary and sees every commit. */
export const PRIMARY = Symbol('primary')
export type ReplayPosition = bigint | typeof PRIMARY
export type ReplayProbe = () => Promise<ReplayPosition>

const LSN = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/

/** Parses a `pg_lsn` text form (`16/B374D848`) into a comparable number; undefined when malformed. */
export function parseLsn (text: unknown): bigint | undefined {
  if (typeof text !== 'string') return undefined
  const m = LSN.exec(text)
  if (!m) return undefined
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`)
}

export function formatLsn (lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`
}

export function hasReplayed (position: ReplayPosition, lsn: bigint): boolean {
  return position === PRIMARY || position >= lsn
}

/** The real probe, on the read pool itself. */
export function databaseReplayProbe (db: Kysely<Database>): ReplayProbe {
  return async () => {
    const r = await sql<{ recovery: boolean, lsn: string | null }>`select pg_is_in_recovery() as recovery, case when pg_is_in_recovery() then pg_last_wal_replay_lsn()::text end as lsn`.execute(db)
    const row = r.rows[0]
    if (!row || !row.recovery) return PRIMARY
    return parseLsn(row.lsn) ?? 0n
  }
}

export interface ReadYourWritesOptions {
  probe: ReplayProbe
  /** Upper bound on one author's wait. */
  maxWaitMs: number
  /** How long a key's pending LSN is remembered at most (a replica that never catches up must not disable caching forever). */
  pendingTtlMs?: number
  pollMs?: number
  now?: () => number
  sleep?: (ms: number) => Promise<void>
  onProbeError?: (err: unknown) => void
}

export interface Freshness {
  /** Replay position known before a render started: a lower bound of what the render saw. */
  position: ReplayPosition
}

export class ReadYourWrites {
  readonly #probe: ReplayProbe
  readonly #maxWaitMs: number
  readonly #pendingTtlMs: number
  readonly #pollMs: number
  readonly #now: () => number
  readonly #sleep: (ms: number) => Promise<void>
  readonly #onProbeError: (err: unknown) => void
  /** Highest replay position observed (monotonic on a given server). */
  #known: ReplayPosition = 0n
  #probing: Promise<ReplayPosition> | undefined
  /** key → [lsn the key's last write committed at, when it was noted]. */
  readonly #pending = new Map<string, { lsn: bigint, at: number }>()
  #polling: Promise<void> | undefined

  constructor (options: ReadYourWritesOptions) {
    if (typeof options.probe !== 'function') throw new TypeError('ReadYourWrites: probe must be a function returning the replay position')
    if (!Number.isInteger(options.maxWaitMs) || options.maxWaitMs < 0) throw new RangeError(`ReadYourWrites: maxWaitMs must be an integer >= 0, got ${options.maxWaitMs}`)
    this.#probe = options.probe
    this.#maxWaitMs = options.maxWaitMs
    this.#pendingTtlMs = options.pendingTtlMs ?? 60_000
    this.#pollMs = options.pollMs ?? 20
    this.#now = options.now ?? Date.now
    this.#sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)))
    this.#onProbeError = options.onProbeError ?? (() => {})
  }

  get known (): ReplayPosition { return this.#known }
  get pendingKeys (): number { return this.#pending.size }

  /** Asks the read pool where it is; remembers the highest answer. */
  /**
   * Asks the read pool for its replay position. Single-flight: however many
   * authors wait at once, there is at most one probe query in flight, so a
   * flood of `?rev` views cannot multiply the load on the replica.
   */
  probe (): Promise<ReplayPosition> {
    this.#probing ??= this.#probeOnce().finally(() => { this.#probing = undefined })
    return this.#probing
  }

  async #probeOnce (): Promise<ReplayPosition> {
    const position = await this.#probe()
    if (position === PRIMARY || this.#known === PRIMARY || position > this.#known) {
      // A pool that answers PRIMARY once may later be a replica again only after a failover; take the newest answer.
      this.#known = position
    }
    this.#sweep()
    return this.#known
  }

  /**
   * The author's wait: resolves true once the read pool has replayed `lsn`,
   * false when `maxWaitMs` ran out (the page is then rendered anyway: better a
   * page without the write than no page).
   */
  async waitFor (lsn: bigint): Promise<boolean> {
    const deadline = this.#now() + this.#maxWaitMs
    for (;;) {
      if (hasReplayed(this.#known, lsn)) return true
      try {
        if (hasReplayed(await this.probe(), lsn)) return true
      } catch (err) {
        this.#onProbeError(err)
      }
      if (this.#now() >= deadline) return false
      await this.#sleep(Math.min(this.#pollMs, Math.max(1, deadline - this.#now())))
    }
  }

  /** A key event with an LSN arrived: pages tagged with these keys are unsafe to cache until it is replayed. */
  noteWrite (keys: readonly string[], lsnText: string | undefined): void {
    const lsn = parseLsn(lsnText)
    if (lsn === undefined) return
    if (hasReplayed(this.#known, lsn)) return
    const at = this.#now()
    for (const key of keys) {
      const prev = this.#pending.get(key)
      if (!prev || prev.lsn < lsn) this.#pending.set(key, { lsn, at })
    }
    this.#startPolling()
  }

  /** What a render about to start may rely on. */
  snapshot (): Freshness { return { position: this.#known } }

  /**
   * Whether a page rendered from `before` and tagged with `tags` may be kept
   * in shared caches: false while one of its keys waits for an LSN that had
   * not been replayed when the render started.
   */
  cacheable (before: Freshness, tags: readonly string[]): boolean {
    if (this.#pending.size === 0) return true
    const now = this.#now()
    for (const tag of tags) {
      const p = this.#pending.get(tag)
      if (!p) continue
      if (now - p.at > this.#pendingTtlMs) { this.#pending.delete(tag); continue }
      if (!hasReplayed(before.position, p.lsn)) return false
    }
    return true
  }

  #sweep (): void {
    const now = this.#now()
    for (const [key, p] of this.#pending) {
      if (hasReplayed(this.#known, p.lsn) || now - p.at > this.#pendingTtlMs) this.#pending.delete(key)
    }
  }

  /** While keys are pending, keep learning the replay position so pages become cacheable as soon as possible. */
  #startPolling (): void {
    if (this.#polling) return
    this.#polling = (async () => {
      try {
        while (this.#pending.size > 0) {
          try { await this.probe() } catch (err) { this.#onProbeError(err); this.#sweep() }
          if (this.#pending.size === 0) break
          await this.#sleep(this.#pollMs)
        }
      } finally {
        this.#polling = undefined
      }
    })()
  }

  /** Resolves when the background poll (if any) has stopped; for tests and shutdown. */
  async idle (): Promise<void> { await this.#polling }
}
