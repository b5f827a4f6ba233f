/**
 * The database factory: every role talks `pg` (PostgresDialect) to a real
 * Postgres or to the embedded PGlite served over the wire protocol.
 *
 * `readOnly: true` (the frontend) makes the pool unable to write:
 * - on a real server, every session starts with
 *   `default_transaction_read_only=on` (set in the startup packet, so no code
 *   path can forget it);
 * - PGlite is one single session behind a multiplexer, so a session setting
 *   would leak into the backend's connections; there each statement outside
 *   an explicit transaction runs in its own `BEGIN READ ONLY … COMMIT`, and
 *   explicit transactions are opened read-only.
 */
import pg from 'pg'
import { Kysely, PostgresDialect, type PostgresPoolClient, type PostgresQueryResult } from 'kysely'
import type { Database } from './db-types.js'

// int8 (counts, bigserial ids) as strings is pg's safe default; counts we read
// are far below 2^53, but ids stay strings on purpose.
export interface DatabaseOptions {
  url: string
  readOnly?: boolean
  max?: number
  statementTimeoutMs?: number
  connectTimeoutMs?: number
  applicationName?: string
}

export interface DatabaseHandle {
  db: Kysely<Database>
  pool: pg.Pool
  readOnly: boolean
  /** true when the server is the embedded PGlite (known after the first connection). */
  embedded: () => boolean | undefined
  close: () => Promise<void>
}

type QueryClient = PostgresPoolClient

const TX_START = /^\s*(begin|start\s+transaction)\b/i
const TX_END = /^\s*(commit|rollback|end|abort)\b/i

export function createDatabase (options: DatabaseOptions): DatabaseHandle {
  const readOnly = options.readOnly ?? false
  const statementTimeout = options.statementTimeoutMs ?? 5000
  const sessionOptions = [`-c statement_timeout=${statementTimeout}`]
  if (readOnly) sessionOptions.push('-c default_transaction_read_only=on')
  // A writer acknowledges only what is flushed to the WAL: no server, role or
  // database default of `synchronous_commit = off` can weaken that (design §2.2).
  else sessionOptions.push('-c synchronous_commit=on')
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.max ?? 10,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 2000,
    idleTimeoutMillis: 30_000,
    // A client-side limit too: a server that vanished mid-query must not hold the request forever.
    query_timeout: statementTimeout + 2000,
    options: sessionOptions.join(' '),
    application_name: options.applicationName ?? 'flashcrowd'
  })
  // A client losing its server (Postgres restarted, network cut) must not crash
  // the process: idle clients report on the pool, checked-out ones on themselves
  // (between two statements of a transaction); the next query fails cleanly.
  pool.on('error', () => {})
  pool.on('connect', (client) => { client.on('error', () => {}) })

  let isEmbedded: boolean | undefined
  const detect = async (client: QueryClient) => {
    if (isEmbedded !== undefined) return
    const res = await client.query('select version() as v', []) as PostgresQueryResult<{ v: string }>
    isEmbedded = /PGlite/i.test(res.rows[0]?.v ?? '')
  }

  const dialect = new PostgresDialect({
    pool: {
      async connect () {
        const client = await pool.connect() as unknown as QueryClient
        if (!readOnly) return client
        await detect(client).catch((err) => { (client as unknown as pg.PoolClient).release(err as Error); throw err })
        if (!isEmbedded) return client
        return readOnlyPerTransaction(client)
      },
      async end () { await pool.end() }
    }
  })
  const db = new Kysely<Database>({ dialect })
  let closed = false
  return {
    db,
    pool,
    readOnly,
    embedded: () => isEmbedded,
    async close () {
      if (closed) return
      closed = true
      await db.destroy()
    }
  }
}

/**
 * Another pool to the same database with the same session settings (a
 * writer's `synchronous_commit = on`, the statement timeout), e.g. the
 * backend writer's own connections in pg's pipeline mode. The caller ends it.
 */
export function siblingPool (handle: DatabaseHandle, options: { max: number, pipeline?: boolean }): pg.Pool {
  const pool = new pg.Pool({ ...handle.pool.options, max: options.max, pipeline: options.pipeline ?? false } as pg.PoolConfig)
  pool.on('error', () => {})
  pool.on('connect', (client) => { client.on('error', () => {}) })
  return pool
}

/** Wraps a client of the shared PGlite session so that nothing it runs can write. */
function readOnlyPerTransaction (client: QueryClient): QueryClient {
  let inTransaction = false
  const wrapped = {
    release: () => client.release(),
    async query<R> (sql: string, params: readonly unknown[]): Promise<PostgresQueryResult<R>> {
      if (TX_START.test(sql)) {
        inTransaction = true
        return client.query<R>('begin transaction read only', [])
      }
      if (TX_END.test(sql)) {
        inTransaction = false
        return client.query<R>(sql, [])
      }
      if (inTransaction) return client.query<R>(sql, params)
      await client.query('begin transaction read only', [])
      try {
        const result = await client.query<R>(sql, params)
        await client.query('commit', [])
        return result
      } catch (err) {
        await client.query('rollback', []).catch(() => {})
        throw err
      }
    }
  }
  // Streaming cursors are not used by flashcrowd; the overload only satisfies the type.
  return wrapped as unknown as QueryClient
}

/**
 * `select 1` with a deadline: the readiness probe of every role that has a
 * database. With `primary`, the server must also accept writes (not a
 * standby, as a demoted primary is during a failover, nor read-only).
 */
export async function ping (handle: DatabaseHandle, timeoutMs = 1000, options: { primary?: boolean } = {}): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  try {
    const deadline = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error('timeout')), timeoutMs) })
    if (!options.primary) { await Promise.race([handle.pool.query('select 1'), deadline]); return true }
    const res = await Promise.race([handle.pool.query<{ writable: boolean }>("select not pg_is_in_recovery() and current_setting('transaction_read_only') = 'off' as writable"), deadline])
    return res.rows[0]?.writable === true
  } catch {
    return false
  } finally {
    clearTimeout(timer)
  }
}
