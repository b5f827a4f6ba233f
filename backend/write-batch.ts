/**
 * One batch of writes, one transaction, on one connection:
 *
 *   BEGIN
 *   claim the batch's idempotency keys          (1 statement, when any)
 *   read the answers of keys held elsewhere      (only for replays)
 *   store each kind's inputs                     (1 multi-row statement per kind)
 *   store answers, release failed claims, and
 *   insert ONE outbox row for the whole batch    (1 statement)
 *   COMMIT; read the commit position             (one WAL flush for all; one round trip)
 *
 * Within the batch, writes with the same key are folded before the database
 * sees them: the first one runs, the others get its answer as a replay (or a
 * 409 when their request differs). Statements are plain SQL on the pg client:
 * this is the hot path, and building them with kysely cost more CPU than
 * running them (profile in the README).
 */
import { randomUUID } from 'node:crypto'
import type pg from 'pg'
import { COUNTER_SHARDS, counterShard, PARTICIPANTS } from '../common/counters.js'
import { Errors } from '../common/errors.js'
import { claimKeys, finishBatch, storedAnswers } from './idempotency.js'
import type { WalPosition } from './wal.js'
import type { WriteAnswer, WriteKind } from './write-kind.js'

export interface PendingWrite {
  kind: WriteKind<any>
  input: unknown
  /** Idempotency-Key and request hash, when the client sent a key. */
  key?: string
  hash?: string
}

export interface WriteOutcome {
  status: number
  /** The JSON answer exactly as sent (and as stored for replays). */
  text: string
  replayed: boolean
  /** The primary's WAL position after the commit, when known. */
  lsn?: string
  /** Surrogate keys this write made stale (empty for a replay). */
  keys: string[]
}

export type BatchResult = WriteOutcome | Error

export interface WriteBatchOptions {
  pool: pg.Pool
  idempotencyTtlSeconds: number
  wal: WalPosition
  /** Right-hand side of the Message-IDs of e-mails queued by this batch. */
  mailDomain: string
}

export async function runWriteBatch (items: PendingWrite[], options: WriteBatchOptions): Promise<BatchResult[]> {
  const results: Array<BatchResult | undefined> = new Array(items.length)

  // Fold same-key writes: `leader` maps a key to the first write that carries it.
  const leader = new Map<string, number>()
  const followers: Array<[number, number]> = []
  const following = new Set<number>()
  for (let i = 0; i < items.length; i++) {
    const key = items[i].key
    if (key === undefined) continue
    const first = leader.get(key)
    if (first === undefined) leader.set(key, i)
    else if (items[first].hash === items[i].hash) { followers.push([i, first]); following.add(i) }
    else results[i] = new Errors.IDEMPOTENCY_MISMATCH()
  }

  const client = await options.pool.connect()
  let broken: Error | undefined
  try {
    await client.query('begin')
    try {
      const claimed = new Set<string>()
      if (leader.size > 0) {
        const keys = [...leader.keys()].sort()
        const got = await claimKeys(client, keys, keys.map((k) => items[leader.get(k)!].hash!), options.idempotencyTtlSeconds)
        for (const k of got) claimed.add(k)
        const held = keys.filter((k) => !got.has(k))
        if (held.length > 0) {
          const stored = await storedAnswers(client, held)
          for (const k of held) {
            const i = leader.get(k)!
            const previous = stored.get(k)
            if (previous === undefined) results[i] = new Errors.UNAVAILABLE('a concurrent write with this Idempotency-Key just ended; retry')
            else if (previous.hash !== items[i].hash) results[i] = new Errors.IDEMPOTENCY_MISMATCH()
            else results[i] = { status: previous.status, text: previous.response, replayed: true, keys: [] }
          }
        }
      }

      // Each kind's inputs that still need storing, in one call per kind.
      const byKind = new Map<WriteKind<any>, number[]>()
      for (let i = 0; i < items.length; i++) {
        if (results[i] !== undefined || following.has(i)) continue
        const list = byKind.get(items[i].kind)
        if (list) list.push(i)
        else byKind.set(items[i].kind, [i])
      }
      const context = {
        counterShard: counterShard(PARTICIPANTS, Math.floor(Math.random() * COUNTER_SHARDS)),
        messageId: () => `<${randomUUID()}@${options.mailDomain}>`
      }
      for (const [kind, indexes] of byKind) {
        const answers = await kind.execute(client, indexes.map((i) => items[i].input), context)
        for (let j = 0; j < indexes.length; j++) {
          const answer: WriteAnswer | Error = answers[j]
          results[indexes[j]] = answer instanceof Error
            ? answer
            : { status: answer.status, text: JSON.stringify(answer.body), replayed: false, keys: answer.keys }
        }
      }

      const done = { keys: [] as string[], statuses: [] as number[], responses: [] as string[] }
      const released: string[] = []
      const outboxKeys = new Set<string>()
      for (const [key, i] of leader) {
        if (!claimed.has(key)) continue
        const r = results[i]!
        if (r instanceof Error) released.push(key)
        else { done.keys.push(key); done.statuses.push(r.status); done.responses.push(r.text) }
      }
      for (const r of results) if (r !== undefined && !(r instanceof Error)) for (const k of r.keys) outboxKeys.add(k)
      if (done.keys.length > 0 || released.length > 0 || outboxKeys.size > 0) {
        await finishBatch(client, done, released, [...outboxKeys])
      }
    } catch (err) {
      await client.query('rollback').catch((rollbackError: Error) => { broken = rollbackError })
      throw err
    }
    // The commit position is read right after the COMMIT, in the same round trip:
    // at or past every commit record of the batch.
    const lsn = await options.wal.commit(client)
    for (const r of results) if (r !== undefined && !(r instanceof Error)) r.lsn = lsn
  } catch (err) {
    // A connection that failed mid-transaction is not given back to the pool.
    broken ??= isConnectionError(err) ? err as Error : undefined
    throw err
  } finally {
    client.release(broken)
  }

  for (const [i, first] of followers) {
    const r = results[first]!
    results[i] = r instanceof Error ? r : { ...r, replayed: true, keys: [] }
  }
  return results as BatchResult[]
}

function isConnectionError (err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code !== 'string' || !/^[0-9A-Z]{5}$/.test(code)
}
