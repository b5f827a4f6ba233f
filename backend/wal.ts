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

  /** The same on a plain pg client (the write path's batch connection). */
  async readFrom (client: Pick<pg.ClientBase, 'query'>): Promise<string | undefined> {
    if (this.#unsupported) return undefined
    return this.#guard(client.query<{ lsn: string }>('select pg_current_wal_lsn()::text as lsn').then((res) => res.rows[0]?.lsn))
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
