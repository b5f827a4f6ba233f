/**
 * Idempotent writes (design §2.2). A write and its `Idempotency-Key` row are
 * one transaction:
 * - the key row is inserted first; a concurrent request with the same key
 *   blocks on the primary-key index until the first transaction ends, then
 *   finds the committed row and replays it (so 50 simultaneous duplicates
 *   make exactly one write);
 * - if the write fails, the rollback removes the key too, so a retry can try
 *   again;
 * - an expired key is taken over in place.
 * The stored hash covers method, path and body: the same key with another
 * request is a 409.
 */
import { createHash } from 'node:crypto'
import { sql, type Kysely, type Transaction } from 'kysely'
import type { Database } from '../common/db-types.js'
import { Errors } from '../common/errors.js'

/** RFC 9110 token-ish: printable ASCII without spaces, as IETF's Idempotency-Key draft expects of a key. */
const KEY_PATTERN = /^[\x21-\x7e]{1,255}$/

export function parseIdempotencyKey (header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined
  const value = Array.isArray(header) ? undefined : header.trim()
  if (value === undefined || !KEY_PATTERN.test(value)) {
    throw new Errors.VALIDATION('Idempotency-Key must be 1 to 255 printable ASCII characters, sent once')
  }
  return value
}

/** Key order must not change the hash: `{a,b}` and `{b,a}` are the same request. */
function canonical (value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`
  if (value !== null && typeof value === 'object') {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`).join(',')}}`
  }
  return JSON.stringify(value)
}

export function requestHash (method: string, path: string, body: unknown): string {
  return createHash('sha256').update(`${method} ${path}\n${canonical(body ?? null)}`).digest('hex')
}

export interface WriteResult<T> {
  status: number
  body: T
  /** Surrogate keys this write makes stale; go to the outbox in the same transaction. */
  keys: string[]
}

export type Outcome<T> =
  | { replayed: false, status: number, body: string }
  | { replayed: true, status: number, body: string }

export async function idempotentWrite<T> (
  db: Kysely<Database>,
  options: { key: string | undefined, hash: string, ttlSeconds: number },
  work: (trx: Transaction<Database>) => Promise<WriteResult<T>>
): Promise<Outcome<T>> {
  return db.transaction().execute(async (trx) => {
    if (options.key !== undefined) {
      const claimed = await sql<{ key: string }>`
        insert into idempotency_keys (key, request_hash, status, response, expires_at)
        values (${options.key}, ${options.hash}, 0, '', now() + make_interval(secs => ${options.ttlSeconds}))
        on conflict (key) do update
          set request_hash = excluded.request_hash, status = 0, response = '', created_at = now(), expires_at = excluded.expires_at
          where idempotency_keys.expires_at < now()
        returning key`.execute(trx)
      if (claimed.rows.length === 0) {
        const previous = await trx.selectFrom('idempotency_keys').select(['request_hash', 'status', 'response'])
          .where('key', '=', options.key).executeTakeFirstOrThrow()
        if (previous.request_hash !== options.hash) throw new Errors.IDEMPOTENCY_MISMATCH()
        return { replayed: true as const, status: previous.status, body: previous.response }
      }
    }
    const result = await work(trx)
    const response = JSON.stringify(result.body)
    if (options.key !== undefined && result.keys.length > 0) {
      // Outbox row and the key's answer in one statement: one round trip fewer per write.
      await sql`with outboxed as (insert into outbox (keys) values (${result.keys}))
        update idempotency_keys set status = ${result.status}, response = ${response} where key = ${options.key}`.execute(trx)
    } else if (options.key !== undefined) {
      await trx.updateTable('idempotency_keys').set({ status: result.status, response }).where('key', '=', options.key).execute()
    } else if (result.keys.length > 0) {
      await trx.insertInto('outbox').values({ keys: result.keys }).execute()
    }
    return { replayed: false as const, status: result.status, body: response }
  })
}

/** Deletes expired keys; returns how many. */
export async function sweepIdempotencyKeys (db: Kysely<Database>): Promise<number> {
  const res = await db.deleteFrom('idempotency_keys').where('expires_at', '<', sql<Date>`now()`).executeTakeFirst()
  return Number(res.numDeletedRows)
}
