/**
 * Read-your-writes over a read pool that may lag (design §2.4).
 *
 * Two halves:
 * 1. The author. The backend answers every write with `X-Commit-LSN`; the
 *    frontend's 303 carries it as `?rev=<lsn>`. A request with `rev`
 *    bypasses the render cache and is answered `private, no-store`, so it is
 *    never stored by a shared cache and cannot be used to replace what the
 *    crowd sees. It is read from the read pool when that has replayed the
 *    position (`replayedNow`: one probe, no waiting), else from the primary
 *    at once (primary-reads.ts), so the author sees the write however far
 *    the replica lags, without waiting for it; only when the primary cannot
 *    take it does the author wait, bounded (`waitFor`).
 * 2. Everybody else. A key event from the bus carries the commit's LSN. Until
 *    the read pool has replayed it, a page tagged with one of its keys may
 *    still show the old data: such a page is neither kept in the render cache
 *    nor given shared-cache lifetime, so the purge is not undone by
 *    re-caching a page rendered from the lagging replica. A render is judged
 *    by the position it started from (its ticket), not by the pending list
 *    when it ends: a render that straddles the replay read the old rows.
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

/** Placeholder position of a write whose commit position is not known yet: never replayed. */
const UNKNOWN_COMMIT = (1n << 64n) - 1n

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
  /**
   * The primary's current commit position, for a key event that carries none
   * (the backend could not read it in time): its keys stay pending until the
   * read pool has replayed at least that far. Without it such events mark
   * nothing (right when the read pool is the primary).
   */
  currentCommit?: () => Promise<bigint | undefined>
}

/**
 * A render's ticket: the replay position known when it started, a lower bound
 * of what its queries saw. Taken before the render reads anything and handed
 * back when it is done (`endRender`).
 */
export interface RenderTicket {
  readonly id: number
  readonly position: ReplayPosition
}

interface NotedWrite {
  /** Position the key's newest write committed at. */
  lsn: bigint
  /** When it was noted (for the pending TTL). */
  at: number
}

