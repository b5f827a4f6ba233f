/**
 * The author's page from the primary, when the replica has not replayed
 * their write (design §2.4 "even when the replica lags", issue 11 finding 5).
 *
 * After a write the author is redirected to `?rev=<lsn>`; when the read pool
 * has not replayed it yet, the page is read here at once (authors never wait
 * for the replica, issue 21): a small pool on the primary, opened
 * read-only like every frontend connection (design §2.1), behind a gate that
 * admits a few renders at a time and queues a bounded number of others for a
 * bounded time. Under overload authors wait in that queue; beyond it they
 * wait (FRONTEND_RYW_WAIT_MS) for the replica — the primary never sees more
 * than `maxConcurrent` frontend renders at once, however many authors arrive.
 */
import { sql, type Kysely } from 'kysely'
import type { DatabaseHandle } from '../common/db.js'
import type { Database } from '../common/db-types.js'
import { createContentRepository, type ContentRepository } from './repositories.js'
import { parseLsn } from './read-your-writes.js'

export interface PrimaryReadsOptions {
  /** Read-only handle on the primary; its pool size should equal `maxConcurrent`. */
  db: DatabaseHandle
  /** Renders running on the primary at once. */
  maxConcurrent: number
  /** Renders waiting for a turn at most; more are refused at once. */
  maxQueue: number
  /** How long one render waits for a turn. */
  queueTimeoutMs: number
}

export type PrimaryOutcome<T> = { ok: true, value: T } | { ok: false, reason: 'queue-full' | 'queue-timeout' }

interface Waiter { admit: () => void, timer: NodeJS.Timeout }

export class PrimaryReads {
  readonly repos: ContentRepository
  readonly #db: Kysely<Database>
  readonly #max: number
  readonly #maxQueue: number
  readonly #queueTimeoutMs: number
  #active = 0
  readonly #queue: Waiter[] = []

  constructor (options: PrimaryReadsOptions) {
    if (!options.db.readOnly) throw new Error('PrimaryReads needs a read-only database handle (createDatabase({ readOnly: true }))')
    if (!Number.isInteger(options.maxConcurrent) || options.maxConcurrent < 1) throw new RangeError(`PrimaryReads: maxConcurrent must be an integer >= 1, got ${options.maxConcurrent}`)
    if (!Number.isInteger(options.maxQueue) || options.maxQueue < 0) throw new RangeError(`PrimaryReads: maxQueue must be an integer >= 0, got ${options.maxQueue}`)
    if (!Number.isInteger(options.queueTimeoutMs) || options.queueTimeoutMs < 0) throw new RangeError(`PrimaryReads: queueTimeoutMs must be an integer >= 0, got ${options.queueTimeoutMs}`)
    this.repos = createContentRepository(options.db.db)
    this.#db = options.db.db
    this.#max = options.maxConcurrent
    this.#maxQueue = options.maxQueue
    this.#queueTimeoutMs = options.queueTimeoutMs
  }

  /**
   * Whether the primary has written `lsn` (pg_current_wal_lsn): a `rev` past
   * it names no commit at all, and earns no render here. Run it inside `read`.
   */
  async committed (lsn: bigint): Promise<boolean> {
    const current = await this.currentLsn()
    return current !== undefined && lsn <= current
  }

  /** The primary's WAL position now: at or past every commit acknowledged so far. One tiny query, outside the gate. */
  async currentLsn (): Promise<bigint | undefined> {
    const r = await sql<{ lsn: string }>`select pg_current_wal_lsn()::text as lsn`.execute(this.#db)
    return parseLsn(r.rows[0]?.lsn)
  }

  get active (): number { return this.#active }
  get queued (): number { return this.#queue.length }

  /** Runs `fn` on the primary when the gate admits it; refused (not run) when the queue is full or the wait ran out. */
  async read<T> (fn: (repos: ContentRepository) => Promise<T>): Promise<PrimaryOutcome<T>> {
    if (this.#active >= this.#max) {
      if (this.#queue.length >= this.#maxQueue) return { ok: false, reason: 'queue-full' }
      const admitted = await new Promise<boolean>((resolve) => {
        const waiter: Waiter = {
          admit: () => { clearTimeout(waiter.timer); resolve(true) },
          timer: setTimeout(() => {
            const i = this.#queue.indexOf(waiter)
            if (i !== -1) this.#queue.splice(i, 1)
            resolve(false)
          }, this.#queueTimeoutMs)
        }
        this.#queue.push(waiter)
      })
      if (!admitted) return { ok: false, reason: 'queue-timeout' }
      // The slot was handed over by the render that finished (#active unchanged).
    } else {
      this.#active++
    }
    try {
      return { ok: true, value: await fn(this.repos) }
    } finally {
      const next = this.#queue.shift()
      if (next) next.admit()
      else this.#active--
    }
  }
}
