/**
 * The primary's WAL position, read after a commit: any replica that has
 * replayed it shows the write (read-your-writes, design §2.4). Servers
 * without WAL functions (none known today) are remembered; any other failure
 * costs only that one answer its position, and the query has a short deadline
 * so a database that vanished right after the commit cannot hold the reply.
 */
import { sql, type Kysely } from 'kysely'
import type pg from 'pg'

export class WalPosition {
  #unsupported = false
  readonly #timeoutMs: number

  constructor (options: { timeoutMs?: number } = {}) {
    this.#timeoutMs = options.timeoutMs ?? 250
  }

  async read (db: Kysely<any>): Promise<string | undefined> {
    if (this.#unsupported) return undefined
    return this.#guard(sql<{ lsn: string }>`select pg_current_wal_lsn()::text as lsn`.execute(db).then((res) => res.rows[0]?.lsn))
  }

  /**
   * COMMIT and the position after it in one round trip (the write path's
   * batch connection): a simple-query message with two statements runs the
   * COMMIT (and its WAL flush) to completion before the SELECT starts. Throws
   * only when the COMMIT failed.
   */
  async commit (client: Pick<pg.ClientBase, 'query'>): Promise<string | undefined> {
    if (this.#unsupported) {
      const result = await client.query('commit')
      if (result.command !== 'COMMIT') throw Object.assign(new Error(`COMMIT answered ${result.command}`), { code: '40000' })
      return undefined
    }
    try {
      const results = await client.query('commit; select pg_current_wal_lsn()::text as lsn') as unknown as Array<pg.QueryResult<{ lsn: string }>>
      // COMMIT of a transaction that had failed answers ROLLBACK, not an error.
      if (results[0]?.command !== 'COMMIT') throw Object.assign(new Error(`COMMIT answered ${results[0]?.command}`), { code: '40000' })
      return results[1]?.rows[0]?.lsn
    } catch (err) {
      // Only the SELECT can lack its function, and it ran after the COMMIT succeeded.
      if ((err as { code?: string }).code !== '42883') throw err
      this.#unsupported = true
      return undefined
    }
  }

  async #guard (query: Promise<string | undefined>): Promise<string | undefined> {
    let timer: NodeJS.Timeout | undefined
    try {
      query.catch(() => {}) // a late failure after the deadline is nobody's business
      const deadline = new Promise<undefined>((resolve) => { timer = setTimeout(() => resolve(undefined), this.#timeoutMs) })
      return await Promise.race([query, deadline])
    } catch (err) {
      // 42883: undefined_function — this server has no WAL positions at all.
      if ((err as { code?: string }).code === '42883') this.#unsupported = true
      return undefined
    } finally {
      clearTimeout(timer)
    }
  }
}