export class ReadYourWrites {
  readonly #probe: ReplayProbe
  readonly #maxWaitMs: number
  readonly #pendingTtlMs: number
  readonly #pollMs: number
  readonly #now: () => number
  readonly #sleep: (ms: number) => Promise<void>
  readonly #onProbeError: (err: unknown) => void
  readonly #currentCommit: (() => Promise<bigint | undefined>) | undefined
  /** Highest replay position observed (monotonic on a given server). */
  #known: ReplayPosition = 0n
  #probing: Promise<ReplayPosition> | undefined
  /**
   * key → the newest write noted for it. An entry stays after the read pool
   * replayed it for as long as a render that started before the replay is
   * still running: that render may have read the old rows, and it is judged
   * against the position it started at, not against today's pending list.
   */
  readonly #writes = new Map<string, NotedWrite>()
  /** Renders in flight: ticket id → the position each started at. */
  readonly #renders = new Map<number, ReplayPosition>()
  #ticket = 0
  #waiting = 0
  #polling: Promise<void> | undefined
  #closed = false
  /** Newest commit position any bus event carried. */
  #newestWrite = 0n
  /** After the read pool moved to a server that is behind (a failover): renders from below this are not shared. */
  #floor = 0n

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
    this.#currentCommit = options.currentCommit
  }

  get known (): ReplayPosition { return this.#known }
  /** Keys whose newest write the read pool has not replayed yet. */
  get pendingKeys (): number {
    let n = 0
    for (const w of this.#writes.values()) if (!hasReplayed(this.#known, w.lsn)) n++
    return n
  }

  /** Renders between `beginRender` and `endRender`. */
  get rendersInFlight (): number { return this.#renders.size }

  /**
   * Asks the read pool for its replay position. Single-flight: however many
   * authors wait at once, there is at most one probe query in flight, so a
   * flood of `?rev` views cannot multiply the load on the replica.
   */
  probe (): Promise<ReplayPosition> {
    this.#probing ??= this.#probeOnce().finally(() => { this.#probing = undefined })
    return this.#probing
  }

  /**
   * The newest answer is the truth, even when it is lower than the last: a
   * replay position only grows on one server, so a lower one (or a replica
   * after PRIMARY) means the read pool now reaches another server — after a
   * failover, a standby that rejoined (rewound onto the new timeline) or
   * another replica. WAL positions stay comparable across the promotion: the
   * new timeline forks from the old at the switch point and numbers on from
   * there, so a write before the failover is below every one after it. What
   * the old server had replayed is no longer known here: until the new one
   * reaches the newest commit this frontend heard of (`#floor`), no render
   * from it is cached for sharing — write entries already swept as replayed
   * there may not be replayed here.
   */
  async #probeOnce (): Promise<ReplayPosition> {
    const position = await this.#probe()
    if (position !== PRIMARY && (this.#known === PRIMARY || position < this.#known)) {
      const before = this.#known === PRIMARY ? 0n : this.#known
      const floor = before > this.#newestWrite ? before : this.#newestWrite
      if (floor > this.#floor) this.#floor = floor
    }
    this.#known = position
    this.#sweep()
    return this.#known
  }

  /**
   * The author's wait: resolves true once the read pool has replayed `lsn`,
   * false when `maxWaitMs` ran out (the caller then reads from the primary,
   * or renders anyway: better a page without the write than no page).
   */
  async waitFor (lsn: bigint): Promise<boolean> {
    if (hasReplayed(this.#known, lsn)) return true
    const deadline = this.#now() + this.#maxWaitMs
    this.#waiting++
    try {
      for (;;) {
        try {
          if (hasReplayed(await this.probe(), lsn)) return true
        } catch (err) {
          this.#onProbeError(err)
        }
        if (this.#now() >= deadline || this.#closed) return false
        await this.#sleep(Math.min(this.#pollMs, Math.max(1, deadline - this.#now())))
      }
    } finally {
      this.#waiting--
    }
  }

  /**
   * Whether the read pool has replayed `lsn`, asked of it now (one probe,
   * single-flight): the author's question is answered at once, never by
   * waiting (a failed probe answers no). Always asked, never taken from the
   * last answer: after a failover the read pool may reach another server
   * (the promoted primary's rejoining standby) that is behind what the last
   * answer said.
   */
  async replayedNow (lsn: bigint): Promise<boolean> {
    try {
      return hasReplayed(await this.probe(), lsn)
    } catch (err) {
      this.#onProbeError(err)
      return false
    }
  }

  /** Authors waiting in `waitFor` right now. */
  get waiting (): number { return this.#waiting }

  /** A key event with an LSN arrived: pages tagged with these keys are unsafe to cache until it is replayed. */
  noteWrite (keys: readonly string[], lsnText: string | undefined): void {
    const lsn = parseLsn(lsnText)
    if (lsn === undefined) { this.#noteUnpositioned(keys); return }
    if (lsn > this.#newestWrite) this.#newestWrite = lsn
    // Already replayed: a render that started earlier and is still running is
    // caught by the render cache's own token (the event arrived during it).
    // PRIMARY is not taken for granted: the read pool may have moved to a
    // replica since (a failover); the poll's first probe settles it.
    if (this.#known !== PRIMARY && hasReplayed(this.#known, lsn)) return
    const at = this.#now()
    for (const key of keys) {
      const prev = this.#writes.get(key)
      if (!prev || prev.lsn < lsn) this.#writes.set(key, { lsn, at })
    }
    this.#startPolling()
  }

  /**
   * A write whose position is unknown: pending without bound until the
   * primary says where it is now (at or past that commit), so a render from
   * the lagging replica cannot be shared meanwhile.
   */
  #noteUnpositioned (keys: readonly string[]): void {
    if (!this.#currentCommit || this.#known === PRIMARY || keys.length === 0) return
    const at = this.#now()
    for (const key of keys) this.#writes.set(key, { lsn: UNKNOWN_COMMIT, at })
    this.#startPolling()
    this.#currentCommit().then((commit) => {
      if (commit === undefined) return // stays pending until the TTL: better uncached than stale
      for (const key of keys) {
        const w = this.#writes.get(key)
        if (w && w.lsn === UNKNOWN_COMMIT) w.lsn = commit
      }
      this.#sweep()
    }, (err: unknown) => { this.#onProbeError(err) })
  }

  /**
   * Whether `lsn` is a commit this frontend has heard of (a bus event carried
   * it or a later one). Otherwise the primary is asked before it renders: a
   * made-up `rev` must not buy reads from the primary.
   */
  knowsCommit (lsn: bigint): boolean { return lsn <= this.#newestWrite }

  /** Take before a render reads anything. Every ticket must be handed back with `endRender`. */
  beginRender (): RenderTicket {
    const ticket: RenderTicket = { id: ++this.#ticket, position: this.#known }
    this.#renders.set(ticket.id, ticket.position)
    return ticket
  }

  /**
   * Whether the page a render produced may be kept in shared caches, judged
   * at the position the render started from: false when one of its keys has
   * a write that position had not replayed — even if the replica replayed it
   * while the render ran (the render may have read before that).
   */
  endRender (ticket: RenderTicket, tags: readonly string[]): boolean {
    this.#renders.delete(ticket.id)
    const ok = this.#cacheableFrom(ticket.position, tags)
    if (this.#writes.size > 0) this.#sweep()
    return ok
  }

  /** Hands a ticket back without judging a page (the render failed). */
  abandonRender (ticket: RenderTicket): void {
    this.#renders.delete(ticket.id)
  }

  /**
   * Whether one of `tags` waits for a write the read pool has not replayed:
   * a page another frontend rendered for the shared cache is not trusted then.
   */
  pendingFor (tags: readonly string[]): boolean {
    return !this.#cacheableFrom(this.#known, tags)
  }

  #cacheableFrom (position: ReplayPosition, tags: readonly string[]): boolean {
    if (position !== PRIMARY && position < this.#floor) return false
    if (this.#writes.size === 0) return true
    const now = this.#now()
    for (const tag of tags) {
      const w = this.#writes.get(tag)
      if (!w) continue
      // A replica that never catches up must not disable caching forever.
      if (now - w.at > this.#pendingTtlMs) continue
      if (!hasReplayed(position, w.lsn)) return false
    }
    return true
  }

  /** Oldest position a running render started from (PRIMARY when none: nothing holds entries back). */
  #oldestRender (): ReplayPosition {
    let oldest: ReplayPosition = PRIMARY
    for (const p of this.#renders.values()) {
      if (p === PRIMARY) continue
      if (oldest === PRIMARY || p < oldest) oldest = p
    }
    return oldest
  }

  #sweep (): void {
    const now = this.#now()
    const oldest = this.#oldestRender()
    for (const [key, w] of this.#writes) {
      const expired = now - w.at > this.#pendingTtlMs
      // Dropped once replayed here and by the start position of every render still running.
      const settled = hasReplayed(this.#known, w.lsn) && hasReplayed(oldest, w.lsn)
      if (expired || settled) this.#writes.delete(key)
    }
  }

  /** While keys are pending, keep learning the replay position so pages become cacheable as soon as possible. */
  #startPolling (): void {
    if (this.#polling || this.#closed) return
    this.#polling = (async () => {
      try {
        while (this.pendingKeys > 0 && !this.#closed) {
          try { await this.probe() } catch (err) { this.#onProbeError(err); this.#sweep() }
          if (this.pendingKeys === 0 || this.#closed) break
          await this.#sleep(this.#pollMs)
        }
      } finally {
        this.#polling = undefined
      }
    })()
  }

  /**
   * Stops the background poll (it would otherwise run until the pending keys
   * replay or expire, up to `pendingTtlMs`) and ends authors' waits at their
   * next poll. Resolves when the poll has stopped.
   */
  async close (): Promise<void> {
    this.#closed = true
    await this.#polling
  }

  /** Resolves when the background poll (if any) has stopped; for tests. */
  async idle (): Promise<void> { await this.#polling }
}
