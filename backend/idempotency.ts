/**
 * Idempotent writes (design §2.2), for a batch of writes in one transaction
 * (write-batch.ts):
 * - the batch first claims its keys with one INSERT … ON CONFLICT; a key that
 *   another transaction holds makes the insert wait until that transaction
 *   ends, then finds its committed row: that write is a replay (or a 409
 *   when the request differs). So 50 simultaneous duplicates make one write,
 *   across batches and across backends;
 * - keys are claimed in sorted order, so two batches never wait on each
 *   other's keys in a cycle (no deadlock);
 * - the answer is stored as the exact text that was sent; a failed write
 *   deletes its claim in the same transaction, so a retry can try again;
 * - an expired key is taken over in place.
 * The stored hash covers method, path and body: the same key with another
 * request is a 409.
 */
import crypto, { createHash } from 'node:crypto'
import { sql, type Kysely } from 'kysely'
import type { Database } from '../common/db-types.js'
import { Errors } from '../common/errors.js'
import type { Queryable } from './write-kind.js'

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
  if (value === null || typeof value !== 'object') return JSON.stringify(value)
  if (Array.isArray(value)) {
    let out = '['
    for (let i = 0; i < value.length; i++) out += (i > 0 ? ',' : '') + canonical(value[i])
    return out + ']'
  }
  const keys = Object.keys(value).sort()
  // A flat object (every write body): JSON.stringify with the sorted keys as
  // its allow-list writes exactly this canonical form, natively.
  let flat = true
  for (let i = 0; i < keys.length && flat; i++) {
    const v = (value as Record<string, unknown>)[keys[i]]
    flat = v === null || typeof v !== 'object'
  }
  if (flat) return JSON.stringify(value, keys)
  let out = '{'
  for (let i = 0; i < keys.length; i++) {
    out += (i > 0 ? ',' : '') + JSON.stringify(keys[i]) + ':' + canonical((value as Record<string, unknown>)[keys[i]])
  }
  return out + '}'
}

/** One-shot hashing (node ≥ 20.12) skips the Hash object a request would otherwise allocate. */
const sha256hex: (text: string) => string = typeof (crypto as { hash?: unknown }).hash === 'function'
  ? (text) => (crypto as unknown as { hash: (algorithm: string, data: string, encoding: string) => string }).hash('sha256', text, 'hex')
  : (text) => createHash('sha256').update(text).digest('hex')

export function requestHash (method: string, path: string, body: unknown): string {
  return sha256hex(`${method} ${path}\n${canonical(body ?? null)}`)
}

/** Claims `keys` (sorted, distinct) for this transaction; returns those it got. */
export async function claimKeys (db: Queryable, keys: string[], hashes: string[], ttlSeconds: number): Promise<Set<string>> {
  const res = await db.query<{ key: string }>(`
    insert into idempotency_keys (key, request_hash, status, response, expires_at)
    select k, h, 0, '', now() + make_interval(secs => $3::int)
    from unnest($1::text[], $2::text[]) as u(k, h)
    order by k
    on conflict (key) do update
      set request_hash = excluded.request_hash, status = 0, response = '', created_at = now(), expires_at = excluded.expires_at
      where idempotency_keys.expires_at < now()
    returning key`, [keys, hashes, ttlSeconds])
  return new Set(res.rows.map((r) => r.key))
}

export interface StoredAnswer { hash: string, status: number, response: string }

/** The committed answers of keys another transaction held. */
export async function storedAnswers (db: Queryable, keys: string[]): Promise<Map<string, StoredAnswer>> {
  const res = await db.query<{ key: string, request_hash: string, status: number, response: string }>(
    'select key, request_hash, status, response from idempotency_keys where key = any($1::text[])', [keys])
  return new Map(res.rows.map((r) => [r.key, { hash: r.request_hash, status: r.status, response: r.response }]))
}

/**
 * The end of a batch, in one statement: the answers of the claimed keys whose
 * writes succeeded, the claims of those that failed released, and the one
 * outbox row naming every surrogate key the batch made stale.
 */
export async function finishBatch (db: Queryable, done: { keys: string[], statuses: number[], responses: string[] }, released: string[], outboxKeys: string[]): Promise<void> {
  await db.query(`
    with answered as (
      update idempotency_keys k set status = u.status, response = u.response
      from unnest($1::text[], $2::int[], $3::text[]) as u(key, status, response)
      where k.key = u.key
    ), released as (
      delete from idempotency_keys where key = any($4::text[])
    )
    insert into outbox (keys) select $5::text[] where cardinality($5::text[]) > 0`,
  [done.keys, done.statuses, done.responses, released, outboxKeys])
}

/** Deletes expired keys; returns how many. */
export async function sweepIdempotencyKeys (db: Kysely<Database>): Promise<number> {
  const res = await db.deleteFrom('idempotency_keys').where('expires_at', '<', sql<Date>`now()`).executeTakeFirst()
  return Number(res.numDeletedRows)
}
