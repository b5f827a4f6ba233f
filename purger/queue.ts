/**
 * The purge queue in the primary (migration cdn-purges): published outbox
 * rows become one job per CDN (intake), jobs are claimed with a lease, done
 * or put back with the keys still to purge and a time to try again. Several
 * purgers share it: claims skip each other's rows (for update skip locked),
 * and a purger that dies mid-request loses its jobs to another when the
 * lease ends (at least once; purges are idempotent).
 *
 * Nothing here is on a write's path: the write commits its outbox row as
 * always; the purger reads it after the backend's publisher has marked it
 * published (so our own caches have been told first) and PURGER_SETTLE_MS
 * later (so they have applied it before the CDN refetches from them).
 */
import type pg from 'pg'
import { ClaimTokens } from '../common/claim-tokens.js'
import { isConnectionError } from '../common/errors.js'

export interface PurgeJob {
  id: string
  keys: string[]
  committedAt: Date
  attempts: number
  token: string
}

export interface QueueStats {
  /** Jobs not yet acknowledged by the CDN. */
  pending: number
  /** Seconds since the oldest of them committed (0 when none). */
  oldestAgeSeconds: number
}

export class PurgeQueue {
  readonly #pool: pg.Pool
  readonly #settleMs: number
  readonly #intakeBatch: number
  /** Claims' tokens; those whose outcome went unseen are given back at the next claim (common/claim-tokens.ts). */
  readonly #claims = new ClaimTokens((tokens) => this.#pool.query(
    `update cdn_purges set status = 'queued', claim_token = null, next_attempt_at = clock_timestamp()
     where claim_token = any($1::text[])`, [tokens]))

  constructor (pool: pg.Pool, options: { settleMs: number, intakeBatch?: number }) {
    this.#pool = pool
    this.#settleMs = options.settleMs
    this.#intakeBatch = options.intakeBatch ?? 500
  }

  async #transaction<T> (fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.#pool.connect()
    let broken: Error | undefined
    try {
      await client.query('begin')
      const out = await fn(client)
      await client.query('commit')
      return out
    } catch (err) {
      await client.query('rollback').catch((e: Error) => { broken = e })
      broken ??= isConnectionError(err) ? err as Error : undefined
      throw err
    } finally {
      client.release(broken)
    }
  }

  /**
   * Turns published outbox rows into one job per CDN (their keys together,
   * the oldest commit as the job's); returns the rows taken. Rows come in id
   * order but are taken by mark, not by a cursor: a write that committed
   * late with a low id is still found.
   */
  async intake (cdns: readonly string[]): Promise<number> {
    return this.#transaction(async (client) => {
      const { rows } = await client.query<{ keys: string[], created_at: Date }>(
        `with picked as (
           select id from outbox
           where cdn_queued_at is null and published_at is not null and published_at <= now() - make_interval(secs => $1::float8 / 1000)
           order by id limit $2 for update skip locked
         )
         update outbox o set cdn_queued_at = now() from picked where o.id = picked.id
         returning o.keys, o.created_at`, [this.#settleMs, this.#intakeBatch])
      if (rows.length === 0) return 0
      const keys = [...new Set(rows.flatMap((r) => r.keys))]
      const committedAt = new Date(Math.min(...rows.map((r) => r.created_at.getTime())))
      await client.query('insert into cdn_purges (cdn, keys, committed_at) select c, $2::text[], $3 from unnest($1::text[]) as c',
        [cdns, keys, committedAt])
      return rows.length
    })
  }

  /** Claims up to `max` due jobs of one CDN for `leaseMs`. */
  async claim (cdn: string, max: number, leaseMs: number): Promise<PurgeJob[]> {
    return this.#claims.claim(async (token) => {
      const { rows } = await this.#pool.query<{ id: string, keys: string[], committed_at: Date, attempts: number }>(
        `update cdn_purges set status = 'sending', attempts = attempts + 1, claim_token = $3,
           next_attempt_at = clock_timestamp() + make_interval(secs => $4::float8 / 1000)
         where id in (
           select id from cdn_purges
           where cdn = $1 and status in ('queued', 'sending') and next_attempt_at <= clock_timestamp()
           order by id limit $2 for update skip locked
         )
         returning id, keys, committed_at, attempts`, [cdn, max, token, leaseMs])
      return rows.map((r) => ({ id: String(r.id), keys: r.keys, committedAt: r.committed_at, attempts: r.attempts, token }))
        .sort((a, b) => Number(BigInt(a.id) - BigInt(b.id)))
    })
  }

  /** Marks jobs acknowledged; returns each one still held by this claim with its lag (commit → acknowledgement), seconds. */
  async done (jobs: PurgeJob[]): Promise<Array<{ id: string, lagSeconds: number }>> {
    if (jobs.length === 0) return []
    const { rows } = await this.#pool.query<{ id: string, lag: number }>(
      `update cdn_purges p set status = 'done', done_at = clock_timestamp(), claim_token = null, last_error = null
       from unnest($1::bigint[], $2::text[]) as u(id, token)
       where p.id = u.id and p.claim_token = u.token
       returning p.id, extract(epoch from (p.done_at - p.committed_at))::float8 as lag`,
      [jobs.map((j) => j.id), jobs.map((j) => j.token)])
    return rows.map((r) => ({ id: String(r.id), lagSeconds: Number(r.lag) }))
  }

  /** Puts a job back with the keys still to purge, due after `delayMs`. False when the claim was lost. */
  async retry (job: PurgeJob, keys: string[], delayMs: number, error: string): Promise<boolean> {
    const res = await this.#pool.query(
      `update cdn_purges set status = 'queued', keys = $3, claim_token = null, last_error = $4,
         next_attempt_at = clock_timestamp() + make_interval(secs => $5::float8 / 1000)
       where id = $1 and claim_token = $2`, [job.id, job.token, keys, error.slice(0, 1000), delayMs])
    return res.rowCount === 1
  }

  /** Pending jobs and the age of the oldest, per CDN; plus `intake`: published outbox rows no purger has taken. */
  async stats (cdns: readonly string[]): Promise<Record<string, QueueStats>> {
    const out: Record<string, QueueStats> = {}
    for (const cdn of [...cdns, 'intake']) out[cdn] = { pending: 0, oldestAgeSeconds: 0 }
    const { rows } = await this.#pool.query<{ cdn: string, n: string, age: number | null }>(
      `select cdn, count(*) as n, extract(epoch from clock_timestamp() - min(committed_at))::float8 as age
         from cdn_purges where status in ('queued', 'sending') group by cdn
       union all
       select 'intake', count(*), extract(epoch from clock_timestamp() - min(created_at))::float8
         from outbox where cdn_queued_at is null and published_at is not null`)
    for (const r of rows) {
      if (out[r.cdn] === undefined) continue
      out[r.cdn] = { pending: Number(r.n), oldestAgeSeconds: Math.max(0, Number(r.age ?? 0)) }
    }
    return out
  }

  /** Deletes acknowledged jobs older than `retainMs`. */
  async cleanup (retainMs: number): Promise<void> {
    await this.#pool.query(`delete from cdn_purges where status = 'done' and done_at < clock_timestamp() - make_interval(secs => $1::float8 / 1000)`, [retainMs])
  }
}
