/**
 * The transactional outbox publisher (design §2.3). Writes commit their
 * surrogate keys into `outbox` in the same transaction as the data; this
 * publisher moves them to the bus. It is woken after each commit and also
 * polls, so events committed just before a crash are published by whichever
 * backend runs next. Rows are claimed with `for update skip locked` so several
 * backends never publish the same batch; a batch whose publish fails stays
 * unpublished and is retried (at-least-once: invalidations are idempotent).
 */
import type pg from 'pg'
import type { DatabaseHandle } from '../common/db.js'
import type { Bus } from '../common/bus.js'
import { isConnectionError } from '../common/errors.js'

export interface OutboxPublisherOptions {
  database: DatabaseHandle
  bus: Bus
  pollMs: number
  batchSize?: number
  /** How long a wake-up waits for more commits to join its batch. */
  coalesceMs?: number
  /** Published rows are kept this long for inspection, then deleted. */
  retainMs?: number
  onError?: (err: unknown) => void
  onPublished?: (count: number) => void
}

export class OutboxPublisher {
  readonly #o: Required<Omit<OutboxPublisherOptions, 'onError' | 'onPublished'>> & Pick<OutboxPublisherOptions, 'onError' | 'onPublished'>
  #timer: NodeJS.Timeout | undefined
  #pendingKick: NodeJS.Timeout | undefined
  #running: Promise<void> | undefined
  #again = false
  #stopped = false
  #lastCleanup = 0
  /** The server has no pg_current_wal_lsn() (events then carry no position). */
  #noWal = false

  constructor (options: OutboxPublisherOptions) {
    this.#o = { batchSize: 500, retainMs: 3_600_000, coalesceMs: 20, ...options }
  }

  start (): void {
    this.#stopped = false
    const tick = () => {
      this.kick()
      this.#timer = setTimeout(tick, this.#o.pollMs)
      this.#timer.unref()
    }
    tick()
  }

  /**
   * Drain soon. Calls within `coalesceMs`, or while a drain runs, fold into
   * one pass, and a pass starts at most every `coalesceMs` plus its own time:
   * under a write spike the publisher runs a few dozen times a second (each
   * pass a transaction on the primary), not once per batch of writes, and
   * invalidations stay a few tens of milliseconds behind.
   */
  kick (): void {
    if (this.#running) { this.#again = true; return }
    if (this.#pendingKick) return
    this.#pendingKick = setTimeout(() => {
      this.#pendingKick = undefined
      if (this.#running) { this.#again = true; return }
      this.#running = this.#loop().then((ok) => {
        this.#running = undefined
        // Commits that arrived during the pass: the next one after the coalescing
        // delay (after a failure, the next poll).
        if (this.#again && ok && !this.#stopped) { this.#again = false; this.kick() }
      })
    }, this.#o.coalesceMs)
  }

  /** One pass; false when it failed. */
  async #loop (): Promise<boolean> {
    this.#again = false
    try {
      // A short batch means the backlog is drained: no empty transaction to prove it
      // (rows committed meanwhile set #again through kick()).
      while (await this.drainOnce() === this.#o.batchSize && !this.#stopped) { /* keep going while there is a backlog */ }
      await this.#cleanup()
      return true
    } catch (err) {
      this.#o.onError?.(err) // the next poll retries
      return false
    }
  }

  /**
   * Publishes one batch; returns how many rows it published. Two round trips
   * on a plain connection: the claim (BEGIN, rows claimed and marked in one
   * statement, the WAL position) in one message, then the COMMIT once the
   * bus took the event.
   */
  async drainOnce (): Promise<number> {
    const client = await this.#o.database.pool.connect()
    let broken: Error | undefined
    try {
      let results: Array<pg.QueryResult<{ keys?: string[], lsn?: string }>>
      try {
        // The mark is not a write anybody waits for: losing it in a crash only
        // publishes those invalidations again (they are idempotent), so its
        // commit need not wait for the WAL flush the data commits pay for.
        // The position is read after the claim, so it is at or past each of
        // those rows' commit records.
        results = await client.query(`begin; set local synchronous_commit = off;
          with picked as (
            select id from outbox where published_at is null order by id limit ${Math.trunc(this.#o.batchSize)} for update skip locked
          )
          update outbox o set published_at = now() from picked where o.id = picked.id
          returning o.keys${this.#noWal ? '' : '; select pg_current_wal_lsn()::text as lsn'}`) as unknown as typeof results
      } catch (err) {
        await client.query('rollback').catch((rollbackError: Error) => { broken = rollbackError })
        // 42883: undefined_function — a server without WAL positions; publish without them.
        if ((err as { code?: string }).code === '42883' && !this.#noWal) { this.#noWal = true; return 0 }
        throw err
      }
      const rows = results[2].rows as Array<{ keys: string[] }>
      if (rows.length === 0) {
        await client.query('rollback')
        return 0
      }
      const lsn = this.#noWal ? undefined : results[3].rows[0]?.lsn
      try {
        // One event for the whole batch: under a write spike subscribers get a
        // handful of events per second, not one per comment.
        const keys = [...new Set(rows.flatMap((r) => r.keys))]
        for (let i = 0; i < keys.length; i += 256) {
          await this.#o.bus.publish({ kind: 'keys', keys: keys.slice(i, i + 256), ...(lsn ? { lsn } : {}) })
        }
      } catch (err) {
        // Unpublished: the rows stay unmarked for the next pass.
        await client.query('rollback').catch((rollbackError: Error) => { broken = rollbackError })
        throw err
      }
      await client.query('commit')
      this.#o.onPublished?.(rows.length)
      return rows.length
    } catch (err) {
      broken ??= isConnectionError(err) ? err as Error : undefined
      throw err
    } finally {
      client.release(broken)
    }
  }

  async #cleanup (): Promise<void> {
    const now = Date.now()
    if (now - this.#lastCleanup < 60_000) return
    this.#lastCleanup = now
    await this.#o.database.db.deleteFrom('outbox')
      .where('published_at', '<', new Date(now - this.#o.retainMs)).execute()
  }

  /** Number of events committed but not yet published. */
  async backlog (): Promise<number> {
    const db = this.#o.database.db
    const row = await db.selectFrom('outbox').select(db.fn.countAll<string>().as('n'))
      .where('published_at', 'is', null).executeTakeFirstOrThrow()
    return Number(row.n)
  }

  /**
   * Seconds since the oldest unpublished event committed (0 when none waits):
   * how far the caches' invalidations trail the commits they follow.
   */
  async oldestUnpublishedSeconds (): Promise<number> {
    const { rows } = await this.#o.database.pool.query<{ age: number | null }>(
      'select extract(epoch from now() - min(created_at))::float8 as age from outbox where published_at is null')
    return Math.max(0, rows[0]?.age ?? 0)
  }

  /** Stops polling and publishes what is left (bounded by `timeoutMs`). */
  async stop (timeoutMs = 5000): Promise<void> {
    this.#stopped = true
    clearTimeout(this.#timer)
    clearTimeout(this.#pendingKick)
    this.#pendingKick = undefined
    const finish = (async () => {
      await this.#running
      this.#stopped = false
      try {
        while (await this.drainOnce() > 0) { /* flush */ }
      } catch (err) {
        this.#o.onError?.(err) // left in the outbox: the next backend to start publishes it
      } finally {
        this.#stopped = true
      }
    })()
    let timer: NodeJS.Timeout | undefined
    await Promise.race([finish, new Promise((resolve) => { timer = setTimeout(resolve, timeoutMs) })])
    clearTimeout(timer)
  }
}
